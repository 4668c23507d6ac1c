//! Files: upload intents, completion, metadata (`/workspaces/{id}/files/…`,
//! `/files/…`). See `proto-docs/files.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::sha256_state::{Sha256State, SHA256_STATE_HEADER};

/// `POST /workspaces/{id}/files/uploads`: what the client is about to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUpload {
    /// The file's name as shown to people (1–255 characters, no control characters).
    pub name: String,
    /// Exact size in bytes.
    pub size: i64,
    /// MIME type, e.g. `image/png` (`application/octet-stream` when unknown).
    pub content_type: String,
    /// SHA-256 of the bytes, 64 lowercase hex digits.
    pub sha256: String,
}

/// Where and how to send one part of an upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UploadPart {
    /// From 1.
    pub part_number: i64,
    /// A signed URL; send the part's bytes as the request body.
    pub url: String,
    /// `PUT`.
    pub method: String,
    /// Headers to send with the request (may be empty).
    pub headers: BTreeMap<String, String>,
    /// Byte offset of this part in the file.
    pub offset: i64,
    /// Exact length of this part.
    pub size: i64,
    /// Send the SHA-256 state of the file's bytes before `offset` in the
    /// `tandem-sha256-state` header (64 hex digits: the eight state words,
    /// big-endian). Control hashes the part from it as it passes; when
    /// every part came with its state, completion does not read the file
    /// back. Without it the upload still works, and is read back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sha256_state: bool,
}

/// The answer to an upload intent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum UploadAnswer {
    /// 200: the same bytes are already stored in this workspace; nothing to send.
    Exists { file: FileMeta },
    /// 201: send the parts, then `POST /files/uploads/{uploadId}/complete`.
    #[serde(rename_all = "camelCase")]
    Pending {
        upload_id: String,
        parts: Vec<UploadPart>,
        /// Unix ms; the URLs and the upload expire then.
        expires_at: i64,
        /// Size of every part but the last; 0 for a single PUT.
        part_size: i64,
        /// Parts already received (when resuming with `GET /files/uploads/{uploadId}`).
        #[serde(default)]
        received_parts: Vec<i64>,
    },
}

/// One sent part, as the store answered it (`ETag` response header).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompletedPart {
    pub part_number: i64,
    /// The `ETag` header the part's PUT answered (S3 needs it; optional for
    /// the directory backend).
    #[serde(default)]
    pub etag: Option<String>,
}

/// `POST /files/uploads/{uploadId}/complete`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteUpload {
    /// The parts of a multipart upload with their ETags; may be omitted
    /// (the server then lists what it received).
    #[serde(default)]
    pub parts: Option<Vec<CompletedPart>>,
}

/// A stored file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileMeta {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    /// SHA-256 of the bytes (lowercase hex): check it after downloading.
    pub sha256: String,
    pub created_by: Option<String>,
    /// Unix ms.
    pub created_at: i64,
}

/// `201 {file}` of a completed upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileAnswer {
    pub file: FileMeta,
}
