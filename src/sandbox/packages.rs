//! Which packages a stdio skill's command would fetch when it starts, installed instead when its
//! image is built, and the command the skill host then starts.
//!
//! Skill containers have no network at run time (unless `allowedDomains`, and then only those
//! domains), so `uvx mcp-server-time` or `npx -y @scope/server` cannot download anything there.
//! [`prepare`] reads the command line the way `uvx`/`npx` would and answers with what to
//! install at build time and what to run afterwards:
//!
//! | command | installed at build time | started at run time |
//! |---|---|---|
//! | `uvx [--from S] [--with W]… P[@V] args…` | `pip install S-or-P[==V] W…` into a venv | `/opt/perstack-skill/bin/<script> args…` |
//! | `npx [-y] [--package S] P[@V] args…` | `npm install -g S-or-P[@V]` under the same prefix | the package's bin (linked as `/opt/perstack-skill/entry`), or the named one with `--package` |
//! | `python`/`python3` with `packageName` | `pip install <packageName>` into a venv | the venv's `python3 -m <packageName, - as _>` |
//! | `node` with `packageName` | `npm install -g <packageName>` | the package's bin |
//! | `uv …` | `pip install uv` into a venv; a project's dependencies with `uv sync` (`skill_files`) | `/opt/perstack-skill/bin/uv …`, offline, without syncing ([`Install::run_env`]) |
//! | anything else | nothing | the command as written |
//!
//! Perstack would run `python3 <packageName>` (a file by that name), which cannot work; running
//! the installed module is what such a config means.

use crate::config::McpStdioSkill;
use crate::contract::paths::INSTALL_PREFIX;

/// For Node packages: a link to the bin `npx` would have started, made at build time under
/// [`INSTALL_PREFIX`] (the package's `package.json` says which, and it is only known once it is
/// installed).
pub(crate) const NODE_ENTRY: &str = "entry";

/// Which package manager installs a skill's packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Installer {
    /// `python3 -m venv` + `pip install` (needs `python3` with `venv` in the base image).
    Pip,
    /// `npm install -g --prefix` (needs `node` and `npm` in the base image).
    Npm,
    /// `npm ci` (with a lockfile) or `npm install` in a skill's own folder, whose `package.json`
    /// is among its local files (`sandbox::skill_files`); the one package is that folder's path in
    /// the image, and its `node_modules` is what the image keeps.
    NpmProject,
    /// `pip install uv` into a venv (as [`Installer::Pip`] installs), then — when the one package
    /// is a folder with a `pyproject.toml` among a skill's local files — `uv sync` there into
    /// [`UV_PROJECT_DIR`] under the prefix, so that `uv run` finds the project's dependencies at
    /// run time without fetching anything.
    Uv,
}

/// Under the install prefix: the environment `uv sync` makes for a skill's uv project, which
/// `uv run` uses at run time (`UV_PROJECT_ENVIRONMENT`).
pub(crate) const UV_PROJECT_DIR: &str = "uv-project";

/// What to install while the image is built.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Install {
    /// The package manager.
    pub installer: Installer,
    /// Requirement specs as the installer takes them (`mcp-server-time==1.0`, `@scope/pkg@2`).
    pub packages: Vec<String>,
    /// npm only: the package whose bin is linked as [`NODE_ENTRY`] (`None` when the command
    /// names the bin itself).
    pub entry_package: Option<String>,
}

impl Install {
    /// The variables the installed program needs at run time, for packages installed at
    /// `prefix`: for `uv`, the project environment the build synced, and no syncing, no
    /// network and no Python downloads — `uv run` uses what the build installed as it is.
    /// Nothing for the other installers.
    pub(crate) fn run_env(&self, prefix: &str) -> Vec<(String, String)> {
        match self.installer {
            Installer::Uv => vec![
                (
                    "UV_PROJECT_ENVIRONMENT".to_string(),
                    format!("{prefix}/{UV_PROJECT_DIR}"),
                ),
                ("UV_NO_SYNC".to_string(), "1".to_string()),
                ("UV_OFFLINE".to_string(), "1".to_string()),
                ("UV_PYTHON_DOWNLOADS".to_string(), "never".to_string()),
                // The base's, which made the environment, whatever `.python-version` says.
                ("UV_PYTHON".to_string(), "python3".to_string()),
            ],
            Installer::Pip | Installer::Npm | Installer::NpmProject => Vec::new(),
        }
    }
}

/// A skill's command, ready for an image with nothing to fetch at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// What to install at build time; `None`: the command runs as written.
    pub install: Option<Install>,
    /// The program the skill host starts.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// Why a skill's command cannot be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PackageError {
    /// An option of `uvx`/`npx` we cannot honour at build time.
    #[error(
        "`{command}` option `{option}` is not supported here: the package is installed when the image is built, into the base image's own interpreter{hint}"
    )]
    UnsupportedOption {
        /// `uvx` or `npx`.
        command: String,
        /// The option.
        option: String,
        /// What to do instead.
        hint: String,
    },
    /// An option that needs a value came last.
    #[error("`{command}` option `{option}` needs a value")]
    MissingValue {
        /// `uvx` or `npx`.
        command: String,
        /// The option.
        option: String,
    },
    /// No package (or program) after the options.
    #[error("`{command}` names no package to run; add it to args (e.g. args = [\"{example}\"])")]
    NoPackage {
        /// `uvx` or `npx`.
        command: String,
        /// An example.
        example: String,
    },
    /// A package spec we cannot turn into a program name.
    #[error("`{command}` cannot run `{spec}`: {why}")]
    BadSpec {
        /// `uvx` or `npx`.
        command: String,
        /// The spec.
        spec: String,
        /// Why.
        why: String,
    },
}

/// What `skill`'s command installs at build time and runs at run time (module docs).
pub(crate) fn prepare(skill: &McpStdioSkill) -> Result<Prepared, PackageError> {
    let program = skill.command.rsplit('/').next().unwrap_or(&skill.command);
    let argv = skill.argv();
    match program {
        "uvx" => uvx(&argv),
        "npx" => npx(&argv),
        "uv" => Ok(uv(argv)),
        "python" | "python3" if skill.args.is_empty() => match &skill.package_name {
            Some(package) => python_module(package),
            None => Ok(as_written(skill)),
        },
        "node" if skill.args.is_empty() => match &skill.package_name {
            Some(package) => npx(std::slice::from_ref(package)),
            None => Ok(as_written(skill)),
        },
        _ => Ok(as_written(skill)),
    }
}

fn as_written(skill: &McpStdioSkill) -> Prepared {
    Prepared {
        install: None,
        command: skill.command.clone(),
        args: skill.argv(),
    }
}

/// Takes the value of `--opt value` / `--opt=value` at `argv[*i]`, advancing `i`.
fn value_of(
    command: &str,
    argv: &[String],
    i: &mut usize,
    option: &str,
) -> Result<String, PackageError> {
    let arg = &argv[*i];
    if let Some(value) = arg.strip_prefix(option).and_then(|r| r.strip_prefix('=')) {
        return Ok(value.to_string());
    }
    *i += 1;
    argv.get(*i)
        .cloned()
        .ok_or_else(|| PackageError::MissingValue {
            command: command.to_string(),
            option: option.to_string(),
        })
}

/// The option of `names` that `arg` is, as `--opt` or `--opt=value`.
fn matches_option(arg: &str, names: &[&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|name| {
        arg == *name
            || arg
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// `uv …`: `uv` itself installed into a venv, and started from there with the args as written
/// (a project folder they name is synced at build time: `skill_files`).
fn uv(argv: Vec<String>) -> Prepared {
    Prepared {
        install: Some(Install {
            installer: Installer::Uv,
            packages: Vec::new(),
            entry_package: None,
        }),
        command: format!("{INSTALL_PREFIX}/bin/uv"),
        args: argv,
    }
}

/// `uvx` flags that change nothing about what gets installed or run.
const UVX_HARMLESS: &[&str] = &[
    "-q",
    "--quiet",
    "-v",
    "--verbose",
    "-n",
    "--no-cache",
    "--offline",
    "--refresh",
    "--isolated",
    "--no-progress",
    "--native-tls",
    "--no-python-downloads",
];

fn uvx(argv: &[String]) -> Result<Prepared, PackageError> {
    let command = "uvx";
    let mut from = None;
    let mut packages = Vec::new();
    let mut index = Vec::new();
    let mut i = 0;
    while i < argv.len() && argv[i].starts_with('-') {
        let arg = argv[i].as_str();
        if let Some(option) = matches_option(arg, &["--from"]) {
            from = Some(value_of(command, argv, &mut i, option)?);
        } else if let Some(option) = matches_option(arg, &["--with"]) {
            let value = value_of(command, argv, &mut i, option)?;
            packages.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
        } else if let Some(option) = matches_option(arg, &["--index-url", "--default-index"]) {
            index.push(format!(
                "--index-url={}",
                value_of(command, argv, &mut i, option)?
            ));
        } else if let Some(option) = matches_option(arg, &["--extra-index-url", "--index"]) {
            index.push(format!(
                "--extra-index-url={}",
                value_of(command, argv, &mut i, option)?
            ));
        } else if !UVX_HARMLESS.contains(&arg) {
            let hint = if arg == "--python" || arg == "-p" || arg.starts_with("--python=") {
                "; choose the Python version with the base image instead ([sandbox] pythonImage or [sandbox.skills.\"<name>\"] image) and drop the option"
            } else {
                ""
            };
            return Err(PackageError::UnsupportedOption {
                command: command.to_string(),
                option: arg.to_string(),
                hint: hint.to_string(),
            });
        }
        i += 1;
    }
    let Some(target) = argv.get(i) else {
        return Err(PackageError::NoPackage {
            command: command.to_string(),
            example: "mcp-server-time".to_string(),
        });
    };
    let (requirement, script) = match from {
        Some(spec) => (spec, target.clone()),
        None => python_request(target)?,
    };
    if script.is_empty() || script.contains('/') {
        return Err(PackageError::BadSpec {
            command: command.to_string(),
            spec: target.clone(),
            why: "the program to run must be a console script's name".to_string(),
        });
    }
    let mut specs = index;
    specs.push(requirement);
    specs.extend(packages);
    Ok(Prepared {
        install: Some(Install {
            installer: Installer::Pip,
            packages: specs,
            entry_package: None,
        }),
        command: format!("{INSTALL_PREFIX}/bin/{script}"),
        args: argv[i + 1..].to_vec(),
    })
}

/// `uvx`'s package request: `name`, `name[extras]`, `name@version`, `name@latest`,
/// `name==version` → (pip requirement, console script).
fn python_request(target: &str) -> Result<(String, String), PackageError> {
    let (name_part, version) = match target.split_once('@') {
        Some((name, "latest")) => (name, None),
        Some((name, version)) => (name, Some(version)),
        None => (target, None),
    };
    let name_end = name_part
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(name_part.len());
    let name = &name_part[..name_end];
    let rest = &name_part[name_end..];
    // After the name only extras (`[…]`) or a version specifier may follow, never a path.
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || rest.contains(['/', '\\', ':']) {
        return Err(PackageError::BadSpec {
            command: "uvx".to_string(),
            spec: target.to_string(),
            why: "it does not start with a package name; use `--from <spec> <command>` for URLs and paths".to_string(),
        });
    }
    let requirement = match version {
        Some(version) => format!("{name_part}=={version}"),
        None => name_part.to_string(),
    };
    Ok((requirement, name.to_string()))
}

fn python_module(package: &str) -> Result<Prepared, PackageError> {
    let (requirement, name) = python_request(package).map_err(|_| PackageError::BadSpec {
        command: "python3".to_string(),
        spec: package.to_string(),
        why: "packageName must be a PyPI package name".to_string(),
    })?;
    Ok(Prepared {
        install: Some(Install {
            installer: Installer::Pip,
            packages: vec![requirement],
            entry_package: None,
        }),
        command: format!("{INSTALL_PREFIX}/bin/python3"),
        args: vec!["-m".to_string(), name.replace(['-', '.'], "_")],
    })
}

/// `npx` flags that change nothing about what gets installed or run.
const NPX_HARMLESS: &[&str] = &[
    "-y",
    "--yes",
    "-q",
    "--quiet",
    "--no-install",
    "--prefer-offline",
];

fn npx(argv: &[String]) -> Result<Prepared, PackageError> {
    let command = "npx";
    let mut packages = Vec::new();
    let mut i = 0;
    while i < argv.len() && argv[i].starts_with('-') {
        let arg = argv[i].as_str();
        if arg == "--" {
            i += 1;
            break;
        }
        if let Some(option) = matches_option(arg, &["--package", "-p"]) {
            packages.push(value_of(command, argv, &mut i, option)?);
        } else if !NPX_HARMLESS.contains(&arg) {
            let hint = if matches_option(arg, &["--registry"]).is_some() {
                "; set the registry for every npm install with [sandbox] npmRegistry and drop the option"
            } else {
                ""
            };
            return Err(PackageError::UnsupportedOption {
                command: command.to_string(),
                option: arg.to_string(),
                hint: hint.to_string(),
            });
        }
        i += 1;
    }
    let Some(target) = argv.get(i) else {
        return Err(PackageError::NoPackage {
            command: command.to_string(),
            example: "@modelcontextprotocol/server-everything".to_string(),
        });
    };
    let args = argv[i + 1..].to_vec();
    if !packages.is_empty() {
        // `npx --package a --package b cmd`: `cmd` is a bin of one of them.
        if target.contains('/') {
            return Err(PackageError::BadSpec {
                command: command.to_string(),
                spec: target.clone(),
                why: "with --package, the program to run must be a bin's name".to_string(),
            });
        }
        return Ok(Prepared {
            install: Some(Install {
                installer: Installer::Npm,
                packages,
                entry_package: None,
            }),
            command: format!("{INSTALL_PREFIX}/bin/{target}"),
            args,
        });
    }
    let name = npm_name(target).ok_or_else(|| PackageError::BadSpec {
        command: command.to_string(),
        spec: target.clone(),
        why: "it is not an npm package name (`name`, `name@version`, `@scope/name@version`)"
            .to_string(),
    })?;
    Ok(Prepared {
        install: Some(Install {
            installer: Installer::Npm,
            packages: vec![target.clone()],
            entry_package: Some(name),
        }),
        command: format!("{INSTALL_PREFIX}/{NODE_ENTRY}"),
        args,
    })
}

/// The package name of an npm spec (`@scope/name@1.2` → `@scope/name`); `None` for URLs, paths,
/// git and tarball specs.
fn npm_name(spec: &str) -> Option<String> {
    let (scope, rest) = match spec.strip_prefix('@') {
        Some(rest) => {
            let (scope, rest) = rest.split_once('/')?;
            (Some(scope), rest)
        }
        None => (None, spec),
    };
    let name = rest.split_once('@').map_or(rest, |(name, _)| name);
    let ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
    };
    if !ok(name) || scope.is_some_and(|s| !ok(s)) {
        return None;
    }
    Some(match scope {
        Some(scope) => format!("@{scope}/{name}"),
        None => name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(command: &str, args: &[&str], package: Option<&str>) -> McpStdioSkill {
        McpStdioSkill {
            name: "s".into(),
            description: None,
            rule: None,
            command: command.into(),
            package_name: package.map(str::to_string),
            args: args.iter().map(|a| a.to_string()).collect(),
            pick: vec![],
            omit: vec![],
            required_env: vec![],
            allowed_domains: vec![],
            lazy_init: false,
        }
    }

    fn prepared(command: &str, args: &[&str]) -> Prepared {
        prepare(&skill(command, args, None)).expect("prepared")
    }

    fn pip(packages: &[&str]) -> Option<Install> {
        Some(Install {
            installer: Installer::Pip,
            packages: packages.iter().map(|p| p.to_string()).collect(),
            entry_package: None,
        })
    }

    #[test]
    fn uvx_installs_the_package_and_runs_its_console_script_with_the_rest_of_the_args() {
        assert_eq!(
            prepared("uvx", &["mcp-server-time", "--local-timezone", "UTC"]),
            Prepared {
                install: pip(&["mcp-server-time"]),
                command: "/opt/perstack-skill/bin/mcp-server-time".into(),
                args: vec!["--local-timezone".into(), "UTC".into()],
            }
        );
        // A version pins the requirement; `@latest` is the newest; extras stay in the requirement.
        let pinned = prepared("uvx", &["mcp-server-fetch@2025.1.17"]);
        assert_eq!(pinned.install, pip(&["mcp-server-fetch==2025.1.17"]));
        assert_eq!(pinned.command, "/opt/perstack-skill/bin/mcp-server-fetch");
        assert_eq!(
            prepared("uvx", &["mcp-server-fetch@latest"]).install,
            pip(&["mcp-server-fetch"])
        );
        let extras = prepared("uvx", &["black[d]==24.1"]);
        assert_eq!(extras.install, pip(&["black[d]==24.1"]));
        assert_eq!(extras.command, "/opt/perstack-skill/bin/black");
        // A path to uvx counts too.
        assert_eq!(
            prepared("/usr/local/bin/uvx", &["mcp-server-time"]).command,
            "/opt/perstack-skill/bin/mcp-server-time"
        );
    }

    #[test]
    fn uv_is_installed_and_runs_its_args_as_written_offline_and_without_syncing() {
        let p = prepared("uv", &["run", "--directory", "tools/x", "server.py"]);
        assert_eq!(p.command, "/opt/perstack-skill/bin/uv");
        assert_eq!(p.args, ["run", "--directory", "tools/x", "server.py"]);
        let install = p.install.expect("uv is installed");
        assert_eq!(install.installer, Installer::Uv);
        assert!(
            install.packages.is_empty(),
            "the project comes from skill_files"
        );
        let env: std::collections::BTreeMap<String, String> =
            install.run_env("/p").into_iter().collect();
        assert_eq!(env["UV_PROJECT_ENVIRONMENT"], "/p/uv-project");
        assert_eq!(env["UV_NO_SYNC"], "1");
        assert_eq!(env["UV_OFFLINE"], "1");
        assert_eq!(env["UV_PYTHON_DOWNLOADS"], "never");
        assert_eq!(env["UV_PYTHON"], "python3");
        assert!(pip(&["x"]).expect("pip").run_env("/p").is_empty());
    }

    #[test]
    fn uvx_from_with_and_index_options_shape_the_install() {
        let p = prepared(
            "uvx",
            &[
                "-q",
                "--from",
                "git+https://example.com/tools.git",
                "--with=httpx,rich",
                "--index-url",
                "https://pypi.example.com/simple",
                "serve",
                "--port",
                "1",
            ],
        );
        assert_eq!(
            p.install,
            pip(&[
                "--index-url=https://pypi.example.com/simple",
                "git+https://example.com/tools.git",
                "httpx",
                "rich"
            ])
        );
        assert_eq!(p.command, "/opt/perstack-skill/bin/serve");
        assert_eq!(p.args, ["--port", "1"]);
    }

    #[test]
    fn uvx_options_that_cannot_hold_at_build_time_are_refused_with_what_to_do() {
        let err = prepare(&skill("uvx", &["--python", "3.12", "x"], None)).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("`--python`"), "{text}");
        assert!(text.contains("pythonImage"), "{text}");
        assert_eq!(
            prepare(&skill("uvx", &["--from"], None)),
            Err(PackageError::MissingValue {
                command: "uvx".into(),
                option: "--from".into()
            })
        );
        assert!(matches!(
            prepare(&skill("uvx", &["-q"], None)),
            Err(PackageError::NoPackage { .. })
        ));
        assert!(matches!(
            prepare(&skill("uvx", &["./local/path"], None)),
            Err(PackageError::BadSpec { .. })
        ));
    }

    #[test]
    fn npx_installs_globally_and_runs_the_bin_npx_would_pick() {
        // `-y` is what Perstack adds; the bin is resolved from package.json at build time.
        let p = prepare(&skill(
            "npx",
            &[],
            Some("@modelcontextprotocol/server-filesystem@2025.1.1"),
        ))
        .expect("prepared");
        assert_eq!(
            p,
            Prepared {
                install: Some(Install {
                    installer: Installer::Npm,
                    packages: vec!["@modelcontextprotocol/server-filesystem@2025.1.1".into()],
                    entry_package: Some("@modelcontextprotocol/server-filesystem".into()),
                }),
                command: "/opt/perstack-skill/entry".into(),
                args: vec![],
            }
        );
        let p = prepared("npx", &["-y", "exa-mcp-server", "--tools=web_search"]);
        assert_eq!(
            p.install.as_ref().and_then(|i| i.entry_package.as_deref()),
            Some("exa-mcp-server")
        );
        assert_eq!(p.args, ["--tools=web_search"]);
        // With --package the command names the bin.
        let p = prepared("npx", &["--package=@acme/tools@1", "acme-serve", "x"]);
        assert_eq!(
            p.install,
            Some(Install {
                installer: Installer::Npm,
                packages: vec!["@acme/tools@1".into()],
                entry_package: None,
            })
        );
        assert_eq!(p.command, "/opt/perstack-skill/bin/acme-serve");
        assert_eq!(p.args, ["x"]);
        // URLs and paths are not package names.
        assert!(matches!(
            prepare(&skill("npx", &["-y", "github:acme/tool"], None)),
            Err(PackageError::BadSpec { .. })
        ));
        // A registry is a [sandbox] setting, not an option of one skill.
        let err = prepare(&skill("npx", &["--registry=http://npm.lan/", "y"], None))
            .expect_err("refused");
        assert!(matches!(err, PackageError::UnsupportedOption { .. }));
        assert!(err.to_string().contains("[sandbox] npmRegistry"), "{err}");
    }

    #[test]
    fn python_and_node_with_a_package_name_install_it_other_commands_run_as_written() {
        let p = prepare(&skill("python3", &[], Some("mcp-server-time"))).expect("prepared");
        assert_eq!(p.install, pip(&["mcp-server-time"]));
        assert_eq!(p.command, "/opt/perstack-skill/bin/python3");
        assert_eq!(p.args, ["-m", "mcp_server_time"]);
        let p = prepare(&skill("node", &[], Some("exa-mcp-server"))).expect("prepared");
        assert_eq!(p.command, "/opt/perstack-skill/entry");

        for (command, args) in [
            ("python3", &["-m", "my_server"][..]),
            ("node", &["/srv/server.js"][..]),
            ("perstack-sandbox", &["fixture-mcp"][..]),
            ("/usr/bin/my-server", &["--stdio"][..]),
        ] {
            let p = prepared(command, args);
            assert_eq!(p.install, None, "{command}");
            assert_eq!(p.command, command);
            assert_eq!(p.args, args);
        }
    }
}
