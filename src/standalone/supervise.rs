//! Carrying the plan out as confined processes, as PID 1 of the one container: private folders
//! made, every skill started through `confine exec` and then the runtime, the protections
//! reported, the runtime's events relayed to stdout and stored in `/workspace/perstack`, signals
//! passed on, and every process ended with the runtime.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};

use super::image::{RecipeRoot, RecipeRoots};
use super::prepare::Prepared;
use super::principals::{
    AtStart, FILES_UID, Identities, Principal, principals, runs_as_root, with_socket_fd,
};
use super::settle::{Lacking, Need, Step, settle, state_dir_hint};
use super::{STATE_DIR, StandaloneError};
use super::{container_root, egress, reap, report};
use crate::cli::StandaloneArgs;
use crate::confine::launch::Launch;
use crate::confine::policy::Policy;
use crate::confine::probe::{Protections, Shortfall};
use crate::confine::report::Enforcement;
use crate::confine::workspace;
use crate::contract::paths::{RUNTIME_SOCKETS_DIR, SOCKET_FILE, WORKSPACE_MOUNT};
use crate::contract::users::RUNTIME_GID;
use crate::event::Event;
use crate::exit::Exit;
use crate::jobs::Recorder;
use crate::render::{Continuing, Mode, Output};
use crate::sandbox::engine::run::{RunEnd, run_end};

/// What the principals' domains need from the container's files at start: what a skill granted
/// the workspace read-write may change — the workspace's entries as they are at start that are
/// neither protected nor above a protected path (`confine::workspace`, the rules of the base
/// tools' `exec`) — and, when a skill runs in the container's root, its recipe's files.
fn at_start(protected: &[PathBuf], roots: &RecipeRoots) -> AtStart {
    let root = Path::new(WORKSPACE_MOUNT);
    let writable = workspace::writable_entries(root, protected, workspace::list_folder)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let recipe_files = match roots.values().any(RecipeRoot::is_container_root) {
        true => container_root::recipe_files(
            &container_root::list_folder,
            &container_root::mount_points(),
        ),
        false => Vec::new(),
    };
    AtStart {
        writable,
        recipe_files,
    }
}

/// The skill whose recipe is the image's base, which runs in the container's root.
fn base_recipe_of(roots: &RecipeRoots) -> Option<&str> {
    roots
        .iter()
        .find(|(_, root)| root.is_container_root())
        .map(|(service, _)| service.as_str())
}

/// The stderr line naming the image's base, and — when it is a skill's recipe — which skill runs
/// in the container's root, and why.
fn base_line(base: &str, roots: &RecipeRoots) -> String {
    match base_recipe_of(roots) {
        Some(service) => format!(
            "perstack-sandbox: base image: {base}, the recipe of {service}: it runs in the \
             container's root, since it is granted the workspace (a chroot could not reach it)"
        ),
        None => format!("perstack-sandbox: base image: {base}"),
    }
}

/// Runs the prepared plan to its end; gives the exit code (the runtime's, or the signal's).
pub(crate) async fn supervise(
    prepared: Prepared,
    protections: &Protections,
    args: &StandaloneArgs,
) -> Result<i32, StandaloneError> {
    let Prepared {
        plan,
        job_id,
        run_id,
        job,
        store,
        run_setting,
        base,
        roots,
        protected,
    } = prepared;
    let identities = Identities {
        switch: protections.can_switch_uid,
        own: (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        ),
    };
    let tokens = match &plan.proxy {
        Some(proxy) => Some(egress::issue(proxy).map_err(StandaloneError::Start)?),
        None => None,
    };
    let found = at_start(&protected, &roots);
    let all = principals(
        &plan,
        identities,
        Path::new(STATE_DIR),
        tokens.as_ref(),
        &roots,
        &found,
    )
    .map_err(StandaloneError::Start)?;
    let lacking = ready_to_start(&all, protections, identities)?;
    let confiner = std::env::current_exe()
        .map_err(|e| StandaloneError::Start(format!("cannot find our own executable: {e}")))?;
    let recorder = Recorder::start(store, job, &run_setting)
        .map_err(|e| StandaloneError::Run(e.to_string()))?;
    let (output, writer) = Output::spawn_for(
        Mode::detect(args.json, args.verbose),
        tokio::io::stdout(),
        Continuing::Standalone,
    );

    let known = reap::Started::default();
    let reaper = reap::spawn(known.clone());
    let started = start_all(&confiner, &all, &job_id, &run_id, &output, &known).await;
    let code = match started {
        Ok((mut skills, runtime, enforced)) => {
            eprintln!("{}", base_line(&base, &roots));
            for line in report::human_lines(&enforced) {
                eprintln!("{line}");
            }
            output.relayed(
                report::event_line(
                    &job_id,
                    &run_id,
                    (&base, base_recipe_of(&roots)),
                    protections,
                    &lacking,
                    &enforced,
                ),
                None,
            );
            let code = relay(runtime, &output, &recorder, &plan.spec.expert_key).await;
            for skill in &mut skills {
                let _ = skill.kill().await;
            }
            Ok(code)
        }
        Err(error) => Err(error),
    };
    if let Some(reaper) = reaper {
        reaper.abort();
    }
    drop(output);
    let _ = writer.await;
    recorder.finish().await;
    code
}

/// Before anything starts: the recipe roots checked (and warned of), every private folder made;
/// gives what a read-only root left out that the run goes on without, warned of here.
fn ready_to_start(
    all: &[Principal],
    protections: &Protections,
    identities: Identities,
) -> Result<Vec<Shortfall>, StandaloneError> {
    check_roots(all, protections)?;
    warn_nodev_roots(all);
    let lacking = make_folders(all, identities)?;
    report::warn(&lacking);
    Ok(lacking)
}

/// A skill in a root of its own needs `chroot`, so root with CAP_SYS_CHROOT and the uid switch
/// (a principal that kept our uid could leave a chroot): refused before anything starts,
/// naming the skill and the way out.
fn check_roots(all: &[Principal], protections: &Protections) -> Result<(), StandaloneError> {
    let Some(principal) = all.iter().find(|p| p.policy.root.is_some()) else {
        return Ok(());
    };
    let lacking = match (protections.can_switch_uid, protections.can_chroot) {
        (true, true) => return Ok(()),
        (false, _) => format!("this container runs as uid {}", protections.uid),
        (true, false) => "this container was started without CAP_SYS_CHROOT".to_string(),
    };
    Err(StandaloneError::Start(format!(
        "{} is built from its own Dockerfile and runs in its recipe's root filesystem (chroot), \
         which needs the container to start as root (the image's default user) with \
         CAP_SYS_CHROOT, in Docker's and Kubernetes' default capabilities; {lacking}. Start it \
         without --user and without --cap-drop SYS_CHROOT (or ALL), or run this Expert in the \
         multi-container mode (perstack-sandbox build --tag REF, then perstack-sandbox run \
         --image REF \"<query>\")",
        principal.policy.principal
    )))
}

/// A root on a filesystem mounted `nodev` (the container's own root under fuse-overlayfs, say)
/// keeps the recipe's device files, but they cannot be opened: `/dev/null` gives EACCES there.
fn warn_nodev_roots(all: &[Principal]) {
    for (principal, root) in all
        .iter()
        .filter_map(|p| Some((p, p.policy.root.as_ref()?)))
    {
        let nodev = nix::sys::statvfs::statvfs(&root.path)
            .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_NODEV));
        if nodev {
            eprintln!(
                "perstack-sandbox: warning: {}'s root {} is on a nodev filesystem (the \
                 container's storage driver): its /dev/null and other device files cannot be \
                 opened there",
                principal.policy.principal,
                root.path.display()
            );
        }
    }
}

/// The private folders: a home for each principal, a socket folder for each skill (the
/// runtime's group, and the skill's uid unless it inherits its socket: [`socket_folder`]). The
/// folders above them, each skill's own folder and — when a principal runs as uid 0 — our
/// binary belong to [`FILES_UID`], so that no principal may `chmod` them. A skill in its own
/// root gets that root's `/tmp` as its home. Gives what a read-only root left out that the run
/// goes on without (the skills' own folders, reported as a shortfall); warns of a recipe's
/// `/tmp` left read-only.
fn make_folders(
    all: &[Principal],
    identities: Identities,
) -> Result<Vec<Shortfall>, StandaloneError> {
    let state = Path::new(STATE_DIR);
    let files_owner = identities.switch.then_some((FILES_UID, FILES_UID));
    for dir in [
        state.to_path_buf(),
        state.join("home"),
        PathBuf::from(RUNTIME_SOCKETS_DIR),
    ] {
        make_folder(&dir, files_owner, 0o711)?;
    }
    if all.iter().any(runs_as_root) {
        exec_only_binary()?;
    }
    let mut unwalled = Vec::new();
    for principal in all {
        let (uid, gid) = principal.uid_gid;
        if principal.policy.root.is_some() {
            root_tmp(principal, (uid, gid))?;
        } else {
            make_folder(
                &principal.home,
                identities.switch.then_some((uid, gid)),
                0o700,
            )?;
        }
        if let (Some(dir), true) = (&principal.own_files, identities.switch) {
            // Its packages and files: its group may read them, nobody else (Landlock walls them
            // off from the other principals besides; without a uid of its own, that alone does).
            if settle(dir, Need::SkillsAlone { gid })? == Step::ReadOnly(Lacking::Wall) {
                unwalled.push(dir.clone());
            }
        }
        if let Some(dir) = &principal.socket_dir {
            let (owner, mode) = socket_folder(principal, identities.switch);
            make_folder(dir, owner, mode)?;
        }
    }
    Ok(match unwalled.is_empty() {
        true => vec![],
        false => vec![Shortfall::ReadOnlySkillFolders { folders: unwalled }],
    })
}

/// The owner and mode of a skill's socket folder: the runtime's group may enter it, and the
/// skill's uid when it binds its socket there itself. A skill that inherits its socket (bound
/// here by us) has no need to: the folder is then [`FILES_UID`]'s, so that no principal sharing
/// the skill's uid (the workspace owner's) can reach the socket either.
fn socket_folder(principal: &Principal, switch: bool) -> (Option<(u32, u32)>, u32) {
    match (switch, principal.inherits_socket) {
        (true, false) => (Some((principal.uid_gid.0, RUNTIME_GID)), 0o750),
        (true, true) => (Some((FILES_UID, RUNTIME_GID)), 0o750),
        (false, _) => (None, 0o700),
    }
}

/// A recipe root's `/tmp`, made the skill's alone (mode 0700). On a read-only root it stays
/// the recipe's, read-only: a warning names the skill and the tmpfs that gives it one.
fn root_tmp(principal: &Principal, owner: (u32, u32)) -> Result<(), StandaloneError> {
    let dir = &principal.home;
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(StandaloneError::Start(format!(
                "cannot make {} ({e}); the recipe's /tmp must be a folder",
                dir.display()
            )));
        }
        _ => {}
    }
    if settle(dir, Need::OwnTmp { owner })? == Step::ReadOnly(Lacking::NoTmp) {
        eprintln!(
            "perstack-sandbox: warning: {}'s /tmp ({}) is on the container's read-only root: the \
             skill cannot write files there; give it one with docker run --tmpfs {} (Kubernetes: \
             an emptyDir volume mounted there)",
            principal.policy.principal,
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Our binary, [`FILES_UID`]'s and exec-only: unreadable to uid 0 without capabilities too, so
/// the processes it becomes stay non-dumpable, and not uid 0's to `chmod`. The image has it
/// root's; only a run with a uid-0 principal pays for the copy to the container's layer that
/// the change costs. On a read-only root nobody can `chmod` it: it stays as the image has it.
fn exec_only_binary() -> Result<(), StandaloneError> {
    let binary = std::env::current_exe().map_err(|e| {
        StandaloneError::Start(format!("cannot find our binary ({e}); rebuild the image"))
    })?;
    settle(&binary, Need::ExecOnly).map(drop)
}

fn make_folder(dir: &Path, owner: Option<(u32, u32)>, mode: u32) -> Result<(), StandaloneError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        StandaloneError::Start(format!(
            "cannot make {} ({e}); {}",
            dir.display(),
            state_dir_hint()
        ))
    })?;
    settle(dir, Need::Private { owner, mode }).map(drop)
}

/// Starts every skill, then the runtime (the last principal), each confined; gives the skills,
/// the runtime and what holds for each. A principal that cannot start stops everything.
async fn start_all(
    confiner: &Path,
    all: &[Principal],
    job_id: &str,
    run_id: &str,
    output: &Output,
    known: &reap::Started,
) -> Result<(Vec<Child>, Child, Vec<Enforcement>), StandaloneError> {
    let mut known = known.0.lock().await;
    let (runtime, skills) = all
        .split_last()
        .ok_or_else(|| StandaloneError::Start("the plan has no runtime".into()))?;
    let mut children = Vec::new();
    let mut enforced = Vec::new();
    for principal in skills {
        let proxy = principal.service == PROXY_SERVICE;
        let (mut child, enforcement) = start(confiner, principal, proxy).await?;
        known.extend(child.id().map(|pid| pid as i32));
        if proxy {
            if let Some(stdout) = child.stdout.take() {
                relay_access_records(stdout, job_id, run_id, output);
            }
            wait_for_proxy(&mut child).await?;
        }
        children.push(child);
        enforced.push(enforcement);
    }
    let (mut child, enforcement) = start(confiner, runtime, true).await?;
    known.extend(child.id().map(|pid| pid as i32));
    enforced.push(enforcement);
    if let (Some(text), Some(mut stdin)) = (&runtime.stdin, child.stdin.take()) {
        let text = text.clone();
        tokio::spawn(async move {
            let _ = stdin.write_all(text.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    Ok((children, child, enforced))
}

/// The egress proxy's service name in the plan.
const PROXY_SERVICE: &str = "egress-proxy";

/// Waits until the proxy listens (at most 10 s), or says it ended.
async fn wait_for_proxy(proxy: &mut Child) -> Result<(), StandaloneError> {
    let address = (egress::PROXY_HOST, crate::proxy::PROXY_PORT);
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = proxy.try_wait() {
            return Err(StandaloneError::Start(format!(
                "the egress proxy ended at start ({status}); its stderr says why"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(StandaloneError::Start(format!(
        "the egress proxy does not listen on {}:{} after 10 s",
        address.0, address.1
    )))
}

/// Turns the proxy's access records into `proxyAccess` events, as `run` does.
fn relay_access_records(
    stdout: tokio::process::ChildStdout,
    job_id: &str,
    run_id: &str,
    output: &Output,
) {
    let (job_id, run_id, output) = (job_id.to_string(), run_id.to_string(), output.clone());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<crate::proxy::Access>(&line) {
                Ok(access) => output.event(Event::runtime(
                    &job_id,
                    &run_id,
                    crate::event::RuntimePayload::ProxyAccess {
                        action: access.action,
                        domain: access.domain,
                        port: access.port,
                        reason: access.reason,
                        client: Some(access.client),
                    },
                )),
                Err(_) => eprintln!("egress-proxy: {line}"),
            }
        }
    });
}

/// One principal through `confine exec`; the stdout of the runtime (and the proxy's access
/// records) is piped to us.
async fn start(
    confiner: &Path,
    principal: &Principal,
    runtime: bool,
) -> Result<(Child, Enforcement), StandaloneError> {
    let fail = |e: crate::confine::ConfineError| StandaloneError::Start(e.to_string());
    let (argv, policy, listener) = inherited_socket(principal)?;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| StandaloneError::Start(format!("{}: no command", principal.service)))?;
    let mut launch = Launch::new(confiner, &policy, program, args).map_err(fail)?;
    let command = launch.command_mut();
    if let Some(dir) = &principal.workdir {
        command.current_dir(dir);
    }
    command.stdin(match (runtime, &principal.stdin) {
        _ if principal.service == PROXY_SERVICE => Stdio::null(),
        (true, Some(_)) => Stdio::piped(),
        _ => Stdio::null(),
    });
    command.stdout(match runtime {
        true => Stdio::piped(),
        false => Stdio::null(),
    });
    command.stderr(Stdio::inherit());
    let confined = launch.spawn_async().await.map_err(fail)?;
    // The child has its own copy of the listening socket now.
    drop(listener);
    Ok((confined.child, confined.enforcement))
}

/// For a skill in its own root, whose socket folder is outside it, and one sharing a uid (the
/// base tools, a skill granted the workspace): the socket bound where the runtime looks (in a
/// folder only the runtime's group enters, [`socket_folder`]), kept open across the launch, and
/// the skill host told its descriptor. Others start as planned.
fn inherited_socket(
    principal: &Principal,
) -> Result<(Vec<String>, Policy, Option<UnixListener>), StandaloneError> {
    let (Some(dir), true) = (&principal.socket_dir, principal.inherits_socket) else {
        return Ok((principal.argv.clone(), principal.policy.clone(), None));
    };
    let path = dir.join(SOCKET_FILE);
    let fail = |e: std::io::Error| {
        StandaloneError::Start(format!(
            "{}: cannot listen on {} ({e})",
            principal.service,
            path.display()
        ))
    };
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(fail)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).map_err(fail)?;
    let fd = listener.as_raw_fd();
    let mut policy = principal.policy.clone();
    policy.keep_fds.push(fd);
    Ok((with_socket_fd(&principal.argv, fd), policy, Some(listener)))
}

/// Relays the runtime's events until it exits, passing SIGINT on (it stops at the next step
/// boundary) and ending it on SIGTERM; gives the exit code, which the coordinator's terminal
/// event decides (README, "Exit codes"), as for `run`.
async fn relay(mut runtime: Child, output: &Output, recorder: &Recorder, expert: &str) -> i32 {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        let _ = runtime.kill().await;
        return Exit::RunFailed.code();
    };
    let Some(stdout) = runtime.stdout.take() else {
        let _ = runtime.kill().await;
        return Exit::RunFailed.code();
    };
    let mut lines = BufReader::new(stdout).lines();
    let mut open = true;
    let mut end = None;
    loop {
        tokio::select! {
            line = lines.next_line(), if open => match line {
                Ok(Some(line)) => {
                    if let Some(this_end) = relay_line(line, output, recorder, expert) {
                        end = Some(this_end);
                    }
                }
                _ => open = false,
            },
            status = runtime.wait(), if !open => {
                let code = status.ok().and_then(|s| s.code());
                return exit_code(end, code);
            }
            _ = interrupt.recv() => {
                if let Some(pid) = runtime.id() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGINT,
                    );
                }
            }
            _ = terminate.recv() => {
                let _ = runtime.kill().await;
                return Exit::Terminated.code();
            }
        }
    }
}

/// One line of the runtime's stdout: to our stdout as is, and into the job when it is an event;
/// gives how the run ends when it is the coordinator's terminal event.
fn relay_line(line: String, output: &Output, recorder: &Recorder, expert: &str) -> Option<RunEnd> {
    match Event::from_line(&line) {
        Ok(event) => {
            let end = run_end(&event, expert);
            recorder.record(&line, &event);
            output.relayed(line, Some(event));
            end
        }
        Err(_) => {
            eprintln!("perstack-sandbox: not an event from the runtime: {line}");
            None
        }
    }
}

/// The exit code: the terminal event's, else the runtime's own failure.
fn exit_code(end: Option<RunEnd>, runtime_code: Option<i32>) -> i32 {
    match end {
        Some(RunEnd::Completed) => Exit::Success.code(),
        Some(RunEnd::StoppedByMaxSteps) => Exit::MaxSteps.code(),
        Some(RunEnd::WaitingForInteractiveTool) => Exit::Interactive.code(),
        Some(RunEnd::StoppedByError(_) | RunEnd::RuntimeFailed { .. }) => Exit::RunFailed.code(),
        None => match runtime_code {
            Some(code) if code != 0 => code,
            _ => Exit::RunFailed.code(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_event_decides_the_exit_code_as_for_run() {
        assert_eq!(exit_code(Some(RunEnd::Completed), Some(0)), 0);
        assert_eq!(
            exit_code(Some(RunEnd::StoppedByError("x".into())), Some(0)),
            1
        );
        assert_eq!(
            exit_code(Some(RunEnd::WaitingForInteractiveTool), Some(0)),
            4
        );
        // A runtime that ended without a terminal event failed, whatever it exited with.
        assert_eq!(exit_code(None, Some(0)), Exit::RunFailed.code());
        assert_eq!(exit_code(None, Some(137)), 137);
    }
}
