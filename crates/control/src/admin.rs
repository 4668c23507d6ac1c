//! Instance administration (`TANDEM_ADMINS`): who is an instance admin, the
//! effective configuration with secrets masked, checking settings without
//! applying them, and the settings a running control can change — the log
//! filter (`RUST_LOG`), `TANDEM_CORS_ORIGINS`, `TANDEM_AUTH_RATE_PER_MINUTE` —
//! re-read from `TANDEM_RELOAD_FILE` on SIGHUP or `POST /admin/config/reload`.
//! Everything else needs a restart. See `proto-docs/instance-admin.md`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use clap::{CommandFactory, Parser};
use serde_json::Value;
use tandem_protocol::extensions::{ConfigSetting, RuntimeSettings, SettingError};
use tandem_protocol::origin::OriginList;

use crate::config::ControlConfig;
use crate::store::UserRow;

/// How a secret shows.
pub const MASK: &str = "••••";
/// The log filter's key (not a `TANDEM_*` setting: the usual `RUST_LOG`).
pub const LOG_FILTER_KEY: &str = "RUST_LOG";
const CORS_KEY: &str = "TANDEM_CORS_ORIGINS";
const AUTH_RATE_KEY: &str = "TANDEM_AUTH_RATE_PER_MINUTE";
/// The settings a reload changes.
pub const RELOADABLE: [&str; 3] = [LOG_FILTER_KEY, CORS_KEY, AUTH_RATE_KEY];
/// Largest reload file read, in bytes.
const MAX_RELOAD_FILE_BYTES: u64 = 1024 * 1024;

/// The allowed browser origins as in force: the setting and its parsed list.
pub type SharedOrigins = Arc<RwLock<(String, OriginList)>>;

/// What a reload can change, as in force now.
pub struct Runtime {
    /// Read by the CORS middleware on every request.
    pub cors: SharedOrigins,
    log_filter: Mutex<String>,
    reloaded_at: Mutex<Option<i64>>,
}

/// Checked values of reloadable settings, ready to apply.
#[derive(Debug, Default)]
pub struct Reload {
    log_filter: Option<String>,
    cors: Option<(String, OriginList)>,
    auth_rate: Option<u32>,
}

impl Runtime {
    pub fn new(cors_setting: &str, origins: OriginList) -> Runtime {
        Runtime {
            cors: Arc::new(RwLock::new((cors_setting.to_string(), origins))),
            log_filter: Mutex::new(crate::telemetry::initial_filter()),
            reloaded_at: Mutex::new(None),
        }
    }

    /// The reloadable settings as they are now.
    pub fn settings(&self, state: &crate::state::AppState) -> RuntimeSettings {
        let cors = self.cors.read().map(|c| c.0.clone()).unwrap_or_default();
        RuntimeSettings {
            log_filter: lock(&self.log_filter).clone(),
            cors_origins: cors,
            auth_rate_per_minute: state.auth_limiter.per_minute(),
            reload_file: state
                .config
                .reload_file
                .as_ref()
                .map(|p| p.display().to_string()),
            reloaded_at: *lock(&self.reloaded_at),
        }
    }

    /// Applies checked values (all of them, or none when one fails).
    pub fn apply(&self, state: &crate::state::AppState, r: Reload) -> Result<(), SettingError> {
        if let Some(filter) = r.log_filter {
            crate::telemetry::set_filter(&filter).map_err(|m| error(LOG_FILTER_KEY, m))?;
            *lock(&self.log_filter) = filter;
        }
        if let Some(cors) = r.cors {
            if let Ok(mut c) = self.cors.write() {
                *c = cors;
            }
        }
        if let Some(rate) = r.auth_rate {
            state.auth_limiter.set_per_minute(rate);
        }
        *lock(&self.reloaded_at) = Some(crate::store::now_ms());
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(key: &str, message: impl Into<String>) -> SettingError {
    SettingError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Whether `user` is an instance admin: a verified address listed in `TANDEM_ADMINS`.
pub fn is_admin(config: &ControlConfig, user: &UserRow) -> bool {
    user.email_verified()
        && config
            .admins
            .iter()
            .any(|a| a.trim().eq_ignore_ascii_case(user.email.trim()))
}

/// Reads `KEY=VALUE` lines (blank lines and `#` comments skipped, optional
/// `export `, values optionally in matching quotes).
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, SettingError> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(error("", format!("line {} is not KEY=VALUE", n + 1)));
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        out.insert(key.trim().to_string(), unquoted.to_string());
    }
    Ok(out)
}

/// Reads and checks `TANDEM_RELOAD_FILE`: the reloadable settings it sets
/// (others are ignored, with a warning: they need a restart).
pub fn read_reload_file(config: &ControlConfig) -> Result<Reload, Vec<SettingError>> {
    let Some(path) = &config.reload_file else {
        return Err(vec![error(
            "TANDEM_RELOAD_FILE",
            "no reload file is configured: nothing to re-read",
        )]);
    };
    let unreadable =
        |e: std::io::Error| vec![error("TANDEM_RELOAD_FILE", format!("cannot read it: {e}"))];
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.len() > MAX_RELOAD_FILE_BYTES {
        return Err(vec![error("TANDEM_RELOAD_FILE", "larger than 1 MiB")]);
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let all = parse_env_file(&text).map_err(|e| vec![e])?;
    let ignored: Vec<&str> = all
        .keys()
        .map(String::as_str)
        .filter(|k| !RELOADABLE.contains(k))
        .collect();
    if !ignored.is_empty() {
        tracing::warn!(
            ?ignored,
            "settings in the reload file that need a restart were ignored"
        );
    }
    check_reload(&all)
}

/// Checks the reloadable settings among `values`.
pub fn check_reload(values: &BTreeMap<String, String>) -> Result<Reload, Vec<SettingError>> {
    let mut reload = Reload::default();
    let mut errors = Vec::new();
    if let Some(f) = values.get(LOG_FILTER_KEY) {
        match crate::telemetry::parse_filter(f) {
            Ok(_) => reload.log_filter = Some(f.trim().to_string()),
            Err(m) => errors.push(error(LOG_FILTER_KEY, m)),
        }
    }
    if let Some(c) = values.get(CORS_KEY) {
        match OriginList::parse(c) {
            Ok(list) => reload.cors = Some((c.trim().to_string(), list)),
            Err(e) => errors.push(error(CORS_KEY, format!("not an origin: {:?}", e.0))),
        }
    }
    if let Some(r) = values.get(AUTH_RATE_KEY) {
        match r.trim().parse::<u32>() {
            Ok(n) => reload.auth_rate = Some(n),
            Err(_) => errors.push(error(AUTH_RATE_KEY, "must be a whole number (0: no limit)")),
        }
    }
    match errors.is_empty() {
        true => Ok(reload),
        false => Err(errors),
    }
}

/// Re-reads `TANDEM_RELOAD_FILE` and applies it (SIGHUP, `POST
/// /admin/config/reload`, startup): all of it, or nothing when a value is invalid.
pub fn reload(state: &crate::state::AppState) -> Result<RuntimeSettings, Vec<SettingError>> {
    let checked = read_reload_file(&state.config)?;
    state.runtime.apply(state, checked).map_err(|e| vec![e])?;
    Ok(state.runtime.settings(state))
}

/// The errors as one line, for logs and messages.
pub fn describe(errors: &[SettingError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.key, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Masks a password (and `password`/`secret`/`token` query values) inside a URL.
fn mask_url(s: &str) -> String {
    let Ok(mut url) = url::Url::parse(s) else {
        return s.to_string();
    };
    if !url.has_host() {
        return s.to_string();
    }
    let mut changed = false;
    if url.password().is_some() {
        changed |= url.set_password(Some(MASK)).is_ok();
    }
    let sensitive = |k: &str| {
        let k = k.to_ascii_lowercase();
        ["password", "pass", "secret", "token", "key"]
            .iter()
            .any(|s| k.contains(s))
    };
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if pairs.iter().any(|(k, _)| sensitive(k)) {
        let masked: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| match sensitive(&k) {
                true => (k, MASK.to_string()),
                false => (k, v),
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(masked);
        changed = true;
    }
    match changed {
        true => url.to_string(),
        false => s.to_string(),
    }
}

fn mask(value: Value, secret: bool) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::String(s) if secret => Value::String(if s.is_empty() { s } else { MASK.into() }),
        Value::Array(items) if secret => {
            Value::Array(items.iter().map(|_| Value::String(MASK.into())).collect())
        }
        Value::String(s) => Value::String(mask_url(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| mask(v, false)).collect()),
        _ if secret => Value::String(MASK.into()),
        other => other,
    }
}

/// The effective settings, each under its environment variable, secrets masked.
pub fn effective_settings(config: &ControlConfig, runtime: &RuntimeSettings) -> Vec<ConfigSetting> {
    let fields = match serde_json::to_value(config) {
        Ok(Value::Object(map)) => map,
        _ => Default::default(),
    };
    let command = ControlConfig::command();
    let mut out: Vec<ConfigSetting> = command
        .get_arguments()
        .filter_map(|arg| {
            let key = arg.get_env()?.to_str()?.to_string();
            let value = fields.get(arg.get_id().as_str())?.clone();
            let secret = arg.is_hide_env_values_set();
            let value = match key.as_str() {
                CORS_KEY => Value::String(runtime.cors_origins.clone()),
                AUTH_RATE_KEY => Value::from(runtime.auth_rate_per_minute),
                _ => value,
            };
            Some(ConfigSetting {
                reloadable: RELOADABLE.contains(&key.as_str()),
                value: mask(value, secret),
                key,
                secret,
            })
        })
        .collect();
    out.push(ConfigSetting {
        key: LOG_FILTER_KEY.into(),
        value: Value::String(runtime.log_filter.clone()),
        secret: false,
        reloadable: true,
    });
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

const BOOL_WORDS: [&str; 8] = ["true", "false", "1", "0", "yes", "no", "on", "off"];

/// Checks settings given as environment variables without applying them:
/// each is parsed as control would parse it at startup, plus the checks
/// startup makes on its meaning.
pub fn validate(values: &BTreeMap<String, String>) -> Vec<SettingError> {
    let command = ControlConfig::command();
    let mut errors = Vec::new();
    for (key, value) in values {
        if key == LOG_FILTER_KEY {
            if let Err(m) = crate::telemetry::parse_filter(value) {
                errors.push(error(key, m));
            }
            continue;
        }
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == key.as_str()))
        else {
            errors.push(error(key, "not a setting of control"));
            continue;
        };
        let secret = arg.is_hide_env_values_set();
        let takes_value = arg.get_num_args().is_none_or(|n| n.takes_values());
        if !takes_value || matches!(arg.get_action(), clap::ArgAction::SetTrue) {
            if !BOOL_WORDS.contains(&value.trim().to_ascii_lowercase().as_str()) {
                errors.push(error(key, "must be true or false"));
            }
            continue;
        }
        let Some(long) = arg.get_long() else {
            continue;
        };
        let parsed = ControlConfig::try_parse_from([
            "tandem-control".to_string(),
            format!("--{long}={value}"),
        ]);
        match parsed {
            Err(e) => {
                let message = match secret {
                    true => "invalid value".to_string(),
                    false => first_line(&e.to_string()),
                };
                errors.push(error(key, message));
            }
            Ok(config) => {
                if let Err(m) = meaning(key, &config) {
                    errors.push(error(key, m));
                }
            }
        }
    }
    errors
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

/// The checks startup makes beyond parsing, for one setting.
fn meaning(key: &str, c: &ControlConfig) -> Result<(), String> {
    match key {
        CORS_KEY => OriginList::parse(c.cors_origins.as_deref().unwrap_or_default())
            .map(|_| ())
            .map_err(|e| format!("not an origin: {:?}", e.0)),
        "TANDEM_DATABASE_URL" => crate::db::DatabaseUrl::parse(&c.database_url)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "TANDEM_TRUSTED_PROXIES" => {
            crate::http::client_ip::TrustedProxies::parse(&c.trusted_proxies).map(|_| ())
        }
        "TANDEM_LOG_FORMAT" => match c.log_format.to_ascii_lowercase().as_str() {
            "text" | "json" => Ok(()),
            _ => Err("must be text or json".into()),
        },
        "TANDEM_FILES_BACKEND" => match c.files_backend.as_str() {
            "dir" | "s3" => Ok(()),
            _ => Err("must be dir or s3".into()),
        },
        "TANDEM_ADMINS" => match c.admins.iter().all(|a| a.trim().contains('@')) {
            true => Ok(()),
            false => Err("must be email addresses, comma-separated".into()),
        },
        "TANDEM_SETTINGS_KEY" => match &c.settings_key {
            Some(k) => crate::crypto::SecretBox::new(k, &[])
                .map(|_| ())
                .map_err(|_| "must be 32 bytes as 64 hex characters or base64".into()),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{mask_url, parse_env_file, MASK};

    #[test]
    fn urls_lose_their_passwords() {
        let m = mask_url("postgres://tandem:hunter2@db:5432/tandem?sslmode=require&password=x");
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.contains(&format!("tandem:{}", urlencoding(MASK))) || m.contains("tandem:"));
        assert!(!m.contains("password=x"), "{m}");
        assert_eq!(
            mask_url("sqlite://./data/tandem.db"),
            "sqlite://./data/tandem.db"
        );
    }

    fn urlencoding(s: &str) -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    #[test]
    fn env_files() {
        let m = parse_env_file("# c\n\nexport A=1\nB=\"two words\"\nC='x'\n").unwrap_or_default();
        assert_eq!(m.get("A").map(String::as_str), Some("1"));
        assert_eq!(m.get("B").map(String::as_str), Some("two words"));
        assert_eq!(m.get("C").map(String::as_str), Some("x"));
        assert!(parse_env_file("nonsense").is_err());
    }
}
