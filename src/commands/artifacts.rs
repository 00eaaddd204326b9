//! The files every image is made of: our own executable and the CA bundle chosen by
//! `[sandbox] caCertificates` / `--ca-certificates` (the host's system bundle by default).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::image_executable::Chosen;
use crate::config::{CaCertificates, CaSetting, SettingSource};
use crate::sandbox::ca_bundle::{self, Certificate};
use crate::sandbox::images::recipes::Artifacts;

/// Where distributions keep their system bundle, in the order they are tried when
/// `SSL_CERT_FILE` is not set: Debian/Ubuntu/Arch/Gentoo, Fedora/RHEL, openSUSE, OpenELEC,
/// CentOS/RHEL 7, Alpine/macOS/FreeBSD (the list Go's `crypto/x509` looks through).
pub(super) const SYSTEM_BUNDLES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Why the artifacts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Our own executable could not be read.
    #[error("cannot read this program's executable {path}: {source}")]
    Executable {
        /// Its path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The executable is dynamically linked and would not start in a `scratch` image.
    #[error(
        "{path} is dynamically linked, so it cannot run inside the containers it builds\n  hint: build it with the repository's .cargo/config.toml (static, `--target x86_64-unknown-linux-gnu`), e.g. `make build`"
    )]
    NotStatic {
        /// Its path.
        path: String,
    },
    /// The chosen CA bundle cannot be read or holds no certificate.
    #[error("the CA bundle {path} ({chosen}) cannot be used: {why}\n  hint: {hint}")]
    CaBundle {
        /// The file.
        path: String,
        /// Who chose it: the flag, the setting with its place, the host's default.
        chosen: String,
        /// What is wrong with it.
        why: String,
        /// What to do.
        hint: String,
    },
    /// `host` was asked for explicitly and the host has no system bundle.
    #[error(
        "no system CA bundle on this host ({chosen}): SSL_CERT_FILE is not set and none of {} exists\n  hint: point --ca-certificates or [sandbox] caCertificates at a PEM bundle",
        SYSTEM_BUNDLES.join(", ")
    )]
    NoHostBundle {
        /// Who asked for it.
        chosen: String,
    },
}

/// The artifacts, and the note to show when the images get the whole controller
/// ([`Chosen::note`]).
pub(super) struct Loaded {
    /// The files.
    pub artifacts: Artifacts,
    /// Why the images carry this whole executable, when they do.
    pub note: Option<String>,
}

/// Reads the executable our images carry (checking it is static) and the chosen CA bundle.
pub(super) fn load(ca: &CaSetting) -> Result<Loaded, ArtifactError> {
    let chosen = executable()?;
    Ok(Loaded {
        note: chosen.note(),
        artifacts: Artifacts {
            binary: chosen.bytes,
            executable: chosen.executable,
            ca_bundle: ca_bundle(ca)?.pem,
        },
    })
}

/// The executable our images carry: the roles executable of this build beside ours, else ours
/// (`image_executable.rs`), checked to be static.
pub(super) fn executable() -> Result<Chosen, ArtifactError> {
    let own = std::env::current_exe().map_err(|source| ArtifactError::Executable {
        path: "(current executable)".into(),
        source,
    })?;
    super::image_executable::choose(&own)
}

/// A CA bundle as read for a run.
#[derive(Debug, Clone)]
pub(super) struct LoadedBundle {
    /// The file it came from; `None` when the host has none (then it is empty).
    pub path: Option<PathBuf>,
    /// Its PEM text, as read.
    pub pem: Bytes,
    /// Its certificates.
    pub certificates: Vec<Certificate>,
}

/// Reads the chosen bundle and checks it holds certificates. The host's bundle is optional when
/// nobody chose it (a host without one can still run Experts that need no TLS), required when
/// `host` was asked for.
pub(super) fn ca_bundle(ca: &CaSetting) -> Result<LoadedBundle, ArtifactError> {
    let chosen = chosen_by(ca);
    let path = match &ca.bundle {
        CaCertificates::File(path) => path.clone(),
        CaCertificates::Host => match host_bundle_path(|k| std::env::var_os(k), |p| p.is_file()) {
            Some(path) => path,
            None if ca.source == SettingSource::Default => {
                return Ok(LoadedBundle {
                    path: None,
                    pem: Bytes::new(),
                    certificates: vec![],
                });
            }
            None => return Err(ArtifactError::NoHostBundle { chosen }),
        },
    };
    let refuse = |why: String, hint: &str| ArtifactError::CaBundle {
        path: path.display().to_string(),
        chosen: chosen.clone(),
        why,
        hint: hint.to_string(),
    };
    let pem = std::fs::read(&path).map_err(|e| {
        refuse(
            e.to_string(),
            "name a readable PEM file, or `host` for the host's system bundle",
        )
    })?;
    let certificates = ca_bundle::certificates(&pem).map_err(|e| {
        refuse(
            e.to_string(),
            "a bundle is PEM text: one or more -----BEGIN CERTIFICATE----- blocks (convert DER \
             with `openssl x509 -inform der -in ca.der -out ca.pem`)",
        )
    })?;
    Ok(LoadedBundle {
        path: Some(path),
        pem: Bytes::from(pem),
        certificates,
    })
}

/// Who chose the bundle, in words.
pub(super) fn chosen_by(ca: &CaSetting) -> String {
    match &ca.source {
        SettingSource::CommandLine => "--ca-certificates".to_string(),
        SettingSource::File(Some(at)) => format!("[sandbox] caCertificates at {at}"),
        SettingSource::File(None) => "[sandbox] caCertificates".to_string(),
        SettingSource::Default => match std::env::var_os("SSL_CERT_FILE") {
            Some(_) => "the host's bundle, from SSL_CERT_FILE".to_string(),
            None => "the host's system bundle".to_string(),
        },
    }
}

/// The host's system bundle: `SSL_CERT_FILE` when it is set, else the first of
/// [`SYSTEM_BUNDLES`] that exists.
pub(super) fn host_bundle_path(
    env: impl Fn(&str) -> Option<OsString>,
    exists: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if let Some(path) = env("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    SYSTEM_BUNDLES.iter().map(PathBuf::from).find(|p| exists(p))
}

/// True when a 64-bit little-endian ELF image has a `PT_INTERP` program header, i.e. needs a
/// dynamic loader. Anything that is not such an ELF is treated as static (and will fail loudly
/// at container start if it is not).
pub(super) fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        elf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            == Some(PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_bundle_is_ssl_cert_file_else_the_first_usual_place_there_is() {
        let none = |_: &str| None;
        let set = |k: &str| (k == "SSL_CERT_FILE").then(|| OsString::from("/opt/corp/ca.pem"));
        assert_eq!(
            host_bundle_path(set, |_| false),
            Some(PathBuf::from("/opt/corp/ca.pem"))
        );
        assert_eq!(
            host_bundle_path(none, |p| p == Path::new("/etc/ssl/cert.pem")
                || p == Path::new("/etc/pki/tls/certs/ca-bundle.crt")),
            Some(PathBuf::from("/etc/pki/tls/certs/ca-bundle.crt"))
        );
        assert_eq!(host_bundle_path(none, |_| false), None);
    }

    #[test]
    fn a_chosen_bundle_must_hold_certificates_and_errors_say_who_chose_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, include_str!("../../tests/fixtures/ca/test-ca.pem")).expect("write");
        let file = |path: &Path, source| CaSetting {
            bundle: CaCertificates::File(path.to_path_buf()),
            source,
        };
        let loaded = ca_bundle(&file(&good, SettingSource::CommandLine)).expect("bundle");
        assert_eq!(loaded.certificates.len(), 2);
        assert_eq!(loaded.path.as_deref(), Some(good.as_path()));

        let der = dir.path().join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0x01, 0x00]).expect("write");
        let error = ca_bundle(&file(&der, SettingSource::CommandLine))
            .expect_err("not PEM")
            .to_string();
        assert!(
            error.starts_with(&format!(
                "the CA bundle {} (--ca-certificates) cannot be used: it holds no PEM certificate",
                der.display()
            )),
            "{error}"
        );
        assert!(error.contains("openssl x509 -inform der"), "{error}");

        let at = crate::config::Location {
            file: "/p/perstack.toml".into(),
            line: 4,
            col: 18,
        };
        let missing = dir.path().join("missing.pem");
        let error = ca_bundle(&file(&missing, SettingSource::File(Some(at))))
            .expect_err("missing")
            .to_string();
        assert!(
            error.contains(
                "([sandbox] caCertificates at /p/perstack.toml:4:18) cannot be used: No such file"
            ),
            "{error}"
        );
    }

    #[test]
    fn this_test_binary_is_static_and_a_dynamic_one_is_not() {
        let me = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        assert!(!has_interpreter(&me), "tests are built with +crt-static");
        let sh = std::fs::read("/bin/sh").expect("a dynamic /bin/sh");
        assert!(has_interpreter(&sh));
        assert!(!has_interpreter(b"#!/bin/sh\n"));
    }
}
