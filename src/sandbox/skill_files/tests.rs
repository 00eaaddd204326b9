//! The files of whole skills as a config names them: what is copied, how the command is
//! rewritten, the working directory, the manifests, and the problems with their places.

use super::*;
use crate::config::load_str;
use crate::sandbox::preflight::file_problem;

/// A config folder with `files` (path, contents) and `perstack.toml` holding `skills` (TOML of
/// `[experts.e.skills.*]` tables) after a fixed Expert.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new(files: &[(&str, &str)]) -> Folder {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, contents) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, contents).expect("write");
        }
        Folder { dir }
    }

    fn loaded(&self, toml: &str) -> LoadedConfig {
        let text = format!(
            "[sandbox]\npythonImage = \"py\"\nnodeImage = \"node\"\nskillImage = \"any\"\n\
             [experts.e]\ninstruction = \"x\"\n{toml}"
        );
        load_str(&self.dir.path().join("perstack.toml"), &text).expect("valid")
    }

    fn collect(&self, toml: &str) -> Result<FilesBySkill, Vec<String>> {
        let loaded = self.loaded(toml);
        collect_all(&loaded, &["e".to_string()]).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| file_problem(&loaded, p).to_string())
                .collect()
        })
    }

    fn skill(&self, toml: &str, name: &str) -> SkillFiles {
        let mut all = self.collect(toml).expect("no problems");
        all.remove(&("e".to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("{name} has no files"))
    }
}

fn stdio(name: &str, command: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[experts.e.skills.{name}]\ntype = \"mcpStdioSkill\"\ncommand = \"{command}\"\nargs = [{}]\n",
        args.join(", ")
    )
}

fn relatives(files: &SkillFiles) -> Vec<&str> {
    files.files.iter().map(|f| f.relative.as_str()).collect()
}

#[test]
fn a_script_beside_perstack_toml_is_copied_and_the_command_points_at_it() {
    let folder = Folder::new(&[("server.py", "print()"), (".env", "KEY=secret")]);
    let files = folder.skill(&stdio("py", "python3", &["server.py", "--port", "1"]), "py");
    assert_eq!(relatives(&files), ["server.py"]);
    assert_eq!(files.command, "python3");
    assert_eq!(files.args, ["/opt/skill/server.py", "--port", "1"]);
    assert_eq!(files.workdir.as_deref(), Some("/opt/skill"));
    assert_eq!(files.install, None);
    assert!(files.install_files.is_empty());
    assert_eq!(files.files[0].contents, "print()".as_bytes());
}

#[test]
fn files_in_folders_keep_their_place_and_the_skill_works_in_their_folder() {
    let folder = Folder::new(&[
        ("tools/server.js", "1"),
        ("tools/prompts.json", "{}"),
        ("bin/my-server", "#!/bin/sh"),
        ("tools/x/pyproject.toml", "[project]"),
        ("tools/x/main.py", ""),
    ]);
    let toml = [
        stdio("js", "node", &["./tools/server.js"]),
        stdio("bin", "./bin/my-server", &["--stdio"]),
        stdio("uv", "uv", &["run", "--directory", "tools/x", "main.py"]),
        "[sandbox.skills.js]\nfiles = [\"tools/prompts.json\"]\n".to_string(),
    ]
    .concat();
    let js = folder.skill(&toml, "js");
    assert_eq!(relatives(&js), ["tools/prompts.json", "tools/server.js"]);
    assert_eq!(js.args, ["/opt/skill/tools/server.js"]);
    assert_eq!(js.workdir.as_deref(), Some("/opt/skill/tools"));
    let bin = folder.skill(&toml, "bin");
    assert_eq!(bin.command, "/opt/skill/bin/my-server");
    assert_eq!(bin.args, ["--stdio"]);
    assert_eq!(bin.workdir.as_deref(), Some("/opt/skill/bin"));
    // A named folder is copied whole and is the working directory; `main.py` is not a path of
    // the config's folder (it exists only inside tools/x), so it stays as written.
    let uv = folder.skill(&toml, "uv");
    assert_eq!(
        relatives(&uv),
        ["tools/x/main.py", "tools/x/pyproject.toml"]
    );
    assert_eq!(
        uv.args,
        ["run", "--directory", "/opt/skill/tools/x", "main.py"]
    );
    assert_eq!(uv.workdir.as_deref(), Some("/opt/skill/tools/x"));
    // uv is installed into a venv and started from there; the folder's project is synced with
    // all of the skill's files (it may be a package that installs itself).
    assert_eq!(uv.command, "/opt/perstack-skill/bin/uv");
    assert_eq!(
        uv.install,
        Some(Install {
            installer: Installer::Uv,
            packages: vec!["/opt/skill/tools/x".into()],
            entry_package: None,
        })
    );
    assert_eq!(
        uv.install_files,
        ["tools/x/main.py", "tools/x/pyproject.toml"]
    );
}

#[test]
fn uv_with_a_file_names_its_projects_manifests_too_and_without_a_project_installs_uv_alone() {
    let folder = Folder::new(&[
        ("tools/x/pyproject.toml", "[project]"),
        ("tools/x/uv.lock", "version = 1"),
        ("tools/x/.python-version", "3.11"),
        ("tools/x/server.py", ""),
        ("tools/x/other.py", ""),
        ("plain/server.py", ""),
    ]);
    let toml = [
        stdio("file", "uv", &["run", "tools/x/server.py"]),
        stdio("plain", "uv", &["run", "plain/server.py"]),
    ]
    .concat();
    let file = folder.skill(&toml, "file");
    // The file, and the manifests beside it; not the project's other modules (`files` lists
    // those).
    assert_eq!(
        relatives(&file),
        [
            "tools/x/.python-version",
            "tools/x/pyproject.toml",
            "tools/x/server.py",
            "tools/x/uv.lock"
        ]
    );
    assert_eq!(file.args, ["run", "/opt/skill/tools/x/server.py"]);
    assert_eq!(
        file.install.as_ref().map(|i| i.packages.clone()),
        Some(vec!["/opt/skill/tools/x".to_string()])
    );
    let plain = folder.skill(&toml, "plain");
    assert_eq!(plain.command, "/opt/perstack-skill/bin/uv");
    assert_eq!(
        plain.install,
        Some(Install {
            installer: Installer::Uv,
            packages: vec![],
            entry_package: None,
        })
    );
    assert!(plain.install_files.is_empty());
}

#[test]
fn skills_without_local_files_are_left_alone() {
    let folder = Folder::new(&[("data", "")]);
    let toml = [
        stdio(
            "time",
            "uvx",
            &["mcp-server-time", "--local-timezone", "America/New_York"],
        ),
        stdio(
            "db",
            "uvx",
            &["mcp-server-sqlite", "--db-path", "/workspace/x.db"],
        ),
        stdio("bare", "my-server", &["data"]),
    ]
    .concat();
    assert_eq!(folder.collect(&toml), Ok(FilesBySkill::new()));
}

#[test]
fn a_python_folders_requirements_are_installed_into_a_venv_that_runs_the_script() {
    let folder = Folder::new(&[
        ("tools/w/server.py", ""),
        ("tools/w/requirements.txt", "mcp\n"),
    ]);
    let files = folder.skill(&stdio("w", "python3", &["tools/w/server.py"]), "w");
    assert_eq!(
        relatives(&files),
        ["tools/w/requirements.txt", "tools/w/server.py"]
    );
    assert_eq!(files.command, "/opt/perstack-skill/bin/python3");
    assert_eq!(
        files.install,
        Some(Install {
            installer: Installer::Pip,
            packages: vec!["-r".into(), "/opt/skill/tools/w/requirements.txt".into()],
            entry_package: None,
        })
    );
    // Only the manifest goes into the install stage: editing server.py keeps its packages.
    assert_eq!(files.install_files, ["tools/w/requirements.txt"]);
}

#[test]
fn a_node_folders_package_json_and_lockfile_are_installed_in_place() {
    let folder = Folder::new(&[
        ("srv/server.js", ""),
        ("srv/package.json", "{}"),
        ("srv/package-lock.json", "{}"),
    ]);
    let files = folder.skill(&stdio("n", "node", &["srv/server.js"]), "n");
    assert_eq!(
        relatives(&files),
        ["srv/package-lock.json", "srv/package.json", "srv/server.js"]
    );
    assert_eq!(files.command, "node");
    assert_eq!(
        files.install,
        Some(Install {
            installer: Installer::NpmProject,
            packages: vec!["/opt/skill/srv".into()],
            entry_package: None,
        })
    );
}

#[test]
fn missing_escaping_and_listed_paths_are_problems_at_the_word_that_named_them() {
    let folder = Folder::new(&[("ok.py", "")]);
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.py"), "").expect("write");
    std::os::unix::fs::symlink(
        outside.path().join("secret.py"),
        folder.dir.path().join("link.py"),
    )
    .expect("symlink");
    let toml = [
        stdio("gone", "python3", &["-u", "missing.py"]),
        stdio("up", "node", &["../elsewhere/server.js"]),
        stdio("link", "python3", &["link.py"]),
        stdio("listed", "python3", &["ok.py"]),
        "[sandbox.skills.listed]\nfiles = [\"ok.py\", \"nope/\"]\n".to_string(),
    ]
    .concat();
    let problems = folder.collect(&toml).expect_err("problems");
    let path = folder.dir.path().join("perstack.toml");
    let at = |line: usize, col: usize| format!("{}:{line}:{col}: ", path.display());
    assert_eq!(problems.len(), 4, "{problems:#?}");
    // Lines: 6 sandbox/expert header lines, then 4 per skill.
    assert!(problems[0].starts_with(&at(10, 15)), "{}", problems[0]);
    assert!(problems[0].contains("skill `gone`: `missing.py` does not exist in"));
    assert!(problems[1].starts_with(&at(14, 9)), "{}", problems[1]);
    assert!(problems[1].contains("outside"), "{}", problems[1]);
    assert!(
        problems[2].contains("skill `link`: `link.py` resolves to"),
        "{}",
        problems[2]
    );
    assert!(problems[2].contains("outside"), "{}", problems[2]);
    assert!(problems[3].starts_with(&at(24, 19)), "{}", problems[3]);
    assert!(
        problems[3].contains("`nope/` does not exist"),
        "{}",
        problems[3]
    );
}

#[test]
fn only_a_skills_own_files_change_its_image() {
    use crate::sandbox::images::recipes::{Artifacts, skill_image};
    let folder = Folder::new(&[("a.py", "one"), ("b.py", "two")]);
    let toml = [
        stdio("a", "python3", &["a.py"]),
        stdio("b", "python3", &["b.py"]),
    ]
    .concat();
    let digests = |folder: &Folder| {
        let loaded = folder.loaded(&toml);
        let files = collect_all(&loaded, &["e".to_string()]).expect("files");
        let artifacts = Artifacts {
            binary: bytes::Bytes::from_static(b"bin"),
            executable: Default::default(),
            ca_bundle: bytes::Bytes::new(),
        };
        ["a", "b"].map(|name| {
            let Some(Skill::McpStdio(skill)) = loaded.config.experts["e"].skills.get(name) else {
                panic!("no skill {name}");
            };
            let local = files.get(&("e".to_string(), name.to_string()));
            skill_image(&loaded.config, skill, local, &artifacts).digest("sha256:base")
        })
    };
    let before = digests(&folder);
    std::fs::write(folder.dir.path().join("a.py"), "changed").expect("write");
    let after = digests(&folder);
    assert_ne!(before[0], after[0], "editing a.py rebuilds skill a");
    assert_eq!(before[1], after[1], "and nothing else");
    // The same files make the same image.
    assert_eq!(after, digests(&folder));
}

#[test]
fn the_trusted_inputs_are_every_file_of_an_image_and_every_folder_copied_whole() {
    use super::trusted_inputs;
    use crate::trust::inputs::InputKind;
    let folder = Folder::new(&[
        ("tools/s.py", ""),
        ("tools/requirements.txt", ""),
        ("data/a.txt", "a"),
        ("data/deep/b.txt", "b"),
        ("skills/echo/Dockerfile", "FROM x"),
        ("skills/echo/server.py", ""),
    ]);
    let toml = format!(
        "[sandbox.skills.s]\nfiles = [\"data/\"]\n\
         [sandbox.skills.r]\ndockerfile = \"skills/echo/Dockerfile\"\n{}{}",
        stdio("s", "python3", &["tools/s.py"]),
        stdio("r", "python3", &["/srv/server.py"])
    );
    let files = folder.collect(&toml).expect("no problems");
    let named: Vec<(&str, bool)> = files[&("e".to_string(), "s".to_string())]
        .named
        .iter()
        .map(|n| (n.relative.as_str(), n.is_dir))
        .collect();
    assert_eq!(
        named,
        [
            ("data", true),
            ("tools/requirements.txt", false),
            ("tools/s.py", false)
        ]
    );
    let dir = folder.dir.path();
    let inputs: Vec<(InputKind, std::path::PathBuf)> = trusted_inputs(dir, &files)
        .into_iter()
        .map(|i| (i.kind, i.path))
        .collect();
    assert_eq!(
        inputs,
        [
            (InputKind::SkillFolder, dir.join("data")),
            (InputKind::SkillFile, dir.join("data/a.txt")),
            (InputKind::SkillFile, dir.join("data/deep/b.txt")),
            (InputKind::SkillFolder, dir.join("skills/echo")),
            (InputKind::SkillFile, dir.join("skills/echo/Dockerfile")),
            (InputKind::SkillFile, dir.join("skills/echo/server.py")),
            (InputKind::SkillFile, dir.join("tools/requirements.txt")),
            (InputKind::SkillFile, dir.join("tools/s.py")),
        ]
    );
}

#[test]
fn a_uv_skills_image_runs_uv_offline_on_the_synced_environment() {
    use crate::sandbox::images::recipes::{Artifacts, skill_image};
    let folder = Folder::new(&[
        ("tools/x/pyproject.toml", "[project]"),
        ("tools/x/s.py", ""),
    ]);
    let toml = stdio("uv", "uv", &["run", "--directory", "tools/x", "s.py"]);
    let loaded = folder.loaded(&toml);
    let files = collect_all(&loaded, &["e".to_string()]).expect("files");
    let Some(Skill::McpStdio(skill)) = loaded.config.experts["e"].skills.get("uv") else {
        panic!("no skill uv");
    };
    let artifacts = Artifacts {
        binary: bytes::Bytes::from_static(b"bin"),
        executable: Default::default(),
        ca_bundle: bytes::Bytes::new(),
    };
    let local = files.get(&("e".to_string(), "uv".to_string()));
    let image = skill_image(&loaded.config, skill, local, &artifacts);
    // The image sets the variables and the skill host passes them on (it clears every other).
    for (name, value) in [
        ("UV_PROJECT_ENVIRONMENT", "/opt/perstack-skill/uv-project"),
        ("UV_NO_SYNC", "1"),
        ("UV_OFFLINE", "1"),
    ] {
        assert!(
            image
                .config
                .env
                .contains(&(name.to_string(), value.to_string())),
            "{name}: {:?}",
            image.config.env
        );
        let at = image
            .config
            .entrypoint
            .iter()
            .position(|w| w == name)
            .unwrap_or_else(|| panic!("{name} not passed: {:?}", image.config.entrypoint));
        assert_eq!(image.config.entrypoint[at - 1], "--pass-env");
    }
    let server = image
        .config
        .entrypoint
        .iter()
        .position(|w| w == "--")
        .expect("--");
    assert_eq!(
        image.config.entrypoint[server + 1..],
        [
            "/opt/perstack-skill/bin/uv",
            "run",
            "--directory",
            "/opt/skill/tools/x",
            "s.py"
        ]
    );
    assert_eq!(image.install.len(), 1);
    assert_eq!(
        image.install[0].local_files,
        [
            "/opt/skill/tools/x/pyproject.toml",
            "/opt/skill/tools/x/s.py"
        ]
    );
}
