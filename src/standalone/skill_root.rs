//! Where each skill's own files live in a standalone image, which holds several skills: a skill's
//! image puts its installed packages at [`INSTALL_PREFIX`] and its local files at
//! [`SKILL_FILES_DIR`], the same paths for every skill; the standalone image moves them under
//! a folder of the skill's own, [`root`] (`/opt/perstack-skills/<name>`), which only that
//! skill's process may read (its Landlock domain, and — when the supervisor runs as root — the
//! folder's owner and mode 0700). The build ([`super::image`]) and the supervisor
//! ([`super::principals`]) relocate the same paths with [`relocate`].
//!
//! A skill's local files (`python3 server.py`, `[sandbox.skills."x"] files`, the manifest beside
//! them) are in `<root>/files` at the paths they had beside perstack.toml. The supervisor has no
//! perstack.toml folder: [`baked_files`] reads them back from there with the same owner of
//! local files the build used (`sandbox::skill_files`), so the plan gets the same command,
//! working directory and install as the build did.

use std::path::Path;

use crate::config::{LoadedConfig, Skill, dotted_path};
use crate::contract::paths::{INSTALL_PREFIX, SKILL_FILES_DIR};
use crate::sandbox::images::{ImageSpec, slug};
use crate::sandbox::skill_files::{self, FilesBySkill};

/// The folder of every skill's own folder.
pub(crate) const SKILLS_DIR: &str = "/opt/perstack-skills";

/// The own folder of the skill whose image's service is `service` (`skill:<name>`); `None` for
/// other images (the runtime's, base tools', the proxy's), which have no files of their own.
pub(crate) fn root(service: &str) -> Option<String> {
    let name = service.strip_prefix("skill:")?;
    Some(format!("{SKILLS_DIR}/{}", slug(name)))
}

/// The own folder of `image`'s skill when it has files of its own there: installed packages or
/// local files.
pub(crate) fn own_folder(image: &ImageSpec) -> Option<String> {
    let local = |path: &str| relocate(path, "") != path;
    let own = !image.install.is_empty() || image.files.iter().any(|f| local(&f.path));
    root(&image.service).filter(|_| own)
}

/// The local files of the stdio skills of `expert`'s closure as this image holds them, read from
/// each skill's `<root>/files` (skills without that folder have none), with `skills_dir` in
/// place of [`SKILLS_DIR`] (tests); the problems of them all, when the image's files do not
/// match its config.
pub(crate) fn baked_files(
    loaded: &LoadedConfig,
    expert: &str,
    skills_dir: &Path,
) -> Result<FilesBySkill, String> {
    let mut found = FilesBySkill::new();
    let mut problems = Vec::new();
    for key in loaded.config.delegation_closure(expert) {
        let Some(skills) = loaded.config.experts.get(&key).map(|e| &e.skills) else {
            continue;
        };
        for stdio in skills.values().filter_map(|skill| match skill {
            Skill::McpStdio(stdio) => Some(stdio),
            _ => None,
        }) {
            let dir = skills_dir.join(slug(&stdio.name)).join("files");
            if !dir.is_dir() {
                continue;
            }
            let at = dotted_path(&["experts", &key, "skills", &stdio.name]);
            match skill_files::collect(&dir, &loaded.config, stdio, &at) {
                Ok(Some(files)) => {
                    found.insert((key.clone(), stdio.name.clone()), files);
                }
                Ok(None) => {}
                Err(more) => problems.extend(
                    more.into_iter()
                        .map(|p| format!("{} ({}): {}", p.at, dir.display(), p.message)),
                ),
            }
        }
    }
    match problems.is_empty() {
        true => Ok(found),
        false => Err(format!(
            "this image's skill files do not match its config; rebuild it with `perstack-sandbox \
             build --standalone`:\n  {}",
            problems.join("\n  ")
        )),
    }
}

/// `text` with every path under a skill image's [`INSTALL_PREFIX`] or [`SKILL_FILES_DIR`] moved
/// under `root` (`<root>/packages`, `<root>/files`). A path counts where it starts the text or
/// follows `=` (`--db-path=/opt/skill/x.db`) and ends there or at a `/`.
pub(crate) fn relocate(text: &str, root: &str) -> String {
    let mut out = text.to_string();
    for (from, to) in [
        (INSTALL_PREFIX, format!("{root}/packages")),
        (SKILL_FILES_DIR, format!("{root}/files")),
    ] {
        out = relocate_one(&out, from, &to);
    }
    out
}

fn relocate_one(text: &str, from: &str, to: &str) -> String {
    let starts = std::iter::once(0).chain(text.match_indices('=').map(|(i, _)| i + 1));
    let Some(at) = starts.into_iter().find(|&i| {
        text[i..]
            .strip_prefix(from)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }) else {
        return text.to_string();
    };
    format!("{}{to}{}", &text[..at], &text[at + from.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skills_paths_move_under_its_own_folder_and_nothing_else_does() {
        let root = root("skill:Time Zone").expect("a skill");
        assert_eq!(root, "/opt/perstack-skills/time-zone");
        assert_eq!(root_of_other_images(), [None, None, None]);
        let moved = |text: &str| relocate(text, &root);
        assert_eq!(
            moved("/opt/perstack-skill/bin/mcp-server-time"),
            "/opt/perstack-skills/time-zone/packages/bin/mcp-server-time"
        );
        assert_eq!(moved("/opt/perstack-skill"), format!("{root}/packages"));
        assert_eq!(moved("/opt/skill/srv"), format!("{root}/files/srv"));
        assert_eq!(
            moved("--db-path=/opt/skill/x.db"),
            format!("--db-path={root}/files/x.db")
        );
        // Paths that only look alike, and paths elsewhere, stay.
        for same in [
            "/opt/skills/x",
            "/opt/perstack-skill-x",
            "/workspace/opt/skill",
            "x/opt/skill",
            "mcp-server-time",
        ] {
            assert_eq!(moved(same), same);
        }
    }

    fn root_of_other_images() -> [Option<String>; 3] {
        ["runtime", "base-skill", "egress-proxy"].map(root)
    }
}

/// The build ([`super::image`]) and the supervisor ([`super::principals`]) put a packaged
/// skill's files in the same place.
#[cfg(test)]
mod agreement {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use bytes::Bytes;

    use crate::config::{Config, Limits, ProviderName, RunSettings, load, load_str};
    use crate::confine::policy::OwnRoot;
    use crate::contract::paths::BINARY_PATH;
    use crate::sandbox::engine::docker::ImageEnv;
    use crate::sandbox::images::recipes::Artifacts;
    use crate::sandbox::plan::{RunPlan, RunRequest, plan};
    use crate::sandbox::skill_files::{FilesBySkill, collect_all};
    use crate::sandbox::versioned::Manifest;
    use crate::standalone::MANIFEST_PATH;
    use crate::standalone::image::{
        RecipeRoots, StandaloneImageError, choose_base, standalone_image,
    };
    use crate::standalone::principals::{AtStart, Identities, Principal, principals};
    use crate::standalone::skill_root::{SKILLS_DIR, baked_files};

    const CONFIG: &str = r#"model = "mock-model"
[sandbox]
pythonImage = "local/python:1"
nodeImage = "local/node:1"
[experts.e]
instruction = "x"
[experts.e.skills.time]
type = "mcpStdioSkill"
command = "uvx"
args = ["mcp-server-time", "--local-timezone=UTC"]
[experts.e.skills.web]
type = "mcpStdioSkill"
command = "npx"
args = ["-y", "@scope/web"]
[experts.e.skills.own]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
"#;

    fn the_plan(text: &str) -> (RunPlan, Manifest) {
        the_plan_with(text, Limits::default())
    }

    fn the_plan_with(text: &str, limits: Limits) -> (RunPlan, Manifest) {
        let config = load_str(Path::new("/cfg/perstack.toml"), text)
            .expect("valid")
            .config;
        planned(config, limits, FilesBySkill::new())
    }

    fn planned(config: Config, limits: Limits, skill_files: FilesBySkill) -> (RunPlan, Manifest) {
        let request = RunRequest {
            run_id: "r".into(),
            job_id: "j".into(),
            expert_key: "e".into(),
            query: "q".into(),
            config: config.clone(),
            settings: RunSettings {
                provider: ProviderName::Mock,
                model: "mock-model".into(),
                max_steps: 3,
                max_retries: 1,
                timeout_ms: 1000,
                reasoning_budget: None,
            },
            workspace: PathBuf::from("/workspace"),
            user: (1000, 1000),
            protected: Default::default(),
            runtime_env: vec![],
            env: BTreeMap::new(),
            mock_script: None,
            skill_files,
            artifacts: Artifacts {
                binary: Bytes::from_static(b"\x7fELF fake"),
                executable: Default::default(),
                ca_bundle: Bytes::from_static(b"PEM"),
            },
            limits,
            oci_runtime: None,
            controller: String::new(),
            resume: None,
            list_tools: false,
        };
        let manifest = Manifest::new(&config, "e", "sha256:0".into(), BTreeMap::new());
        (plan(&request).expect("plan"), manifest)
    }

    /// The supervisor running as root: each principal under a uid of its own.
    const AS_ROOT: Identities = Identities {
        switch: true,
        own: (0, 0),
    };

    /// The supervisor's folder for sockets and homes.
    const STATE: &str = "/run/perstack";

    /// Every process the supervisor starts for `plan` as `identities`, in an image without
    /// recipe roots and with no workspace entry granted read-write.
    fn started(plan: &RunPlan, identities: Identities) -> Vec<Principal> {
        let (roots, found) = (Default::default(), AtStart::default());
        principals(plan, identities, Path::new(STATE), None, &roots, &found).expect("all")
    }

    /// The principal of the plan's `service`.
    fn principal<'a>(all: &'a [Principal], service: &str) -> &'a Principal {
        let found = all.iter().find(|p| p.service == service);
        found.unwrap_or_else(|| panic!("no {service}"))
    }

    /// A skill that reaches out is told where the image's CA bundle is, in every variable common
    /// TLS stacks read (as its own image would set them); a skill without a network and base
    /// tools are told nothing of it. (The supervisor's plan has the bundle from
    /// `prepare::baked_artifacts`.)
    #[test]
    fn only_the_principals_that_talk_tls_are_told_where_the_ca_bundle_is() {
        use crate::contract::paths::{CA_BUNDLE_PATH, CA_BUNDLE_VARIABLES};
        let text = CONFIG.replace(
            "args = [\"-y\", \"@scope/web\"]",
            "args = [\"-y\", \"@scope/web\"]\nallowedDomains = [\"api.example.com\"]",
        );
        let (plan, _) = the_plan(&text);
        let all = started(&plan, AS_ROOT);
        let web = &principal(&all, "skill:web").policy.env;
        for name in CA_BUNDLE_VARIABLES {
            assert_eq!(
                web.get(name).map(String::as_str),
                Some(CA_BUNDLE_PATH),
                "{name}"
            );
        }
        for quiet in ["skill:time", "base-skill"] {
            let env = &principal(&all, quiet).policy.env;
            for name in CA_BUNDLE_VARIABLES {
                assert!(!env.contains_key(name), "{quiet} has {name}");
            }
        }
    }

    /// Asserts that `owner` alone is granted anything in `folder`.
    fn only_granted(all: &[Principal], folder: &Path, owner: &str) {
        for principal in all {
            let granted = principal
                .policy
                .grants()
                .any(|(p, _)| p.starts_with(folder));
            assert_eq!(granted, principal.service == owner, "{}", principal.service);
        }
    }

    #[test]
    fn each_packaged_skill_is_installed_into_and_run_from_its_own_folder() {
        let (plan, manifest) = the_plan(CONFIG);
        // Python and Node: two bases, so one must be named.
        let Err(StandaloneImageError::SeveralBases { bases }) = choose_base(&plan, None) else {
            panic!("two bases need a choice");
        };
        assert!(bases.contains("`local/node:1` (skill:web)"), "{bases}");
        assert!(bases.contains("`local/python:1` (skill:time)"), "{bases}");
        let base = choose_base(&plan, Some("local/both:1")).expect("chosen");
        let image = standalone_image(&plan, &manifest, &base, &Default::default()).expect("image");
        assert_eq!(
            image.labels["io.perstack.sandbox.standalone-base"],
            "local/both:1"
        );
        // Every install stage runs on the chosen base, into the skill's own folder.
        let dockerfile = image.dockerfile();
        for stage in ["install", "install-1"] {
            assert!(dockerfile.contains(&format!("FROM local/both:1 AS {stage}\n")));
        }
        for skill in ["time", "web"] {
            let own = format!("/opt/perstack-skills/{skill}/packages");
            assert!(
                dockerfile.contains(&format!("{own} {own}\n")),
                "{dockerfile}"
            );
        }
        assert!(!dockerfile.contains("/opt/perstack-skill/"), "{dockerfile}");
        // A real base keeps its own users.
        assert!(image.files.iter().all(|f| f.path != "/etc/passwd"));

        let all = started(&plan, AS_ROOT);
        let of = |service: &str| principal(&all, service);
        let time = of("skill:time");
        let own = PathBuf::from("/opt/perstack-skills/time");
        assert!(
            time.argv
                .iter()
                .any(|a| a == "/opt/perstack-skills/time/packages/bin/mcp-server-time"),
            "{:?}",
            time.argv
        );
        assert_eq!(time.own_files.as_ref(), Some(&own));
        assert!(time.policy.filesystem.executable.contains(&own));
        assert!(!time.policy.filesystem.read_write.contains(&own));
        let web = of("skill:web");
        assert!(
            web.argv
                .iter()
                .any(|a| a == "/opt/perstack-skills/web/packages/entry")
        );
        // No principal but the skill itself is granted a skill's folder.
        only_granted(&all, &own, "skill:time");
        // Our own server has no files of its own.
        assert_eq!(of("skill:own").own_files, None);
        assert!(of("skill:own").policy.env.contains_key("PATH"));
    }

    #[test]
    fn each_principal_is_bounded_by_the_run_limits_and_a_skill_by_its_own_uid_s_count() {
        let text = format!(
            "{CONFIG}[experts.e.skills.writer]\ntype = \"mcpStdioSkill\"\ncommand = \
             \"perstack-sandbox\"\nargs = [\"fixture-mcp\"]\n[sandbox.skills.writer]\n\
             workspace = \"read-write\"\n"
        );
        let limits = Limits {
            memory: 512 << 20,
            pids: 64,
            ..Limits::default()
        };
        let (plan, _) = the_plan_with(&text, limits);
        let of = |all: &[Principal], service: &str| principal(all, service).policy.limits;
        let all = started(&plan, AS_ROOT);
        let mib512 = Some(512 << 20);
        let time = of(&all, "skill:time");
        assert_eq!(
            (time.processes, time.data_bytes, time.oom_score_adj),
            (Some(64), mib512, Some(500))
        );
        // Uids shared with the workspace's owner get no count of their own; every process still
        // gets the memory bound. The runtime is not first in line for the OOM killer.
        for shared in ["skill:writer", "base-skill"] {
            let limits = of(&all, shared);
            assert_eq!(limits.processes, None, "{shared}");
            assert_eq!(limits.data_bytes, mib512, "{shared}");
        }
        let runtime = of(&all, "runtime");
        assert_eq!(
            (runtime.processes, runtime.data_bytes, runtime.oom_score_adj),
            (None, mib512, None)
        );
        // Without root every principal shares one uid: no count, no oom_score_adj.
        let user = Identities {
            switch: false,
            own: (1000, 1000),
        };
        let all = started(&plan, user);
        let time = of(&all, "skill:time");
        assert_eq!(
            (time.processes, time.data_bytes, time.oom_score_adj),
            (None, mib512, None)
        );
    }

    const LOCAL: &str = r#"model = "mock-model"
[sandbox]
pythonImage = "local/python:1"
[sandbox.skills."local-py"]
files = ["py/data/"]
[experts.e]
instruction = "x"
[experts.e.skills."local-py"]
type = "mcpStdioSkill"
command = "python3"
args = ["py/server.py", "--greeting=py/data/greeting.txt"]
[experts.e.skills."local-js"]
type = "mcpStdioSkill"
command = "node"
args = ["./js/server.js"]
"#;

    /// A local skill: the build puts its files and the venv of its requirements.txt in its own
    /// folder; the supervisor reads the files back from there and runs what the build prepared,
    /// in the folder the files came from.
    #[test]
    fn a_local_skill_s_files_and_dependencies_live_in_its_own_folder_and_run_from_there() {
        let project = tempfile::tempdir().expect("tempdir");
        let write = |dir: &Path, path: &str, text: &str| {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write(project.path(), "perstack.toml", LOCAL);
        write(project.path(), "py/server.py", "print('hi')\n");
        write(project.path(), "py/requirements.txt", "mcp>=1.2,<2\n");
        write(project.path(), "py/data/greeting.txt", "hello\n");
        write(project.path(), "js/server.js", "console.log(1)\n");
        write(
            project.path(),
            "js/package.json",
            "{\"type\": \"module\"}\n",
        );
        let loaded = load(&project.path().join("perstack.toml")).expect("config");
        let files = collect_all(&loaded, &["e".to_string()]).expect("files");
        let (plan, manifest) = planned(loaded.config.clone(), Limits::default(), files);
        let image =
            standalone_image(&plan, &manifest, "local/both:1", &Default::default()).expect("image");
        let own = "/opt/perstack-skills/local-py";
        let paths: Vec<&str> = image.files.iter().map(|f| f.path.as_str()).collect();
        for file in [
            "py/server.py",
            "py/requirements.txt",
            "py/data/greeting.txt",
        ] {
            assert!(
                paths.contains(&format!("{own}/files/{file}").as_str()),
                "{paths:?}"
            );
        }
        assert!(
            !paths.iter().any(|p| p.starts_with("/opt/skill/")),
            "{paths:?}"
        );
        let dockerfile = image.dockerfile();
        assert!(
            dockerfile.contains(&format!(
                "COPY rootfs{own}/files/py/requirements.txt {own}/files/py/requirements.txt\n"
            )),
            "{dockerfile}"
        );
        assert!(
            dockerfile.contains(&format!("\"-r\",\"{own}/files/py/requirements.txt\"")),
            "{dockerfile}"
        );
        assert!(
            dockerfile.contains(&format!(
                "COPY --from=install {own}/packages {own}/packages\n"
            )),
            "{dockerfile}"
        );

        // A Node folder's package.json is installed in place, its node_modules kept there.
        let js = "/opt/perstack-skills/local-js/files/js";
        assert!(
            dockerfile.contains(&format!(
                "COPY --from=install-1 {js}/node_modules {js}/node_modules\n"
            )),
            "{dockerfile}"
        );
        assert!(
            dockerfile.contains(&format!("COPY rootfs{js}/package.json {js}/package.json\n")),
            "{dockerfile}"
        );

        // The image's skills folder, as the build laid it out, and its config as baked.
        let skills = tempfile::tempdir().expect("tempdir");
        for file in image
            .files
            .iter()
            .filter(|f| f.path.starts_with(SKILLS_DIR))
        {
            let inside = file.path.trim_start_matches("/opt/perstack-skills/");
            let text = String::from_utf8_lossy(&file.contents);
            write(skills.path(), inside, &text);
        }
        let baked = crate::config::LoadedConfig::from_config("this image".into(), loaded.config);
        let files = baked_files(&baked, "e", skills.path()).expect("baked");
        let (plan, _) = planned(baked.config, Limits::default(), files);
        let all = started(&plan, AS_ROOT);
        let skill = principal(&all, "skill:local-py");
        let tail: Vec<&str> = skill.argv.iter().map(String::as_str).collect();
        let tail = &tail[tail.iter().position(|a| *a == "--").expect("--") + 1..];
        assert_eq!(
            tail,
            [
                format!("{own}/packages/bin/python3"),
                format!("{own}/files/py/server.py"),
                format!("--greeting={own}/files/py/data/greeting.txt"),
            ]
        );
        assert_eq!(
            skill.workdir.as_deref(),
            Some(Path::new(&format!("{own}/files/py")))
        );
        assert_eq!(skill.own_files.as_deref(), Some(Path::new(own)));
        let node = principal(&all, "skill:local-js");
        assert_eq!(
            node.argv.last().map(String::as_str),
            Some(&*format!("{js}/server.js"))
        );
        assert_eq!(node.workdir.as_deref(), Some(Path::new(js)));
        // Nobody else is granted its folder.
        only_granted(&all, Path::new(own), "skill:local-py");
    }

    const RECIPE: &str = r#"model = "mock-model"
[sandbox.skills.echo]
dockerfile = "echo/Dockerfile"
[experts.e]
instruction = "x"
[experts.e.skills.echo]
type = "mcpStdioSkill"
command = "python3"
args = ["/srv/echo/server.py"]
requiredEnv = ["ECHO_TOKEN"]
[experts.e.skills.own]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
"#;

    /// A project with `text` as its perstack.toml and the `echo` skill's recipe; the build's
    /// plan of it.
    fn recipe_project(text: &str) -> (tempfile::TempDir, RunPlan, Manifest, Config) {
        let project = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(project.path().join("echo")).expect("mkdir");
        std::fs::write(
            project.path().join("echo/Dockerfile"),
            "FROM local/python:1\nCOPY server.py /srv/echo/server.py\nENV ECHO_PREFIX=echo:\n",
        )
        .expect("write");
        std::fs::write(project.path().join("echo/server.py"), "print(1)\n").expect("write");
        std::fs::write(project.path().join("perstack.toml"), text).expect("write");
        let loaded = load(&project.path().join("perstack.toml")).expect("config");
        let files = collect_all(&loaded, &["e".to_string()]).expect("files");
        let (plan, manifest) = planned(loaded.config.clone(), Limits::default(), files);
        (project, plan, manifest, loaded.config)
    }

    /// A skill built from its own Dockerfile: the build copies the recipe's image whole into the
    /// skill's own folder, puts our binary (exec-only) inside it and records the recipe image's
    /// variables and working directory; the supervisor, from its own plan (no files of the
    /// skill), starts it in that root with Landlock rules inside it and its socket inherited.
    #[test]
    fn a_skill_built_from_its_own_dockerfile_runs_in_its_recipe_s_root() {
        let (_project, plan, manifest, config) = recipe_project(RECIPE);
        // The recipe's image is the skill's root, no base for the others.
        assert_eq!(choose_base(&plan, None).expect("base"), "scratch");
        let recipe = plan
            .images
            .iter()
            .find_map(|i| i.recipe.clone())
            .expect("a recipe");
        let configs = BTreeMap::from([(
            "skill:echo".to_string(),
            ImageEnv {
                env: vec![
                    ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                    ("ECHO_PREFIX".into(), "echo:".into()),
                ],
                workdir: Some("/srv/echo".into()),
            },
        )]);
        let image = standalone_image(&plan, &manifest, "scratch", &configs).expect("image");
        let rootfs = "/opt/perstack-skills/echo/rootfs";
        // Built, not loaded: a load cannot copy another image's files.
        assert!(!image.is_scratch());
        let dockerfile = image.dockerfile();
        assert!(
            dockerfile.contains(&format!("COPY --from={} / {rootfs}/\n", recipe.tag())),
            "{dockerfile}"
        );
        // Our binary inside the root, exec-only, after the copy (so over anything there).
        let binary = format!("{rootfs}{BINARY_PATH}");
        let inside = image
            .files
            .iter()
            .find(|f| f.path == binary)
            .expect("binary");
        assert_eq!(inside.mode, 0o711);
        assert!(dockerfile.find("COPY --from=") < dockerfile.find("COPY rootfs/ /"));
        // The recorded root, in the labels and in the manifest file the supervisor reads.
        let label = &image.labels["io.perstack.sandbox.standalone-roots"];
        let roots: RecipeRoots = serde_json::from_str(label).expect("roots");
        let echo = &roots["skill:echo"];
        assert_eq!(echo.path, rootfs);
        assert_eq!(echo.workdir, "/srv/echo");
        assert_eq!(echo.env[1], ("ECHO_PREFIX".into(), "echo:".into()));
        assert_eq!(echo.entrypoint[..2], [BINARY_PATH, "skill-host"]);
        assert!(
            echo.entrypoint
                .windows(2)
                .any(|w| w == ["--pass-env", "ECHO_PREFIX"])
        );
        assert!(
            echo.entrypoint
                .ends_with(&["python3".into(), "/srv/echo/server.py".into()])
        );
        let file = image
            .files
            .iter()
            .find(|f| f.path == MANIFEST_PATH)
            .expect("manifest");
        assert!(String::from_utf8_lossy(&file.contents).contains("standalone-roots"));

        // The supervisor's plan has no files of the skill; the recorded root decides.
        let baked = crate::config::LoadedConfig::from_config("this image".into(), config);
        let none = tempfile::tempdir().expect("tempdir");
        let files = baked_files(&baked, "e", none.path()).expect("baked");
        let (plan, _) = planned(baked.config, Limits::default(), files);
        let state = Path::new(STATE);
        let all =
            principals(&plan, AS_ROOT, state, None, &roots, &Default::default()).expect("all");
        let skill = principal(&all, "skill:echo");
        assert_eq!(
            skill.policy.root,
            Some(OwnRoot {
                path: rootfs.into(),
                workdir: "/srv/echo".into()
            })
        );
        assert_eq!(skill.argv[..2], [BINARY_PATH, "skill-host"]);
        assert!(
            skill
                .argv
                .ends_with(&["python3".into(), "/srv/echo/server.py".into()])
        );
        assert!(skill.inherits_socket);
        let env = &skill.policy.env;
        assert_eq!(env["ECHO_PREFIX"], "echo:");
        assert_eq!(
            (env["HOME"].as_str(), env["TMPDIR"].as_str()),
            ("/tmp", "/tmp")
        );
        assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
        // Its requiredEnv is passed on to its server, as in its own image.
        assert!(
            skill
                .argv
                .windows(2)
                .any(|w| w == ["--pass-env", "ECHO_TOKEN"])
        );
        // Landlock, inside the root: all of it read and executed, /tmp written, nothing else;
        // its socket folder is outside the root and not granted (the socket is inherited).
        let fs = &skill.policy.filesystem;
        assert_eq!(fs.executable, [PathBuf::from("/")]);
        assert!(fs.read_only.is_empty());
        assert!(fs.read_write.contains(&PathBuf::from("/tmp")));
        assert!(
            fs.read_write
                .iter()
                .all(|p| p == Path::new("/tmp") || p.starts_with("/dev"))
        );
        assert_eq!(skill.home, Path::new(rootfs).join("tmp"));
        assert_eq!(skill.workdir, None);
        let own = Path::new("/opt/perstack-skills/echo");
        assert_eq!(skill.own_files.as_deref(), Some(own));
        // The same confinement as every skill otherwise; nobody else is granted its folder.
        assert!(skill.policy.non_dumpable);
        assert!(skill.uid_gid.0 >= crate::standalone::principals::SKILL_UIDS);
        for principal in all.iter().filter(|p| p.service != "skill:echo") {
            assert!(principal.policy.root.is_none(), "{}", principal.service);
            // Only the base tools, which share the workspace owner's uid, inherit theirs too.
            let shares_a_uid = principal.service.starts_with("base-skill");
            assert_eq!(
                principal.inherits_socket, shares_a_uid,
                "{}",
                principal.service
            );
            assert!(!principal.policy.grants().any(|(p, _)| p.starts_with(own)));
        }
    }

    #[test]
    fn a_skill_granted_the_workspace_read_write_changes_only_its_unprotected_entries() {
        let text = format!(
            "{CONFIG}[sandbox.skills.own]\nworkspace = \"read-write\"\n\
             [sandbox.skills.time]\nworkspace = \"read-only\"\n"
        );
        let (plan, _) = the_plan(&text);
        // What the supervisor computed from the workspace (`confine::workspace`).
        let writable = [
            PathBuf::from("/workspace/src"),
            "/workspace/notes.md".into(),
        ];
        let state = Path::new(STATE);
        let roots = Default::default();
        let found = AtStart {
            writable: writable.to_vec(),
            ..AtStart::default()
        };
        let all = principals(&plan, AS_ROOT, state, None, &roots, &found).expect("all");
        let of = |service: &str| principal(&all, service).policy.filesystem.clone();
        let workspace = Path::new("/workspace");
        let in_workspace = |fs: &crate::confine::policy::FsRules| -> Vec<PathBuf> {
            let rw = fs.read_write.iter().filter(|p| p.starts_with(workspace));
            rw.cloned().collect()
        };
        // Read-write: all of it read, the unprotected entries changed, the tree itself not
        // (it holds `.git` and the run data).
        let own = of("skill:own");
        assert!(own.read_only.iter().any(|p| p == workspace), "{own:?}");
        assert_eq!(in_workspace(&own), writable, "{own:?}");
        // Read-only stays read-only.
        let time = of("skill:time");
        assert!(time.read_only.iter().any(|p| p == workspace), "{time:?}");
        assert!(in_workspace(&time).is_empty(), "{time:?}");
        // The base tools keep the tree: their tools refuse the protected paths and their
        // `exec` narrows its programs' domain itself.
        let base = all.iter().find(|p| p.service.starts_with("base-skill"));
        let base = &base.expect("base tools").policy.filesystem;
        assert_eq!(in_workspace(base), [workspace]);
    }

    #[test]
    fn principals_sharing_the_workspace_owner_s_uid_inherit_sockets_they_cannot_reach() {
        let text = format!("{CONFIG}[sandbox.skills.own]\nworkspace = \"read-only\"\n");
        let (plan, _) = the_plan(&text);
        let all = started(&plan, AS_ROOT);
        let skills = all.iter().filter(|p| p.socket_dir.is_some());
        for principal in skills {
            let shared = principal.uid_gid == (1000, 1000);
            let named = ["skill:own", "base-skill"]
                .iter()
                .any(|s| principal.service.starts_with(s));
            assert_eq!(shared, named, "{}", principal.service);
            // Bound by the supervisor in a folder its uid does not own, and not granted.
            assert_eq!(principal.inherits_socket, shared, "{}", principal.service);
            let dir = principal.socket_dir.as_deref().expect("socket folder");
            let granted = principal.policy.grants().any(|(p, _)| p.starts_with(dir));
            assert_eq!(granted, !shared, "{}", principal.service);
        }
    }

    #[test]
    fn a_workspace_owned_by_an_id_the_image_gives_its_own_principals_is_refused() {
        use crate::contract::users::{PROXY_UID, RUNTIME_GID, RUNTIME_UID};
        use crate::standalone::principals::{FILES_UID, SKILL_UIDS};
        let state = Path::new(STATE);
        let owned_by = |uid: u32, gid: u32| {
            let (mut plan, _) = the_plan(CONFIG);
            for skill in &mut plan.skills {
                if skill.user == "1000:1000" {
                    skill.user = format!("{uid}:{gid}");
                }
            }
            principals(
                &plan,
                AS_ROOT,
                state,
                None,
                &Default::default(),
                &Default::default(),
            )
        };
        for (uid, gid, owner) in [
            (1000, RUNTIME_GID, "the runtime"),
            (RUNTIME_UID, 1000, "the runtime"),
            (PROXY_UID, PROXY_UID, "the egress proxy"),
            (FILES_UID, 1000, "the supervisor's files"),
            (1000, SKILL_UIDS + 1, "a skill"),
        ] {
            let error = owned_by(uid, gid).expect_err("refused");
            for words in [owner, "chown", "multi-container"] {
                assert!(error.contains(words), "{uid}:{gid}: {error}");
            }
        }
        // Root (every capability dropped) and an ordinary user start.
        for (uid, gid) in [(0, 0), (1000, 1000), (SKILL_UIDS + 50, 1000)] {
            owned_by(uid, gid).expect("starts");
        }
    }

    /// [`RECIPE`] with `echo` granted the workspace read-write, a second recipe skill `other`
    /// without a grant and a `uvx` skill `time`.
    fn granted_recipe() -> String {
        let granted = RECIPE.replace(
            "dockerfile = \"echo/Dockerfile\"\n",
            "dockerfile = \"echo/Dockerfile\"\nworkspace = \"read-write\"\n\
             [sandbox.skills.other]\ndockerfile = \"echo/Dockerfile\"\n",
        );
        format!(
            "{granted}[experts.e.skills.other]\ntype = \"mcpStdioSkill\"\ncommand = \"python3\"\n\
             args = [\"/srv/echo/server.py\"]\n[experts.e.skills.time]\ntype = \"mcpStdioSkill\"\n\
             command = \"uvx\"\nargs = [\"mcp-server-time\"]\n"
        )
    }

    /// A recipe skill granted the workspace: the image is built FROM its recipe (no copy of it),
    /// the others as before; the supervisor runs it in the container's root with the recipe's
    /// files it listed, the workspace per its grant, its own home, as the workspace's owner.
    #[test]
    fn a_recipe_skill_granted_the_workspace_is_the_image_s_base_and_runs_in_its_root() {
        let (_project, plan, manifest, config) = recipe_project(&granted_recipe());
        let recipe = plan
            .images
            .iter()
            .find(|i| i.service == "skill:echo")
            .and_then(|i| i.recipe.clone())
            .expect("echo's recipe");
        let base = choose_base(&plan, None).expect("base");
        assert_eq!(base, recipe.tag());
        let configs = BTreeMap::from([(
            "skill:echo".to_string(),
            ImageEnv {
                env: vec![("ECHO_PREFIX".into(), "echo:".into())],
                workdir: Some("/srv/echo".into()),
            },
        )]);
        let image = standalone_image(&plan, &manifest, &base, &configs).expect("image");
        let dockerfile = image.dockerfile();
        assert!(
            dockerfile.contains(&format!("\nFROM {}\n", recipe.tag())),
            "{dockerfile}"
        );
        // The uvx skill installs on the recipe; the ungranted recipe keeps its copied root.
        assert!(dockerfile.starts_with(&format!("FROM {} AS install\n", recipe.tag())));
        assert!(
            dockerfile.contains(" / /opt/perstack-skills/other/rootfs/\n"),
            "{dockerfile}"
        );
        assert!(
            !dockerfile.contains("/opt/perstack-skills/echo"),
            "{dockerfile}"
        );
        assert_eq!(image.roots.len(), 1);
        assert_eq!(image.recipe.as_ref(), Some(&recipe));
        assert_eq!(image.config.user.as_deref(), Some("0:0"));
        assert_eq!(
            image.labels["io.perstack.sandbox.standalone-base"],
            recipe.tag()
        );
        // Our binary at its own path, exec-only; nothing of echo's under its own folder.
        let binary = image.files.iter().find(|f| f.path == BINARY_PATH);
        assert_eq!(
            binary.expect("binary").mode,
            crate::standalone::image::EXEC_ONLY_MODE
        );
        assert!(image.files.iter().all(|f| !f.path.contains("/echo/")));
        let label = &image.labels["io.perstack.sandbox.standalone-roots"];
        let roots: RecipeRoots = serde_json::from_str(label).expect("roots");
        assert!(roots["skill:echo"].is_container_root());
        assert_eq!(
            roots["skill:other"].path,
            "/opt/perstack-skills/other/rootfs"
        );

        let baked = crate::config::LoadedConfig::from_config("this image".into(), config);
        let (plan, _) = planned(baked.config, Limits::default(), FilesBySkill::new());
        let found = AtStart {
            writable: vec!["/workspace/work".into()],
            recipe_files: ["/srv", "/usr", "/etc", "/opt/venv"]
                .map(PathBuf::from)
                .to_vec(),
        };
        let state = Path::new(STATE);
        let all = principals(&plan, AS_ROOT, state, None, &roots, &found).expect("all");
        let echo = principal(&all, "skill:echo");
        assert_eq!(echo.policy.root, None);
        // The workspace owner's uid, which the base tools share: its socket is bound by the
        // supervisor in a folder that uid cannot enter, and inherited.
        assert!(echo.inherits_socket);
        assert_eq!(echo.uid_gid, (1000, 1000));
        assert_eq!(echo.workdir.as_deref(), Some(Path::new("/srv/echo")));
        assert_eq!(echo.policy.env["ECHO_PREFIX"], "echo:");
        let home = echo.home.display().to_string();
        assert!(home.starts_with("/run/perstack/home/"), "{home}");
        assert_eq!(echo.policy.env["HOME"], home);
        assert!(
            echo.argv
                .ends_with(&["python3".into(), "/srv/echo/server.py".into()])
        );
        let fs = &echo.policy.filesystem;
        // The recipe's files not granted already (`/usr` executable, `/etc` read-only), once.
        for path in ["/srv", "/opt/venv", "/usr"] {
            let times = fs
                .executable
                .iter()
                .filter(|p| *p == Path::new(path))
                .count();
            assert_eq!(times, 1, "{path}: {fs:?}");
        }
        assert!(!fs.executable.contains(&PathBuf::from("/etc")), "{fs:?}");
        assert!(
            fs.read_only.contains(&PathBuf::from("/workspace")),
            "{fs:?}"
        );
        assert!(
            fs.read_write.contains(&PathBuf::from("/workspace/work")),
            "{fs:?}"
        );
        assert!(
            !fs.read_write.contains(&PathBuf::from("/workspace")),
            "{fs:?}"
        );
        // Nothing of the other skills' folders, nor all of /run: its home and socket folder.
        for (path, _) in echo.policy.grants() {
            assert!(!path.starts_with("/opt/perstack-skills"), "{path:?}");
            assert!(
                path != Path::new("/run") && path != Path::new("/"),
                "{path:?}"
            );
        }
        assert!(principal(&all, "skill:other").policy.root.is_some());
    }

    #[test]
    fn two_recipe_skills_granted_the_workspace_or_a_chosen_base_beside_one_are_refused() {
        let two = granted_recipe().replace(
            "[sandbox.skills.other]\n",
            "[sandbox.skills.other]\nworkspace = \"read-only\"\n",
        );
        let (_project, plan, manifest, _) = recipe_project(&two);
        let error = standalone_image(&plan, &manifest, "scratch", &BTreeMap::new())
            .expect_err("refused")
            .to_string();
        for words in [
            "skill:echo",
            "skill:other",
            "drop one's grant",
            "run --image REF",
        ] {
            assert!(error.contains(words), "{error}");
        }
        assert!(choose_base(&plan, None).is_err());

        let (_project, plan, _, _) = recipe_project(&granted_recipe());
        let error = choose_base(&plan, Some("local/both:1"))
            .expect_err("refused")
            .to_string();
        assert!(error.contains("--standalone-base local/both:1"), "{error}");
        assert!(error.contains("skill:echo"), "{error}");
    }

    #[test]
    fn a_recipe_skill_that_installs_packages_is_refused() {
        let npx = RECIPE.replace(
            "command = \"python3\"\nargs = [\"/srv/echo/server.py\"]",
            "command = \"npx\"\nargs = [\"-y\", \"@scope/echo\"]",
        );
        let (_project, plan, manifest, _) = recipe_project(&npx);
        let error = standalone_image(&plan, &manifest, "scratch", &BTreeMap::new())
            .expect_err("refused")
            .to_string();
        for words in ["skill:echo", "fetches packages", "in the Dockerfile"] {
            assert!(error.contains(words), "{error}");
        }
    }

    #[test]
    fn skills_on_our_own_root_alone_keep_scratch() {
        let text = CONFIG
            .split("[experts.e.skills.time]")
            .next()
            .expect("head");
        let (plan, _) = the_plan(&format!(
            "{text}[experts.e.skills.own]\ntype = \"mcpStdioSkill\"\ncommand = \"perstack-sandbox\"\nargs = [\"fixture-mcp\"]\n"
        ));
        assert_eq!(choose_base(&plan, None).expect("base"), "scratch");
    }
}
