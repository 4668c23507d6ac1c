//! Org extensions (plugins and themes, plan 001 phase 7): reading an
//! uploaded zip into a checked [`Package`] — safe entries ([`archive`]), a
//! valid manifest, a settings schema of the supported subset ([`schema`]) —
//! and the content type each file is served with. Pure: the store keeps
//! packages, `http::extensions` serves them.

pub mod archive;
pub mod schema;

use std::collections::HashMap;

use tandem_protocol::extensions::{Manifest, MANIFEST_NAME};
use tandem_protocol::ErrorCode;

pub use archive::{Limits, Refused};
pub use schema::Schema;

/// One file of a package, ready to store.
#[derive(Debug, Clone)]
pub struct PackageFile {
    pub path: String,
    pub content_type: &'static str,
    /// Hex SHA-256 of the bytes (the `ETag`).
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// A checked extension archive.
#[derive(Debug, Clone)]
pub struct Package {
    pub manifest: Manifest,
    pub version: semver::Version,
    pub files: Vec<PackageFile>,
}

impl Package {
    pub fn size_bytes(&self) -> i64 {
        self.files.iter().map(|f| f.bytes.len() as i64).sum()
    }
}

fn invalid(message: impl Into<String>) -> Refused {
    Refused {
        code: ErrorCode::InvalidManifest,
        message: message.into(),
    }
}

/// Whether `id` is a valid extension id: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// Unpacks and checks an uploaded archive.
pub fn read_package(zip: &[u8], limits: &Limits) -> Result<Package, Refused> {
    let entries = archive::unpack(zip, limits)?;
    let manifest_bytes = entries
        .iter()
        .find(|e| e.path == MANIFEST_NAME)
        .map(|e| e.bytes.as_slice())
        .ok_or_else(|| invalid(format!("the archive has no {MANIFEST_NAME} at its root")))?;
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| invalid(format!("{MANIFEST_NAME}: {e}")))?;
    if !valid_id(&manifest.id) {
        return Err(invalid("id must match [a-z0-9][a-z0-9._-]{0,63}"));
    }
    let name_len = manifest.name.trim().chars().count();
    if name_len == 0 || name_len > 100 {
        return Err(invalid("name must be 1..=100 characters"));
    }
    if manifest
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1_000)
    {
        return Err(invalid("description must be at most 1000 characters"));
    }
    let version = semver::Version::parse(&manifest.version)
        .map_err(|e| invalid(format!("version {:?} is not semver: {e}", manifest.version)))?;
    if let Some(s) = &manifest.settings_schema {
        Schema::compile(s).map_err(|e| invalid(format!("settingsSchema: {e}")))?;
    }
    let paths: HashMap<&str, ()> = entries.iter().map(|e| (e.path.as_str(), ())).collect();
    if !paths.contains_key(manifest.entry.as_str()) {
        return Err(invalid(format!(
            "entry {:?} is not a file in the archive",
            manifest.entry
        )));
    }
    let files = entries
        .into_iter()
        .map(|e| PackageFile {
            content_type: content_type(&e.path),
            sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &e.bytes)),
            path: e.path,
            bytes: e.bytes,
        })
        .collect();
    Ok(Package {
        manifest,
        version,
        files,
    })
}

/// The content type a file is served with, by its extension; unknown ones
/// are `application/octet-stream` (never sniffed: `nosniff` is sent).
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}
