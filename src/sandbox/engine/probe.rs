//! `doctor`'s proof that a run will start on this engine: it makes, for real and with the same
//! calls, what a run makes — a socket volume, an internal network, a base-skill-like container
//! that writes into a workspace, serves a unix socket in the volume and answers on TCP on the
//! internal network as the egress proxy does, and a hardened runtime-like container on that
//! network that reaches it both ways — checks what each
//! container found about itself (`contract/probe.rs`), and removes all of it. Every step has a
//! name, and a failed one the fix. The same probe, under another OCI runtime (gVisor's
//! `runsc`), is `doctor`'s proof that runtime can carry a run.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;

use super::docker::{DockerClient, DockerError};
use super::workspace_user::workspace_user;
use crate::config::Limits;
use crate::contract::paths::{RUNTIME_SOCKETS_DIR, SKILL_SOCKET_DIR, SOCKET_FILE, WORKSPACE_MOUNT};
use crate::contract::probe::{PROBE_FILE, PROBE_PORT, ProbeReport};
use crate::contract::users::{RUNTIME_GID, RUNTIME_UID};
use crate::ids::controller::ControllerId;
use crate::sandbox::images::recipes::{Artifacts, doctor_probe_image};
use crate::sandbox::labels;
use crate::sandbox::plan::{
    ContainerPlan, InternalNetworkPlan, MountPlan, MountSource, NetworkPlan, VolumePlan,
};

/// One step of the probe: its name, and what it showed or what failed and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// e.g. `socket volume`.
    pub name: &'static str,
    /// What it showed, or the failure.
    pub outcome: Result<String, Failure>,
}

/// A failed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What went wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

fn fail(problem: impl Into<String>, fix: impl Into<String>) -> Failure {
    Failure {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The names and labels of one probe's resources; labelled like a run's, so a probe killed
/// half-way is swept by the next run or `gc`.
struct Probe {
    run_id: String,
    short: String,
    workspace: PathBuf,
    /// The limits the containers get; `None` on an engine that ignores them
    /// ([`super::info::EngineInfo::enforces_limits`]), where none are asked for.
    limits: Option<Limits>,
    /// The OCI runtime both containers start under (`runsc`: gVisor); `None`: the engine's.
    oci_runtime: Option<String>,
}

impl Probe {
    fn new(oci_runtime: Option<&str>, enforces_limits: bool) -> Probe {
        let run_id = format!("doctor-{}", crate::ids::new_id());
        let short = run_id.chars().skip(7).take(12).collect();
        let workspace = std::env::temp_dir().join(format!("perstack-sandbox-{run_id}"));
        Probe {
            run_id,
            short,
            workspace,
            limits: enforces_limits.then(Limits::default),
            oci_runtime: oci_runtime.map(str::to_string),
        }
    }

    /// Whether the containers run under gVisor (`runsc`).
    fn gvisor(&self) -> bool {
        self.oci_runtime.as_deref() == Some(crate::config::GVISOR_RUNTIME)
    }

    fn name(&self, suffix: &str) -> String {
        format!("psbx-doctor-{}-{suffix}", self.short)
    }

    fn labels(&self, role: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::RUN_ID.to_string(), self.run_id.clone()),
            (labels::ROLE.to_string(), role.to_string()),
            (labels::SERVICE.to_string(), "doctor".to_string()),
            (
                labels::CONTROLLER.to_string(),
                ControllerId::current().to_string(),
            ),
        ])
    }

    fn container(&self, suffix: &str, user: String, cmd: Vec<String>) -> ContainerPlan {
        ContainerPlan {
            name: self.name(suffix),
            service: "doctor".to_string(),
            skill: None,
            image: 0,
            user,
            env: Vec::new(),
            cmd,
            mounts: Vec::new(),
            network: NetworkPlan::None,
            labels: self.labels(suffix),
            limits: self.limits.unwrap_or_default(),
            oci_runtime: self.oci_runtime.clone(),
            stdin: None,
        }
    }
}

/// Runs every step and removes what it made, also when a step failed. `artifacts` hold the
/// executable the images get, which the probe containers run; `oci_runtime` the runtime they start under
/// (`doctor` probes gVisor so: the no-network container and the one on a network each in a
/// sandbox of its own, talking over the socket volume), `None` the engine's default.
pub(crate) async fn probe(
    docker: &DockerClient,
    artifacts: &Artifacts,
    oci_runtime: Option<&str>,
) -> Vec<Step> {
    let probe = Probe::new(oci_runtime, docker.engine().enforces_limits());
    let mut steps = Vec::new();
    let image = doctor_probe_image(artifacts);
    // Per probe, not per content: two doctors at once (or doctor's runc and runsc probes) must
    // never remove each other's image.
    let tag = format!("{}-{}", image.tag("scratch"), probe.short);
    let made = make(docker, &probe, &image, &tag, &mut steps).await;
    if made.is_ok() {
        exchange(docker, &probe, &tag, &mut steps).await;
    }
    steps.push(remove(docker, &probe, &tag).await);
    steps
}

/// The workspace folder, the socket volume, the internal network and the image; stops at the
/// first failure.
async fn make(
    docker: &DockerClient,
    probe: &Probe,
    image: &crate::sandbox::images::ImageSpec,
    tag: &str,
    steps: &mut Vec<Step>,
) -> Result<(), ()> {
    let outcome = std::fs::create_dir(&probe.workspace)
        .map(|()| format!("{} (a workspace for base-skill)", probe.workspace.display()))
        .map_err(|e| {
            fail(
                format!("cannot create {}: {e}", probe.workspace.display()),
                "make the temporary folder (TMPDIR) writable",
            )
        });
    push(steps, "workspace", outcome)?;
    let host_user = workspace_user(&probe.workspace).user;
    let owner = docker.engine().workspace_user(host_user).0;
    let volume = VolumePlan::socket(&probe.name("socket"), owner, probe.labels("socket-volume"));
    let outcome = docker
        .create_volume(&volume)
        .await
        .map(|()| format!("a 1 MiB tmpfs owned by uid {owner}, group {RUNTIME_GID}, mode 0750, as a run makes it"))
        .map_err(|e| fail(e.to_string(), "the engine's local volume driver must mount tmpfs volumes with the uid, gid, mode and nr_blocks options (Docker and Podman do)"));
    push(steps, "socket volume", outcome)?;
    let network = InternalNetworkPlan {
        name: probe.name("net"),
        labels: probe.labels("network"),
    };
    let outcome = docker
        .create_internal_network(&network)
        .await
        .map(|subnet| format!("{}, subnet {subnet}, no route out and no DNS", network.name))
        .map_err(|e| fail(e.to_string(), "the engine must create internal bridge networks with an IPv4 subnet (check its network backend; rootless engines need slirp4netns and /dev/net/tun)"));
    push(steps, "internal network", outcome)?;
    let outcome = docker
        .create_image(image, tag, |_| {})
        .await
        .map(|_| "made a scratch image with the images' executable, as a run makes its images".to_string())
        .map_err(|e| fail(e.to_string(), "the engine must import or build images (`docker import`, `docker build`); check the disk is not full"));
    push(steps, "probe image", outcome)?;
    Ok(())
}

fn push(
    steps: &mut Vec<Step>,
    name: &'static str,
    outcome: Result<String, Failure>,
) -> Result<(), ()> {
    let failed = outcome.is_err();
    steps.push(Step { name, outcome });
    if failed { Err(()) } else { Ok(()) }
}

/// The two containers: base-skill's shape serving the socket, the runtime's shape on the
/// internal network connecting to it. Then what they found.
async fn exchange(docker: &DockerClient, probe: &Probe, tag: &str, steps: &mut Vec<Step>) {
    let host_user = workspace_user(&probe.workspace).user;
    let inside = docker.engine().workspace_user(host_user);
    let mut listener = probe.container(
        "listener",
        format!("{}:{}", inside.0, inside.1),
        vec![
            "listen".into(),
            format!("{SKILL_SOCKET_DIR}/{SOCKET_FILE}"),
            WORKSPACE_MOUNT.into(),
        ],
    );
    listener.mounts = vec![
        volume_mount(&probe.name("socket"), SKILL_SOCKET_DIR),
        MountPlan {
            source: MountSource::Bind {
                host: probe.workspace.display().to_string(),
            },
            target: WORKSPACE_MOUNT.to_string(),
            read_only: false,
        },
    ];
    // On the internal network as the egress proxy is, so the connector reaches it over TCP.
    listener.network = NetworkPlan::Internal(probe.name("net"));
    let output = match converse(docker, probe, tag, &listener).await {
        Ok(output) => output,
        Err(failure) => {
            steps.push(Step {
                name: "hardened start",
                outcome: Err(failure),
            });
            return;
        }
    };
    let limits = match probe.limits {
        Some(_) => "memory, CPU and process limits",
        None => "no limits (this engine ignores them: see `limits` above)",
    };
    steps.push(Step {
        name: "hardened start",
        outcome: Ok(format!("both containers started hardened: read-only root, tmpfs /tmp, all capabilities dropped, no-new-privileges, {limits}")),
    });
    judge(probe, host_user, &output, steps);
}

fn volume_mount(name: &str, target: &str) -> MountPlan {
    MountPlan {
        source: MountSource::Volume {
            name: name.to_string(),
        },
        target: target.to_string(),
        read_only: false,
    }
}

/// The runtime-like container: on the internal network, the socket volume mounted where the
/// runtime has it, reaching the listener at `listener_ip`.
fn connector(probe: &Probe, listener_ip: &str) -> ContainerPlan {
    let mut connector = probe.container(
        "connector",
        format!("{RUNTIME_UID}:{RUNTIME_GID}"),
        vec![
            "connect".into(),
            format!("{RUNTIME_SOCKETS_DIR}/probe/{SOCKET_FILE}"),
            format!("{listener_ip}:{PROBE_PORT}"),
        ],
    );
    connector.mounts = vec![volume_mount(
        &probe.name("socket"),
        &format!("{RUNTIME_SOCKETS_DIR}/probe"),
    )];
    connector.network = NetworkPlan::Internal(probe.name("net"));
    connector
}

/// Starts the listener, then the connector with the listener's address on the internal network
/// (read as a run reads the proxy's); what the connector printed (stdout), once it exited. A
/// failure names the engine's error.
async fn converse(
    docker: &DockerClient,
    probe: &Probe,
    tag: &str,
    listener: &ContainerPlan,
) -> Result<(String, String, i64), Failure> {
    let network = probe.name("net");
    let started = async {
        let listener_id = docker.create_container(listener, tag, &[]).await?;
        docker.start(&listener_id, &listener.name).await?;
        let addresses = docker.network_addresses(&listener_id).await?;
        let ip = addresses.get(&network).cloned().unwrap_or_default();
        let connector = connector(probe, &ip);
        let connector_id = docker.create_container(&connector, tag, &[]).await?;
        let output = docker.attach(&connector_id).await?;
        docker.start(&connector_id, &connector.name).await?;
        Ok::<_, DockerError>((connector_id, output))
    };
    let (connector_id, mut output) = started.await.map_err(|e| start_failure(&e))?;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let read = async {
        while let Some(Ok(chunk)) = output.next().await {
            match chunk {
                bollard::container::LogOutput::StdOut { message } => {
                    stdout.push_str(&String::from_utf8_lossy(&message))
                }
                other => stderr.push_str(&String::from_utf8_lossy(&other.into_bytes())),
            }
        }
        docker.wait(&connector_id).await
    };
    match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(Ok(code)) => Ok((stdout, stderr, code)),
        Ok(Err(e)) => Err(start_failure(&e)),
        Err(_) => Err(fail(
            "the probe containers did not finish within 60 s",
            "check that the engine starts containers (`docker run`) and that it is not overloaded",
        )),
    }
}

/// The fix for a container that did not start, by what the engine said.
fn start_failure(error: &DockerError) -> Failure {
    let message = error.to_string();
    let fix = if message.contains("rlimit") {
        "the engine cannot set the containers' open-file or process limits (it lacks CAP_SYS_RESOURCE); give it the capability, or set lower default_ulimits in containers.conf"
    } else if message.contains("/dev/net/tun") || message.contains("slirp4netns") {
        "rootless networking needs slirp4netns and a usable /dev/net/tun (`sudo chmod 0666 /dev/net/tun`, as udev normally sets it)"
    } else if message.contains("rootless netns") {
        "rootless networking needs XDG_RUNTIME_DIR on a tmpfs of your own, as logind makes /run/user/<uid>; log in through a session (or mount one) and restart the engine"
    } else {
        "the engine must start containers with a read-only root, tmpfs, dropped capabilities and memory, CPU and process limits; `docker run --read-only --cap-drop ALL --memory 64m --pids-limit 64 …` shows what it refuses"
    };
    fail(message, fix)
}

/// The socket exchange, the containers' hardening as they saw it, and who owns the file the
/// base-skill-like container wrote.
fn judge(
    probe: &Probe,
    host_user: (u32, u32),
    output: &(String, String, i64),
    steps: &mut Vec<Step>,
) {
    let (stdout, stderr, code) = output;
    let reports: Vec<ProbeReport> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let [listener, connector] = reports.as_slice() else {
        steps.push(Step {
            name: "unix socket",
            outcome: Err(fail(
                format!("the connector exited with code {code} without the listener's answer: {}", stderr.trim()),
                "a container must reach a unix socket another one made in a shared tmpfs volume; check the engine's volume driver and that uid/gid options of the volume hold",
            )),
        });
        return;
    };
    steps.push(Step {
        name: "unix socket",
        outcome: Ok(format!(
            "uid {} on the internal network reached uid {}'s socket through the volume",
            connector.uid, listener.uid
        )),
    });
    steps.push(Step {
        name: "network reach",
        outcome: reach(connector),
    });
    steps.push(Step {
        name: "hardening",
        outcome: hardening(
            probe.limits.as_ref(),
            &[listener, connector],
            probe.gvisor(),
        ),
    });
    steps.push(Step {
        name: "workspace owner",
        outcome: owner(&probe.workspace, host_user, listener),
    });
}

/// Whether the connector reached the listener over TCP on their internal network, as a run's
/// containers reach the egress proxy.
fn reach(connector: &ProbeReport) -> Result<String, Failure> {
    match &connector.tcp {
        Some(Ok(())) => Ok("a container reached another over TCP on their internal network, as clients reach the egress proxy".into()),
        Some(Err(error)) => Err(fail(
            format!("containers on one internal network cannot reach each other: {error}"),
            "the host's firewall drops traffic between containers on one bridge; with Docker on the same host (its FORWARD policy DROP and br_netfilter), let Podman's bridged traffic through: `sudo iptables -I DOCKER-USER -i podman+ -m physdev --physdev-is-bridged -j ACCEPT`",
        )),
        None => Err(fail("the connector did not try to reach the listener over TCP", "this is a bug; report it")),
    }
}

/// What did not hold of the hardening, per container. Under gVisor (`gvisor`) the sandbox's
/// kernel shows no cgroup limits and no no-new-privileges flag to the process: the memory and
/// process limits bound the sandbox as a whole on the host, and no-new-privileges is the host
/// side's; those are said, not failed. `limits` `None`: the engine ignores them and none were
/// asked for, which `doctor`'s `limits` line says; the rest must hold all the same.
fn hardening(
    limits: Option<&Limits>,
    reports: &[&ProbeReport],
    gvisor: bool,
) -> Result<String, Failure> {
    let mut missing = Vec::new();
    let mut unseen = std::collections::BTreeSet::new();
    for r in reports {
        // `unseen`: its name when gVisor's kernel does not show it to the process.
        let mut lacks = |holds: bool, what: &str, unseen_as: Option<&str>| match unseen_as {
            _ if holds => {}
            Some(name) if gvisor => {
                unseen.insert(name.to_string());
            }
            _ => missing.push(format!("{}: {what}", r.who)),
        };
        lacks(r.root_read_only, "the root file system is writable", None);
        lacks(r.tmp_writable, "/tmp is not writable", None);
        lacks(r.cap_eff == Some(0), "capabilities remain", None);
        lacks(
            r.no_new_privs,
            "no-new-privileges is not set",
            Some("no-new-privileges"),
        );
        if let Some(limits) = limits {
            lacks(
                r.memory_limit == Some(limits.memory as u64),
                "the memory limit does not hold",
                Some("the memory limit"),
            );
            lacks(
                r.pids_limit == Some(limits.pids as u64),
                "the process limit does not hold",
                Some("the process limit"),
            );
        }
    }
    if missing.is_empty() && !unseen.is_empty() {
        let unseen: Vec<String> = unseen.into_iter().collect();
        Ok(format!(
            "held in both: read-only root, tmpfs /tmp, no capabilities; not visible inside gVisor: \
             {} (the limits bound each sandbox as a whole on the host, not each process in it)",
            unseen.join(", ")
        ))
    } else if let (true, Some(limits)) = (missing.is_empty(), limits) {
        Ok(format!(
            "held in both: read-only root, tmpfs /tmp, no capabilities, no-new-privileges, {} MiB memory, {} processes",
            limits.memory >> 20,
            limits.pids
        ))
    } else if missing.is_empty() {
        Ok(
            "held in both: read-only root, tmpfs /tmp, no capabilities, no-new-privileges; \
            no memory or process limit (this engine ignores them: see `limits` above)"
                .to_string(),
        )
    } else {
        Err(fail(
            missing.join("; "),
            "the engine ignores part of a container's hardening; a rootless engine needs cgroup v2 with the memory, cpu and pids controllers delegated to your user, else use a rootful engine",
        ))
    }
}

/// The probe file belongs to the user base-skill runs for.
fn owner(
    workspace: &Path,
    host_user: (u32, u32),
    listener: &ProbeReport,
) -> Result<String, Failure> {
    if let Some(Err(error)) = &listener.workspace_write {
        return Err(fail(
            format!(
                "base-skill's user (uid {} inside) cannot write the workspace: {error}",
                listener.uid
            ),
            "a rootless engine must run as the user who runs perstack-sandbox",
        ));
    }
    let path = workspace.join(PROBE_FILE);
    match std::fs::metadata(&path).map(|m| m.uid()) {
        Ok(uid) if uid == host_user.0 => Ok(format!(
            "a file written by base-skill's user (uid {} inside) belongs to uid {uid} on the host",
            listener.uid
        )),
        Ok(uid) => Err(fail(
            format!(
                "a file written by base-skill's user (uid {} inside) belongs to uid {uid} on the host, not to uid {}",
                listener.uid, host_user.0
            ),
            "the engine maps user ids (rootless or userns-remap): run perstack-sandbox as the user who runs the engine, or use an engine without remapping",
        )),
        Err(e) => Err(fail(
            format!(
                "the file base-skill's user wrote is not on the host ({}): {e}",
                path.display()
            ),
            "the engine must bind-mount host folders: it must run on this machine",
        )),
    }
}

/// Removes the probe's containers, volume, network, image and folder, then checks that nothing
/// labelled with the probe is left.
async fn remove(docker: &DockerClient, probe: &Probe, tag: &str) -> Step {
    let _ = std::fs::remove_dir_all(&probe.workspace);
    let removed = docker.remove_run(&probe.run_id).await;
    let image = docker.remove_image(tag).await;
    let left = docker.labelled(&labels::run_filter(&probe.run_id)).await;
    let outcome = match (removed, image, left) {
        (Ok(removed), Ok(()), Ok(left))
            if left.containers.is_empty()
                && left.volumes.is_empty()
                && left.networks.is_empty() =>
        {
            Ok(format!(
                "removed {} containers, {} volume, {} network and the image; nothing left",
                removed.containers, removed.volumes, removed.networks
            ))
        }
        (Ok(_), Ok(()), Ok(left)) => Err(fail(
            format!(
                "left behind: {} containers, {} volumes, {} networks labelled {}",
                left.containers.len(),
                left.volumes.len(),
                left.networks.len(),
                labels::run_filter(&probe.run_id)
            ),
            "the engine must remove containers, volumes and networks by id; remove them by hand (`perstack-sandbox gc`)",
        )),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(fail(
            e.to_string(),
            "remove what is left with `perstack-sandbox gc` and check the engine",
        )),
    };
    Step {
        name: "removal",
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(who: &str) -> ProbeReport {
        let limits = Limits::default();
        ProbeReport {
            who: who.to_string(),
            uid: 1000,
            gid: 1000,
            root_read_only: true,
            tmp_writable: true,
            cap_eff: Some(0),
            no_new_privs: true,
            memory_limit: Some(limits.memory as u64),
            pids_limit: Some(limits.pids as u64),
            workspace_write: Some(Ok(())),
            tcp: Some(Ok(())),
        }
    }

    #[test]
    fn hardening_holds_only_when_every_container_saw_all_of_it() {
        let limits = Limits::default();
        let (listener, connector) = (report("listener"), report("connector"));
        assert!(hardening(Some(&limits), &[&listener, &connector], false).is_ok());

        // What rootless Podman on cgroup v1 does: accepts the limits and ignores them.
        let mut unlimited = report("connector");
        unlimited.memory_limit = None;
        unlimited.pids_limit = None;
        let failure =
            hardening(Some(&limits), &[&listener, &unlimited], false).expect_err("ignored limits");
        assert_eq!(
            failure.problem,
            "connector: the memory limit does not hold; connector: the process limit does not hold"
        );
        assert!(failure.fix.contains("cgroup v2"), "{}", failure.fix);
        // The same engine with `--allow-weaker-isolation`: none were asked for, so none are
        // checked, but the rest must hold all the same.
        let held = hardening(None, &[&listener, &unlimited], false).expect("no limits asked");
        assert!(
            held.ends_with(
                "no memory or process limit (this engine ignores them: see `limits` above)"
            ),
            "{held}"
        );
        let mut loose = report("listener");
        loose.no_new_privs = false;
        let failure = hardening(None, &[&loose, &unlimited], false).expect_err("loose");
        assert_eq!(failure.problem, "listener: no-new-privileges is not set");

        let mut loose = report("listener");
        loose.root_read_only = false;
        loose.cap_eff = Some(0x20);
        loose.no_new_privs = false;
        let failure = hardening(Some(&limits), &[&loose], false).expect_err("loose");
        assert_eq!(
            failure.problem,
            "listener: the root file system is writable; listener: capabilities remain; listener: no-new-privileges is not set"
        );
    }

    #[test]
    fn under_gvisor_what_its_kernel_does_not_show_is_said_and_the_rest_still_fails() {
        let limits = Limits::default();
        let mut inside = report("connector");
        inside.memory_limit = None;
        inside.pids_limit = None;
        inside.no_new_privs = false;
        let held = hardening(Some(&limits), &[&report("listener"), &inside], true).expect("held");
        assert_eq!(
            held,
            "held in both: read-only root, tmpfs /tmp, no capabilities; not visible inside \
             gVisor: no-new-privileges, the memory limit, the process limit (the limits bound \
             each sandbox as a whole on the host, not each process in it)"
        );
        // What gVisor does show must hold there too.
        inside.root_read_only = false;
        let failure = hardening(Some(&limits), &[&inside], true).expect_err("writable root");
        assert_eq!(
            failure.problem,
            "connector: the root file system is writable"
        );
    }

    #[test]
    fn the_workspace_file_must_belong_to_the_user_base_skill_runs_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(PROBE_FILE), b"x").expect("write");
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let listener = report("listener");
        assert!(owner(dir.path(), me, &listener).is_ok());
        let someone_else = (me.0 + 1, me.1);
        let failure = owner(dir.path(), someone_else, &listener).expect_err("not theirs");
        assert!(
            failure
                .problem
                .contains(&format!("belongs to uid {}", me.0)),
            "{}",
            failure.problem
        );
        assert!(
            failure.fix.contains("rootless or userns-remap"),
            "{}",
            failure.fix
        );

        let mut refused = report("listener");
        refused.workspace_write = Some(Err("Permission denied (os error 13)".into()));
        let failure = owner(dir.path(), me, &refused).expect_err("cannot write");
        assert!(
            failure.problem.contains("cannot write the workspace"),
            "{}",
            failure.problem
        );
    }
}
