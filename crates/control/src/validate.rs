//! Parsing of user input into checked values at the edge. Each function
//! returns the cleaned value or a 422 with a message a person can act on.

use crate::error::ApiError;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Lowercases and checks an email address (deliberately simple: one `@`, a
/// dotted domain, no spaces or control characters, at most 254 bytes).
pub fn email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let bad = || ApiError::validation("email is not a valid address");
    if email.len() > 254 {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && local.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if domain_ok && local_ok {
        Ok(email)
    } else {
        Err(bad())
    }
}

pub fn password(raw: &str) -> Result<&str, ApiError> {
    if raw.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::validation(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::validation(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(raw)
}

/// Free text (message content, streamed chunks): anything but U+0000, which
/// PostgreSQL cannot store in text (SQLite could), so both refuse it alike.
pub fn free_text<'a>(field: &str, raw: &'a str) -> Result<&'a str, ApiError> {
    if raw.contains('\0') {
        return Err(ApiError::validation(format!(
            "{field} must not contain NUL characters (U+0000)"
        )));
    }
    Ok(raw)
}

/// A trimmed, non-empty, bounded single-line text (names and titles).
pub fn text(field: &str, raw: &str, max_chars: usize) -> Result<String, ApiError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ApiError::validation(format!("{field} must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(ApiError::validation(format!(
            "{field} must be at most {max_chars} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value.to_string())
}

pub fn name(raw: &str) -> Result<String, ApiError> {
    text("name", raw, MAX_NAME_CHARS)
}

pub fn title(raw: &str) -> Result<String, ApiError> {
    text("title", raw, MAX_NAME_CHARS)
}

pub fn display_name(raw: &str) -> Result<String, ApiError> {
    text("displayName", raw, MAX_DISPLAY_NAME_CHARS)
}

/// Ids in paths and bodies: opaque, bounded, URL-safe.
pub fn id(raw: &str) -> Result<&str, ApiError> {
    if tandem_protocol::room::is_valid_resource_id(raw) {
        Ok(raw)
    } else {
        Err(ApiError::validation("id is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "a",
            "a@b",
            "@b.com",
            "a@.com",
            "a@b..com",
            "a b@c.com",
            "a@b.com.",
            "a@@b.com",
            "a@b_c.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(email(&format!("{}@x.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn texts() {
        assert_eq!(name("  Roadmap ").unwrap(), "Roadmap");
        assert!(name("   ").is_err());
        assert!(name(&"x".repeat(201)).is_err());
        assert!(name("a\nb").is_err());
        assert!(password("short").is_err());
        assert!(password("long enough").is_ok());
    }
}
