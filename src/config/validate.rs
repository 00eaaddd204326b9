//! Perstack's rules on the values of a parsed config (PERSTACK-COMPAT.md §1), plus ours for
//! `[sandbox]`. Each problem becomes a diagnostic at the offending value, or at the key when the
//! key itself is wrong.

use std::path::{Component, Path};

use super::diagnostic::{Pos, Report};
use super::dotted::{child, item};
use super::limits::MIN_MEMORY_BYTES;
use super::net::{UrlProblem, check_public_https_url, check_url};
use super::parse::Locations;
use super::patterns::*;
use super::schema::*;
use super::settings::check_runtime_name;
use super::workspace::RESERVED_DIR;

/// The values of `runtime` Perstack accepts.
const RUNTIMES: [&str; 5] = ["local", "cursor", "claude-code", "gemini", "docker"];
const MAX_INSTRUCTION_CHARS: usize = 20480;
const MAX_DESCRIPTION_CHARS: usize = 2048;

/// Adds a diagnostic to `report` for every rule `config` breaks.
pub(crate) fn validate(config: &Config, locations: &Locations, report: &mut Report) {
    let mut v = Validator { locations, report };
    v.top_level(config);
    if let Some(provider) = &config.provider {
        v.provider(provider);
    }
    for (key, expert) in &config.experts {
        v.expert(config, key, expert);
    }
    v.sandbox(config);
}

struct Validator<'a> {
    locations: &'a Locations,
    report: &'a mut Report,
}

fn quoted_list<'s>(items: impl IntoIterator<Item = &'s str>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| format!("\"{s}\"")).collect();
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

impl Validator<'_> {
    /// Reports at the value of `path`.
    fn at_value(&mut self, path: &str, message: impl Into<String>) {
        let pos = self
            .locations
            .value(path)
            .unwrap_or(Pos { line: 1, col: 1 });
        self.report.push(path, pos, message);
    }

    /// Reports at the key of `path`.
    fn at_key(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.locations.key(path).unwrap_or(Pos { line: 1, col: 1 });
        self.report.push(path, pos, message);
    }

    fn semver(&mut self, path: &str, value: &str) {
        if let Err(e) = semver::Version::parse(value) {
            let message = format!(
                "\"{value}\" is not a valid semver version ({e}); expected MAJOR.MINOR.PATCH like \"1.0.0\""
            );
            self.at_value(path, message);
        }
    }

    fn char_len(&mut self, path: &str, value: &str, max: usize) {
        let len = value.chars().count();
        if len == 0 {
            self.at_value(path, format!("must not be empty (1 to {max} characters)"));
        } else if len > max {
            let message = format!("is {len} characters long; at most {max} are allowed");
            self.at_value(path, message);
        }
    }

    fn https_url(&mut self, path: &str, value: &str, schemes: &[&str]) {
        let wanted = schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(" or ");
        let message = match check_url(value, schemes) {
            Ok(_) => return,
            Err(UrlProblem::Malformed(why)) => {
                format!("\"{value}\" is not a valid URL ({why}); expected an {wanted} URL")
            }
            Err(UrlProblem::Scheme(scheme)) => {
                format!("\"{value}\" uses {scheme}:; expected an {wanted} URL")
            }
            Err(UrlProblem::PrivateHost(why)) => format!("\"{value}\": {why}"),
        };
        self.at_value(path, message);
    }

    fn top_level(&mut self, config: &Config) {
        if let Some(runtime) = &config.runtime
            && !RUNTIMES.contains(&runtime.as_str())
        {
            let message = format!(
                "unknown runtime \"{runtime}\"; expected one of {}",
                RUNTIMES.join(", ")
            );
            self.at_value("runtime", message);
        }
        if config.max_steps == Some(0) {
            self.at_value("maxSteps", "must be at least 1, found 0");
        }
        if let Some(url) = &config.perstack_api_base_url {
            self.https_url("perstackApiBaseUrl", url, &["https"]);
        }
        if config
            .perstack_base_skill_command
            .as_ref()
            .is_some_and(|c| c.first().is_none_or(|program| program.is_empty()))
        {
            let message =
                "must start with the program to run, e.g. [\"node\", \"/opt/base/index.js\"]";
            self.at_value("perstackBaseSkillCommand", message);
        }
    }

    fn provider(&mut self, provider: &ProviderConfig) {
        let info = provider.provider_name.info();
        if !info.is_supported() {
            self.at_value("provider.providerName", info.unsupported_message());
        }
        let setting = &provider.setting;
        if let Some(url) = &setting.base_url {
            let schemes: &[&str] = if info.allows_plain_http() {
                &["http", "https"]
            } else {
                &["https"]
            };
            self.https_url("provider.setting.baseUrl", url, schemes);
        }
        if provider.provider_name == ProviderName::Mock && setting.script.is_none() {
            let message = "the mock provider needs setting.script, the path of its script file \
                           (relative to the folder of perstack.toml)";
            let path = "provider.setting.script";
            // A script of the wrong type was reported already; an absent one points at the table
            // that should hold it.
            let pos = self
                .locations
                .value(path)
                .or_else(|| self.locations.value("provider.setting"))
                .or_else(|| self.locations.value("provider"))
                .unwrap_or(Pos { line: 1, col: 1 });
            self.report.push(path, pos, message);
        }
    }

    fn expert(&mut self, config: &Config, key: &str, expert: &Expert) {
        let path = child("experts", key);
        self.expert_key(&path, key);
        self.semver(&child(&path, "version"), &expert.version);
        self.char_len(
            &child(&path, "instruction"),
            &expert.instruction,
            MAX_INSTRUCTION_CHARS,
        );
        if let Some(description) = &expert.description {
            self.char_len(
                &child(&path, "description"),
                description,
                MAX_DESCRIPTION_CHARS,
            );
        }
        if let Some(version) = &expert.min_runtime_version {
            self.semver(&child(&path, "minRuntimeVersion"), version);
        }
        let tags = child(&path, "tags");
        for (i, tag) in expert.tags.iter().enumerate() {
            if !is_tag(tag) {
                let message = format!(
                    "tag \"{tag}\" does not match {TAG_PATTERN} (lowercase letters, digits, '-' and '_')"
                );
                self.at_value(&item(&tags, i), message);
            }
        }
        let delegates = child(&path, "delegates");
        for (i, delegate) in expert.delegates.iter().enumerate() {
            // A key the file does not define is a published Expert's, resolved from the
            // Registry when a run needs it.
            if !config.experts.contains_key(delegate)
                && let Err(why) = super::key::parse(delegate)
            {
                let message = format!(
                    "delegate \"{delegate}\" is not an Expert defined in this file (defined: {}) \
                     nor a Registry key: {why}",
                    quoted_list(config.experts.keys().map(String::as_str))
                );
                self.at_value(&item(&delegates, i), message);
            }
        }
        let skills = child(&path, "skills");
        for (name, skill) in &expert.skills {
            let skill_path = child(&skills, name);
            match skill {
                Skill::McpStdio(s) => self.stdio_skill(&skill_path, s),
                Skill::McpSse(s) => self.sse_skill(&skill_path, s),
                Skill::Interactive(_) => {}
            }
        }
    }

    /// One diagnostic per bad key, the most specific one: locally a key is also the name, and the
    /// name pattern is the stricter of the two.
    fn expert_key(&mut self, path: &str, key: &str) {
        let message = if !is_expert_key(key) {
            format!(
                "\"{key}\" does not match {EXPERT_NAME_PATTERN} \
                 (lowercase letters, digits, '-' and '_'; an optional @scope/)"
            )
        } else if !is_expert_name(key) {
            format!(
                "\"{key}\" does not match {EXPERT_NAME_PATTERN}: an Expert defined here is named \
                 by its key, which cannot contain '.' or end in @version or @tag (only references \
                 to published Experts can)"
            )
        } else if key.chars().count() > MAX_EXPERT_NAME_LEN {
            format!(
                "Expert name is {} characters long; at most {MAX_EXPERT_NAME_LEN} are allowed",
                key.chars().count()
            )
        } else {
            return;
        };
        self.at_key(path, message);
    }

    fn stdio_skill(&mut self, path: &str, skill: &McpStdioSkill) {
        let name = &skill.name;
        if skill.command.is_empty() {
            self.at_value(&child(path, "command"), "must name a program, e.g. \"npx\"");
        }
        // Neither packageName nor args: Perstack loads the file and fails when the skill
        // starts; preflight refuses the run that needs it (`preflight/skills.rs`).
        if skill.package_name.is_some() && !skill.args.is_empty() {
            let message =
                format!("skill \"{name}\" has both packageName and args; keep only one of them");
            self.at_value(path, message);
        }
        let required_env = child(path, "requiredEnv");
        for (i, var) in skill.required_env.iter().enumerate() {
            if !is_env_name(var) {
                let message = format!(
                    "\"{var}\" is not a valid environment variable name ({ENV_NAME_PATTERN})"
                );
                self.at_value(&item(&required_env, i), message);
            }
        }
        self.allowed_domains(path, &skill.allowed_domains);
    }

    fn sse_skill(&mut self, path: &str, skill: &McpSseSkill) {
        let endpoint = &skill.endpoint;
        let message = match check_public_https_url(endpoint) {
            Ok(_) => None,
            Err(UrlProblem::Malformed(why)) => Some(format!(
                "\"{endpoint}\" is not a valid URL ({why}); expected an https:// URL"
            )),
            Err(UrlProblem::Scheme(scheme)) => Some(format!(
                "\"{endpoint}\" uses {scheme}:; SSE skill endpoints must be https:// URLs"
            )),
            Err(UrlProblem::PrivateHost(why)) => Some(format!(
                "\"{endpoint}\" points at a private or loopback host ({why}); \
                 SSE skill endpoints must be public"
            )),
        };
        if let Some(message) = message {
            self.at_value(&child(path, "endpoint"), message);
        }
        self.allowed_domains(path, &skill.allowed_domains);
    }

    fn allowed_domains(&mut self, skill_path: &str, domains: &[String]) {
        let path = child(skill_path, "allowedDomains");
        for (i, domain) in domains.iter().enumerate() {
            let message = match check_allowed_domain(domain) {
                Ok(()) => continue,
                Err(DomainProblem::Shape) => format!(
                    "\"{domain}\" is not a domain name: expected labels of letters, digits and \
                     '-' joined by '.', with an optional leading \"*.\" (like \"*.github.com\")"
                ),
                Err(DomainProblem::Punycode) => format!(
                    "\"{domain}\" has a punycode (xn--) label; internationalized domains are \
                     rejected because they can imitate other names"
                ),
            };
            self.at_value(&item(&path, i), message);
        }
    }

    fn sandbox(&mut self, config: &Config) {
        let sandbox = &config.sandbox;
        let images = [
            ("workspaceImage", &sandbox.workspace_image),
            ("nodeImage", &sandbox.node_image),
            ("pythonImage", &sandbox.python_image),
            ("skillImage", &sandbox.skill_image),
        ];
        for (key, image) in images {
            if let Some(image) = image {
                self.image(&child("sandbox", key), image);
            }
        }
        let indexes = [
            ("npmRegistry", &sandbox.npm_registry),
            ("pipIndexUrl", &sandbox.pip_index_url),
        ];
        for (key, url) in indexes {
            if let Some(url) = url {
                self.package_index(&child("sandbox", key), url);
            }
        }
        if let Some(ca) = &sandbox.ca_certificates {
            self.ca_certificates(ca);
        }
        if let Some(runtime) = &sandbox.runtime
            && let Err(message) = check_runtime_name(runtime)
        {
            self.at_value("sandbox.runtime", message);
        }
        if let Some(memory) = &sandbox.memory {
            match parse_memory_size(memory) {
                None => {
                    let message = format!(
                        "\"{memory}\" is not a memory size; expected a number of bytes or a \
                         number with a unit, like \"512m\", \"2g\" or \"1.5g\""
                    );
                    self.at_value("sandbox.memory", message);
                }
                Some(bytes) if bytes < MIN_MEMORY_BYTES => {
                    let message =
                        format!("\"{memory}\" is below Docker's minimum memory limit of 6m");
                    self.at_value("sandbox.memory", message);
                }
                Some(_) => {}
            }
        }
        if let Some(cpus) = sandbox.cpus
            && !(cpus.is_finite() && cpus > 0.0)
        {
            let message =
                format!("must be a number of CPUs greater than 0, like 2 or 0.5; found {cpus}");
            self.at_value("sandbox.cpus", message);
        }
        if let Some(pids) = sandbox.pids
            && pids < 1
        {
            self.at_value("sandbox.pids", format!("must be at least 1, found {pids}"));
        }
        for (i, entry) in sandbox.writable.iter().enumerate() {
            self.writable(&item("sandbox.writable", i), entry);
        }
        for (name, skill) in &sandbox.skills {
            let path = child("sandbox.skills", name);
            let exists = config.experts.values().any(|e| e.skills.contains_key(name));
            if !exists {
                let message = format!(
                    "no Expert in this file has a skill named \"{name}\", so these settings would \
                     never apply"
                );
                self.at_key(&path, message);
            }
            if let Some(image) = &skill.image {
                self.image(&child(&path, "image"), image);
            }
            self.skill_files(&path, skill);
        }
    }

    /// `files` and `dockerfile` name paths relative to this file's folder (whether they exist
    /// is checked before a run, `sandbox::skill_files`); a Dockerfile makes the base image, so
    /// `image` cannot be set beside it.
    fn skill_files(&mut self, path: &str, skill: &SandboxSkill) {
        for (i, file) in skill.files.iter().enumerate() {
            let at = item(&child(path, "files"), i);
            if file.trim().is_empty() {
                self.at_value(
                    &at,
                    "must name a file or folder, relative to this file's folder",
                );
            } else if file.starts_with('/') {
                let message = format!(
                    "\"{file}\" is absolute; name files relative to this file's folder (they are copied from there into the skill's image)"
                );
                self.at_value(&at, message);
            }
        }
        if let Some(dockerfile) = &skill.dockerfile {
            let at = child(path, "dockerfile");
            if dockerfile.trim().is_empty() || dockerfile.starts_with('/') {
                self.at_value(
                    &at,
                    "must name a Dockerfile relative to this file's folder, like \"skills/x/Dockerfile\"",
                );
            } else if skill.image.is_some() {
                self.at_key(
                    &at,
                    "`dockerfile` builds this skill's base image, so `image` cannot be set as well; keep one",
                );
            }
        }
    }

    /// A protected path made writable: a plain path inside the workspace, and never the
    /// controller's run data.
    fn writable(&mut self, path: &str, value: &str) {
        let plain = Path::new(value);
        let components: Vec<Component<'_>> = plain
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect();
        let reserved = components.first().is_some_and(|c| {
            c.as_os_str()
                .to_string_lossy()
                .eq_ignore_ascii_case(RESERVED_DIR)
        });
        let message = if components.is_empty() {
            "must name a path in the workspace, like \".git\"".to_string()
        } else if !components.iter().all(|c| matches!(c, Component::Normal(_))) {
            format!(
                "\"{value}\" must be relative to the workspace and stay inside it (no `/` at the \
                 start, no `..`), like \".git\""
            )
        } else if reserved {
            format!(
                "\"{value}\" is the controller's run data ({RESERVED_DIR}/), which runs can never \
                 write"
            )
        } else {
            return;
        };
        self.at_value(path, message);
    }

    /// A registry or index URL for image builds: http(s), any host (mirrors are often on the
    /// LAN), and no credentials, which would be kept in the install stage's image and history.
    fn package_index(&mut self, path: &str, value: &str) {
        match check_url(value, &["http", "https"]) {
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                let message = format!(
                    "\"{value}\" carries credentials, which would be stored in the image build's \
                     history; use a mirror that the build network may read without them"
                );
                self.at_value(path, message);
            }
            Ok(_) => {}
            Err(_) => self.https_url(path, value, &["http", "https"]),
        }
    }

    /// `"host"` or a file's path; reading the file is for the run (`commands/artifacts.rs`).
    fn ca_certificates(&mut self, value: &str) {
        const PATH: &str = "sandbox.caCertificates";
        if value.trim().is_empty() {
            self.at_value(
                PATH,
                "must be \"host\" (the host's system bundle) or the path of a PEM bundle, like \
                 \"certs/corporate-ca.pem\"",
            );
        } else if value.contains("://") {
            let message = format!(
                "\"{value}\" is a URL; caCertificates takes \"host\" or the path of a PEM file \
                 (download the bundle and name the file)"
            );
            self.at_value(PATH, message);
        }
    }

    fn image(&mut self, path: &str, image: &str) {
        if image.trim().is_empty() {
            self.at_value(path, "must name an image, like \"node:22-bookworm-slim\"");
        } else if image.chars().any(char::is_whitespace) {
            let message = format!("\"{image}\" is not an image reference: it contains whitespace");
            self.at_value(path, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::problems;

    fn provider(name: &str, setting: &str) -> Vec<String> {
        problems(&format!(
            "[provider]\nproviderName = \"{name}\"\n[provider.setting]\n{setting}\n"
        ))
    }

    #[test]
    fn only_ollama_may_use_plain_http() {
        assert!(provider("ollama", "baseUrl = \"http://localhost:11434\"").is_empty());
        assert!(provider("ollama", "baseUrl = \"https://ollama.example.com\"").is_empty());
        assert_eq!(
            provider("ollama", "baseUrl = \"ftp://host\""),
            [
                "4:11 provider.setting.baseUrl: \"ftp://host\" uses ftp:; expected an http:// or https:// URL"
            ]
        );
        assert_eq!(
            provider("deepseek", "baseUrl = \"http://api.deepseek.com\""),
            [
                "4:11 provider.setting.baseUrl: \"http://api.deepseek.com\" uses http:; expected an https:// URL"
            ]
        );
        // Private hosts are fine for a provider: a company gateway often is one.
        assert!(provider("anthropic", "baseUrl = \"https://10.0.0.2/v1\"").is_empty());
    }

    #[test]
    fn bedrock_and_vertex_are_refused_at_provider_name() {
        for name in ["amazon-bedrock", "google-vertex"] {
            assert_eq!(
                problems(&format!("[provider]\nproviderName = \"{name}\"\n")),
                [format!(
                    "2:16 provider.providerName: provider `{name}` is not supported yet by \
                     perstack-sandbox; use anthropic, openai, google, deepseek, ollama or azure-openai"
                )]
            );
        }
        for name in [
            "anthropic",
            "openai",
            "google",
            "deepseek",
            "ollama",
            "azure-openai",
        ] {
            assert!(problems(&format!("[provider]\nproviderName = \"{name}\"\n")).is_empty());
        }
    }

    #[test]
    fn the_mock_provider_needs_a_script_string() {
        assert!(provider("mock", "script = \"script.json\"").is_empty());
        assert_eq!(
            provider("mock", "script = 1"),
            ["4:10 provider.setting.script: expected a string, found an integer"]
        );
        let got = provider("mock", "");
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("3:1 provider.setting.script: the mock provider needs"),
            "{got:?}"
        );
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let instruction = "é".repeat(20480);
        let text = format!(
            "[experts.a]\ninstruction = \"{instruction}\"\ndescription = \"{}\"\n",
            "ü".repeat(2048)
        );
        assert!(problems(&text).is_empty());
    }

    #[test]
    fn expert_keys_get_one_message_each() {
        assert!(problems("[experts.\"@my-org/my_expert-2\"]\ninstruction = \"x\"\n").is_empty());
        let got = problems("[experts.\"a.b@1.0.0\"]\ninstruction = \"x\"\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("cannot contain '.' or end in @version or @tag"),
            "{got:?}"
        );
    }

    #[test]
    fn sandbox_values() {
        let sandbox = |body: &str| problems(&format!("[sandbox]\n{body}\n"));
        for ok in [
            "memory = \"6m\"",
            "memory = \"2GiB\"",
            "memory = \"1073741824\"",
            "cpus = 0.5",
            "pids = 1",
        ] {
            assert!(sandbox(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            sandbox("memory = \"1m\""),
            ["2:10 sandbox.memory: \"1m\" is below Docker's minimum memory limit of 6m"]
        );
        assert_eq!(
            sandbox("cpus = inf"),
            ["2:8 sandbox.cpus: must be a number of CPUs greater than 0, like 2 or 0.5; found inf"]
        );
        assert_eq!(sandbox("cpus = -1.5").len(), 1);
        for ok in [
            "npmRegistry = \"http://172.17.0.1:4873/\"",
            "npmRegistry = \"https://npm.example.com/repository/npm-proxy/\"",
            "pipIndexUrl = \"https://pypi.example.com/simple\"",
            "pipIndexUrl = \"http://10.0.0.5:3141/root/pypi/+simple/\"",
        ] {
            assert!(sandbox(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            sandbox("npmRegistry = \"npm.example.com\""),
            [
                "2:15 sandbox.npmRegistry: \"npm.example.com\" is not a valid URL (relative URL \
                 without a base); expected an http:// or https:// URL"
            ]
        );
        assert_eq!(
            sandbox("pipIndexUrl = \"file:///srv/wheels\""),
            [
                "2:15 sandbox.pipIndexUrl: \"file:///srv/wheels\" uses file:; expected an http:// or \
                 https:// URL"
            ]
        );
        assert_eq!(
            sandbox("npmRegistry = \"https://ci:s3cret@npm.example.com/\""),
            [
                "2:15 sandbox.npmRegistry: \"https://ci:s3cret@npm.example.com/\" carries \
                 credentials, which would be stored in the image build's history; use a mirror \
                 that the build network may read without them"
            ]
        );
        assert_eq!(
            sandbox("pipIndexUrl = 3"),
            ["2:15 sandbox.pipIndexUrl: expected a string, found an integer"]
        );
        assert_eq!(
            sandbox("pids = 99999999999999999999"),
            ["2:8 sandbox.pids: 99999999999999999999 is out of range for a 64-bit integer"]
        );
    }

    #[test]
    fn writable_names_plain_workspace_paths_but_never_the_run_data() {
        let sandbox = |body: &str| problems(&format!("[sandbox]\n{body}\n"));
        assert!(sandbox("writable = [\".git\", \"./.env\", \"conf/dev.env\"]").is_empty());
        assert_eq!(
            sandbox("writable = [\"\", \"/etc\", \"../x\", \"Perstack/jobs\", 3]"),
            ["2:50 sandbox.writable[4]: expected a string, found an integer"]
        );
        assert_eq!(
            sandbox("writable = [\"\", \"/etc\", \"a/../../x\", \"Perstack/jobs\"]"),
            [
                "2:13 sandbox.writable[0]: must name a path in the workspace, like \".git\"",
                "2:17 sandbox.writable[1]: \"/etc\" must be relative to the workspace and stay \
                 inside it (no `/` at the start, no `..`), like \".git\"",
                "2:25 sandbox.writable[2]: \"a/../../x\" must be relative to the workspace and \
                 stay inside it (no `/` at the start, no `..`), like \".git\"",
                "2:38 sandbox.writable[3]: \"Perstack/jobs\" is the controller's run data \
                 (perstack/), which runs can never write"
            ]
        );
    }

    #[test]
    fn a_workspace_grant_is_read_only_or_read_write() {
        let skill = |value: &str| {
            problems(&format!(
                "[experts.\"a\"]\ninstruction = \"x\"\n[experts.\"a\".skills.\"git\"]\n\
                 type = \"mcpStdioSkill\"\ncommand = \"uvx\"\nargs = [\"mcp-server-git\"]\n\
                 [sandbox.skills.\"git\"]\nworkspace = {value}\n"
            ))
        };
        assert!(skill("\"read-only\"").is_empty());
        assert!(skill("\"read-write\"").is_empty());
        assert_eq!(
            skill("\"rw\""),
            [
                "8:13 sandbox.skills.git.workspace: \"rw\" is not a workspace grant; \
                 expected \"read-only\" or \"read-write\" (leave it out for no workspace)"
            ]
        );
        assert_eq!(
            skill("true"),
            ["8:13 sandbox.skills.git.workspace: expected a string, found a boolean"]
        );
    }

    #[test]
    fn ca_certificates_is_host_or_a_path() {
        let sandbox = |body: &str| problems(&format!("[sandbox]\n{body}\n"));
        for ok in [
            "caCertificates = \"host\"",
            "caCertificates = \"certs/corporate-ca.pem\"",
            "caCertificates = \"/etc/pki/tls/certs/ca-bundle.crt\"",
        ] {
            assert!(sandbox(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            sandbox("caCertificates = \" \""),
            [
                "2:18 sandbox.caCertificates: must be \"host\" (the host's system bundle) or the \
                 path of a PEM bundle, like \"certs/corporate-ca.pem\""
            ]
        );
        assert_eq!(
            sandbox("caCertificates = \"https://ca.example.com/bundle.pem\""),
            [
                "2:18 sandbox.caCertificates: \"https://ca.example.com/bundle.pem\" is a URL; \
                 caCertificates takes \"host\" or the path of a PEM file (download the bundle \
                 and name the file)"
            ]
        );
        assert_eq!(
            sandbox("caCertificates = true"),
            ["2:18 sandbox.caCertificates: expected a string, found a boolean"]
        );
    }

    #[test]
    fn sandbox_skill_names_may_name_the_implicit_base_skill() {
        let text = "[experts.a]\ninstruction = \"x\"\n[sandbox.skills.\"@perstack/base\"]\nimage = \"debian\"\n";
        assert!(problems(text).is_empty());
    }

    #[test]
    fn the_base_skill_command_must_name_a_program() {
        assert!(problems("perstackBaseSkillCommand = [\"node\", \"base.js\"]").is_empty());
        assert_eq!(problems("perstackBaseSkillCommand = [\"\"]").len(), 1);
    }

    #[test]
    fn delegates_to_self_and_to_later_experts_are_fine() {
        let text = "[experts.a]\ninstruction = \"x\"\ndelegates = [\"a\", \"b\"]\n[experts.b]\ninstruction = \"y\"\n";
        assert!(problems(text).is_empty());
    }

    #[test]
    fn an_endpoint_problem_and_a_domain_problem_are_both_reported() {
        let text = "[experts.a]\ninstruction = \"x\"\n[experts.a.skills.s]\ntype = \"mcpSseSkill\"\n\
                    endpoint = \"https://[::1]/\"\nallowedDomains = [\"xn--e1afmkfd.xn--p1ai\"]\n";
        let got = problems(text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with("5:12 experts.a.skills.s.endpoint:"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("6:19 experts.a.skills.s.allowedDomains[0]:"),
            "{got:?}"
        );
        assert!(got[1].contains("punycode"), "{got:?}");
    }
}
