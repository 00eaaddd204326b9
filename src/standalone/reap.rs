//! PID 1's duty: a principal's descendant whose parent ended is re-parented to us, and when it
//! ends it stays a zombie — holding a pid of the container's shared pids limit — until we wait
//! for it. On each `SIGCHLD` the reaper waits for every zombie child of ours that we did not
//! start; the principals we started are tokio's to wait for (waiting for them here would take
//! their exit status from it).

use std::collections::HashSet;
use std::sync::Arc;

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;

/// The pids of the principals we started. Held locked while starting them, so that the reaper
/// never takes a principal for an orphan between its fork and its entry here.
#[derive(Debug, Clone, Default)]
pub(crate) struct Started(pub(crate) Arc<Mutex<HashSet<i32>>>);

/// Reaps orphans until the task is aborted; `None` when `SIGCHLD` cannot be watched (orphans
/// then stay zombies until the container ends, as without this).
pub(crate) fn spawn(started: Started) -> Option<tokio::task::JoinHandle<()>> {
    let mut children = signal(SignalKind::child()).ok()?;
    Some(tokio::spawn(async move {
        while children.recv().await.is_some() {
            let known = started.0.lock().await;
            reap_orphans(&known);
        }
    }))
}

/// Waits for every zombie child of this process not in `known`.
fn reap_orphans(known: &HashSet<i32>) {
    for pid in orphans(known, std::process::id() as i32) {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    }
}

/// The zombie children of `parent` not in `known`.
fn orphans(known: &HashSet<i32>, parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| !known.contains(pid) && zombie_child_of(*pid, parent))
        .collect()
}

/// `/proc/<pid>/stat` says a zombie whose parent is `parent`.
fn zombie_child_of(pid: i32, parent: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    fields.next() == Some("Z") && fields.next().and_then(|p| p.parse().ok()) == Some(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that has exited and that nobody waited for yet: a zombie of ours.
    fn zombie() -> i32 {
        let child = std::process::Command::new("true").spawn().expect("true");
        let pid = child.id() as i32;
        drop(child); // std's Child does not wait when dropped.
        let me = std::process::id() as i32;
        for _ in 0..500 {
            if zombie_child_of(pid, me) {
                return pid;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{pid} is no zombie of ours");
    }

    #[test]
    fn zombie_children_we_did_not_start_are_orphans_and_the_principals_are_not() {
        let (orphan, principal) = (zombie(), zombie());
        // Only these two are waited for here: other tests' children are theirs.
        let found = orphans(&HashSet::from([principal]), std::process::id() as i32);
        for pid in [orphan, principal] {
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        assert!(found.contains(&orphan), "{found:?}");
        assert!(!found.contains(&principal), "{found:?}");
    }
}
