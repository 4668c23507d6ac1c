//! Random ids and tokens, token hashing, password hashing, constant-time
//! comparison. All randomness comes from `ring`'s system RNG.

use std::num::NonZeroU32;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

const PBKDF2_ALG: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;
const HASH_LEN: usize = 32;
const SALT_LEN: usize = 16;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The system RNG only fails if the OS has no entropy source at all.
    #[allow(clippy::expect_used)]
    SystemRandom::new()
        .fill(&mut buf)
        .expect("system random number generator failed");
    buf
}

/// A new opaque id: 16 random bytes, lowercase hex (32 characters).
pub fn new_id() -> String {
    hex::encode(random_bytes::<16>())
}

/// A new bearer token: 32 random bytes, base64url (43 characters).
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// What is stored for a token: its SHA-256, hex. Tokens carry 256 bits of
/// entropy, so a fast hash is enough.
pub fn hash_token(token: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// Compares two secrets in constant time by HMAC-ing both with a fresh key.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &random_bytes::<32>());
    let tag = hmac::sign(&key, a.as_bytes());
    hmac::verify(&key, b.as_bytes(), tag.as_ref()).is_ok()
}

/// Hashes a password as `pbkdf2-sha256$ITERATIONS$SALT$HASH` (base64).
pub fn hash_password(password: &str, iterations: u32) -> String {
    let iterations = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    let salt = random_bytes::<SALT_LEN>();
    let mut out = [0u8; HASH_LEN];
    pbkdf2::derive(PBKDF2_ALG, iterations, &salt, password.as_bytes(), &mut out);
    format!(
        "pbkdf2-sha256${}${}${}",
        iterations,
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    )
}

/// Checks a password against a stored hash; false for any malformed hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iterations), Ok(salt), Ok(hash)) = (
        iter.parse::<u32>().ok().and_then(NonZeroU32::new),
        STANDARD_NO_PAD.decode(salt),
        STANDARD_NO_PAD.decode(hash),
    ) else {
        return false;
    };
    pbkdf2::verify(PBKDF2_ALG, iterations, &salt, password.as_bytes(), &hash).is_ok()
}

/// A hash to check against when the user does not exist, so that a login for
/// an unknown email costs as much time as one with a wrong password.
pub fn dummy_password_hash(iterations: u32) -> String {
    hash_password("tandem-dummy-password", iterations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip_and_rejections() {
        let h = hash_password("correct horse", 1000);
        assert!(h.starts_with("pbkdf2-sha256$1000$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "garbage"));
        assert!(!verify_password("correct horse", "pbkdf2-sha256$0$AA$AA"));
        // Same password, different salt → different hash.
        assert_ne!(h, hash_password("correct horse", 1000));
    }

    #[test]
    fn ids_tokens_and_secrets() {
        assert_eq!(new_id().len(), 32);
        assert_ne!(new_id(), new_id());
        let t = new_token();
        assert_eq!(t.len(), 43);
        assert_eq!(hash_token(&t), hash_token(&t));
        assert_ne!(hash_token(&t), t);
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}
