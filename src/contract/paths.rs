//! Where things are inside our images and containers. (The one folder of the workspace that
//! belongs to us, `perstack/`, is `config::workspace::RESERVED_DIR`: perstack.toml's rules
//! refuse it, and `config` is the layer below this one.)

/// Where our binary lives in every image; every role's ENTRYPOINT starts it.
pub(crate) const BINARY_PATH: &str = "/usr/local/bin/perstack-sandbox";
/// Where the runtime image holds its spec, and where the runtime reads it.
pub(crate) const SPEC_PATH: &str = "/etc/perstack-sandbox/runtime.json";
/// Where the trusted CA bundle (`[sandbox] caCertificates`) goes in the image of every
/// container that talks TLS at run time, and where the runtime reads it. A folder of ours, so a
/// base image's own trust store stays as its packages left it.
pub(crate) const CA_BUNDLE_PATH: &str = "/etc/perstack-sandbox/ca-certificates.crt";
/// The variables through which common TLS stacks find a CA bundle: OpenSSL (Python's `ssl`,
/// httpx, Ruby, curl's OpenSSL builds), Go and rustls-native-certs read `SSL_CERT_FILE`;
/// requests reads `REQUESTS_CA_BUNDLE`; Node adds `NODE_EXTRA_CA_CERTS` to its own roots; curl
/// reads `CURL_CA_BUNDLE`, pip `PIP_CERT`, git `GIT_SSL_CAINFO`. Images with the bundle set each
/// to [`CA_BUNDLE_PATH`], and the skill host passes them to the server (they are trust settings,
/// never secrets).
pub(crate) const CA_BUNDLE_VARIABLES: [&str; 6] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
];
/// Where a skill's local files go in its image: the config's folder, mirrored with only the
/// files the skill names (`sandbox::skill_files`); `tools/server.py` beside perstack.toml is
/// `/opt/skill/tools/server.py` here.
pub(crate) const SKILL_FILES_DIR: &str = "/opt/skill";
/// Where a skill's packages are installed in its image (a venv for Python, an npm prefix for
/// Node; `sandbox::packages`), and so where its command starts them from.
pub(crate) const INSTALL_PREFIX: &str = "/opt/perstack-skill";
/// `PATH` for `scratch` images (which have none).
pub(crate) const SCRATCH_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where a skill container sees its socket volume.
pub(crate) const SKILL_SOCKET_DIR: &str = "/run/perstack/skill";
/// Where the runtime sees the socket volumes, one folder per skill.
pub(crate) const RUNTIME_SOCKETS_DIR: &str = "/run/perstack/skills";
/// The socket a skill host listens on, in its socket volume.
pub(crate) const SOCKET_FILE: &str = "mcp.sock";

/// Where base-skill sees the workspace, and where the model is told its files are.
pub(crate) const WORKSPACE_MOUNT: &str = "/workspace";
