//! Random ids and tokens, token hashing, password hashing, constant-time
//! comparison. All randomness comes from `ring`'s system RNG.

use std::num::NonZeroU32;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, digest, hmac, pbkdf2};

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

/// A new webhook signing secret: `whsec_` + base64 of 32 random bytes
/// (Standard Webhooks asks for 24 to 64).
pub fn new_webhook_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
    )
}

/// The Standard Webhooks signature of one attempt:
/// `v1,` + base64 of HMAC-SHA256 over `"{id}.{timestamp}.{body}"`, keyed
/// with the base64-decoded part of `secret` after `whsec_`. `None` for a
/// secret of another shape.
pub fn webhook_signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_")?)
        .ok()?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let tag = hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    ))
}

/// A random number in [0, 1) (retry jitter).
pub fn random_fraction() -> f64 {
    let b = random_bytes::<8>();
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A fresh settings key (32 random bytes, hex), for tests and `tandem dev`.
pub fn new_settings_key() -> String {
    hex::encode(random_bytes::<32>())
}

/// Seals and opens small secrets (users' API keys) with AES-256-GCM. A
/// sealed value is `base64(nonce ‖ ciphertext ‖ tag)`, stored beside the id
/// of the key that sealed it; the associated data binds it to its owner and
/// purpose, so a ciphertext moved to another row does not open.
pub struct SecretBox {
    current: (String, aead::LessSafeKey),
    previous: Vec<(String, aead::LessSafeKey)>,
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed with key {stored}, which is not configured (the current key is {current})")]
    UnknownKey { stored: String, current: String },
    #[error("does not authenticate: corrupted, or moved from another record")]
    Corrupt,
}

fn parse_key(raw: &str) -> Result<(String, aead::LessSafeKey), String> {
    let raw = raw.trim();
    let bytes = if raw.len() == 64 && raw.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(raw).map_err(|e| e.to_string())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| "must be 64 hex characters or base64".to_string())?
    };
    if bytes.len() != 32 {
        return Err(format!("must be 32 bytes, not {}", bytes.len()));
    }
    // The key's id: the first 8 bytes of its SHA-256, so logs and errors can
    // name a key without revealing it.
    let id = hex::encode(&digest::digest(&digest::SHA256, &bytes).as_ref()[..8]);
    let key =
        aead::UnboundKey::new(&aead::AES_256_GCM, &bytes).map_err(|_| "not a valid AES-256 key")?;
    Ok((id, aead::LessSafeKey::new(key)))
}

impl SecretBox {
    pub fn new(current: &str, previous: &[String]) -> Result<SecretBox, String> {
        Ok(SecretBox {
            current: parse_key(current)?,
            previous: previous
                .iter()
                .filter(|p| !p.trim().is_empty())
                .map(|p| parse_key(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The id of the key new values are sealed with.
    pub fn key_id(&self) -> &str {
        &self.current.0
    }

    pub fn seal(&self, plaintext: &str, aad: &str) -> String {
        let nonce_bytes = random_bytes::<{ aead::NONCE_LEN }>();
        let mut buf = plaintext.as_bytes().to_vec();
        let nonce = aead::Nonce::assume_unique_for_key(nonce_bytes);
        // Sealing only fails for inputs larger than GCM allows (~64 GB).
        #[allow(clippy::expect_used)]
        self.current
            .1
            .seal_in_place_append_tag(nonce, aead::Aad::from(aad.as_bytes()), &mut buf)
            .expect("AES-GCM seal");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// Opens a value sealed with the key `key_id`.
    pub fn open(&self, key_id: &str, sealed: &str, aad: &str) -> Result<String, OpenError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|(id, _)| id == key_id)
            .map(|(_, k)| k)
            .ok_or_else(|| OpenError::UnknownKey {
                stored: key_id.to_string(),
                current: self.current.0.clone(),
            })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| OpenError::Corrupt)?;
        if bytes.len() < aead::NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(OpenError::Corrupt);
        }
        let (nonce, rest) = bytes.split_at(aead::NONCE_LEN);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Corrupt)?;
        let mut rest = rest.to_vec();
        let plain = key
            .open_in_place(nonce, aead::Aad::from(aad.as_bytes()), &mut rest)
            .map_err(|_| OpenError::Corrupt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| OpenError::Corrupt)
    }
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
        // The relay refuses tokens of any other shape without asking control.
        assert!(tandem_protocol::collab::is_collab_token_shape(&t));
        assert_eq!(hash_token(&t), hash_token(&t));
        assert_ne!(hash_token(&t), t);
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }

    #[test]
    fn webhook_secrets_and_signatures() {
        let s = new_webhook_secret();
        assert!(s.starts_with("whsec_"));
        let key = base64::engine::general_purpose::STANDARD
            .decode(&s["whsec_".len()..])
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(s, new_webhook_secret());
        // A vector computed with Python's hmac module (the spec's example).
        assert_eq!(
            webhook_signature(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            )
            .as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(webhook_signature("nope", "a", 1, "b"), None);
        assert_eq!(webhook_signature("whsec_!!", "a", 1, "b"), None);
        let f = random_fraction();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn secret_box_round_trip_and_refusals() {
        let key = new_settings_key();
        let b = SecretBox::new(&key, &[]).unwrap();
        let sealed = b.seal("sk-test-1234567890", "user-1:openai");
        assert!(!sealed.contains("sk-test"));
        assert_ne!(
            sealed,
            b.seal("sk-test-1234567890", "user-1:openai"),
            "fresh nonce each time"
        );
        assert_eq!(
            b.open(b.key_id(), &sealed, "user-1:openai").unwrap(),
            "sk-test-1234567890"
        );
        // Another record's associated data, a flipped byte, garbage: refused.
        assert_eq!(
            b.open(b.key_id(), &sealed, "user-2:openai"),
            Err(OpenError::Corrupt)
        );
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        raw[20] ^= 1;
        let flipped = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(
            b.open(b.key_id(), &flipped, "user-1:openai"),
            Err(OpenError::Corrupt)
        );
        assert_eq!(
            b.open(b.key_id(), "!!", "user-1:openai"),
            Err(OpenError::Corrupt)
        );
        // A rotated key: unknown unless listed as previous.
        let other = SecretBox::new(&new_settings_key(), &[]).unwrap();
        assert!(matches!(
            other.open(b.key_id(), &sealed, "user-1:openai"),
            Err(OpenError::UnknownKey { .. })
        ));
        let rotated = SecretBox::new(&new_settings_key(), &[key]).unwrap();
        assert_eq!(
            rotated.open(b.key_id(), &sealed, "user-1:openai").unwrap(),
            "sk-test-1234567890"
        );
        // Bad keys are refused at startup.
        assert!(SecretBox::new("short", &[]).is_err());
        assert!(SecretBox::new(&"ab".repeat(31), &[]).is_err());
    }
}
