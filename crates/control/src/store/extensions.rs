//! Org extensions, their files and their per-workspace enablement; see
//! `migrations/*/2026-12-03-000060_extensions`. One current version per
//! (org, manifest id): uploading a newer version replaces the files in one
//! transaction and keeps the internal id, so workspaces keep their
//! enablement and settings; an equal or older version is a 409.

use diesel::prelude::*;
use serde_json::{Map, Value};
use tandem_protocol::extensions::{Extension, ExtensionKind, WorkspaceExtension};

use super::audit::{self, Entry};
use super::now_ms;
use crate::db::schema::{extension_files, extensions, workspace_extensions};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::extensions::{Package, Schema};
use crate::page::{cut, PageReq, Paged};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = extensions)]
pub struct ExtensionRow {
    pub id: String,
    pub org_id: String,
    pub ext_id: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub entry: String,
    pub description: Option<String>,
    pub settings_schema: Option<String>,
    pub file_count: i64,
    pub size_bytes: i64,
    pub uploaded_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ExtensionRow {
    pub fn to_dto(&self) -> Extension {
        Extension {
            id: self.ext_id.clone(),
            org_id: self.org_id.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            kind: ExtensionKind::parse(&self.kind).unwrap_or(ExtensionKind::Plugin),
            entry: self.entry.clone(),
            description: self.description.clone(),
            settings_schema: self
                .settings_schema
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            file_count: self.file_count,
            size_bytes: self.size_bytes,
            uploaded_by: self.uploaded_by.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The compiled settings schema (`None`: the extension takes no settings).
    fn schema(&self) -> Result<Option<Schema>, ApiError> {
        let Some(text) = &self.settings_schema else {
            return Ok(None);
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored schema: {e}")))?;
        Schema::compile(&value)
            .map(Some)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored schema: {e}")))
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = extension_files)]
pub struct FileRow {
    pub extension_id: String,
    pub path: String,
    pub content_type: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = workspace_extensions)]
pub struct EnablementRow {
    pub workspace_id: String,
    pub extension_id: String,
    pub enabled: bool,
    pub settings: String,
    pub updated_by: Option<String>,
    pub updated_at: i64,
}

impl EnablementRow {
    pub fn to_dto(&self, ext: &ExtensionRow) -> WorkspaceExtension {
        WorkspaceExtension {
            extension: ext.to_dto(),
            workspace_id: self.workspace_id.clone(),
            enabled: self.enabled,
            settings: serde_json::from_str(&self.settings).unwrap_or_default(),
            entry_url: format!(
                "/workspaces/{}/extensions/{}/files/{}",
                self.workspace_id, ext.ext_id, ext.entry
            ),
        }
    }
}

/// Installs a package in the org, or upgrades the installed extension to it.
pub fn install(
    conn: &mut DbConnection,
    org_id: &str,
    user_id: &str,
    pkg: &Package,
) -> Result<(ExtensionRow, bool), ApiError> {
    let m = &pkg.manifest;
    write_tx(conn, |c| {
        let existing = get(c, org_id, &m.id)?;
        let now = now_ms();
        let schema = m.settings_schema.as_ref().map(|s| s.to_string());
        let created = existing.is_none();
        let row = match existing {
            Some(old) => {
                let newer = semver::Version::parse(&old.version).is_ok_and(|v| pkg.version > v);
                if !newer {
                    return Err(ApiError::Conflict(format!(
                        "version {} of {} is installed; upload a newer version",
                        old.version, old.ext_id
                    )));
                }
                diesel::delete(
                    extension_files::table.filter(extension_files::extension_id.eq(&old.id)),
                )
                .execute(c)?;
                ExtensionRow {
                    created_at: old.created_at,
                    id: old.id,
                    ..new_row(org_id, user_id, pkg, schema, now)
                }
            }
            None => new_row(org_id, user_id, pkg, schema, now),
        };
        if created {
            diesel::insert_into(extensions::table)
                .values(&row)
                .execute(c)?;
        } else {
            diesel::update(extensions::table.find(&row.id))
                .set((
                    extensions::name.eq(&row.name),
                    extensions::version.eq(&row.version),
                    extensions::kind.eq(&row.kind),
                    extensions::entry.eq(&row.entry),
                    extensions::description.eq(&row.description),
                    extensions::settings_schema.eq(&row.settings_schema),
                    extensions::file_count.eq(row.file_count),
                    extensions::size_bytes.eq(row.size_bytes),
                    extensions::uploaded_by.eq(&row.uploaded_by),
                    extensions::updated_at.eq(row.updated_at),
                ))
                .execute(c)?;
        }
        let files: Vec<FileRow> = pkg
            .files
            .iter()
            .map(|f| FileRow {
                extension_id: row.id.clone(),
                path: f.path.clone(),
                content_type: f.content_type.to_string(),
                sha256: f.sha256.clone(),
                bytes: f.bytes.clone(),
            })
            .collect();
        // One statement per file: batch inserts do not exist on the
        // two-backend connection (at most 1,000 files, in one transaction).
        for file in &files {
            diesel::insert_into(extension_files::table)
                .values(file)
                .execute(c)?;
        }
        let action = if created {
            "extension.install"
        } else {
            "extension.upgrade"
        };
        let entry = Entry::new(user_id, action, format!("extension:{}", row.ext_id))
            .after(serde_json::json!({ "version": row.version, "kind": row.kind, "files": row.file_count }));
        audit::append(c, org_id, &entry)?;
        Ok((row, created))
    })
}

fn new_row(
    org_id: &str,
    user_id: &str,
    pkg: &Package,
    settings_schema: Option<String>,
    now: i64,
) -> ExtensionRow {
    let m = &pkg.manifest;
    ExtensionRow {
        id: crate::crypto::new_id(),
        org_id: org_id.to_string(),
        ext_id: m.id.clone(),
        name: m.name.trim().to_string(),
        version: pkg.version.to_string(),
        kind: m.kind.as_str().to_string(),
        entry: m.entry.clone(),
        description: m.description.clone(),
        settings_schema,
        file_count: pkg.files.len() as i64,
        size_bytes: pkg.size_bytes(),
        uploaded_by: Some(user_id.to_string()),
        created_at: now,
        updated_at: now,
    }
}

/// The org's extension with this manifest id.
pub fn get(
    conn: &mut DbConnection,
    org_id: &str,
    ext_id: &str,
) -> Result<Option<ExtensionRow>, ApiError> {
    Ok(extensions::table
        .filter(extensions::org_id.eq(org_id))
        .filter(extensions::ext_id.eq(ext_id))
        .select(ExtensionRow::as_select())
        .first(conn)
        .optional()?)
}

/// One page of the org's extensions, oldest first.
pub fn list(
    conn: &mut DbConnection,
    org_id: &str,
    page: &PageReq,
) -> Result<Paged<ExtensionRow>, ApiError> {
    let mut query = extensions::table
        .filter(extensions::org_id.eq(org_id))
        .order((extensions::created_at.asc(), extensions::id.asc()))
        .select(ExtensionRow::as_select())
        .limit(page.fetch())
        .into_boxed();
    if let Some((at, id)) = &page.after {
        query = query.filter(
            extensions::created_at.gt(*at).or(extensions::created_at
                .eq(*at)
                .and(extensions::id.gt(id.clone()))),
        );
    }
    Ok(cut(query.load(conn)?, page, |r: &ExtensionRow| {
        (r.created_at, r.id.as_str())
    }))
}

/// Removes the extension, its files and every workspace's enablement.
pub fn delete(
    conn: &mut DbConnection,
    by: &str,
    org_id: &str,
    ext_id: &str,
) -> Result<bool, ApiError> {
    write_tx(conn, |c| {
        let n = diesel::delete(
            extensions::table
                .filter(extensions::org_id.eq(org_id))
                .filter(extensions::ext_id.eq(ext_id)),
        )
        .execute(c)?;
        if n > 0 {
            let entry = Entry::new(by, "extension.delete", format!("extension:{ext_id}"));
            audit::append(c, org_id, &entry)?;
        }
        Ok(n > 0)
    })
}

/// Enables or disables `ext` in a workspace. The settings (the given ones,
/// else those stored, else `{}`) must fit the schema when given or when
/// enabling; without a schema they must be empty.
pub fn set_for_workspace(
    conn: &mut DbConnection,
    workspace_id: &str,
    ext: &ExtensionRow,
    enabled: bool,
    settings: Option<Map<String, Value>>,
    user_id: &str,
) -> Result<EnablementRow, ApiError> {
    let schema = ext.schema()?;
    write_tx(conn, |c| {
        let stored: Option<EnablementRow> = workspace_extensions::table
            .find((workspace_id, &ext.id))
            .select(EnablementRow::as_select())
            .first(c)
            .optional()?;
        let given = settings.is_some();
        let settings = match (settings, &stored) {
            (Some(s), _) => s,
            (None, Some(row)) => serde_json::from_str(&row.settings).unwrap_or_default(),
            (None, None) => Map::new(),
        };
        if given || enabled {
            check_settings(schema.as_ref(), &settings)?;
        }
        let row = EnablementRow {
            workspace_id: workspace_id.to_string(),
            extension_id: ext.id.clone(),
            enabled,
            settings: Value::Object(settings).to_string(),
            updated_by: Some(user_id.to_string()),
            updated_at: now_ms(),
        };
        if stored.is_some() {
            diesel::update(workspace_extensions::table.find((workspace_id, &ext.id)))
                .set((
                    workspace_extensions::enabled.eq(row.enabled),
                    workspace_extensions::settings.eq(&row.settings),
                    workspace_extensions::updated_by.eq(&row.updated_by),
                    workspace_extensions::updated_at.eq(row.updated_at),
                ))
                .execute(c)?;
        } else {
            diesel::insert_into(workspace_extensions::table)
                .values(&row)
                .execute(c)?;
        }
        let entry = Entry::new(
            user_id,
            "extension.workspace_set",
            format!("workspace:{workspace_id}"),
        )
        .after(serde_json::json!({
            "extension": ext.ext_id, "enabled": row.enabled, "settings": row.settings,
        }));
        audit::append(c, &ext.org_id, &entry)?;
        Ok(row)
    })
}

fn check_settings(schema: Option<&Schema>, settings: &Map<String, Value>) -> Result<(), ApiError> {
    let result = match schema {
        Some(s) => s.check(settings),
        None if settings.is_empty() => Ok(()),
        None => Err("this extension takes no settings".into()),
    };
    result.map_err(|m| ApiError::Coded(tandem_protocol::ErrorCode::InvalidSettings, m))
}

/// One page of the extensions enabled in a workspace, oldest first.
pub fn enabled_in(
    conn: &mut DbConnection,
    workspace_id: &str,
    page: &PageReq,
) -> Result<Paged<(ExtensionRow, EnablementRow)>, ApiError> {
    let mut query = extensions::table
        .inner_join(workspace_extensions::table)
        .filter(workspace_extensions::workspace_id.eq(workspace_id))
        .filter(workspace_extensions::enabled.eq(true))
        .order((extensions::created_at.asc(), extensions::id.asc()))
        .select((ExtensionRow::as_select(), EnablementRow::as_select()))
        .limit(page.fetch())
        .into_boxed();
    if let Some((at, id)) = &page.after {
        query = query.filter(
            extensions::created_at.gt(*at).or(extensions::created_at
                .eq(*at)
                .and(extensions::id.gt(id.clone()))),
        );
    }
    Ok(cut(
        query.load(conn)?,
        page,
        |(r, _): &(ExtensionRow, EnablementRow)| (r.created_at, r.id.as_str()),
    ))
}

/// A file of an extension enabled in the workspace (`None`: no such file,
/// or the extension is not enabled there).
pub fn enabled_file(
    conn: &mut DbConnection,
    workspace_id: &str,
    org_id: &str,
    ext_id: &str,
    path: &str,
) -> Result<Option<FileRow>, ApiError> {
    Ok(extension_files::table
        .inner_join(extensions::table.inner_join(workspace_extensions::table))
        .filter(extensions::org_id.eq(org_id))
        .filter(extensions::ext_id.eq(ext_id))
        .filter(workspace_extensions::workspace_id.eq(workspace_id))
        .filter(workspace_extensions::enabled.eq(true))
        .filter(extension_files::path.eq(path))
        .select(FileRow::as_select())
        .first(conn)
        .optional()?)
}
