//! The OCI runtime the run asked for (`--runtime-engine`, `[sandbox] runtime`), against the
//! runtimes the engine has registered: a run that names one the engine lacks — or gVisor
//! registered so that our skills cannot reach the runtime — stops before anything starts, with
//! the `/etc/docker/daemon.json` lines that fix it. Asking the engine what it has is
//! `engine/runtime_engine.rs`'s part.

use super::Problem;
use crate::config::{GVISOR_RUNTIME, RuntimeEngineSetting, SettingSource};
use crate::sandbox::engine::info::EngineKind;

/// A runtime the engine has registered (`docker info`'s `Runtimes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegisteredRuntime {
    /// The name containers ask for it by.
    pub name: String,
    /// Its program, as registered (`runc`, `/usr/bin/runsc`).
    pub path: String,
    /// The arguments the engine passes it (`runtimeArgs`).
    pub args: Vec<String>,
}

impl RegisteredRuntime {
    /// gVisor: its program is `runsc`.
    pub(crate) fn is_gvisor(&self) -> bool {
        std::path::Path::new(&self.path)
            .file_name()
            .is_some_and(|f| f == GVISOR_RUNTIME)
    }

    /// gVisor lets a sandbox make and open the host's unix sockets: our skills' sockets live in
    /// volumes shared with the runtime's sandbox, and without this each sandbox keeps them to
    /// itself.
    pub(crate) fn shares_unix_sockets(&self) -> bool {
        !self.is_gvisor() || self.args.iter().any(|a| HOST_UDS.contains(&a.as_str()))
    }
}

/// The arguments that let gVisor create and connect to the host's unix sockets.
const HOST_UDS: [&str; 2] = ["--host-uds=all", "-host-uds=all"];

/// The `runtimeArgs` gVisor is registered with: ptrace, which needs no virtualization;
/// the host's network stack inside the container's own network namespace (measured here:
/// without it a container on a network does not start); and host unix sockets, which the
/// skills' socket volumes need.
pub(crate) const GVISOR_ARGS: [&str; 3] = ["--platform=ptrace", "--network=host", "--host-uds=all"];

/// The run's runtime is registered with the engine, and usable for a run. `None` asked for
/// none (the engine's default).
pub(crate) fn check_runtime_engine(
    requested: &RuntimeEngineSetting,
    registered: &[RegisteredRuntime],
) -> Result<(), Problem> {
    let Some(name) = &requested.name else {
        return Ok(());
    };
    let location = match &requested.source {
        SettingSource::File(at) => at.as_ref().map(|l| l.to_string()),
        SettingSource::CommandLine | SettingSource::Default => None,
    };
    let chosen_by = chosen_by(&requested.source);
    let message = match registered.iter().find(|r| &r.name == name) {
        None => {
            let names: Vec<&str> = registered.iter().map(|r| r.name.as_str()).collect();
            format!(
                "{chosen_by} asks for the runtime \"{name}\", which the Docker engine has not \
                 registered (it has: {}). {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                },
                register_hint(name, None)
            )
        }
        Some(found) if !found.shares_unix_sockets() => format!(
            "{chosen_by} asks for the runtime \"{name}\", gVisor registered without \
             --host-uds=all: each skill's socket would stay inside its own sandbox and the \
             runtime could reach no skill. {}",
            register_hint(name, Some(&found.args))
        ),
        Some(_) => return Ok(()),
    };
    Err(Problem { location, message })
}

/// [`check_runtime_engine`] on an engine of `kind`. Podman passes a runtime no arguments of
/// ours (its runtime table holds paths only), so gVisor there can never share the skills' unix
/// sockets: a run asking for it is refused with that, not with daemon.json lines.
pub(crate) fn check_runtime_engine_on(
    kind: EngineKind,
    requested: &RuntimeEngineSetting,
    registered: &[RegisteredRuntime],
) -> Result<(), Problem> {
    let checked = check_runtime_engine(requested, registered);
    let gvisor_on_podman = kind == EngineKind::Podman
        && registered
            .iter()
            .any(|r| requested.name.as_ref() == Some(&r.name) && r.is_gvisor());
    match checked {
        Err(problem) if gvisor_on_podman => Err(Problem {
            message: format!(
                "{} asks for gVisor (\"{}\"), which Podman cannot run our skills under: Podman \
                 starts a runtime with none of the arguments gVisor needs here \
                 (--host-uds=all), so each skill's socket would stay inside its own sandbox. \
                 Use gVisor on Docker (README \"gVisor\"), or run without it on Podman",
                chosen_by(&requested.source),
                requested.name.as_deref().unwrap_or_default()
            ),
            ..problem
        }),
        other => other,
    }
}

/// The setting that asked for a runtime, as a message names it.
fn chosen_by(source: &SettingSource) -> &'static str {
    match source {
        SettingSource::CommandLine => "--runtime-engine",
        SettingSource::File(_) => "[sandbox] runtime",
        SettingSource::Default => "the default",
    }
}

/// What to add to `/etc/docker/daemon.json` (keeping its other keys) and how to reload it:
/// gVisor with [`GVISOR_ARGS`], or with its own arguments and `--host-uds=all` when it is
/// registered already; another runtime by its name.
fn register_hint(name: &str, registered_args: Option<&[String]>) -> String {
    let gvisor = name == GVISOR_RUNTIME || registered_args.is_some();
    let (install, path) = if gvisor {
        (
            "Install gVisor (Debian: `sudo apt-get install runsc`) and register",
            "/usr/bin/runsc".to_string(),
        )
    } else {
        ("Register", format!("/path/to/{name}"))
    };
    let args: Vec<String> = match registered_args {
        Some(args) => args
            .iter()
            .filter(|a| !a.trim_start_matches('-').starts_with("host-uds"))
            .cloned()
            .chain([HOST_UDS[0].to_string()])
            .collect(),
        None if gvisor => GVISOR_ARGS.map(str::to_string).to_vec(),
        None => vec![],
    };
    let args = args
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{install} it in /etc/docker/daemon.json, keeping the keys already there:\n\
         \x20     \"runtimes\": {{\n\
         \x20       \"{name}\": {{\n\
         \x20         \"path\": \"{path}\",\n\
         \x20         \"runtimeArgs\": [{args}]\n\
         \x20       }}\n\
         \x20     }}\n\
         \x20   then reload the engine, which keeps running containers: \
         `sudo kill -HUP $(pidof dockerd)`; `perstack-sandbox doctor` probes it"
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Location;

    fn runc() -> RegisteredRuntime {
        RegisteredRuntime {
            name: "runc".into(),
            path: "runc".into(),
            args: vec![],
        }
    }

    fn runsc(args: &[&str]) -> RegisteredRuntime {
        RegisteredRuntime {
            name: "runsc".into(),
            path: "/usr/bin/runsc".into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn asked(name: Option<&str>, source: SettingSource) -> RuntimeEngineSetting {
        RuntimeEngineSetting {
            name: name.map(str::to_string),
            source,
        }
    }

    #[test]
    fn runsc_requested_but_not_registered_names_the_daemon_json_lines_that_register_it() {
        let problem =
            check_runtime_engine(&asked(Some("runsc"), SettingSource::CommandLine), &[runc()])
                .expect_err("refused");
        assert_eq!(problem.location, None);
        assert_eq!(
            problem.message,
            "--runtime-engine asks for the runtime \"runsc\", which the Docker engine has not \
             registered (it has: runc). Install gVisor (Debian: `sudo apt-get install runsc`) \
             and register it in /etc/docker/daemon.json, keeping the keys already there:\n      \
             \"runtimes\": {\n        \"runsc\": {\n          \"path\": \"/usr/bin/runsc\",\n          \
             \"runtimeArgs\": [\"--platform=ptrace\", \"--network=host\", \"--host-uds=all\"]\n        \
             }\n      }\n    then reload the engine, which keeps running containers: \
             `sudo kill -HUP $(pidof dockerd)`; `perstack-sandbox doctor` probes it"
        );
        // The lines are JSON that registers it.
        let start = problem.message.find("\"runtimes\"").expect("json");
        let end = problem.message.rfind('}').expect("json");
        let json: serde_json::Value =
            serde_json::from_str(&format!("{{{}}}", &problem.message[start..=end]))
                .expect("the lines parse");
        assert_eq!(
            json["runtimes"]["runsc"]["runtimeArgs"][2],
            "--host-uds=all"
        );
    }

    #[test]
    fn the_file_setting_is_named_at_its_place_and_other_runtimes_get_generic_lines() {
        let at = Location {
            file: PathBuf::from("/p/perstack.toml"),
            line: 2,
            col: 11,
        };
        let problem =
            check_runtime_engine(&asked(Some("kata"), SettingSource::File(Some(at))), &[])
                .expect_err("refused");
        assert_eq!(problem.location.as_deref(), Some("/p/perstack.toml:2:11"));
        assert!(problem.message.starts_with(
            "[sandbox] runtime asks for the runtime \"kata\", which the Docker engine has not \
             registered (it has: none). Register it"
        ));
        assert!(problem.message.contains("\"path\": \"/path/to/kata\""));
        assert!(problem.message.contains("\"runtimeArgs\": []"));
    }

    #[test]
    fn gvisor_without_host_sockets_is_refused_with_its_own_arguments_kept() {
        let problem = check_runtime_engine(
            &asked(Some("runsc"), SettingSource::CommandLine),
            &[runc(), runsc(&["--platform=ptrace", "--network=host"])],
        )
        .expect_err("refused");
        assert!(
            problem.message.contains("without --host-uds=all"),
            "{}",
            problem.message
        );
        assert!(problem.message.contains(
            "\"runtimeArgs\": [\"--platform=ptrace\", \"--network=host\", \"--host-uds=all\"]"
        ));
        // A user's own choices stay; ours are added once.
        let problem = check_runtime_engine(
            &asked(Some("runsc"), SettingSource::CommandLine),
            &[runsc(&["--platform=kvm", "--debug", "--host-uds=open"])],
        )
        .expect_err("refused");
        assert!(
            problem
                .message
                .contains("[\"--platform=kvm\", \"--debug\", \"--host-uds=all\"]"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn gvisor_on_podman_is_refused_for_what_podman_cannot_pass_it() {
        let asked_for = asked(Some("runsc"), SettingSource::CommandLine);
        let registered = [runc(), runsc(&[])];
        let problem = check_runtime_engine_on(EngineKind::Podman, &asked_for, &registered)
            .expect_err("refused");
        assert!(
            problem.message.starts_with(
                "--runtime-engine asks for gVisor (\"runsc\"), which Podman cannot run our \
                 skills under"
            ),
            "{}",
            problem.message
        );
        assert!(
            !problem.message.contains("daemon.json"),
            "{}",
            problem.message
        );
        // Docker gets the lines that register it; a runtime Podman has is fine there.
        let on_docker = check_runtime_engine_on(EngineKind::Docker, &asked_for, &registered)
            .expect_err("refused");
        assert!(on_docker.message.contains("daemon.json"));
        let runc_asked = asked(Some("runc"), SettingSource::CommandLine);
        assert_eq!(
            check_runtime_engine_on(EngineKind::Podman, &runc_asked, &registered),
            Ok(())
        );
    }

    #[test]
    fn a_registered_runtime_or_none_asked_for_passes() {
        let registered = [runc(), runsc(&GVISOR_ARGS)];
        for name in [None, Some("runc"), Some("runsc")] {
            assert_eq!(
                check_runtime_engine(&asked(name, SettingSource::CommandLine), &registered),
                Ok(()),
                "{name:?}"
            );
        }
        // No name asks nothing of the engine, whatever it has.
        assert_eq!(
            check_runtime_engine(&asked(None, SettingSource::Default), &[]),
            Ok(())
        );
    }
}
