//! JSON bodies of org extensions (`/orgs/{id}/extensions`,
//! `/workspaces/{id}/extensions`) and of instance administration
//! (`/admin/config*`). An extension is a zip with a `tandem-extension.json`
//! manifest; see `proto-docs/extensions.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The manifest's file name, at the root of the archive.
pub const MANIFEST_NAME: &str = "tandem-extension.json";

/// What an extension is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExtensionKind {
    /// Code the app loads (its `entry` is usually a JavaScript module).
    Plugin,
    /// Styles the app applies (its `entry` is usually a CSS file).
    Theme,
}

impl ExtensionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionKind::Plugin => "plugin",
            ExtensionKind::Theme => "theme",
        }
    }

    pub fn parse(s: &str) -> Option<ExtensionKind> {
        [ExtensionKind::Plugin, ExtensionKind::Theme]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// `tandem-extension.json`, as read from an archive (unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `[a-z0-9][a-z0-9._-]{0,63}`, unique in the org.
    pub id: String,
    pub name: String,
    /// A semantic version (`1.2.3`, `2.0.0-beta.1`).
    pub version: String,
    pub kind: ExtensionKind,
    /// The file the app loads first: a path inside the archive.
    pub entry: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A JSON Schema (subset) of the settings a workspace gives it.
    #[serde(default)]
    pub settings_schema: Option<Value>,
}

/// An extension installed in an org (its current version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    /// The manifest's `id`.
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub version: String,
    pub kind: ExtensionKind,
    pub entry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings_schema: Option<Value>,
    /// Files in the archive (directories not counted).
    pub file_count: i64,
    /// Their unpacked bytes.
    pub size_bytes: i64,
    pub uploaded_by: Option<String>,
    pub created_at: i64,
    /// When the current version was uploaded.
    pub updated_at: i64,
}

/// An extension as a workspace sees it: enabled there, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceExtension {
    pub extension: Extension,
    pub workspace_id: String,
    pub enabled: bool,
    /// The workspace's settings (checked against the schema when set).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: Map<String, Value>,
    /// `GET` this to load the entry file.
    pub entry_url: String,
}

/// `PUT /workspaces/{id}/extensions/{ext}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetWorkspaceExtension {
    pub enabled: bool,
    /// Omitted: the settings stay as they are (`{}` the first time).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: Option<Map<String, Value>>,
}

/// One setting of `GET /admin/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConfigSetting {
    /// Its environment variable (`TANDEM_…`).
    pub key: String,
    /// Its effective value; secrets (and passwords inside URLs) masked as `••••`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub value: Value,
    /// The value is a secret (only whether it is set is shown).
    pub secret: bool,
    /// Changes take effect on reload (SIGHUP or `POST /admin/config/reload`).
    pub reloadable: bool,
}

/// What a reload can change, as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSettings {
    /// The log filter (`RUST_LOG` syntax).
    pub log_filter: String,
    /// `TANDEM_CORS_ORIGINS` as in force.
    pub cors_origins: String,
    /// `TANDEM_AUTH_RATE_PER_MINUTE` as in force.
    pub auth_rate_per_minute: u32,
    /// The file re-read on reload (`TANDEM_RELOAD_FILE`), if any.
    pub reload_file: Option<String>,
    /// When the last reload was applied (ms since the epoch).
    pub reloaded_at: Option<i64>,
}

/// `GET /admin/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AdminConfig {
    pub settings: Vec<ConfigSetting>,
    pub runtime: RuntimeSettings,
}

/// `POST /admin/config/validate`: settings as environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidateConfigRequest {
    pub settings: BTreeMap<String, String>,
}

/// Why one setting is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SettingError {
    pub key: String,
    pub message: String,
}

/// `POST /admin/config/validate` → 200 whether valid or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ValidateConfigResponse {
    pub valid: bool,
    pub errors: Vec<SettingError>,
}
