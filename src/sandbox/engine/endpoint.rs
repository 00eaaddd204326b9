//! Where the Docker engine is: the places we look, in which order, and why each one.
//!
//! The order (README, "Docker endpoints"):
//!
//! 1. `DOCKER_HOST`, when set: `unix:///path` or `tcp://host:port` (`http://` too). It is the
//!    user's explicit choice, so nothing else is tried.
//! 2. The Docker context named by `DOCKER_CONTEXT`, else the docker CLI's current context
//!    (`currentContext` in `$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`), unless
//!    it is `default`. Also an explicit choice: nothing else is tried.
//! 3. The user's own engines: rootless Docker (`$XDG_RUNTIME_DIR/docker.sock`, then
//!    `/run/user/<uid>/docker.sock`), then rootless Podman (`$XDG_RUNTIME_DIR/podman/podman.sock`,
//!    then `/run/user/<uid>/podman/podman.sock`).
//! 4. The system's engines: the default Docker socket `/var/run/docker.sock`, then the system
//!    Podman socket `/run/podman/podman.sock`.
//!
//! In 3 and 4 the first socket whose engine answers wins; a socket file with nothing behind it
//! (a stopped rootless daemon) or one we may not use is reported and skipped.
//!
//! Finding the places ([`candidates`]) is pure over a [`Host`], and choosing among them
//! ([`first_answering`]) takes the connecting function, so both are unit-tested without an
//! engine.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The default Docker socket.
pub(crate) const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The system Podman socket.
pub(crate) const SYSTEM_PODMAN_SOCKET: &str = "/run/podman/podman.sock";
/// The port of plain `tcp://` endpoints without one.
pub(crate) const DEFAULT_TCP_PORT: u16 = 2375;

/// What the discovery reads from the machine: variables, the uid, files.
pub(crate) trait Host {
    /// An environment variable (empty counts as unset).
    fn var(&self, name: &str) -> Option<String>;
    /// The real uid of this process.
    fn uid(&self) -> u32;
    /// Whether something exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// A file's text, if it can be read.
    fn read(&self, path: &Path) -> Option<String>;
}

/// The real machine.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RealHost;

impl Host for RealHost {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn uid(&self) -> u32 {
        nix::unistd::getuid().as_raw()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
}

/// How we talk to an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A unix socket.
    Unix(PathBuf),
    /// Plain HTTP over TCP, `host:port`.
    Tcp(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tcp(host) => write!(f, "tcp://{host}"),
        }
    }
}

/// Why a place is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `DOCKER_HOST` names it.
    DockerHost,
    /// A Docker context's endpoint.
    Context {
        /// The context's name.
        name: String,
        /// `DOCKER_CONTEXT` chose it (else the CLI's config file did).
        from_env: bool,
        /// The docker CLI's config file.
        config: PathBuf,
    },
    /// A rootless Docker daemon's socket.
    RootlessDocker,
    /// A rootless Podman service's socket.
    RootlessPodman,
    /// The default Docker socket.
    DefaultDocker,
    /// The system Podman service's socket.
    SystemPodman,
}

impl Why {
    /// Whether the user chose this endpoint (then nothing else is tried).
    pub fn is_explicit(&self) -> bool {
        matches!(self, Why::DockerHost | Why::Context { .. })
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::DockerHost => write!(f, "DOCKER_HOST is set"),
            Why::Context {
                name,
                from_env: true,
                ..
            } => write!(f, "DOCKER_CONTEXT selects Docker context `{name}`"),
            Why::Context { name, config, .. } => write!(
                f,
                "Docker context `{name}` is current in {}",
                config.display()
            ),
            Why::RootlessDocker => write!(f, "rootless Docker socket"),
            Why::RootlessPodman => write!(f, "rootless Podman socket"),
            Why::DefaultDocker => write!(f, "default Docker socket"),
            Why::SystemPodman => write!(f, "system Podman socket"),
        }
    }
}

/// One place to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Why we look there.
    pub why: Why,
    /// Where, or why that place cannot be used (an unsupported scheme, a missing context).
    pub target: Result<Address, String>,
}

/// What looking at one place found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No socket file there.
    Missing,
    /// The place cannot be used at all (see [`Candidate::target`]).
    Unusable(String),
    /// Something is there but no engine answered; the message says what happened.
    Failed(String),
}

/// A place that did not give us an engine, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Looked {
    /// The place.
    pub candidate: Candidate,
    /// What we found.
    pub outcome: Outcome,
}

impl fmt::Display for Looked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = &self.candidate.why;
        match (&self.candidate.target, &self.outcome) {
            (Ok(address), Outcome::Missing) => write!(f, "{address} ({why}): no socket there"),
            (Ok(address), Outcome::Failed(m) | Outcome::Unusable(m)) => {
                write!(f, "{address} ({why}): {m}")
            }
            (Err(m), _) => write!(f, "{why}: {m}"),
        }
    }
}

/// The endpoint we connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Where.
    pub address: Address,
    /// Why this one.
    pub why: Why,
    /// Places looked at before it that did not answer (only those with something there).
    pub passed_over: Vec<Looked>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.address.fmt(f)
    }
}

/// No engine answered anywhere we looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoEngine {
    /// Every place, in order.
    pub looked: Vec<Looked>,
    /// Sockets that exist on this machine but were not tried because the user chose an
    /// endpoint explicitly.
    pub not_tried: Vec<Address>,
}

impl NoEngine {
    /// Every place we looked and what we found, then why nothing else was tried (if so).
    pub fn places(&self) -> String {
        let mut text = String::from("no Docker engine answered. Looked, in this order:");
        for looked in &self.looked {
            text.push_str(&format!("\n  - {looked}"));
        }
        let sockets = join(&self.not_tried);
        match self.choice() {
            Some(Why::DockerHost) => {
                text.push_str("\n  DOCKER_HOST chooses the engine, so nothing else was tried.");
                if !self.not_tried.is_empty() {
                    text.push_str(&format!(
                        " Unset it to use one of the sockets on this machine: {sockets}"
                    ));
                }
            }
            Some(Why::Context { from_env, .. }) => {
                text.push_str(
                    "\n  The Docker context chooses the engine, so nothing else was tried.",
                );
                if !self.not_tried.is_empty() {
                    text.push_str(&format!(
                        " Sockets on this machine: {sockets} ({} to use them)",
                        undo_context(*from_env)
                    ));
                }
            }
            _ => {}
        }
        text
    }

    /// What to do.
    pub fn hint(&self) -> String {
        match self.choice() {
            Some(Why::DockerHost) => "point DOCKER_HOST at a running engine (unix:///path/to/docker.sock or tcp://host:2375), or unset it to let perstack-sandbox look for one".to_string(),
            Some(Why::Context { from_env, .. }) => format!(
                "start the context's engine, fix the context (`docker context inspect`), or {}",
                undo_context(*from_env)
            ),
            _ => "start an engine — Docker (`sudo systemctl start docker`), rootless Docker (`systemctl --user start docker`) or Podman (`systemctl --user start podman.socket`) — or set DOCKER_HOST to where one listens (unix:///path/to/docker.sock or tcp://host:2375). A socket you may not use needs your user in its group (`sudo usermod -aG docker $USER`, then log in again)".to_string(),
        }
    }

    fn choice(&self) -> Option<&Why> {
        self.looked
            .iter()
            .map(|l| &l.candidate.why)
            .find(|why| why.is_explicit())
    }
}

fn undo_context(from_env: bool) -> &'static str {
    if from_env {
        "unset DOCKER_CONTEXT"
    } else {
        "run `docker context use default`"
    }
}

impl fmt::Display for NoEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n  hint: {}", self.places(), self.hint())
    }
}

impl std::error::Error for NoEngine {}

fn join(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(Address::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a `DOCKER_HOST`-style address. `tls` says whether `DOCKER_TLS_VERIFY` is set.
pub(crate) fn parse_host(host: &str, tls: bool) -> Result<Address, String> {
    if let Some(path) = host.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(format!(
                "`{host}` is not an absolute socket path; write unix:///path/to/docker.sock"
            ));
        }
        return Ok(Address::Unix(PathBuf::from(path)));
    }
    let plain = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"));
    if let Some(rest) = plain {
        if tls {
            return Err(format!(
                "`{host}` with DOCKER_TLS_VERIFY: TLS endpoints are not supported; reach the engine over a unix socket (e.g. `ssh -NL /tmp/docker.sock:/var/run/docker.sock host`, then DOCKER_HOST=unix:///tmp/docker.sock) or unset DOCKER_TLS_VERIFY for a plain-TCP engine"
            ));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("`{host}` is not host:port; write tcp://host:2375"));
        }
        let has_port = match authority.rsplit_once(':') {
            // `[::1]` alone has colons but no port.
            Some((_, port)) => !port.ends_with(']') && !port.is_empty(),
            None => false,
        };
        return Ok(Address::Tcp(if has_port {
            authority.to_string()
        } else {
            format!("{authority}:{DEFAULT_TCP_PORT}")
        }));
    }
    let scheme = host.split_once("://").map_or(host, |(s, _)| s);
    Err(format!(
        "`{host}`: the `{scheme}` scheme is not supported; perstack-sandbox talks to Docker over unix:// sockets and plain tcp:// (for ssh://, forward the socket: `ssh -NL /tmp/docker.sock:/var/run/docker.sock host`, then DOCKER_HOST=unix:///tmp/docker.sock)"
    ))
}

/// The docker CLI's config folder: `$DOCKER_CONFIG`, else `~/.docker`.
fn docker_config_dir(host: &impl Host) -> Option<PathBuf> {
    match host.var("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => host.var("HOME").map(|h| Path::new(&h).join(".docker")),
    }
}

/// The context chosen by `DOCKER_CONTEXT` or the CLI's config, unless it is `default`.
fn chosen_context(host: &impl Host) -> Option<Candidate> {
    let dir = docker_config_dir(host)?;
    let config = dir.join("config.json");
    let (name, from_env) = match host.var("DOCKER_CONTEXT") {
        Some(name) => (name, true),
        None => {
            let text = host.read(&config)?;
            let value: serde_json::Value = serde_json::from_str(&text).ok()?;
            let name = value.get("currentContext")?.as_str()?.to_string();
            (name, false)
        }
    };
    if name.is_empty() || name == "default" {
        return None;
    }
    let meta = dir
        .join("contexts/meta")
        .join(hex::encode(Sha256::digest(name.as_bytes())))
        .join("meta.json");
    let target = match host.read(&meta) {
        None => Err(format!(
            "the context is not defined (no {}); `docker context ls` lists the contexts",
            meta.display()
        )),
        Some(text) => {
            let endpoint = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.pointer("/Endpoints/docker/Host")?
                        .as_str()
                        .map(str::to_string)
                });
            match endpoint {
                Some(address) => parse_host(&address, false),
                None => Err(format!(
                    "{} has no Docker endpoint (Endpoints.docker.Host)",
                    meta.display()
                )),
            }
        }
    };
    Some(Candidate {
        why: Why::Context {
            name,
            from_env,
            config,
        },
        target,
    })
}

/// The well-known sockets, in order (step 3 and 4 of the module docs), without duplicates.
fn sockets(host: &impl Host) -> Vec<Candidate> {
    let runtime_dir = host.var("XDG_RUNTIME_DIR").map(PathBuf::from);
    let user_dir = PathBuf::from(format!("/run/user/{}", host.uid()));
    let mut places: Vec<(Why, PathBuf)> = Vec::new();
    for (why, below) in [
        (Why::RootlessDocker, "docker.sock"),
        (Why::RootlessPodman, "podman/podman.sock"),
    ] {
        if let Some(dir) = &runtime_dir {
            places.push((why.clone(), dir.join(below)));
        }
        places.push((why, user_dir.join(below)));
    }
    places.push((Why::DefaultDocker, PathBuf::from(DEFAULT_DOCKER_SOCKET)));
    places.push((Why::SystemPodman, PathBuf::from(SYSTEM_PODMAN_SOCKET)));
    let mut seen = Vec::new();
    places
        .into_iter()
        .filter(|(_, path)| {
            let new = !seen.contains(path);
            seen.push(path.clone());
            new
        })
        .map(|(why, path)| Candidate {
            why,
            target: Ok(Address::Unix(path)),
        })
        .collect()
}

/// Every place to look, in order. An explicit choice (`DOCKER_HOST`, a Docker context) is the
/// only place.
pub(crate) fn candidates(host: &impl Host) -> Vec<Candidate> {
    if let Some(docker_host) = host.var("DOCKER_HOST") {
        let tls = host.var("DOCKER_TLS_VERIFY").is_some();
        return vec![Candidate {
            why: Why::DockerHost,
            target: parse_host(&docker_host, tls),
        }];
    }
    if let Some(context) = chosen_context(host) {
        return vec![context];
    }
    sockets(host)
}

/// The well-known sockets that exist on this machine (said when an explicit choice failed).
pub(crate) fn existing_sockets(host: &impl Host) -> Vec<Address> {
    sockets(host)
        .into_iter()
        .filter_map(|c| c.target.ok())
        .filter(|a| match a {
            Address::Unix(path) => host.exists(path),
            Address::Tcp(_) => false,
        })
        .collect()
}

/// Tries the places in order and returns what `connect` made of the first that answered.
/// Unix sockets that do not exist are not tried.
pub(crate) async fn first_answering<T, F, Fut>(
    host: &impl Host,
    candidates: Vec<Candidate>,
    mut connect: F,
) -> Result<(T, Endpoint), NoEngine>
where
    F: FnMut(Address) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut looked = Vec::new();
    for candidate in candidates {
        let address = match &candidate.target {
            Ok(address) => address.clone(),
            Err(message) => {
                let outcome = Outcome::Unusable(message.clone());
                looked.push(Looked { candidate, outcome });
                continue;
            }
        };
        if let Address::Unix(path) = &address
            && !host.exists(path)
        {
            looked.push(Looked {
                candidate,
                outcome: Outcome::Missing,
            });
            continue;
        }
        match connect(address.clone()).await {
            Ok(client) => {
                let passed_over = looked
                    .into_iter()
                    .filter(|l| matches!(l.outcome, Outcome::Failed(_)))
                    .collect();
                return Ok((
                    client,
                    Endpoint {
                        address,
                        why: candidate.why,
                        passed_over,
                    },
                ));
            }
            Err(message) => looked.push(Looked {
                candidate,
                outcome: Outcome::Failed(message),
            }),
        }
    }
    let explicit = looked.iter().any(|l| l.candidate.why.is_explicit());
    Err(NoEngine {
        looked,
        not_tried: if explicit {
            existing_sockets(host)
        } else {
            Vec::new()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[derive(Default)]
    struct FakeHost {
        vars: HashMap<String, String>,
        files: HashMap<PathBuf, String>,
        sockets: HashSet<PathBuf>,
    }

    impl FakeHost {
        fn var(mut self, name: &str, value: &str) -> Self {
            self.vars.insert(name.into(), value.into());
            self
        }
        fn socket(mut self, path: &str) -> Self {
            self.sockets.insert(path.into());
            self
        }
        fn file(mut self, path: &str, text: &str) -> Self {
            self.files.insert(path.into(), text.into());
            self
        }
    }

    impl Host for FakeHost {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned().filter(|v| !v.is_empty())
        }
        fn uid(&self) -> u32 {
            1000
        }
        fn exists(&self, path: &Path) -> bool {
            self.sockets.contains(path) || self.files.contains_key(path)
        }
        fn read(&self, path: &Path) -> Option<String> {
            self.files.get(path).cloned()
        }
    }

    fn places(host: &FakeHost) -> Vec<String> {
        candidates(host)
            .into_iter()
            .map(|c| match c.target {
                Ok(a) => format!("{a} ({})", c.why),
                Err(e) => format!("unusable ({}): {e}", c.why),
            })
            .collect()
    }

    /// Connects to every existing socket except those listed as dead.
    async fn pick(host: &FakeHost, dead: &[&str]) -> Result<Endpoint, NoEngine> {
        let dead: Vec<String> = dead.iter().map(|d| d.to_string()).collect();
        first_answering(host, candidates(host), |address| {
            let answer = if dead.contains(&address.to_string()) {
                Err("connection refused".to_string())
            } else {
                Ok(())
            };
            async move { answer }
        })
        .await
        .map(|((), endpoint)| endpoint)
    }

    #[test]
    fn without_a_choice_the_users_engines_come_before_the_systems() {
        let host = FakeHost::default().var("XDG_RUNTIME_DIR", "/xdg");
        assert_eq!(
            places(&host),
            [
                "unix:///xdg/docker.sock (rootless Docker socket)",
                "unix:///run/user/1000/docker.sock (rootless Docker socket)",
                "unix:///xdg/podman/podman.sock (rootless Podman socket)",
                "unix:///run/user/1000/podman/podman.sock (rootless Podman socket)",
                "unix:///var/run/docker.sock (default Docker socket)",
                "unix:///run/podman/podman.sock (system Podman socket)",
            ]
        );
    }

    #[test]
    fn the_runtime_dir_is_looked_at_once_when_it_is_the_usual_one() {
        let host = FakeHost::default().var("XDG_RUNTIME_DIR", "/run/user/1000");
        let all = places(&host);
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(
            all[0],
            "unix:///run/user/1000/docker.sock (rootless Docker socket)"
        );
    }

    #[test]
    fn docker_host_is_the_only_place_when_set() {
        let host = FakeHost::default()
            .var("DOCKER_HOST", "tcp://127.0.0.1:2375")
            .var("DOCKER_CONTEXT", "rootless")
            .socket("/var/run/docker.sock");
        assert_eq!(places(&host), ["tcp://127.0.0.1:2375 (DOCKER_HOST is set)"]);
    }

    #[test]
    fn docker_host_forms() {
        assert_eq!(
            parse_host("unix:///run/d.sock", false),
            Ok(Address::Unix("/run/d.sock".into()))
        );
        assert_eq!(
            parse_host("tcp://10.0.0.2:2375", false),
            Ok(Address::Tcp("10.0.0.2:2375".into()))
        );
        assert_eq!(
            parse_host("http://engine/", false),
            Ok(Address::Tcp("engine:2375".into()))
        );
        assert_eq!(
            parse_host("tcp://[::1]", false),
            Ok(Address::Tcp("[::1]:2375".into()))
        );
        assert_eq!(
            parse_host("tcp://[::1]:23", false),
            Ok(Address::Tcp("[::1]:23".into()))
        );
        for (host, says) in [
            ("ssh://me@box", "`ssh` scheme is not supported"),
            ("npipe:////./pipe/docker_engine", "`npipe` scheme"),
            ("unix://relative.sock", "not an absolute socket path"),
            ("tcp://", "not host:port"),
            ("/var/run/docker.sock", "scheme is not supported"),
        ] {
            let error = parse_host(host, false).expect_err(host);
            assert!(error.contains(says), "{host}: {error}");
        }
        let tls = parse_host("tcp://box:2376", true).expect_err("tls");
        assert!(tls.contains("TLS endpoints are not supported"), "{tls}");
    }

    fn context_meta(name: &str) -> String {
        format!(
            "/home/me/.docker/contexts/meta/{}/meta.json",
            hex::encode(Sha256::digest(name.as_bytes()))
        )
    }

    #[test]
    fn the_current_docker_context_is_followed() {
        let host = FakeHost::default()
            .var("HOME", "/home/me")
            .file(
                "/home/me/.docker/config.json",
                r#"{"auths":{},"currentContext":"rootless"}"#,
            )
            .file(
                &context_meta("rootless"),
                r#"{"Name":"rootless","Endpoints":{"docker":{"Host":"unix:///run/user/1000/docker.sock","SkipTLSVerify":false}}}"#,
            );
        assert_eq!(
            places(&host),
            [
                "unix:///run/user/1000/docker.sock (Docker context `rootless` is current in /home/me/.docker/config.json)"
            ]
        );
    }

    #[test]
    fn docker_context_overrides_the_config_and_default_means_look_around() {
        let base = || {
            FakeHost::default()
                .var("HOME", "/home/me")
                .file(
                    "/home/me/.docker/config.json",
                    r#"{"currentContext":"remote"}"#,
                )
                .file(
                    &context_meta("other"),
                    r#"{"Endpoints":{"docker":{"Host":"tcp://other:2375"}}}"#,
                )
        };
        assert_eq!(
            places(&base().var("DOCKER_CONTEXT", "other")),
            ["tcp://other:2375 (DOCKER_CONTEXT selects Docker context `other`)"]
        );
        assert_eq!(places(&base().var("DOCKER_CONTEXT", "default")).len(), 4);
        // The configured context does not exist: that is said, not silently skipped.
        let missing = places(&base());
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0].starts_with(
                "unusable (Docker context `remote` is current in /home/me/.docker/config.json): the context is not defined"
            ),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn the_first_socket_that_answers_wins_and_dead_ones_are_remembered() {
        let host = FakeHost::default()
            .var("XDG_RUNTIME_DIR", "/xdg")
            .socket("/xdg/docker.sock")
            .socket("/xdg/podman/podman.sock")
            .socket("/var/run/docker.sock");
        let endpoint = pick(&host, &[]).await.expect("rootless");
        assert_eq!(endpoint.address.to_string(), "unix:///xdg/docker.sock");
        assert_eq!(endpoint.why, Why::RootlessDocker);
        assert!(endpoint.passed_over.is_empty());

        // A stale rootless socket (its daemon stopped) is passed over, and remembered.
        let endpoint = pick(&host, &["unix:///xdg/docker.sock"])
            .await
            .expect("podman");
        assert_eq!(endpoint.why, Why::RootlessPodman);
        assert_eq!(
            endpoint
                .passed_over
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["unix:///xdg/docker.sock (rootless Docker socket): connection refused"]
        );

        let only_system = FakeHost::default().socket("/var/run/docker.sock");
        let endpoint = pick(&only_system, &[]).await.expect("default");
        assert_eq!(endpoint.why, Why::DefaultDocker);
    }

    #[tokio::test]
    async fn when_nothing_answers_every_place_is_named_with_what_to_do() {
        let host = FakeHost::default()
            .var("XDG_RUNTIME_DIR", "/xdg")
            .socket("/var/run/docker.sock");
        let error = pick(&host, &["unix:///var/run/docker.sock"])
            .await
            .expect_err("nothing");
        let text = error.to_string();
        assert_eq!(error.looked.len(), 6);
        for place in [
            "unix:///xdg/docker.sock (rootless Docker socket): no socket there",
            "unix:///run/user/1000/podman/podman.sock (rootless Podman socket): no socket there",
            "unix:///var/run/docker.sock (default Docker socket): connection refused",
            "unix:///run/podman/podman.sock (system Podman socket): no socket there",
        ] {
            assert!(text.contains(place), "{place} in\n{text}");
        }
        assert!(text.contains("hint: start an engine"), "{text}");
    }

    #[tokio::test]
    async fn a_dead_docker_host_is_not_replaced_by_another_engine_but_names_it() {
        let host = FakeHost::default()
            .var("DOCKER_HOST", "unix:///nonexistent")
            .socket("/var/run/docker.sock");
        let error = pick(&host, &[]).await.expect_err("DOCKER_HOST is dead");
        assert_eq!(
            error.to_string(),
            "no Docker engine answered. Looked, in this order:\n  \
             - unix:///nonexistent (DOCKER_HOST is set): no socket there\n  \
             DOCKER_HOST chooses the engine, so nothing else was tried. Unset it to use one of \
             the sockets on this machine: unix:///var/run/docker.sock\n  \
             hint: point DOCKER_HOST at a running engine (unix:///path/to/docker.sock or \
             tcp://host:2375), or unset it to let perstack-sandbox look for one"
        );
    }

    #[tokio::test]
    async fn an_unsupported_docker_host_is_reported_without_trying() {
        let host = FakeHost::default().var("DOCKER_HOST", "ssh://me@box");
        let error = pick(&host, &[]).await.expect_err("ssh");
        assert!(
            matches!(error.looked[0].outcome, Outcome::Unusable(_)),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("DOCKER_HOST is set: `ssh://me@box`: the `ssh` scheme is not supported"),
            "{error}"
        );
    }
}
