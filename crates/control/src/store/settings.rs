//! User settings: model preferences (JSON) and API keys, sealed with
//! AES-256-GCM ([`crate::crypto::SecretBox`]). Keys leave this module only
//! masked.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde_json::Value;
use tandem_protocol::chat::Settings;

use super::now_ms;
use crate::crypto::{OpenError, SecretBox};
use crate::db::schema::{user_api_keys, user_settings};
use crate::db::{upsert, DbConnection};
use crate::error::ApiError;

fn aad(user_id: &str, provider: &str) -> String {
    format!("tandem/api-key/v1:{user_id}:{provider}")
}

/// `sk-…abcd`: a short prefix and the last four characters; keys under 12
/// characters show only their length class.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 12 {
        return "••••".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

fn open_error(e: OpenError, provider: &str, key_id: &str) -> ApiError {
    match e {
        OpenError::UnknownKey { stored, current } => ApiError::Misconfigured(format!(
            "the stored {provider} API key was encrypted with settings key {stored}, but \
             TANDEM_SETTINGS_KEY is key {current}: configure the old key (or list it in \
             TANDEM_SETTINGS_KEY_PREVIOUS) or enter the API key again"
        )),
        OpenError::Corrupt => ApiError::Misconfigured(format!(
            "the stored {provider} API key does not decrypt with settings key {key_id} \
             (corrupted or tampered with); enter it again"
        )),
    }
}

pub fn put_key(
    conn: &mut DbConnection,
    sbox: &SecretBox,
    user_id: &str,
    provider: &str,
    key: &str,
) -> Result<(), ApiError> {
    let sealed = sbox.seal(key, &aad(user_id, provider));
    let now = now_ms();
    let row = user_api_keys::table.find((user_id, provider));
    upsert(
        conn,
        |c| {
            diesel::update(row)
                .set((
                    user_api_keys::key_id.eq(sbox.key_id()),
                    user_api_keys::ciphertext.eq(&sealed),
                    user_api_keys::updated_at.eq(now),
                ))
                .execute(c)
        },
        |c| {
            diesel::insert_into(user_api_keys::table)
                .values((
                    user_api_keys::user_id.eq(user_id),
                    user_api_keys::provider.eq(provider),
                    user_api_keys::key_id.eq(sbox.key_id()),
                    user_api_keys::ciphertext.eq(&sealed),
                    user_api_keys::updated_at.eq(now),
                ))
                .execute(c)
        },
    )?;
    Ok(())
}

pub fn delete_key(conn: &mut DbConnection, user_id: &str, provider: &str) -> Result<(), ApiError> {
    let n = diesel::delete(user_api_keys::table.find((user_id, provider))).execute(conn)?;
    if n == 0 {
        return Err(ApiError::NotFound("API key"));
    }
    Ok(())
}

/// Opens a stored key. Keys sealed with a previous settings key are
/// re-sealed with the current one.
fn open_stored(
    conn: &mut DbConnection,
    sbox: &SecretBox,
    user_id: &str,
    provider: &str,
    key_id: &str,
    sealed: &str,
) -> Result<String, ApiError> {
    let plain = sbox
        .open(key_id, sealed, &aad(user_id, provider))
        .map_err(|e| open_error(e, provider, key_id))?;
    if key_id != sbox.key_id() {
        put_key(conn, sbox, user_id, provider, &plain)?;
        tracing::info!(provider, from = %key_id, to = %sbox.key_id(), "API key re-encrypted with the current settings key");
    }
    Ok(plain)
}

/// The user's settings, API keys masked (each one opened, so a wrong
/// settings key is found here and not later).
pub fn get(
    conn: &mut DbConnection,
    sbox: Option<&SecretBox>,
    user_id: &str,
) -> Result<Settings, ApiError> {
    let prefs: Option<Option<String>> = user_settings::table
        .find(user_id)
        .select(user_settings::model_preferences)
        .first(conn)
        .optional()?;
    let stored: Vec<(String, String, String)> = user_api_keys::table
        .filter(user_api_keys::user_id.eq(user_id))
        .order(user_api_keys::provider.asc())
        .select((
            user_api_keys::provider,
            user_api_keys::key_id,
            user_api_keys::ciphertext,
        ))
        .load(conn)?;
    let mut api_keys = BTreeMap::new();
    if !stored.is_empty() {
        let sbox = sbox.ok_or_else(missing_key)?;
        for (provider, key_id, sealed) in stored {
            let key = open_stored(conn, sbox, user_id, &provider, &key_id, &sealed)?;
            api_keys.insert(provider, mask(&key));
        }
    }
    Ok(Settings {
        api_keys,
        model_preferences: prefs.flatten().and_then(|s| serde_json::from_str(&s).ok()),
    })
}

pub fn missing_key() -> ApiError {
    ApiError::Misconfigured(
        "TANDEM_SETTINGS_KEY is not set, so API keys cannot be stored or read".into(),
    )
}

pub fn set_preferences(
    conn: &mut DbConnection,
    user_id: &str,
    prefs: &Value,
) -> Result<(), ApiError> {
    let text = prefs.to_string();
    let now = now_ms();
    upsert(
        conn,
        |c| {
            diesel::update(user_settings::table.find(user_id))
                .set((
                    user_settings::model_preferences.eq(Some(&text)),
                    user_settings::updated_at.eq(now),
                ))
                .execute(c)
        },
        |c| {
            diesel::insert_into(user_settings::table)
                .values((
                    user_settings::user_id.eq(user_id),
                    user_settings::model_preferences.eq(Some(&text)),
                    user_settings::updated_at.eq(now),
                ))
                .execute(c)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks() {
        assert_eq!(mask("sk-proj-abcdefghijklmnop1234"), "sk-…1234");
        assert_eq!(mask("short"), "••••");
        assert_eq!(mask("ééé-long-enough-key-ü"), "ééé…ey-ü");
    }
}
