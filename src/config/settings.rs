//! What a run is set to, after command line > `perstack.toml` > default: the one place that
//! precedence is decided.
//!
//! As ripgrep turns its parsed flags (`LowArgs`) into the settings it runs with (`HiArgs`), the
//! command line's say is collected in [`SettingFlags`] (`None` where it is silent) and
//! [`Settings::resolve`] combines it with the file and the defaults below. `run` and `build` both
//! go through it; nothing else decides a default.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::LoadedConfig;
use super::dotted::child;
use super::patterns::parse_memory_size;
use super::schema::{Config, Location, ProviderName, ReasoningBudget, ReasoningLevel};

/// The provider when neither the command line nor the file names one.
pub(crate) const DEFAULT_PROVIDER: ProviderName = ProviderName::Anthropic;
/// Perstack's default model when neither the CLI nor the file names one.
pub(crate) const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// Perstack's effective default step limit.
pub(crate) const DEFAULT_MAX_STEPS: u32 = 100;
/// Perstack's default retry budget per generation.
pub(crate) const DEFAULT_MAX_RETRIES: u32 = 5;
/// Perstack's code default for the per-generation timeout, in milliseconds.
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 300_000;
/// Perstack's default reasoning budget.
pub(crate) const DEFAULT_REASONING_BUDGET: ReasoningBudget =
    ReasoningBudget::Level(ReasoningLevel::Low);

/// Default memory limit per container (DESIGN.md, "Hardening defaults").
pub(crate) const DEFAULT_MEMORY: i64 = 2 * 1024 * 1024 * 1024;
/// Default process limit per container.
pub(crate) const DEFAULT_PIDS: i64 = 256;
/// Default CPU limit per container.
pub(crate) const DEFAULT_CPUS: f64 = 2.0;

/// The CA bundle when neither `--ca-certificates` nor `[sandbox] caCertificates` names one:
/// the host's. It is what the user's own tools already trust — behind a TLS-intercepting proxy,
/// the proxy's CA is installed there — so it extends no trust the host has not given; without
/// it, every HTTPS request of a skill behind such a proxy fails.
pub(crate) const DEFAULT_CA_CERTIFICATES: CaCertificates = CaCertificates::Host;

/// The OCI runtime gVisor is registered as in the setup the README describes: what
/// `--runtime-engine`'s help and preflight's registration lines name.
pub(crate) const GVISOR_RUNTIME: &str = "runsc";

/// The OCI runtime every container of a run starts under (the engine's `HostConfig.Runtime`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuntimeEngineSetting {
    /// The name the engine has it registered as; `None` when nobody chose one: the engine's
    /// default runtime (runc on a stock Docker), and no runtime is named to the engine.
    pub name: Option<String>,
    /// Who chose it.
    pub source: SettingSource,
}

/// The default when neither `--runtime-engine` nor `[sandbox] runtime` names one: whatever the
/// engine runs containers under by default.
pub(crate) const DEFAULT_RUNTIME_ENGINE: Option<&str> = None;

/// A runtime's name as the engine registers it (`runsc`, `runc`, `kata-runtime`,
/// `io.containerd.runsc.v1`): a letter or digit, then letters, digits, `.`, `_` or `-`, at most 64.
pub(crate) fn check_runtime_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let shaped = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.len() <= 64;
    if shaped {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" is not a runtime's name; expected the name the engine has it registered \
             as, like \"{GVISOR_RUNTIME}\" (letters, digits, `.`, `_`, `-`)"
        ))
    }
}

/// `--runtime-engine`: a runtime's name ([`check_runtime_name`]).
pub(crate) fn parse_runtime_engine(value: &str) -> Result<String, String> {
    check_runtime_name(value).map(|()| value.to_string())
}

/// Which CA bundle the containers that talk TLS at run time trust (skills with
/// `allowedDomains`; the runtime when it reaches a provider or an `mcpSseSkill`), and package
/// installs at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaCertificates {
    /// The host's system bundle: `SSL_CERT_FILE`, else the distribution's usual place
    /// (`commands/artifacts.rs` looks).
    Host,
    /// A PEM file, absolute: `--ca-certificates` relative to the current folder,
    /// `[sandbox] caCertificates` relative to perstack.toml's folder.
    File(PathBuf),
}

impl CaCertificates {
    /// `"host"`, else a path, made absolute from `base`.
    pub fn parse(value: &str, base: &std::path::Path) -> CaCertificates {
        match value {
            "host" => CaCertificates::Host,
            path => CaCertificates::File(base.join(path)),
        }
    }
}

/// Where a setting's value came from, for messages about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SettingSource {
    /// Its flag.
    CommandLine,
    /// perstack.toml, at this place when known.
    File(Option<Location>),
    /// Nobody set it.
    Default,
}

/// The CA bundle and who chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaSetting {
    /// The bundle.
    pub bundle: CaCertificates,
    /// Who chose it.
    pub source: SettingSource,
}

/// What the runtime is told: the run's settings after CLI > file > default.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunSettings {
    /// The provider.
    pub provider: ProviderName,
    /// The model.
    pub model: String,
    /// Step limit.
    pub max_steps: u32,
    /// Retry limit.
    pub max_retries: u32,
    /// Per-generation timeout in ms.
    pub timeout_ms: u64,
    /// Reasoning budget as given (`low`, `2048`, …), if any.
    pub reasoning_budget: Option<String>,
}

/// Resource limits for every container of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Limits {
    /// Memory in bytes.
    pub memory: i64,
    /// CPUs.
    pub cpus: f64,
    /// Processes.
    pub pids: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory: DEFAULT_MEMORY,
            cpus: DEFAULT_CPUS,
            pids: DEFAULT_PIDS,
        }
    }
}

/// What the command line says about the settings; `None` where it says nothing. Values are as
/// the parser left them: names and budgets are checked by [`Settings::resolve`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingFlags {
    /// `--provider`.
    pub provider: Option<String>,
    /// `--model`.
    pub model: Option<String>,
    /// `--reasoning-budget`.
    pub reasoning_budget: Option<String>,
    /// `--max-steps`.
    pub max_steps: Option<u32>,
    /// `--max-retries`.
    pub max_retries: Option<u32>,
    /// `--timeout`: the whole run's limit.
    pub timeout: Option<Duration>,
    /// `--generation-timeout`.
    pub generation_timeout: Option<Duration>,
    /// `--memory`, bytes.
    pub memory: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids`.
    pub pids: Option<i64>,
    /// `--ca-certificates`, its path made absolute ([`parse_ca_certificates`]).
    pub ca_certificates: Option<CaCertificates>,
    /// `--runtime-engine`, a checked name ([`parse_runtime_engine`]).
    pub runtime_engine: Option<String>,
}

/// Everything a run is set to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// What the runtime is told.
    pub run: RunSettings,
    /// What each container may use.
    pub limits: Limits,
    /// How long the whole run may take, from its start to the runtime's exit: `--timeout`, else
    /// Perstack's docker bound of generation timeout × max-steps (PERSTACK-COMPAT.md §8).
    pub time_limit: Duration,
    /// The CA bundle the images of containers that talk TLS carry.
    pub ca_certificates: CaSetting,
    /// The OCI runtime every container of the run starts under.
    pub runtime_engine: RuntimeEngineSetting,
}

/// A setting on the command line that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `--provider` names no provider.
    #[error("--provider {name}: unknown provider (one of: {})", known_providers())]
    UnknownProvider {
        /// The name given.
        name: String,
    },
    /// `--reasoning-budget` is neither a level nor a token count.
    #[error("invalid reasoning budget `{0}` (none, minimal, low, medium, high, or a token count)")]
    ReasoningBudget(String),
    /// `--max-steps 0`.
    #[error("--max-steps must be at least 1")]
    NoSteps,
}

fn known_providers() -> String {
    ProviderName::ALL.map(|p| p.as_str()).join(", ")
}

impl Settings {
    /// Command line > `perstack.toml` > the defaults above. Paths in the file are relative to
    /// its folder.
    pub(crate) fn resolve(
        flags: &SettingFlags,
        loaded: &LoadedConfig,
    ) -> Result<Settings, SettingsError> {
        let config = &loaded.config;
        let provider = provider(flags, config)?;
        let reasoning_budget = reasoning_budget(flags, config)?;
        if flags.max_steps == Some(0) {
            return Err(SettingsError::NoSteps);
        }
        let run = RunSettings {
            provider,
            model: flags
                .model
                .clone()
                .or_else(|| config.model.clone())
                .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            max_steps: flags
                .max_steps
                .or(config.max_steps)
                .unwrap_or(DEFAULT_MAX_STEPS),
            max_retries: flags
                .max_retries
                .or(config.max_retries)
                .unwrap_or(DEFAULT_MAX_RETRIES),
            timeout_ms: generation_timeout_ms(flags, config),
            reasoning_budget: Some(reasoning_budget),
        };
        Ok(Settings {
            limits: limits(flags, config),
            time_limit: flags.timeout.unwrap_or_else(|| {
                Duration::from_millis(run.timeout_ms.saturating_mul(u64::from(run.max_steps)))
            }),
            run,
            ca_certificates: ca_certificates(flags, loaded),
            runtime_engine: runtime_engine(flags, loaded),
        })
    }
}

/// `--ca-certificates` > `[sandbox] caCertificates` > [`DEFAULT_CA_CERTIFICATES`].
fn ca_certificates(flags: &SettingFlags, loaded: &LoadedConfig) -> CaSetting {
    if let Some(bundle) = &flags.ca_certificates {
        return CaSetting {
            bundle: bundle.clone(),
            source: SettingSource::CommandLine,
        };
    }
    match &loaded.config.sandbox.ca_certificates {
        Some(value) => CaSetting {
            bundle: CaCertificates::parse(value, loaded.dir()),
            source: SettingSource::File(loaded.location(&child("sandbox", "caCertificates"))),
        },
        None => CaSetting {
            bundle: DEFAULT_CA_CERTIFICATES,
            source: SettingSource::Default,
        },
    }
}

/// `--runtime-engine` > `[sandbox] runtime` > [`DEFAULT_RUNTIME_ENGINE`].
fn runtime_engine(flags: &SettingFlags, loaded: &LoadedConfig) -> RuntimeEngineSetting {
    if let Some(name) = &flags.runtime_engine {
        return RuntimeEngineSetting {
            name: Some(name.clone()),
            source: SettingSource::CommandLine,
        };
    }
    match &loaded.config.sandbox.runtime {
        Some(name) => RuntimeEngineSetting {
            name: Some(name.clone()),
            source: SettingSource::File(loaded.location(&child("sandbox", "runtime"))),
        },
        None => RuntimeEngineSetting {
            name: DEFAULT_RUNTIME_ENGINE.map(str::to_string),
            source: SettingSource::Default,
        },
    }
}

/// `--ca-certificates`: `host`, or a PEM file's path, made absolute from the current folder.
pub(crate) fn parse_ca_certificates(value: &str) -> Result<CaCertificates, String> {
    if value.trim().is_empty() {
        return Err("expected `host` or the path of a PEM bundle".to_string());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| format!("cannot tell the current folder to resolve \"{value}\": {e}"))?;
    Ok(CaCertificates::parse(value, &cwd))
}

fn provider(flags: &SettingFlags, config: &Config) -> Result<ProviderName, SettingsError> {
    match &flags.provider {
        Some(name) => ProviderName::parse(name)
            .ok_or_else(|| SettingsError::UnknownProvider { name: name.clone() }),
        None => Ok(config
            .provider
            .as_ref()
            .map_or(DEFAULT_PROVIDER, |p| p.provider_name)),
    }
}

/// The budget as the runtime is told it: as given on the command line (once it parses), else
/// as the file or the default spell it.
fn reasoning_budget(flags: &SettingFlags, config: &Config) -> Result<String, SettingsError> {
    match &flags.reasoning_budget {
        Some(given) => match ReasoningBudget::parse(given) {
            Some(_) => Ok(given.clone()),
            None => Err(SettingsError::ReasoningBudget(given.clone())),
        },
        None => Ok(config
            .reasoning_budget
            .unwrap_or(DEFAULT_REASONING_BUDGET)
            .to_string()),
    }
}

/// Container limits: `--memory`/`--cpus`/`--pids` > `[sandbox]` > the defaults above.
fn limits(flags: &SettingFlags, config: &Config) -> Limits {
    let defaults = Limits::default();
    let sandbox = &config.sandbox;
    Limits {
        memory: flags.memory.unwrap_or_else(|| {
            sandbox
                .memory
                .as_deref()
                .and_then(parse_memory_size)
                .and_then(|m| i64::try_from(m).ok())
                .unwrap_or(defaults.memory)
        }),
        cpus: flags.cpus.or(sandbox.cpus).unwrap_or(defaults.cpus),
        pids: flags.pids.or(sandbox.pids).unwrap_or(defaults.pids),
    }
}

/// How long one generation may take: `--generation-timeout` > `timeout` in perstack.toml > the
/// default; never longer than `--timeout`, the whole run's limit, so a Perstack command line's
/// `--timeout 60000` still bounds each generation to a minute too.
fn generation_timeout_ms(flags: &SettingFlags, config: &Config) -> u64 {
    let generation = flags
        .generation_timeout
        .map(millis)
        .or(config.timeout)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    match flags.timeout {
        Some(run) => generation.min(millis(run)),
        None => generation,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl ReasoningLevel {
    /// Every level, from none to high.
    pub const ALL: [ReasoningLevel; 5] = [
        ReasoningLevel::None,
        ReasoningLevel::Minimal,
        ReasoningLevel::Low,
        ReasoningLevel::Medium,
        ReasoningLevel::High,
    ];

    /// The name as written in `perstack.toml` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningLevel::None => "none",
            ReasoningLevel::Minimal => "minimal",
            ReasoningLevel::Low => "low",
            ReasoningLevel::Medium => "medium",
            ReasoningLevel::High => "high",
        }
    }

    /// Parses a level's name.
    pub fn parse(s: &str) -> Option<ReasoningLevel> {
        Self::ALL.into_iter().find(|level| level.as_str() == s)
    }
}

impl ReasoningBudget {
    /// Parses `--reasoning-budget`: a level's name or a token count.
    pub fn parse(s: &str) -> Option<ReasoningBudget> {
        ReasoningLevel::parse(s)
            .map(ReasoningBudget::Level)
            .or_else(|| s.parse().ok().map(ReasoningBudget::Tokens))
    }
}

/// As written on the command line: `low`, `2048`.
impl fmt::Display for ReasoningBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReasoningBudget::Level(level) => f.write_str(level.as_str()),
            ReasoningBudget::Tokens(n) => write!(f, "{n}"),
        }
    }
}

/// A byte count as `--memory` spells it when it is a whole number of GiB or MiB (`2g`, `512m`),
/// else in bytes: for help texts that show a default.
pub(crate) fn memory_spelling(bytes: i64) -> String {
    const MIB: i64 = 1 << 20;
    const GIB: i64 = 1 << 30;
    match bytes {
        b if b > 0 && b % GIB == 0 => format!("{}g", b / GIB),
        b if b > 0 && b % MIB == 0 => format!("{}m", b / MIB),
        b => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> LoadedConfig {
        super::super::load_str(std::path::Path::new("/p/perstack.toml"), text).expect("valid")
    }

    fn resolve(flags: SettingFlags, file: &LoadedConfig) -> Settings {
        Settings::resolve(&flags, file).expect("settings")
    }

    #[test]
    fn the_ca_bundle_is_the_flag_else_the_file_relative_to_its_folder_else_the_host() {
        let file = config("[sandbox]\ncaCertificates = \"certs/corp.pem\"\n");
        let from_file = resolve(SettingFlags::default(), &file).ca_certificates;
        assert_eq!(
            from_file.bundle,
            CaCertificates::File("/p/certs/corp.pem".into())
        );
        let SettingSource::File(Some(at)) = from_file.source else {
            panic!("{from_file:?}");
        };
        assert_eq!((at.line, at.col), (2, 18));
        let flags = SettingFlags {
            ca_certificates: Some(CaCertificates::Host),
            ..SettingFlags::default()
        };
        assert_eq!(
            resolve(flags, &file).ca_certificates,
            CaSetting {
                bundle: CaCertificates::Host,
                source: SettingSource::CommandLine
            }
        );
        assert_eq!(
            resolve(SettingFlags::default(), &config("")).ca_certificates,
            CaSetting {
                bundle: CaCertificates::Host,
                source: SettingSource::Default
            }
        );
        let absolute = config("[sandbox]\ncaCertificates = \"/etc/pki/bundle.pem\"\n");
        assert_eq!(
            resolve(SettingFlags::default(), &absolute)
                .ca_certificates
                .bundle,
            CaCertificates::File("/etc/pki/bundle.pem".into())
        );
        // The flag is relative to the current folder, `host` is the host's.
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            parse_ca_certificates("corp.pem"),
            Ok(CaCertificates::File(cwd.join("corp.pem")))
        );
        assert_eq!(parse_ca_certificates("host"), Ok(CaCertificates::Host));
        assert!(parse_ca_certificates("").is_err());
    }

    #[test]
    fn the_runtime_engine_is_the_flag_else_the_file_else_the_engines_default() {
        let file = config("[sandbox]\nruntime = \"runsc\"\n");
        let from_file = resolve(SettingFlags::default(), &file).runtime_engine;
        assert_eq!(from_file.name.as_deref(), Some("runsc"));
        let SettingSource::File(Some(at)) = from_file.source else {
            panic!("{from_file:?}");
        };
        assert_eq!((at.line, at.col), (2, 11));
        let flags = SettingFlags {
            runtime_engine: Some("runc".into()),
            ..SettingFlags::default()
        };
        assert_eq!(
            resolve(flags, &file).runtime_engine,
            RuntimeEngineSetting {
                name: Some("runc".into()),
                source: SettingSource::CommandLine
            }
        );
        assert_eq!(
            resolve(SettingFlags::default(), &config("")).runtime_engine,
            RuntimeEngineSetting {
                name: None,
                source: SettingSource::Default
            }
        );
        assert_eq!(parse_runtime_engine("runsc"), Ok("runsc".to_string()));
        assert_eq!(
            parse_runtime_engine("io.containerd.runsc.v1"),
            Ok("io.containerd.runsc.v1".to_string())
        );
        for bad in ["", "-runsc", "run sc", "runsc;rm", &"r".repeat(65)] {
            assert!(parse_runtime_engine(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_beats_the_file_which_beats_the_defaults() {
        let file = config(
            "model = \"file-model\"\nmaxSteps = 9\nmaxRetries = 2\ntimeout = 1234\nreasoningBudget = \"high\"\n\
             [provider]\nproviderName = \"mock\"\nsetting = { script = \"s.toml\" }\n",
        );
        assert_eq!(
            resolve(SettingFlags::default(), &file).run,
            RunSettings {
                provider: ProviderName::Mock,
                model: "file-model".into(),
                max_steps: 9,
                max_retries: 2,
                timeout_ms: 1234,
                reasoning_budget: Some("high".into()),
            }
        );
        let flags = SettingFlags {
            provider: Some("anthropic".into()),
            model: Some("cli-model".into()),
            max_steps: Some(3),
            max_retries: Some(0),
            generation_timeout: Some(Duration::from_millis(50)),
            reasoning_budget: Some("1500".into()),
            ..SettingFlags::default()
        };
        assert_eq!(
            resolve(flags, &file).run,
            RunSettings {
                provider: ProviderName::Anthropic,
                model: "cli-model".into(),
                max_steps: 3,
                max_retries: 0,
                timeout_ms: 50,
                reasoning_budget: Some("1500".into()),
            }
        );
        assert_eq!(
            resolve(SettingFlags::default(), &config("")).run,
            RunSettings {
                provider: DEFAULT_PROVIDER,
                model: DEFAULT_MODEL.into(),
                max_steps: DEFAULT_MAX_STEPS,
                max_retries: DEFAULT_MAX_RETRIES,
                timeout_ms: DEFAULT_TIMEOUT_MS,
                reasoning_budget: Some("low".into()),
            }
        );
    }

    #[test]
    fn limit_flags_beat_the_sandbox_table_which_beats_the_defaults() {
        let file = config("[sandbox]\nmemory = \"1g\"\ncpus = 1.5\npids = 100\n");
        assert_eq!(
            resolve(SettingFlags::default(), &file).limits,
            Limits {
                memory: 1 << 30,
                cpus: 1.5,
                pids: 100
            }
        );
        let flags = SettingFlags {
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids: Some(32),
            ..SettingFlags::default()
        };
        assert_eq!(
            resolve(flags, &file).limits,
            Limits {
                memory: 64 << 20,
                cpus: 0.5,
                pids: 32
            }
        );
        assert_eq!(
            resolve(SettingFlags::default(), &config("")).limits,
            Limits::default()
        );
    }

    #[test]
    fn timeout_bounds_the_whole_run_else_generation_timeout_times_max_steps() {
        let file = config("timeout = 1000\nmaxSteps = 7\n");
        let limit = |flags: SettingFlags| resolve(flags, &file).time_limit;
        // No --timeout: Perstack's docker bound, generation timeout × max-steps.
        assert_eq!(limit(SettingFlags::default()), Duration::from_secs(7));
        assert_eq!(
            limit(SettingFlags {
                generation_timeout: Some(Duration::from_secs(2)),
                max_steps: Some(3),
                ..SettingFlags::default()
            }),
            Duration::from_secs(6)
        );
        // --timeout is the whole run's limit.
        assert_eq!(
            limit(SettingFlags {
                timeout: Some(Duration::from_secs(60)),
                ..SettingFlags::default()
            }),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn no_generation_outlives_the_run() {
        let file = config("timeout = 90000\n");
        let generation = |timeout: Option<u64>, generation: Option<u64>| {
            let flags = SettingFlags {
                timeout: timeout.map(Duration::from_millis),
                generation_timeout: generation.map(Duration::from_millis),
                ..SettingFlags::default()
            };
            resolve(flags, &file).run.timeout_ms
        };
        assert_eq!(generation(None, None), 90_000);
        assert_eq!(generation(None, Some(120_000)), 120_000);
        // A run limit shorter than a generation's caps the generation too.
        assert_eq!(generation(Some(5_000), None), 5_000);
        assert_eq!(generation(Some(5_000), Some(1_000)), 1_000);
        // A longer one leaves the generation's limit alone.
        assert_eq!(generation(Some(3_600_000), None), 90_000);
    }

    #[test]
    fn bad_flag_values_are_refused_with_what_would_do() {
        let file = config("");
        let refused = |flags: SettingFlags| {
            Settings::resolve(&flags, &file)
                .expect_err("refused")
                .to_string()
        };
        assert!(
            refused(SettingFlags {
                provider: Some("openia".into()),
                ..SettingFlags::default()
            })
            .starts_with("--provider openia: unknown provider (one of: anthropic, google,")
        );
        assert_eq!(
            refused(SettingFlags {
                reasoning_budget: Some("lots".into()),
                ..SettingFlags::default()
            }),
            "invalid reasoning budget `lots` (none, minimal, low, medium, high, or a token count)"
        );
        assert_eq!(
            refused(SettingFlags {
                max_steps: Some(0),
                ..SettingFlags::default()
            }),
            "--max-steps must be at least 1"
        );
    }

    #[test]
    fn a_budget_reads_back_as_it_was_written() {
        for written in ["none", "minimal", "low", "medium", "high", "0", "1500"] {
            let budget = ReasoningBudget::parse(written).expect(written);
            assert_eq!(budget.to_string(), written);
        }
        assert_eq!(ReasoningBudget::parse("-1"), None);
        assert_eq!(ReasoningBudget::parse("High"), None);
    }

    #[test]
    fn memory_defaults_are_spelled_as_the_flag_takes_them() {
        assert_eq!(memory_spelling(DEFAULT_MEMORY), "2g");
        assert_eq!(memory_spelling(512 << 20), "512m");
        assert_eq!(memory_spelling(1000), "1000");
    }
}
