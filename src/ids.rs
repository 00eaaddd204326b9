//! Identifiers and clocks shared by events, checkpoints and Docker resource names, and who owns a
//! run ([`controller`]), which resource labels and the workspace's trust record both name.

pub(crate) mod controller;

use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh 24-character id in the shape of Perstack's cuid2 ids: lowercase, starting with a letter.
///
/// Ids only need to be unique, so 24 characters of OS randomness (≈ 124 bits) are plenty. When the
/// OS has no randomness to give (it always has on Linux ≥ 3.17), the clock and a counter keep ids
/// distinct within a process.
pub fn new_id() -> String {
    let mut bytes = [0u8; 24];
    if getrandom::fill(&mut bytes).is_err() {
        fallback_bytes(&mut bytes);
    }
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let n = if i == 0 { 26 } else { 36 };
            ALPHABET[usize::from(*b) % n] as char
        })
        .collect()
}

fn fallback_bytes(bytes: &mut [u8; 24]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut seed = (nanos as u64) ^ count.rotate_left(32) ^ u64::from(std::process::id());
    for b in bytes.iter_mut() {
        // xorshift64: not for secrets, only to spread the seed.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
}

/// Milliseconds since the Unix epoch, as events and checkpoints carry them.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_cuid2_and_differ() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 24);
        assert!(a.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(a, b);
    }
}
