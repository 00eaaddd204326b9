//! The plan's containers as processes of one container: for each, the command line (its image's
//! ENTRYPOINT and its arguments), exactly its environment, its uid, its private folders and its
//! confinement policy. Pure: the supervisor creates the folders and starts the processes.
//!
//! What a container boundary gave, and what stands in for it here:
//! - its own root file system → a Landlock domain granting the system's programs and libraries,
//!   its own folders, and `/workspace` only where the plan mounts it;
//! - the read-only mounts over the protected paths → for a skill granted the workspace
//!   read-write, write rights only on the entries that are neither protected nor above one
//!   (`confine::workspace`, computed by the supervisor at start);
//! - a socket volume shared with the runtime alone → a folder owned by the skill's uid with the
//!   runtime's group, mode 0750 (`RUNTIME_SOCKETS_DIR/<n>`), the path the runtime's spec names;
//! - its own `/tmp` tmpfs → a private folder, its `HOME` and `TMPDIR`;
//! - network `none` → no TCP connect at all (Landlock) and no UDP or raw sockets (seccomp);
//! - its own user → its own uid when the supervisor runs as root;
//! - a skill's image built from its own Dockerfile → that recipe's whole root filesystem, copied
//!   into the skill's own folder at build time ([`RecipeRoot`]), entered with `chroot` before
//!   the uid switch, with its socket bound by the supervisor outside that root and inherited;
//!   or, for such a skill granted the workspace, the container's own root, which the image was
//!   built from: read and executed where it holds the recipe's files ([`AtStart::recipe_files`]);
//! - its memory and pids limits → per-process and per-uid bounds ([`ResourceLimits`]): the
//!   memory limit as each process's `RLIMIT_DATA`, the pids limit as the `RLIMIT_NPROC` of a
//!   skill's own uid, and skills first in line for the OOM killer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::egress::{Tokens, with_proxy_url};
use super::image::{RecipeRoot, RecipeRoots};
use super::skill_root;
use crate::confine::policy::{
    FsRules, Identity, NetRules, OwnRoot, Policy, ResourceLimits, STANDARD_DEVICES, TcpConnect,
};
use crate::contract::paths::{SCRATCH_PATH, SKILL_SOCKET_DIR, SOCKET_FILE, WORKSPACE_MOUNT};
use crate::contract::proxy::PROXY_CONFIG_VAR;
use crate::contract::users::{PROXY_UID, RUNTIME_GID, RUNTIME_UID};
use crate::proxy::PROXY_PORT;
use crate::sandbox::plan::{ContainerPlan, MountSource, RunPlan};

/// The first uid of the skills when the supervisor runs as root: skill `n` of the plan gets
/// `SKILL_UIDS + n`, each its own.
pub(crate) const SKILL_UIDS: u32 = 20000;

/// The uid that owns what a principal running as uid 0 (base tools in a root-owned workspace)
/// must not `chmod` — our binary, each skill's folder, the supervisor's folders — and that no
/// principal runs as. Without capabilities uid 0 is an ordinary user to the kernel: it may
/// change only what uid 0 owns, and Landlock does not govern `chmod`.
pub(crate) const FILES_UID: u32 = 10009;

/// The `oom_score_adj` of skills and base tools (what the model and third-party code run in):
/// when the container's memory runs out, the kernel kills one of them before the runtime, the
/// proxy or the supervisor (0).
pub(crate) const UNTRUSTED_OOM_SCORE_ADJ: i32 = 500;

/// One process of the run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Principal {
    /// The plan's service name: `runtime`, `skill:web`, `base-skill`, `egress-proxy`.
    pub service: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Where it starts.
    pub workdir: Option<PathBuf>,
    /// Its confinement, its environment included.
    pub policy: Policy,
    /// Its uid and gid (ours when we cannot switch).
    pub uid_gid: (u32, u32),
    /// The folder it listens in, shared with the runtime's group (skills).
    pub socket_dir: Option<PathBuf>,
    /// Its private `HOME` and `TMPDIR`.
    pub home: PathBuf,
    /// What to write to its stdin, then close it (the runtime of a continued run).
    pub stdin: Option<String>,
    /// A skill's own folder in the image (its packages and files, [`skill_root`]), which it
    /// alone may read.
    pub own_files: Option<PathBuf>,
    /// It runs in a root of its own, which its socket folder is outside of: the supervisor
    /// binds the socket and passes it on (`skill-host --socket-fd`).
    pub inherits_socket: bool,
}

/// What the supervisor reads from the container's files at start for the principals' domains.
#[derive(Debug, Clone, Default)]
pub(crate) struct AtStart {
    /// The workspace's entries a skill granted it read-write may change
    /// ([`granted_workspace`]).
    pub writable: Vec<PathBuf>,
    /// The recipe's files, for a skill whose recipe is the image's base
    /// (`super::container_root`).
    pub recipe_files: Vec<PathBuf>,
}

/// How the principals' identities are chosen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identities {
    /// We run as root and may switch uids.
    pub switch: bool,
    /// Our own uid and gid, which every principal shares otherwise.
    pub own: (u32, u32),
}

/// Every process of the plan: the egress proxy (when the plan has one), the skills (base tools
/// among them) in the plan's order, then the runtime. `state` is the supervisor's folder for
/// sockets and homes; `tokens` the proxy principals' URLs (when the plan has a proxy); `roots`
/// the image's skills built from their own Dockerfile; `found` what the supervisor read at start.
pub(crate) fn principals(
    plan: &RunPlan,
    identities: Identities,
    state: &Path,
    tokens: Option<&Tokens>,
    roots: &RecipeRoots,
    found: &AtStart,
) -> Result<Vec<Principal>, String> {
    let socket_dirs = runtime_socket_dirs(&plan.runtime);
    let mut all = Vec::new();
    if let (Some(proxy), Some(tokens)) = (&plan.proxy, tokens) {
        let n = plan.skills.len() + 1;
        let mut principal = principal(
            plan,
            &proxy.container,
            identities,
            (PROXY_UID, PROXY_UID),
            state,
            n,
        )?;
        principal
            .policy
            .env
            .insert(PROXY_CONFIG_VAR.to_string(), tokens.config.clone());
        // It resolves names and connects anywhere its allowlists allow; it listens on its port.
        principal.policy.network = NetRules {
            connect: TcpConnect::Any,
            bind: vec![PROXY_PORT],
            udp: true,
        };
        all.push(principal);
    }
    for (n, container) in plan.skills.iter().enumerate() {
        let own = (SKILL_UIDS + n as u32, SKILL_UIDS + n as u32);
        let uid_gid = match workspace_user(container) {
            Some(user) if identities.switch => not_reserved(user, plan.skills.len())?,
            Some(user) => user,
            None => own,
        };
        let socket_dir = skill_socket_dir(container, &socket_dirs).ok_or_else(|| {
            format!(
                "{}: the plan gives it no socket the runtime mounts",
                container.service
            )
        })?;
        let mut principal = principal(plan, container, identities, uid_gid, state, n)?;
        match roots.get(&container.service) {
            Some(root) if root.is_container_root() => {
                in_container_root(&mut principal, container, root, &found.recipe_files);
            }
            Some(root) => in_own_root(&mut principal, container, root),
            None => {}
        }
        principal.policy.limits = untrusted_limits(container, identities, uid_gid == own);
        route_through_proxy(&mut principal, tokens);
        principal.argv = with_socket(&principal.argv, &socket_dir.join(SOCKET_FILE));
        if is_base_tools(container) {
            // No read-only mount holds the protected paths here: `exec` keeps them from its
            // programs by a Landlock domain of their own (`confine::workspace`).
            principal.argv.push("--confine-exec".to_string());
        } else if mounts_workspace(container) {
            granted_workspace(&mut principal, container, &found.writable);
        }
        // A uid it shares (the workspace owner's, with the base tools and every skill granted
        // the workspace) would let the others walk into its socket folder and connect: pathname
        // sockets are not Landlock's before ABI 9. So the supervisor binds the socket in a
        // folder only the runtime's group may enter, and the principal inherits it.
        principal.inherits_socket |= uid_gid != own;
        if !principal.inherits_socket {
            principal
                .policy
                .filesystem
                .read_write
                .push(socket_dir.clone());
        }
        principal.socket_dir = Some(socket_dir);
        all.push(principal);
    }
    let mut runtime = principal(
        plan,
        &plan.runtime,
        identities,
        (RUNTIME_UID, RUNTIME_GID),
        state,
        plan.skills.len(),
    )?;
    route_through_proxy(&mut runtime, tokens);
    all.push(runtime);
    Ok(all)
}

/// A skill granted the workspace: all of it read, and with a read-write grant the `writable`
/// entries changed — each entry that is neither a protected path nor above one, as
/// `confine::workspace` computes them for the base tools' `exec` at start. The protected paths
/// stay as they are, as the multi-container mode's read-only mounts keep them; the price is that
/// nothing can be created, renamed or removed directly in `/workspace` or in a folder holding a
/// protected path. (The base tools keep the whole tree: their tools refuse the protected paths
/// and their `exec` confines its programs.)
fn granted_workspace(principal: &mut Principal, container: &ContainerPlan, writable: &[PathBuf]) {
    let fs = &mut principal.policy.filesystem;
    fs.read_write.retain(|p| p != Path::new(WORKSPACE_MOUNT));
    fs.read_only.push(WORKSPACE_MOUNT.into());
    let read_only = container
        .mounts
        .iter()
        .any(|m| m.target == WORKSPACE_MOUNT && m.read_only);
    if !read_only {
        fs.read_write.extend(writable.iter().cloned());
    }
}

/// The bounds of a skill (or the base tools): the container's memory limit per process, raised
/// `oom_score_adj`, and — for a uid of its own — the container's pids limit as `RLIMIT_NPROC`.
/// A uid it shares (the workspace owner's, which the base tools and a skill granted the
/// workspace run as, or everyone's when we cannot switch) gets no `RLIMIT_NPROC`: the kernel
/// would count the other holders' processes too (the host user's, under Docker without user
/// namespaces), and one principal could use up another's bound. Raising `oom_score_adj` needs a
/// process of our own uid to write its `/proc/self`, so only when we switch.
fn untrusted_limits(
    container: &ContainerPlan,
    identities: Identities,
    own_uid: bool,
) -> ResourceLimits {
    ResourceLimits {
        processes: (identities.switch && own_uid)
            .then(|| u64::try_from(container.limits.pids).ok())
            .flatten(),
        oom_score_adj: identities.switch.then_some(UNTRUSTED_OOM_SCORE_ADJ),
        ..memory_bound(container)
    }
}

/// A skill built from its own Dockerfile: started as its own image starts it (the recorded
/// command line, the recipe's variables and working directory), in the recipe's root. Its
/// Landlock rules name paths inside that root, as its container's would: the whole root read and
/// executed (its container's read-only root), `/tmp` read-write (its container's tmpfs; the
/// supervisor makes the root's `/tmp` the skill's alone), and the standard devices the recipe
/// has. Nothing outside the root is reachable by a path from inside it.
fn in_own_root(principal: &mut Principal, container: &ContainerPlan, root: &RecipeRoot) {
    as_its_image_starts(principal, container, root, ROOT_TMP);
    let policy = &mut principal.policy;
    policy.filesystem = FsRules {
        read_only: vec![],
        read_write: std::iter::once(ROOT_TMP)
            .chain(STANDARD_DEVICES)
            .map(PathBuf::from)
            .collect(),
        executable: vec![PathBuf::from("/")],
    };
    policy.root = Some(OwnRoot {
        path: PathBuf::from(&root.path),
        workdir: PathBuf::from(&root.workdir),
    });
    principal.workdir = None;
    principal.home = Path::new(&root.path).join(ROOT_TMP.trim_start_matches('/'));
    principal.own_files = skill_root::root(&principal.service).map(PathBuf::from);
    principal.inherits_socket = true;
}

/// A skill built from its own Dockerfile and granted the workspace, whose recipe is the image's
/// base: started as its own image starts it, in the container's root, with its own private home
/// as every principal. Its domain is every principal's (the system's programs, `/etc`, `/proc`,
/// the standard devices, its home) and the workspace per its grant, plus the recipe's files —
/// the container's other entries, which the supervisor lists at start (`recipe_files`): read
/// and executed, never written, as its own container's read-only root. It runs as the
/// workspace's owner, so its socket is bound by the supervisor and inherited (`principals`).
fn in_container_root(
    principal: &mut Principal,
    container: &ContainerPlan,
    root: &RecipeRoot,
    recipe_files: &[PathBuf],
) {
    let home = principal.home.display().to_string();
    as_its_image_starts(principal, container, root, &home);
    let fs = &mut principal.policy.filesystem;
    let granted: Vec<PathBuf> = fs
        .read_only
        .iter()
        .chain(&fs.read_write)
        .chain(&fs.executable)
        .cloned()
        .collect();
    fs.executable.extend(
        recipe_files
            .iter()
            .filter(|path| !granted.iter().any(|g| path.starts_with(g)))
            .cloned(),
    );
    principal.workdir = Some(PathBuf::from(&root.workdir));
}

/// The recorded command line (paths as in its recipe's image) and the recipe's variables, then
/// the skill's, with `home` as its `HOME` and `TMPDIR`.
fn as_its_image_starts(
    principal: &mut Principal,
    container: &ContainerPlan,
    root: &RecipeRoot,
    home: &str,
) {
    principal.argv = root
        .entrypoint
        .iter()
        .chain(&container.cmd)
        .cloned()
        .collect();
    let mut env: BTreeMap<String, String> =
        root.env.iter().chain(&container.env).cloned().collect();
    for name in ["HOME", "TMPDIR"] {
        env.insert(name.to_string(), home.to_string());
    }
    env.entry("PATH".to_string())
        .or_insert_with(|| SCRATCH_PATH.to_string());
    principal.policy.env = env;
}

/// A skill's `HOME` and `TMPDIR` inside its own root.
const ROOT_TMP: &str = "/tmp";

/// The container's memory limit as each process's `RLIMIT_DATA` (every principal).
fn memory_bound(container: &ContainerPlan) -> ResourceLimits {
    ResourceLimits {
        data_bytes: u64::try_from(container.limits.memory)
            .ok()
            .filter(|&b| b > 0),
        ..ResourceLimits::default()
    }
}

/// A principal of the proxy gets its own URL (with its token) and TCP to the proxy's port only.
fn route_through_proxy(principal: &mut Principal, tokens: Option<&Tokens>) {
    let Some(url) = tokens.and_then(|t| t.urls.get(&principal.service)) else {
        return;
    };
    with_proxy_url(&mut principal.policy.env, url);
    principal.policy.network = NetRules::proxy_only(PROXY_PORT);
}

/// One container as a process: its image's ENTRYPOINT and env, the plan's arguments and env.
fn principal(
    plan: &RunPlan,
    container: &ContainerPlan,
    identities: Identities,
    uid_gid: (u32, u32),
    state: &Path,
    n: usize,
) -> Result<Principal, String> {
    let image = plan
        .images
        .get(container.image)
        .ok_or_else(|| format!("{}: the plan has no image for it", container.service))?;
    // A skill's packages and files are in its own folder here, not where its image has them.
    let root = skill_root::own_folder(image);
    let moved = |text: &String| match &root {
        Some(root) => skill_root::relocate(text, root),
        None => text.clone(),
    };
    let argv: Vec<String> = image
        .config
        .entrypoint
        .iter()
        .chain(&container.cmd)
        .map(moved)
        .collect();
    let home = state.join("home").join(format!("{n}"));
    let mut env: BTreeMap<String, String> = image
        .config
        .env
        .iter()
        .chain(&container.env)
        .map(|(name, value)| (name.clone(), moved(value)))
        .collect();
    for name in ["HOME", "TMPDIR"] {
        env.insert(name.to_string(), home.display().to_string());
    }
    // An image on a real base has its base's PATH, which the principal's exact environment
    // would not carry.
    env.entry("PATH".to_string())
        .or_insert_with(|| SCRATCH_PATH.to_string());
    let (identity, uid_gid) = match (identities.switch, uid_gid) {
        (true, (0, _)) => (Identity::Root, (0, 0)),
        (true, (uid, gid)) => (
            Identity::Switch {
                uid,
                gid,
                groups: vec![],
            },
            uid_gid,
        ),
        (false, _) => (Identity::Inherit, identities.own),
    };
    let mut policy = Policy::deny_all(principal_name(container));
    policy.identity = identity;
    policy.env = env;
    policy.filesystem = FsRules::system();
    policy.filesystem.read_write.push(home.clone());
    if let Some(root) = &root {
        // Its interpreters' packages and its scripts: read and execute, never write.
        policy.filesystem.executable.push(root.into());
    }
    if mounts_workspace(container) {
        policy.filesystem.read_write.push(WORKSPACE_MOUNT.into());
        // Programs the base tools' `exec` runs may live in the workspace.
        policy.filesystem.executable.push(WORKSPACE_MOUNT.into());
    }
    policy.network = NetRules::none();
    policy.limits = memory_bound(container);
    Ok(Principal {
        service: container.service.clone(),
        argv,
        workdir: image
            .config
            .workdir
            .as_ref()
            .map(|w| PathBuf::from(moved(w))),
        policy,
        uid_gid,
        socket_dir: None,
        home,
        stdin: container.stdin.clone(),
        own_files: root.map(PathBuf::from),
        inherits_socket: false,
    })
}

/// How reports and errors name a container's process.
fn principal_name(container: &ContainerPlan) -> String {
    match (&container.skill, container.service.as_str()) {
        (_, "runtime") => "runtime".to_string(),
        (_, "egress-proxy") => "egress proxy".to_string(),
        _ if is_base_tools(container) => "base tools".to_string(),
        (Some(skill), _) => format!("skill `{skill}`"),
        (None, service) => service.to_string(),
    }
}

/// The base tools' container (`base-skill`).
fn is_base_tools(container: &ContainerPlan) -> bool {
    container.service.starts_with("base-skill")
}

/// The workspace is bind-mounted into it (base tools, a skill granted it).
fn mounts_workspace(container: &ContainerPlan) -> bool {
    container
        .mounts
        .iter()
        .any(|m| m.target == WORKSPACE_MOUNT && matches!(m.source, MountSource::Bind { .. }))
}

/// Who a container that mounts the workspace runs as in the plan (the workspace's owner), so
/// that it may write there and what it writes belongs to them. Root for a root-owned workspace,
/// as the multi-container mode runs base-skill: [`Identity::Root`], every capability dropped.
fn workspace_user(container: &ContainerPlan) -> Option<(u32, u32)> {
    if !mounts_workspace(container) {
        return None;
    }
    let (uid, gid) = container.user.split_once(':')?;
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// The workspace owner's `uid_gid`, which the base tools and every skill granted the workspace
/// run as, unless it is one of the ids the supervisor gives its own principals and files (of a
/// run with `skills` skills): running as the runtime's group would open every skill's socket
/// folder, as a skill's uid that skill's processes and bound, as [`FILES_UID`] our binary's mode.
fn not_reserved(uid_gid: (u32, u32), skills: usize) -> Result<(u32, u32), String> {
    let skill_ids = SKILL_UIDS..SKILL_UIDS.saturating_add(skills as u32);
    let whose = |id: u32| {
        let owners = [
            (RUNTIME_UID, "the runtime"),
            (RUNTIME_GID, "the runtime"),
            (PROXY_UID, "the egress proxy"),
            (FILES_UID, "the supervisor's files"),
        ];
        let owner = owners.iter().find(|(reserved, _)| *reserved == id);
        owner
            .map(|(_, name)| *name)
            .or_else(|| skill_ids.contains(&id).then_some("a skill"))
    };
    let (uid, gid) = uid_gid;
    match whose(uid)
        .map(|w| ("user", uid, w))
        .or_else(|| whose(gid).map(|w| ("group", gid, w)))
    {
        None => Ok(uid_gid),
        Some((kind, id, owner)) => Err(format!(
            "the workspace belongs to {uid}:{gid}, and {kind} {id} is the one this image gives \
             {owner}: the base tools run as the workspace's owner and would share it. Give the \
             workspace another owner (chown -R), or run this Expert in the multi-container mode \
             (perstack-sandbox build --tag REF, then perstack-sandbox run --image REF \"<query>\")"
        )),
    }
}

/// Whether a principal runs as uid 0 (base tools in a root-owned workspace): then what must not
/// be uid 0's is re-owned to [`FILES_UID`].
pub(crate) fn runs_as_root(principal: &Principal) -> bool {
    principal.policy.identity == Identity::Root
}

/// Where the runtime sees each socket volume, by volume name.
fn runtime_socket_dirs(runtime: &ContainerPlan) -> BTreeMap<String, PathBuf> {
    runtime
        .mounts
        .iter()
        .filter_map(|m| match &m.source {
            MountSource::Volume { name } => Some((name.clone(), PathBuf::from(&m.target))),
            _ => None,
        })
        .collect()
}

/// The folder a skill listens in: where the runtime sees the volume the skill mounts at
/// [`SKILL_SOCKET_DIR`].
fn skill_socket_dir(
    container: &ContainerPlan,
    runtime_dirs: &BTreeMap<String, PathBuf>,
) -> Option<PathBuf> {
    container.mounts.iter().find_map(|m| match &m.source {
        MountSource::Volume { name } if m.target == SKILL_SOCKET_DIR => {
            runtime_dirs.get(name).cloned()
        }
        _ => None,
    })
}

/// The skill host's `--socket PATH` replaced by `--socket-fd FD`: the socket it inherits.
pub(crate) fn with_socket_fd(argv: &[String], fd: i32) -> Vec<String> {
    let mut out = argv.to_vec();
    if let Some(i) = out.iter().position(|a| a == "--socket")
        && i + 1 < out.len()
    {
        out.splice(i..i + 2, ["--socket-fd".to_string(), fd.to_string()]);
    }
    out
}

/// The skill host's `--socket` pointed at `socket` instead of the container's path.
fn with_socket(argv: &[String], socket: &Path) -> Vec<String> {
    let mut out = argv.to_vec();
    if let Some(i) = out.iter().position(|a| a == "--socket")
        && let Some(value) = out.get_mut(i + 1)
    {
        *value = socket.display().to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skill_host_listens_where_the_runtime_looks() {
        let argv: Vec<String> = [
            "/bin/x",
            "skill-host",
            "--socket",
            "/run/perstack/skill/mcp.sock",
        ]
        .map(String::from)
        .to_vec();
        let moved = with_socket(&argv, Path::new("/run/perstack/skills/1-web/mcp.sock"));
        assert_eq!(moved[3], "/run/perstack/skills/1-web/mcp.sock");
        assert_eq!(
            with_socket_fd(&moved, 7),
            ["/bin/x", "skill-host", "--socket-fd", "7"]
        );
    }
}
