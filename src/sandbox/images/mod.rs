//! What goes into each image we build, its content digest, and how it reaches the engine.
//!
//! Every image is a base (`scratch` unless configured) plus a small root filesystem — our own
//! static binary and a few files — and a config (env, user, workdir, entrypoint). No registry is
//! needed and the image always matches the controller's version.
//!
//! Two layers at most, so that every image shares one copy of the executable: our binary
//! ([`BINARY_PATH`], the same in every image of one controller) is a layer of its own, under
//! the layer of the image's other files. An engine stores a layer once per chain of layers
//! under it, so each image of a run adds only its own few files, not another copy of the
//! executable (measured: ~87 MB per image with a debug build, ~15 MB with a release one).
//!
//! Two ways to the engine, both from in-memory tars through the API:
//! - `scratch` images are *loaded*: an image archive (`docker save`'s format) with the two
//!   layers and the config, one call. On the fuse-overlayfs engines we target this takes
//!   ~0.1 s where a classic build with the same content takes ~5 s, because every Dockerfile
//!   instruction commits a layer; the engine skips a layer it has already.
//! - images on a real base are *built* from a context holding the Dockerfile, `shared/` (the
//!   executable) and `rootfs/`: `COPY shared/ /` straight after `FROM`, so the builder's cache
//!   gives every image on one base the same layer, then the installed packages, then
//!   `COPY rootfs/ /`.
//!
//! A skill whose command fetches packages (`uvx`, `npx`, see `packages.rs`) gets them at build
//! time, in a first build stage (`FROM <base> AS install`) that creates `INSTALL_PREFIX`
//! (`contract::paths`) with the network of the engine's default bridge. The host's CA bundle is in that stage only (`build/ca.pem` in the context, for
//! TLS-intercepting proxies); the image itself starts again `FROM <base>` and copies just the
//! installed prefix, so neither the CA file nor the installers' caches reach any of its layers.
//! A configured package index (`[sandbox] npmRegistry`, `pipIndexUrl`) is an argument of that
//! stage's install step, which exports it for the installer (`npm_config_registry`,
//! `PIP_INDEX_URL`): it is part of the Dockerfile, so of the digest, and the final stage never
//! sees it.
//! The classic builder (API 1.41, no BuildKit needed) supports such multi-stage Dockerfiles; the
//! stage stays behind as an untagged image labelled `skill-install` (and, in `cache-of`, the skill
//! image's repository), which is the engine's build cache: a new controller version rebuilds the
//! skill image without downloading again. `gc --images` keeps the newest of each skill's.
//!
//! Tags are content-addressed: the digest covers the base image's id, the Dockerfile (which spells
//! out the config), every file and the labels, so the same inputs never build twice and changed
//! inputs always do.
//!
//! What each of our images holds — the runtime's, a skill's, base-skill's, the egress proxy's —
//! is in [`recipes`]; which base a skill's image starts from, in [`base`]; a skill's own
//! Dockerfile, built into its base, in [`user_recipe`]. Where things are
//! inside them is the [contract](crate::contract::paths) with the roles that run there.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::{Digest, Sha256};

pub(crate) mod base;
pub(crate) mod recipes;
pub(crate) mod user_recipe;

use super::labels;
use super::packages::{Install, Installer, NODE_ENTRY, UV_PROJECT_DIR};
use crate::contract::paths::BINARY_PATH;
use user_recipe::UserRecipe;

/// The kinds of image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ImageRole {
    /// The agent runtime.
    Runtime,
    /// An MCP skill behind the skill host.
    Skill,
    /// The workspace tools.
    BaseSkill,
    /// The egress proxy.
    EgressProxy,
}

impl ImageRole {
    /// The name used in tags and labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ImageRole::Runtime => "runtime",
            ImageRole::Skill => "skill",
            ImageRole::BaseSkill => "base-skill",
            ImageRole::EgressProxy => "egress-proxy",
        }
    }
}

/// One file of an image's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContextFile {
    /// Absolute path inside the image.
    pub path: String,
    /// Unix mode.
    pub mode: u32,
    /// Contents.
    pub contents: Bytes,
}

/// The image config our images set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageConfig {
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// `uid:gid`, when the image fixes one.
    pub user: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// The entrypoint, exec form.
    pub entrypoint: Vec<String>,
}

/// Everything needed to build (or find) one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageSpec {
    /// What it is for.
    pub role: ImageRole,
    /// The name events use (`runtime`, `skill:<name>`, `base-skill`).
    pub service: String,
    /// Repository part of the tag, e.g. `perstack-sandbox/runtime-demo`.
    pub repository: String,
    /// The base image reference, or `scratch`.
    pub base: String,
    /// The files added on top of the base.
    pub files: Vec<ContextFile>,
    /// Env, user, workdir, entrypoint.
    pub config: ImageConfig,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
    /// Packages installed in build stages of their own (skills run with `uvx`, `npx`, …): one
    /// for a skill's image, one per such skill for a standalone image.
    pub install: Vec<InstallStage>,
    /// The user's recipe that makes `base` (`[sandbox.skills."<name>"] dockerfile`), built
    /// before this image when its tag is missing.
    pub recipe: Option<UserRecipe>,
    /// Recipes whose image's whole root filesystem goes into a folder of this image (a
    /// standalone image's skills built from their own Dockerfile), each built before this image
    /// when its tag is missing.
    pub roots: Vec<CopiedRoot>,
}

/// A recipe's image copied whole into a folder of another image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopiedRoot {
    /// The recipe; its content-addressed tag names the image copied.
    pub recipe: UserRecipe,
    /// The folder it becomes.
    pub into: String,
}

/// A build stage that installs a skill's packages; only `INSTALL_PREFIX` is copied from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstallStage {
    /// What to install, and how.
    pub install: Install,
    /// The host's CA bundle (PEM), trusted by the installers during the build only (empty: none).
    /// Not part of the digest: it never reaches the image.
    pub ca_bundle: Bytes,
    /// The package index to install from (`[sandbox] npmRegistry` or `pipIndexUrl`, by
    /// installer); `None`: the installer's default. Set for the install step only, and part of
    /// the digest: another index may serve other code under the same name.
    pub index: Option<String>,
    /// The skill's local files the install reads (a manifest in its folder), by path in the
    /// image: the stage gets these alone, from the context's `rootfs/`, so a change to another
    /// file finds the stage in the builder's cache.
    pub local_files: Vec<String>,
    /// Where the packages are installed: `INSTALL_PREFIX` in a skill's own image, the skill's
    /// own folder in a standalone image (which holds several skills' packages).
    pub prefix: String,
}

/// The label role of the untagged image the install stage leaves (the engine's build cache).
pub(crate) const INSTALL_STAGE_ROLE: &str = "skill-install";
/// Where the install stage sees the build-only files (the CA bundle).
const BUILD_DIR: &str = "/tmp/perstack-build";

/// The start of the install stage's script for pip and uv: the index and the CA bundle for both
/// installers (uv reads `SSL_CERT_FILE`), then a venv at `INSTALL_PREFIX`. The first argument
/// is the index (or ""), shifted off. pip and uv ignore a plain-HTTP index unless its host is
/// trusted; configuring one is what trusts it.
const VENV_SCRIPT: &str = r#"set -eu
index=$1; shift
if [ -n "$index" ]; then
  export PIP_INDEX_URL="$index" UV_DEFAULT_INDEX="$index"
  case $index in http://*) host=${index#http://}; export PIP_TRUSTED_HOST="${host%%/*}" UV_INSECURE_HOST="${host%%/*}";; esac
fi
ca=@BUILD_DIR@/ca.pem
if [ -s "$ca" ]; then export PIP_CERT="$ca" SSL_CERT_FILE="$ca" REQUESTS_CA_BUNDLE="$ca"; fi
command -v python3 >/dev/null || { echo "perstack-sandbox: the base image has no python3; choose a Python base image ([sandbox] pythonImage)" >&2; exit 1; }
python3 -m venv @PREFIX@ || { echo "perstack-sandbox: python3 -m venv failed; the base image needs the venv module (Debian: python3-venv)" >&2; exit 1; }
pip_install() { @PREFIX@/bin/pip install --no-cache-dir --disable-pip-version-check --no-input --progress-bar off "$@"; }
"#;

/// The rest of the install stage's script for pip (after [`VENV_SCRIPT`]): `pip install "$@"`.
/// Run with `sh -c SCRIPT perstack-install <index or ""> <requirement>…`: the index and the
/// requirements are arguments, never shell text.
const PIP_SCRIPT: &str = r#"pip_install "$@"
rm -rf @BUILD_DIR@
"#;

/// The rest of the install stage's script for uv (after [`VENV_SCRIPT`]): `pip install uv`, then,
/// given a project folder, `uv sync` there into the project environment `uv run` uses at run time
/// (`packages::Install::run_env`), with the base's python whatever `.python-version` asks for
/// (uv never downloads one here: the image chooses the version, as for `uvx`). Run
/// with `sh -c SCRIPT perstack-install <index or ""> <project environment> [<project folder>]`.
const UV_SCRIPT: &str = r#"project_env=$1; shift
pip_install uv
if [ $# -gt 0 ]; then
  cd "$1"
  UV_PROJECT_ENVIRONMENT="$project_env" UV_PYTHON=python3 UV_PYTHON_DOWNLOADS=never \
    UV_CACHE_DIR=/tmp/perstack-uv-cache UV_LINK_MODE=copy \
    @PREFIX@/bin/uv sync --no-progress
fi
rm -rf @BUILD_DIR@ /tmp/perstack-uv-cache
"#;

/// The install stage's script for npm: `npm install -g --prefix` `INSTALL_PREFIX`, then — when
/// the first argument names a package — a link `entry` to the bin `npx` would run: the only
/// one, else the one named like the package. Run with `sh -c SCRIPT perstack-install <registry or
/// ""> <entry or ""> <spec>…`.
const NPM_SCRIPT: &str = r#"set -eu
registry=$1 entry=$2; shift 2
if [ -n "$registry" ]; then export npm_config_registry="$registry"; fi
ca=@BUILD_DIR@/ca.pem
if [ -s "$ca" ]; then export NODE_EXTRA_CA_CERTS="$ca"; fi
command -v npm >/dev/null || { echo "perstack-sandbox: the base image has no npm; choose a Node base image ([sandbox] nodeImage)" >&2; exit 1; }
npm install -g --prefix @PREFIX@ --cache /tmp/perstack-npm-cache --no-audit --no-fund --no-update-notifier "$@"
if [ -n "$entry" ]; then
  bin=$(node -e '
const p = require(process.argv[1] + "/package.json");
const own = p.name.split("/").pop();
let bin = p.bin;
if (typeof bin === "string") bin = { [own]: bin };
const names = Object.keys(bin || {});
const pick = names.length === 1 ? names[0] : names.includes(own) ? own : null;
if (!pick) { console.error(`perstack-sandbox: ${p.name} has ${names.length ? "several bins (" + names.join(", ") + ") and none named " + own : "no bin"}; name the one to run: npx --package ${p.name} <bin>`); process.exit(1); }
console.log(pick);
' "@PREFIX@/lib/node_modules/$entry")
  ln -s "bin/$bin" @PREFIX@/@NODE_ENTRY@
fi
rm -rf @BUILD_DIR@ /tmp/perstack-npm-cache
"#;

/// The install stage's script for a Node skill's own folder (`package.json` among its local
/// files): `npm ci` with a lockfile, else `npm install`, without dev dependencies, leaving
/// `node_modules` in the folder (where `node` looks for it, ESM imports included). Run with
/// `sh -c SCRIPT perstack-install <registry or ""> <folder>`.
const NPM_PROJECT_SCRIPT: &str = r#"set -eu
registry=$1 dir=$2
if [ -n "$registry" ]; then export npm_config_registry="$registry"; fi
ca=@BUILD_DIR@/ca.pem
if [ -s "$ca" ]; then export NODE_EXTRA_CA_CERTS="$ca"; fi
command -v npm >/dev/null || { echo "perstack-sandbox: the base image has no npm; choose a Node base image ([sandbox] nodeImage)" >&2; exit 1; }
cd "$dir"
flags="--omit=dev --cache /tmp/perstack-npm-cache --no-audit --no-fund --no-update-notifier"
if [ -f package-lock.json ] || [ -f npm-shrinkwrap.json ]; then npm ci $flags; else npm install --no-package-lock $flags; fi
mkdir -p node_modules
rm -rf @BUILD_DIR@ /tmp/perstack-npm-cache
"#;

/// An install script with its paths in place: `prefix` for `@PREFIX@`, [`BUILD_DIR`] and
/// [`NODE_ENTRY`] for theirs.
fn fill(script: &str, prefix: &str) -> String {
    script
        .replace("@PREFIX@", prefix)
        .replace("@BUILD_DIR@", BUILD_DIR)
        .replace("@NODE_ENTRY@", NODE_ENTRY)
}

impl InstallStage {
    /// What the image copies from the stage: the install prefix, or a Node folder's
    /// `node_modules`.
    fn installed(&self) -> String {
        match (self.install.installer, self.install.packages.first()) {
            (Installer::NpmProject, Some(dir)) => format!("{dir}/node_modules"),
            _ => self.prefix.clone(),
        }
    }

    /// The name of the `n`th install stage of an image: `install`, then `install-1`, ….
    fn name(n: usize) -> String {
        match n {
            0 => "install".to_string(),
            n => format!("install-{n}"),
        }
    }

    /// The installer's script, installing at [`Self::prefix`]: the scripts above write it
    /// `@PREFIX@`, [`BUILD_DIR`] `@BUILD_DIR@` and [`NODE_ENTRY`] `@NODE_ENTRY@`, so each
    /// path has one definition.
    fn script(&self) -> String {
        let script = match self.install.installer {
            Installer::Pip => format!("{VENV_SCRIPT}{PIP_SCRIPT}"),
            Installer::Uv => format!("{VENV_SCRIPT}{UV_SCRIPT}"),
            Installer::Npm => NPM_SCRIPT.to_string(),
            Installer::NpmProject => NPM_PROJECT_SCRIPT.to_string(),
        };
        fill(&script, &self.prefix)
    }

    /// The `n`th stage's Dockerfile lines, `FROM` included; `repository` is the image's.
    fn dockerfile(&self, n: usize, base: &str, repository: &str) -> String {
        let mut text = format!("FROM {base} AS {}\n", Self::name(n));
        text.push_str(&format!(
            "LABEL {}=true {}={INSTALL_STAGE_ROLE} {}={repository}
",
            labels::MANAGED,
            labels::ROLE,
            labels::CACHE_OF
        ));
        if !self.ca_bundle.is_empty() {
            text.push_str(&format!(
                "COPY build/ {BUILD_DIR}/
"
            ));
        }
        for file in &self.local_files {
            text.push_str(&format!("COPY rootfs{file} {file}\n"));
        }
        let mut run = vec!["/bin/sh".to_string(), "-c".to_string(), self.script()];
        run.push("perstack-install".to_string());
        run.push(self.index.clone().unwrap_or_default());
        match self.install.installer {
            Installer::Npm => run.push(self.install.entry_package.clone().unwrap_or_default()),
            Installer::Uv => run.push(format!("{}/{UV_PROJECT_DIR}", self.prefix)),
            Installer::Pip | Installer::NpmProject => {}
        }
        run.extend(self.install.packages.iter().cloned());
        text.push_str(&format!(
            "RUN {}
",
            exec_form(&run)
        ));
        text
    }
}

/// The build args that give the install stage the controller's proxy settings. Docker predefines
/// these names, so they need no `ARG` and stay out of the image's history.
pub(crate) fn proxy_build_args(
    lookup: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "FTP_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "ftp_proxy",
        "all_proxy",
    ]
    .into_iter()
    .filter_map(|name| {
        lookup(name)
            .filter(|v| !v.is_empty())
            .map(|v| (name.to_string(), v))
    })
    .collect()
}

impl ImageSpec {
    /// True when the image is imported rather than built (see the module docs): on `scratch`,
    /// with nothing copied from another image.
    pub(crate) fn is_scratch(&self) -> bool {
        self.base == "scratch" && self.roots.is_empty()
    }

    /// The config as Dockerfile instructions.
    pub(crate) fn instructions(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.config.env.is_empty() {
            let env: Vec<String> = self
                .config
                .env
                .iter()
                .map(|(k, v)| format!("{k}={}", quote_env(v)))
                .collect();
            lines.push(format!("ENV {}", env.join(" ")));
        }
        if let Some(user) = &self.config.user {
            lines.push(format!("USER {user}"));
        }
        if let Some(workdir) = &self.config.workdir {
            lines.push(format!("WORKDIR {workdir}"));
        }
        if !self.config.entrypoint.is_empty() {
            lines.push(format!("ENTRYPOINT {}", exec_form(&self.config.entrypoint)));
        }
        lines
    }

    /// The Dockerfile that describes this image (and builds it when it has a real base).
    pub(crate) fn dockerfile(&self) -> String {
        let mut text = String::new();
        for (n, stage) in self.install.iter().enumerate() {
            text.push_str(&stage.dockerfile(n, &self.base, &self.repository));
        }
        text.push_str(&format!("FROM {}\n", self.base));
        if !self.shared_files().is_empty() {
            text.push_str("COPY shared/ /\n");
        }
        for (n, stage) in self.install.iter().enumerate() {
            let installed = stage.installed();
            let name = InstallStage::name(n);
            text.push_str(&format!("COPY --from={name} {installed} {installed}\n"));
        }
        for root in &self.roots {
            text.push_str(&format!(
                "COPY --from={} / {}/\n",
                root.recipe.tag(),
                root.into
            ));
        }
        if !self.own_files().is_empty() {
            text.push_str("COPY rootfs/ /\n");
        }
        for line in self.instructions() {
            text.push_str(&line);
            text.push('\n');
        }
        // One LABEL instruction: the builder's `labels` option would commit one layer per label
        // (seconds each on fuse-overlayfs). A load has them in the image config.
        if !self.is_scratch()
            && let Some(line) = self.label_instruction()
        {
            text.push_str(&line);
            text.push('\n');
        }
        text
    }

    fn label_instruction(&self) -> Option<String> {
        (!self.labels.is_empty()).then(|| {
            let labels: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={}", quote_env(v)))
                .collect();
            format!("LABEL {}", labels.join(" "))
        })
    }

    /// The content digest: sha256 over the base image id, the Dockerfile (which names the
    /// packages installed), every file (path, mode, contents) and the labels, each
    /// length-prefixed so no two inputs hash alike. The build-only CA bundle is left out.
    pub(crate) fn digest(&self, base_id: &str) -> String {
        let mut hasher = Sha256::new();
        let mut feed = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        feed(b"perstack-sandbox image v2");
        feed(base_id.as_bytes());
        feed(self.dockerfile().as_bytes());
        for file in &self.files {
            feed(file.path.as_bytes());
            feed(&file.mode.to_le_bytes());
            feed(&file.contents);
        }
        for (k, v) in &self.labels {
            feed(k.as_bytes());
            feed(v.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// The full tag for a given base image id: `<repository>:<first 16 hex digits>`.
    pub(crate) fn tag(&self, base_id: &str) -> String {
        format!("{}:{}", self.repository, &self.digest(base_id)[..16])
    }

    /// The files every image of this controller has alike: the executable.
    fn shared_files(&self) -> Vec<&ContextFile> {
        self.files
            .iter()
            .filter(|f| f.path == BINARY_PATH)
            .collect()
    }

    /// The files of this image alone.
    fn own_files(&self) -> Vec<&ContextFile> {
        self.files
            .iter()
            .filter(|f| f.path != BINARY_PATH)
            .collect()
    }

    /// The layers of a `scratch` image, bottom first: the executable's, then the image's own
    /// files (each left out when it would be empty).
    pub(crate) fn layer_tars(&self) -> std::io::Result<Vec<Vec<u8>>> {
        [self.shared_files(), self.own_files()]
            .into_iter()
            .filter(|files| !files.is_empty())
            .map(|files| {
                let mut builder = tar::Builder::new(Vec::new());
                append_files(&mut builder, "", &files)?;
                builder.into_inner()
            })
            .collect()
    }

    /// The image as an archive in `docker save`'s format, for a load (a `scratch` image): its
    /// [layers](Self::layer_tars), its config (the [instructions](Self::instructions) and the
    /// labels, created at `created`, RFC 3339) and `tag` as its name.
    pub(crate) fn image_archive(&self, tag: &str, created: &str) -> std::io::Result<Vec<u8>> {
        let layers = self.layer_tars()?;
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|layer| format!("sha256:{}", hex::encode(Sha256::digest(layer))))
            .collect();
        let config = serde_json::to_vec(&self.archive_config(&diff_ids, created))
            .map_err(std::io::Error::other)?;
        let config_name = format!("{}.json", hex::encode(Sha256::digest(&config)));
        let layer_names: Vec<String> = diff_ids
            .iter()
            .map(|id| format!("{}/layer.tar", id.trim_start_matches("sha256:")))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": [tag],
            "Layers": layer_names,
        }]))
        .map_err(std::io::Error::other)?;
        let mut builder = tar::Builder::new(Vec::new());
        for (name, layer) in layer_names.iter().zip(&layers) {
            append_entry(&mut builder, name, layer)?;
        }
        append_entry(&mut builder, &config_name, &config)?;
        append_entry(&mut builder, "manifest.json", &manifest)?;
        builder.into_inner()
    }

    /// The image config of a loaded image, as the image spec spells it.
    fn archive_config(&self, diff_ids: &[String], created: &str) -> serde_json::Value {
        let env: Vec<String> = self
            .config
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut config = serde_json::json!({ "Env": env, "Labels": self.labels });
        if let Some(user) = &self.config.user {
            config["User"] = user.clone().into();
        }
        if let Some(workdir) = &self.config.workdir {
            config["WorkingDir"] = workdir.clone().into();
        }
        if !self.config.entrypoint.is_empty() {
            config["Entrypoint"] = self.config.entrypoint.clone().into();
        }
        serde_json::json!({
            "architecture": oci_architecture(),
            "os": "linux",
            "created": created,
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": diff_ids
                .iter()
                .map(|_| serde_json::json!({ "created": created, "created_by": "perstack-sandbox" }))
                .collect::<Vec<_>>(),
        })
    }

    /// The build context (for a build on a real base): the Dockerfile, the install stage's
    /// `build/ca.pem` when there is one, the executable under `shared/` and the image's own
    /// files under `rootfs/`.
    pub(crate) fn context_tar(&self) -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let dockerfile = self.dockerfile();
        append_entry(&mut builder, "Dockerfile", dockerfile.as_bytes())?;
        if let Some(stage) = self.install.iter().find(|s| !s.ca_bundle.is_empty()) {
            let mut h = tar_header(tar::EntryType::Directory, 0o755, 0);
            builder.append_data(&mut h, "build/", std::io::empty())?;
            append_entry(&mut builder, "build/ca.pem", &stage.ca_bundle)?;
        }
        append_files(&mut builder, "shared/", &self.shared_files())?;
        append_files(&mut builder, "rootfs/", &self.own_files())?;
        builder.into_inner()
    }
}

/// A tar header with fixed owner and mtime, so a tar is byte-identical across runs.
fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

/// Appends one regular file (mode 0644) named `name`.
fn append_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    contents: &[u8],
) -> std::io::Result<()> {
    let mut h = tar_header(tar::EntryType::Regular, 0o644, contents.len() as u64);
    builder.append_data(&mut h, name, contents)
}

/// Appends `files` under `prefix`, each after the folders above it (each folder once).
fn append_files(
    builder: &mut tar::Builder<Vec<u8>>,
    prefix: &str,
    files: &[&ContextFile],
) -> std::io::Result<()> {
    let mut dirs: Vec<String> = Vec::new();
    for file in files {
        let relative = file.path.trim_start_matches('/');
        let mut parent = String::new();
        let parts: Vec<&str> = relative.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            parent.push_str(part);
            parent.push('/');
            if !dirs.contains(&parent) {
                dirs.push(parent.clone());
                let mut h = tar_header(tar::EntryType::Directory, 0o755, 0);
                builder.append_data(&mut h, format!("{prefix}{parent}"), std::io::empty())?;
            }
        }
        let mut h = tar_header(
            tar::EntryType::Regular,
            file.mode,
            file.contents.len() as u64,
        );
        builder.append_data(&mut h, format!("{prefix}{relative}"), &file.contents[..])?;
    }
    Ok(())
}

/// The OCI name of the architecture this executable was built for (the one its images run on).
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Quotes a value for `ENV`/`LABEL` when it needs it.
fn quote_env(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/:._-,+@%".contains(c))
    {
        value.to_string()
    } else {
        serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_string())
    }
}

/// A slug safe for image repositories and container names: lowercase `[a-z0-9-]`, at most 40.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let out: String = out.chars().take(40).collect();
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "x".to_string() } else { out }
}

/// Labels every image carries.
pub(crate) fn base_labels(role: ImageRole) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::ROLE.to_string(), role.as_str().to_string()),
        (
            "org.opencontainers.image.vendor".to_string(),
            "perstack-sandbox".to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ])
}

/// A JSON array for Dockerfile exec-form instructions.
pub(crate) fn exec_form(args: &[String]) -> String {
    serde_json::to_string(args).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::paths::INSTALL_PREFIX;

    fn spec(file: &'static [u8]) -> ImageSpec {
        ImageSpec {
            role: ImageRole::Runtime,
            service: "runtime".into(),
            repository: "perstack-sandbox/runtime-x".into(),
            base: "scratch".into(),
            files: vec![ContextFile {
                path: "/usr/local/bin/a".into(),
                mode: 0o755,
                contents: Bytes::from_static(file),
            }],
            config: ImageConfig {
                env: vec![("PATH".into(), "/usr/local/bin".into())],
                user: Some("1:1".into()),
                workdir: None,
                entrypoint: vec!["/usr/local/bin/a".into()],
            },
            labels: BTreeMap::from([("k".to_string(), "v w".to_string())]),
            install: vec![],
            recipe: None,
            roots: vec![],
        }
    }

    #[test]
    fn digest_changes_with_any_input() {
        let a = spec(b"one");
        assert_eq!(a.digest("scratch"), spec(b"one").digest("scratch"));
        assert_ne!(a.digest("scratch"), spec(b"two").digest("scratch"));
        assert_ne!(a.digest("scratch"), a.digest("sha256:other-base"));
        let mut moved = spec(b"one");
        moved.files[0].mode = 0o644;
        assert_ne!(a.digest("scratch"), moved.digest("scratch"));
        let mut user = spec(b"one");
        user.config.user = Some("2:2".into());
        assert_ne!(a.digest("scratch"), user.digest("scratch"));
        assert!(a.tag("scratch").starts_with("perstack-sandbox/runtime-x:"));
        assert_eq!(
            a.tag("scratch").len(),
            "perstack-sandbox/runtime-x:".len() + 16
        );
    }

    #[test]
    fn the_config_is_spelled_as_instructions() {
        let a = spec(b"one");
        assert_eq!(
            a.dockerfile(),
            "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin\nUSER 1:1\nENTRYPOINT [\"/usr/local/bin/a\"]\n"
        );
        let mut on_base = with_executable(spec(b"one"), b"exe");
        on_base.base = "perstack-sandbox/bookworm:local".into();
        assert_eq!(
            on_base.dockerfile(),
            "FROM perstack-sandbox/bookworm:local\nCOPY shared/ /\nCOPY rootfs/ /\nENV PATH=/usr/local/bin\nUSER 1:1\nENTRYPOINT [\"/usr/local/bin/a\"]\nLABEL k=\"v w\"\n"
        );
    }

    fn entries(bytes: &[u8]) -> Vec<(String, u32)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.path().expect("path").display().to_string(),
                    e.header().mode().expect("mode"),
                )
            })
            .collect()
    }

    fn read_entry(bytes: &[u8], name: &str) -> Vec<u8> {
        let mut archive = tar::Archive::new(bytes);
        let mut entry = archive
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry"))
            .find(|e| e.path().expect("path").display().to_string() == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut contents).expect("read");
        contents
    }

    fn with_executable(mut spec: ImageSpec, exe: &'static [u8]) -> ImageSpec {
        spec.files.insert(
            0,
            ContextFile {
                path: BINARY_PATH.into(),
                mode: 0o755,
                contents: Bytes::from_static(exe),
            },
        );
        spec
    }

    #[test]
    fn tars_are_reproducible_and_hold_the_files_with_their_folders() {
        let a = spec(b"one");
        assert_eq!(a.layer_tars().expect("tar"), a.layer_tars().expect("tar"));
        let layers = a.layer_tars().expect("tar");
        assert_eq!(layers.len(), 1, "no executable: one layer");
        assert_eq!(
            entries(&layers[0]),
            [
                ("usr/".to_string(), 0o755),
                ("usr/local/".to_string(), 0o755),
                ("usr/local/bin/".to_string(), 0o755),
                ("usr/local/bin/a".to_string(), 0o755),
            ]
        );
        let context = entries(&a.context_tar().expect("tar"));
        assert_eq!(context[0].0, "Dockerfile");
        assert_eq!(
            context.last().map(|e| e.0.as_str()),
            Some("rootfs/usr/local/bin/a")
        );
    }

    #[test]
    fn the_executable_is_a_layer_of_its_own_that_two_images_share() {
        let runtime = with_executable(spec(b"runtime files"), b"exe");
        let mut skill = with_executable(spec(b"skill files"), b"exe");
        skill.repository = "perstack-sandbox/skill-y".into();
        let (a, b) = (
            runtime.layer_tars().expect("tar"),
            skill.layer_tars().expect("tar"),
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], b[0], "the executable's layer is byte-identical");
        assert_ne!(a[1], b[1]);
        let names: Vec<String> = entries(&a[0]).into_iter().map(|e| e.0).collect();
        assert_eq!(names.last().map(String::as_str), Some(&BINARY_PATH[1..]));
        assert!(entries(&a[1]).iter().all(|e| e.0 != BINARY_PATH[1..]));
        // On a real base: the executable is copied from `shared/`, the rest from `rootfs/`.
        let context = entries(&runtime.context_tar().expect("tar"));
        assert!(
            context
                .iter()
                .any(|e| e.0 == format!("shared{BINARY_PATH}"))
        );
        assert!(
            context
                .iter()
                .all(|e| e.0 != format!("rootfs{BINARY_PATH}"))
        );
    }

    #[test]
    fn the_archive_names_its_layers_by_digest_and_carries_the_config() {
        let a = with_executable(spec(b"one"), b"exe");
        let archive = a
            .image_archive("perstack-sandbox/runtime-x:1", "2026-12-05T00:00:00Z")
            .expect("archive");
        let manifest: serde_json::Value =
            serde_json::from_slice(&read_entry(&archive, "manifest.json")).expect("manifest");
        assert_eq!(manifest[0]["RepoTags"][0], "perstack-sandbox/runtime-x:1");
        let config_name = manifest[0]["Config"].as_str().expect("config name");
        let config_bytes = read_entry(&archive, config_name);
        assert_eq!(
            config_name,
            format!("{}.json", hex::encode(Sha256::digest(&config_bytes)))
        );
        let config: serde_json::Value = serde_json::from_slice(&config_bytes).expect("config");
        let layers = a.layer_tars().expect("layers");
        for (i, layer) in layers.iter().enumerate() {
            let digest = hex::encode(Sha256::digest(layer));
            assert_eq!(config["rootfs"]["diff_ids"][i], format!("sha256:{digest}"));
            assert_eq!(manifest[0]["Layers"][i], format!("{digest}/layer.tar"));
            assert_eq!(&read_entry(&archive, &format!("{digest}/layer.tar")), layer);
        }
        assert_eq!(config["config"]["Env"][0], "PATH=/usr/local/bin");
        assert_eq!(config["config"]["User"], "1:1");
        assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/a");
        assert_eq!(config["config"]["Labels"]["k"], "v w");
        assert_eq!(config["os"], "linux");
    }

    fn with_install(installer: Installer, packages: &[&str], ca: &'static [u8]) -> ImageSpec {
        let mut spec = spec(b"one");
        spec.role = ImageRole::Skill;
        spec.repository = "perstack-sandbox/skill-x".into();
        spec.base = "perstack-sandbox/bookworm:local".into();
        spec.install = vec![InstallStage {
            install: Install {
                installer,
                packages: packages.iter().map(|p| p.to_string()).collect(),
                entry_package: (installer == Installer::Npm).then(|| packages[0].to_string()),
            },
            ca_bundle: Bytes::from_static(ca),
            index: None,
            local_files: vec![],
            prefix: INSTALL_PREFIX.to_string(),
        }];
        spec
    }

    fn with_index(mut spec: ImageSpec, index: &str) -> ImageSpec {
        if let Some(stage) = spec.install.first_mut() {
            stage.index = Some(index.to_string());
        }
        spec
    }

    fn names(tar: Vec<u8>) -> Vec<String> {
        let mut archive = tar::Archive::new(&tar[..]);
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn packages_are_installed_in_a_stage_of_their_own_and_only_the_prefix_is_copied() {
        let pip = with_install(Installer::Pip, &["mcp-server-time"], b"PEM");
        let dockerfile = pip.dockerfile();
        let (stage, image) = dockerfile
            .split_once("FROM perstack-sandbox/bookworm:local\n")
            .expect("a final stage");
        // The stage: labelled (so its leftover image is ours), the CA, one RUN with the
        // requirements as arguments — never as shell text.
        assert!(stage.starts_with(
            "FROM perstack-sandbox/bookworm:local AS install\n\
             LABEL io.perstack.sandbox.managed=true io.perstack.sandbox.role=skill-install \
             io.perstack.sandbox.cache-of=perstack-sandbox/skill-x\n\
             COPY build/ /tmp/perstack-build/\n\
             RUN [\"/bin/sh\",\"-c\",\"set -eu\\n"
        ));
        // No index configured: an empty argument, and pip's default.
        assert!(stage.ends_with("\",\"perstack-install\",\"\",\"mcp-server-time\"]\n"));
        assert!(stage.contains("PIP_CERT"));
        // The image: the installed prefix and our files, nothing from the build context's build/.
        assert_eq!(
            image,
            "COPY --from=install /opt/perstack-skill /opt/perstack-skill\nCOPY rootfs/ /\n\
             ENV PATH=/usr/local/bin\nUSER 1:1\nENTRYPOINT [\"/usr/local/bin/a\"]\n\
             LABEL k=\"v w\"\n"
        );
        assert!(!image.contains("perstack-build"));

        // npm: the package whose bin becomes the entry goes first.
        let npm = with_install(Installer::Npm, &["@scope/server@1"], b"PEM").dockerfile();
        assert!(
            npm.contains("\"perstack-install\",\"\",\"@scope/server@1\",\"@scope/server@1\"]"),
            "{npm}"
        );
        let filled = fill(NPM_SCRIPT, INSTALL_PREFIX);
        let script = serde_json::to_string(&filled).expect("json");
        assert!(npm.contains(&script), "{npm}");
        assert!(filled.contains("NODE_EXTRA_CA_CERTS"));
        assert!(filled.contains("ln -s \"bin/$bin\" /opt/perstack-skill/entry"));
    }

    #[test]
    fn every_install_script_has_its_paths_filled_in() {
        let placeholder = regex::Regex::new("@[A-Z_]+@").expect("regex");
        for script in [
            VENV_SCRIPT,
            PIP_SCRIPT,
            UV_SCRIPT,
            NPM_SCRIPT,
            NPM_PROJECT_SCRIPT,
        ] {
            let filled = fill(script, "/p");
            assert!(!placeholder.is_match(&filled), "{filled}");
            assert!(!filled.contains(INSTALL_PREFIX), "{filled}");
        }
        assert!(fill(VENV_SCRIPT, "/p").contains("python3 -m venv /p ||"));
        assert!(fill(NPM_SCRIPT, "/p").contains("ln -s \"bin/$bin\" /p/entry\n"));
        assert!(fill(NPM_SCRIPT, "/p").contains("ca=/tmp/perstack-build/ca.pem\n"));
    }

    #[test]
    fn uv_is_pip_installed_and_its_project_synced_into_the_environment_uv_run_uses() {
        let uv = with_index(
            with_install(Installer::Uv, &["/opt/skill/tools/x"], b"PEM"),
            "https://mirror.invalid/simple",
        );
        let dockerfile = uv.dockerfile();
        // The index, then where the project environment goes, then the project folder.
        assert!(
            dockerfile.contains(
                "\"perstack-install\",\"https://mirror.invalid/simple\",\
                 \"/opt/perstack-skill/uv-project\",\"/opt/skill/tools/x\"]"
            ),
            "{dockerfile}"
        );
        let script = uv.install[0].script();
        assert!(
            script.starts_with(&fill(VENV_SCRIPT, INSTALL_PREFIX)),
            "{script}"
        );
        // pip and uv both get the index and the CA; uv never downloads a Python.
        for name in [
            "UV_DEFAULT_INDEX",
            "PIP_INDEX_URL",
            "SSL_CERT_FILE",
            "PIP_CERT",
        ] {
            assert!(script.contains(name), "{name}: {script}");
        }
        assert!(script.contains("pip_install uv\n"), "{script}");
        assert!(
            script.contains("UV_PYTHON=python3 UV_PYTHON_DOWNLOADS=never"),
            "{script}"
        );
        assert!(script.contains("uv sync"), "{script}");
        // The same environment as run time's.
        let run_env = uv.install[0].install.run_env(INSTALL_PREFIX);
        assert!(run_env.contains(&(
            "UV_PROJECT_ENVIRONMENT".to_string(),
            "/opt/perstack-skill/uv-project".to_string()
        )));
        assert!(
            dockerfile.contains("COPY --from=install /opt/perstack-skill /opt/perstack-skill\n")
        );
    }

    #[test]
    fn a_skills_own_manifest_is_installed_from_its_files_and_only_what_it_installed_is_kept() {
        let mut npm = with_install(Installer::NpmProject, &["/opt/skill/srv"], b"PEM");
        if let Some(stage) = npm.install.first_mut() {
            stage.install.entry_package = None;
            stage.local_files = vec!["/opt/skill/srv/package.json".into()];
        }
        let dockerfile = npm.dockerfile();
        let (stage, image) = dockerfile
            .split_once("FROM perstack-sandbox/bookworm:local\n")
            .expect("a final stage");
        // The stage sees the skill's files (from the context's rootfs) and runs npm in its
        // folder; the image keeps that folder's node_modules and nothing else of the stage.
        assert!(
            stage.contains("COPY rootfs/opt/skill/srv/package.json /opt/skill/srv/package.json\n"),
            "{stage}"
        );
        assert!(
            stage.ends_with("\"perstack-install\",\"\",\"/opt/skill/srv\"]\n"),
            "{stage}"
        );
        let filled = fill(NPM_PROJECT_SCRIPT, INSTALL_PREFIX);
        assert!(stage.contains(&serde_json::to_string(&filled).expect("json")));
        assert!(NPM_PROJECT_SCRIPT.contains("npm ci $flags"));
        assert!(image.starts_with(
            "COPY --from=install /opt/skill/srv/node_modules /opt/skill/srv/node_modules\n"
        ));
        // pip reads a requirements file the same way, and keeps its venv.
        let mut pip = with_install(Installer::Pip, &["-r", "/opt/skill/requirements.txt"], b"");
        if let Some(stage) = pip.install.first_mut() {
            stage.local_files = vec!["/opt/skill/requirements.txt".into()];
        }
        let dockerfile = pip.dockerfile();
        assert!(
            dockerfile
                .contains("COPY rootfs/opt/skill/requirements.txt /opt/skill/requirements.txt\n")
        );
        assert!(
            dockerfile
                .contains("\"perstack-install\",\"\",\"-r\",\"/opt/skill/requirements.txt\"]")
        );
        assert!(
            dockerfile.contains("COPY --from=install /opt/perstack-skill /opt/perstack-skill\n")
        );
    }

    #[test]
    fn a_configured_index_is_an_argument_of_the_install_step_only_and_part_of_the_digest() {
        let registry = "http://172.17.0.1:4873/";
        let plain = with_install(Installer::Npm, &["@scope/server@1"], b"PEM");
        let npm = with_index(plain.clone(), registry);
        let dockerfile = npm.dockerfile();
        let (stage, image) = dockerfile
            .split_once("FROM perstack-sandbox/bookworm:local\n")
            .expect("a final stage");
        // The registry is the install step's first argument, exported for npm by its script;
        // never an ENV or ARG, and nowhere in the final stage.
        assert!(
            stage.ends_with(&format!(
                "\"perstack-install\",\"{registry}\",\"@scope/server@1\",\"@scope/server@1\"]\n"
            )),
            "{stage}"
        );
        assert!(NPM_SCRIPT.contains(
            "registry=$1 entry=$2; shift 2\n\
             if [ -n \"$registry\" ]; then export npm_config_registry=\"$registry\"; fi\n"
        ));
        assert!(
            !stage.contains("\nENV ") && !stage.contains("\nARG "),
            "{stage}"
        );
        assert!(!image.contains(registry), "{image}");
        // Another index may serve other code under the same name: another image.
        assert_ne!(plain.digest("sha256:base"), npm.digest("sha256:base"));
        assert_ne!(
            npm.digest("sha256:base"),
            with_index(plain.clone(), "https://npm.example.com/").digest("sha256:base")
        );
        assert_eq!(
            npm.digest("sha256:base"),
            with_index(plain, registry).digest("sha256:base")
        );

        // pip: PIP_INDEX_URL, and a plain-HTTP index is trusted (pip ignores it otherwise).
        let index = "http://10.0.0.5:3141/root/pypi/+simple/";
        let pip = with_index(
            with_install(Installer::Pip, &["mcp-server-time"], b""),
            index,
        )
        .dockerfile();
        assert!(
            pip.contains(&format!(
                "\"perstack-install\",\"{index}\",\"mcp-server-time\"]\n"
            )),
            "{pip}"
        );
        assert!(VENV_SCRIPT.contains("export PIP_INDEX_URL=\"$index\""));
        assert!(VENV_SCRIPT.contains(
            "case $index in http://*) host=${index#http://}; export PIP_TRUSTED_HOST=\"${host%%/*}\" UV_INSECURE_HOST=\"${host%%/*}\";; esac"
        ));
    }

    #[test]
    fn the_ca_bundle_is_in_the_build_context_only_and_not_in_the_digest() {
        let a = with_install(Installer::Pip, &["mcp-server-time"], b"PEM one");
        let b = with_install(Installer::Pip, &["mcp-server-time"], b"PEM two");
        assert_eq!(a.digest("sha256:base"), b.digest("sha256:base"));
        // The packages are: another one is another image.
        let c = with_install(Installer::Pip, &["mcp-server-fetch"], b"PEM one");
        assert_ne!(a.digest("sha256:base"), c.digest("sha256:base"));

        let context = names(a.context_tar().expect("tar"));
        assert_eq!(&context[..3], ["Dockerfile", "build/", "build/ca.pem"]);
        assert!(context[3..].iter().all(|n| n.starts_with("rootfs/")));
        let mut archive = tar::Archive::new(std::io::Cursor::new(a.context_tar().expect("tar")));
        let mut ca = archive
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry"))
            .find(|e| e.path().expect("path").ends_with("ca.pem"))
            .expect("ca.pem");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut ca, &mut text).expect("read");
        assert_eq!(text, "PEM one");

        // No CA on the host: no build/ folder and no COPY of it.
        let bare = with_install(Installer::Pip, &["mcp-server-time"], b"");
        assert!(!bare.dockerfile().contains("COPY build/"));
        assert!(
            names(bare.context_tar().expect("tar"))
                .iter()
                .all(|n| !n.starts_with("build"))
        );
        // And images without packages never carry it.
        assert!(
            names(spec(b"one").context_tar().expect("tar"))
                .iter()
                .all(|n| !n.starts_with("build"))
        );
    }

    #[test]
    fn the_proxy_settings_become_build_args_when_set() {
        let env = BTreeMap::from([
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("no_proxy", "localhost"),
            ("HTTP_PROXY", ""),
            ("UNRELATED", "x"),
        ]);
        let args = proxy_build_args(|name| env.get(name).map(|v| v.to_string()));
        assert_eq!(
            args,
            BTreeMap::from([
                ("HTTPS_PROXY".to_string(), "http://proxy:3128".to_string()),
                ("no_proxy".to_string(), "localhost".to_string()),
            ])
        );
    }

    #[test]
    fn slugs_are_docker_safe() {
        assert_eq!(slug("@perstack/base"), "perstack-base");
        assert_eq!(slug("Fitness Assistant!"), "fitness-assistant");
        assert_eq!(slug("--"), "x");
        assert_eq!(slug(&"a".repeat(60)).len(), 40);
    }
}
