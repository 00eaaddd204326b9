//! The files every image is made of: our own executable and the host's CA bundle.

use std::path::PathBuf;

use bytes::Bytes;

use crate::contract::paths::CA_BUNDLE_PATH;
use crate::sandbox::images::recipes::Artifacts;

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
}

/// Reads our executable (checking it is static) and the CA bundle (`SSL_CERT_FILE`, else the
/// Debian path; empty when there is none, which only matters to real providers).
pub fn load() -> Result<Artifacts, ArtifactError> {
    let path = std::env::current_exe().map_err(|source| ArtifactError::Executable {
        path: "(current executable)".into(),
        source,
    })?;
    let binary = std::fs::read(&path).map_err(|source| ArtifactError::Executable {
        path: path.display().to_string(),
        source,
    })?;
    if has_interpreter(&binary) {
        return Err(ArtifactError::NotStatic {
            path: path.display().to_string(),
        });
    }
    // The host's bundle is where our images keep theirs: the conventional place (Debian's).
    let ca_path = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CA_BUNDLE_PATH));
    let ca_bundle = std::fs::read(&ca_path).unwrap_or_default();
    Ok(Artifacts {
        binary: Bytes::from(binary),
        ca_bundle: Bytes::from(ca_bundle),
    })
}

/// True when a 64-bit little-endian ELF image has a `PT_INTERP` program header, i.e. needs a
/// dynamic loader. Anything that is not such an ELF is treated as static (and will fail loudly
/// at container start if it is not).
pub fn has_interpreter(elf: &[u8]) -> bool {
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
    fn this_test_binary_is_static_and_a_dynamic_one_is_not() {
        let me = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        assert!(!has_interpreter(&me), "tests are built with +crt-static");
        let sh = std::fs::read("/bin/sh").expect("a dynamic /bin/sh");
        assert!(has_interpreter(&sh));
        assert!(!has_interpreter(b"#!/bin/sh\n"));
    }
}
