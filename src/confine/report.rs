//! What the confinement role tells its launcher: exactly what was enforced for the process it is
//! about to `execve`, or why it gave up. One JSON line per message on the report pipe; the pipe
//! closes when `execve` succeeds (it is close-on-exec), so the launcher reads until end of file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::identity::IdentityOutcome;
use super::landlock::LandlockOutcome;
use super::limits::LimitsOutcome;
use super::probe::LandlockFeature;
use super::program::AfterExec;

/// What was enforced for one principal's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    /// The principal, as its policy names it.
    pub principal: String,
    /// The program about to run, resolved in the principal's PATH.
    pub program: PathBuf,
    /// The names of the variables it gets (exactly these).
    pub env: Vec<String>,
    /// Its ids and capabilities.
    pub identity: IdentityOutcome,
    /// `no_new_privs` is set.
    pub no_new_privs: bool,
    /// What Landlock enforced.
    pub landlock: LandlockOutcome,
    /// The seccomp filters are installed.
    pub seccomp: bool,
    /// Whether it stays non-dumpable once the program runs.
    pub dumpable: AfterExec,
    /// Its resource bounds in force.
    #[serde(default)]
    pub limits: LimitsOutcome,
    /// The root of its own it runs in (`chroot`), when it has one; its program and filesystem
    /// rules are paths inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

/// One message on the report pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Message {
    /// Everything is in place; `execve` comes next.
    Enforced(Box<Enforcement>),
    /// Confinement or `execve` failed; the process exits.
    Failed(String),
}

impl Enforcement {
    /// One line for a person.
    pub fn summary(&self) -> String {
        let id = &self.identity;
        let mut parts = vec![format!(
            "uid {}{}",
            id.uid,
            if id.switched { "" } else { " (inherited)" }
        )];
        parts.push(if id.bounding_set_empty {
            "no capabilities".to_string()
        } else {
            "no capabilities (bounding set kept: no CAP_SETPCAP)".to_string()
        });
        if self.no_new_privs {
            parts.push("no_new_privs".to_string());
        }
        let ll = &self.landlock;
        if ll.enforced.is_empty() {
            parts.push("no Landlock".to_string());
        } else {
            let names = |fs: &[LandlockFeature]| {
                fs.iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut text = format!("Landlock ABI {} ({})", ll.abi, names(&ll.enforced));
            if !ll.missing.is_empty() {
                text.push_str(&format!(" without {}", names(&ll.missing)));
            }
            parts.push(text);
        }
        parts.push(
            if self.seccomp {
                "seccomp"
            } else {
                "no seccomp"
            }
            .to_string(),
        );
        parts.push(match &self.dumpable {
            AfterExec::NonDumpable(_) => "non-dumpable".to_string(),
            AfterExec::Dumpable(_) => "dumpable".to_string(),
        });
        parts.extend(self.limits.summary());
        if let Some(root) = &self.root {
            parts.push(format!("in its own root {}", root.display()));
        }
        format!(
            "{}: {} ({} variables): {}",
            self.principal,
            self.program.display(),
            self.env.len(),
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_holds_and_what_does_not() {
        let enforcement = Enforcement {
            principal: "skill `exa`".into(),
            program: "/usr/bin/node".into(),
            env: vec!["EXA_API_KEY".into(), "PATH".into()],
            identity: IdentityOutcome {
                uid: 10001,
                gid: 10001,
                groups: vec![],
                switched: true,
                capabilities_empty: true,
                bounding_set_empty: true,
            },
            no_new_privs: true,
            landlock: LandlockOutcome {
                abi: 5,
                enforced: vec![LandlockFeature::Filesystem, LandlockFeature::TcpPorts],
                missing: vec![LandlockFeature::Scopes],
                skipped: vec![],
            },
            seccomp: true,
            dumpable: AfterExec::NonDumpable("/usr/bin/node".into()),
            limits: LimitsOutcome {
                processes: Some(256),
                data_bytes: Some(2 << 30),
                oom_score_adj: Some(500),
            },
            root: None,
        };
        assert_eq!(
            enforcement.summary(),
            "skill `exa`: /usr/bin/node (2 variables): uid 10001, no capabilities, no_new_privs, \
             Landlock ABI 5 (filesystem rules, TCP port rules) without signal and abstract-socket \
             scopes, seccomp, non-dumpable, at most 256 processes, 2048 MiB of data per process, \
             oom_score_adj 500"
        );
        let line =
            serde_json::to_string(&Message::Enforced(Box::new(enforcement.clone()))).expect("json");
        let back: Message = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, Message::Enforced(Box::new(enforcement)));
    }
}
