//! CA bundles (PEM files of certificates): what one holds — each certificate with its SHA-256
//! fingerprint and a name a person recognises — and which certificates one has that another
//! lacks. Pure: reading the files is the caller's (the host's bundle in `commands/artifacts.rs`,
//! a base image's in `doctor`).

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// One certificate of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Certificate {
    /// Its DER bytes: two bundles hold the same certificate when these are equal.
    pub der: Vec<u8>,
    /// SHA-256 of the DER, lowercase hex (what `openssl x509 -fingerprint -sha256` shows).
    pub fingerprint: String,
    /// The subject's common name, else its organization, when the certificate says one.
    pub name: Option<String>,
}

impl Certificate {
    /// Its name, else the start of its fingerprint: for messages.
    pub(crate) fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("\"{name}\""),
            None => format!("sha256 {}…", &self.fingerprint[..16]),
        }
    }
}

/// Why a bundle cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BundleError {
    /// A `CERTIFICATE` section does not decode.
    #[error("it is not a PEM bundle ({0})")]
    Pem(String),
    /// Not one certificate in it.
    #[error("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    Empty,
}

/// The certificates of a PEM bundle, in order; sections of other kinds (keys, CRLs) are skipped.
pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<Certificate>, BundleError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .map(|der| {
            let der = der.map_err(|e| BundleError::Pem(e.to_string()))?;
            Ok(Certificate {
                fingerprint: hex::encode(Sha256::digest(der.as_ref())),
                name: subject_name(der.as_ref()),
                der: der.as_ref().to_vec(),
            })
        })
        .collect::<Result<Vec<_>, BundleError>>()?;
    if certificates.is_empty() {
        return Err(BundleError::Empty);
    }
    Ok(certificates)
}

/// The certificates of `these` that `other` does not hold.
pub(crate) fn missing_from<'a>(
    these: &'a [Certificate],
    other: &[Certificate],
) -> Vec<&'a Certificate> {
    these
        .iter()
        .filter(|c| !other.iter().any(|o| o.der == c.der))
        .collect()
}

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0]`, the optional version of a TBSCertificate.
const VERSION: u8 = 0xa0;
/// id-at-commonName (2.5.4.3) and id-at-organizationName (2.5.4.10), DER-encoded.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// The subject's common name, else its organization: Certificate → TBSCertificate → skip
/// version, serial, signature algorithm, issuer and validity → subject (RFC 5280 §4.1).
fn subject_name(der: &[u8]) -> Option<String> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(certificate)? else {
        return None;
    };
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (SEQUENCE, mut subject, _) = element(tbs)? else {
        return None;
    };
    let (mut common, mut organization) = (None, None);
    while let Some((SET, mut set, rest)) = element(subject) {
        subject = rest;
        while let Some((SEQUENCE, pair, more)) = element(set) {
            set = more;
            let Some((OID, oid, value)) = element(pair) else {
                continue;
            };
            let text = element(value).and_then(|(tag, bytes, _)| text(tag, bytes));
            match oid {
                COMMON_NAME => common = common.or(text),
                ORGANIZATION => organization = organization.or(text),
                _ => {}
            }
        }
    }
    common.or(organization)
}

/// A directory string: UTF8String, PrintableString, IA5String, TeletexString (read as
/// Latin-1) or BMPString (UTF-16BE).
fn text(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 => std::str::from_utf8(bytes).ok().map(str::to_string),
        0x14 => Some(bytes.iter().map(|b| char::from(*b)).collect()),
        0x1e => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two self-signed test CAs: one with a common name, one with only an organization.
    const TEST_BUNDLE: &str = include_str!("../../tests/fixtures/ca/test-ca.pem");

    #[test]
    fn a_bundle_lists_its_certificates_with_fingerprints_and_names() {
        let certs = certificates(TEST_BUNDLE.as_bytes()).expect("bundle");
        assert_eq!(certs.len(), 2);
        // As `openssl x509 -noout -fingerprint -sha256` reports it.
        assert_eq!(
            certs[0].fingerprint,
            "9127001036eda96a139dd90248b8abe2a358095d964e80dab696511c2f0c1f89"
        );
        assert_eq!(certs[0].name.as_deref(), Some("perstack-sandbox test CA"));
        assert_eq!(certs[0].label(), "\"perstack-sandbox test CA\"");
        assert_eq!(certs[1].name.as_deref(), Some("Only An Organization"));
    }

    #[test]
    fn other_sections_are_skipped_and_a_bundle_without_certificates_is_refused() {
        let with_key = format!(
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n{TEST_BUNDLE}"
        );
        assert_eq!(certificates(with_key.as_bytes()).expect("bundle").len(), 2);
        assert_eq!(certificates(b""), Err(BundleError::Empty));
        assert_eq!(
            certificates(b"not a certificate at all\n"),
            Err(BundleError::Empty)
        );
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            certificates(broken.as_bytes()),
            Err(BundleError::Pem(_))
        ));
    }

    #[test]
    fn what_one_bundle_has_that_another_lacks() {
        let both = certificates(TEST_BUNDLE.as_bytes()).expect("bundle");
        let (first, _) = TEST_BUNDLE
            .split_once("-----END CERTIFICATE-----\n")
            .expect("two");
        let one =
            certificates(format!("{first}-----END CERTIFICATE-----\n").as_bytes()).expect("one");
        let missing = missing_from(&both, &one);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].name.as_deref(), Some("Only An Organization"));
        assert!(missing_from(&one, &both).is_empty());
    }

    #[test]
    fn a_certificate_without_a_readable_subject_is_labelled_by_fingerprint() {
        let cert = Certificate {
            der: vec![],
            fingerprint: "ab".repeat(32),
            name: None,
        };
        assert_eq!(cert.label(), "sha256 abababababababab…");
        assert_eq!(subject_name(&[0x30, 0x03, 0x02, 0x01]), None);
        assert_eq!(text(0x1e, &[0x00, 0x41, 0x00, 0x42]).as_deref(), Some("AB"));
    }
}
