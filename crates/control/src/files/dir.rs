//! The directory backend: files under `TANDEM_FILES_DIR`, transferred
//! through control itself (`PUT /blobs/{fileId}/parts/{n}`,
//! `GET /blobs/{fileId}`) with HMAC-signed, expiring URLs.
//!
//! Layout: `uploads/{fileId}/data` (the file being received, parts written
//! at their offsets), `uploads/{fileId}/part-{n}` (part `n` arrived whole),
//! `blobs/{workspaceId}/{fileId}` (checked files).

use std::collections::BTreeMap;
use std::io::{Read, SeekFrom};
use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use ring::digest;
use tandem_protocol::files::{CompletedPart, Sha256State, UploadPart};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{BlobStore, Download, Plan, UrlSigner};
use crate::error::ApiError;

pub struct DirStore {
    root: PathBuf,
    pub signer: UrlSigner,
}

fn io(e: std::io::Error) -> ApiError {
    ApiError::Internal(e.into())
}

/// Ids and keys are made by control; anything else is refused before it
/// reaches a path.
fn safe(part: &str) -> Result<&str, ApiError> {
    let ok = !part.is_empty()
        && part.len() <= 200
        && part.split('/').all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(part)
    } else {
        Err(ApiError::Internal(anyhow::anyhow!(
            "unsafe storage key {part:?}"
        )))
    }
}

impl DirStore {
    pub fn new(root: PathBuf, signer: UrlSigner) -> DirStore {
        DirStore { root, signer }
    }

    fn upload_dir(&self, file_id: &str) -> Result<PathBuf, ApiError> {
        Ok(self.root.join("uploads").join(safe(file_id)?))
    }

    /// Where the checked bytes of `key` are.
    pub fn blob_path(&self, key: &str) -> Result<PathBuf, ApiError> {
        Ok(self.root.join("blobs").join(safe(key)?))
    }

    /// The signed path and query of a part upload.
    pub fn part_path(file_id: &str, n: i64) -> String {
        format!("/blobs/{file_id}/parts/{n}")
    }

    /// The signed path of a download.
    pub fn download_path(file_id: &str) -> String {
        format!("/blobs/{file_id}")
    }

    /// Receives part `n` of an upload from `body`: exactly the part's length,
    /// written at its offset, hashed into `hash` if given. With `expect`
    /// (a single-part upload, or the last part of a chain) the bytes must
    /// end in that SHA-256, or `HashMismatch` is returned (the caller then
    /// removes the upload while it is pending). Returns the bytes written
    /// and the hash after them.
    pub async fn write_part<S, E>(
        &self,
        plan: &Plan,
        n: i64,
        mut hash: Option<Sha256State>,
        expect: Option<&str>,
        mut body: S,
    ) -> Result<(u64, Option<Sha256State>), ApiError>
    where
        S: Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let (offset, len) = plan
            .part_range(n)
            .ok_or(ApiError::NotFound("upload part"))?;
        let dir = self.upload_dir(&plan.file_id)?;
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let marker = dir.join(format!("part-{n}"));
        let _ = tokio::fs::remove_file(&marker).await;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("data"))
            .await
            .map_err(io)?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        out.seek(SeekFrom::Start(offset as u64)).await.map_err(io)?;
        let mut written: i64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
            written += chunk.len() as i64;
            if written > len {
                return Err(ApiError::SizeMismatch(format!(
                    "part {n} must be exactly {len} bytes; more were sent"
                )));
            }
            if let Some(h) = hash.as_mut() {
                h.update(&chunk);
            }
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        if written != len {
            return Err(ApiError::SizeMismatch(format!(
                "part {n} must be exactly {len} bytes; {written} were sent"
            )));
        }
        if let (Some(h), Some(expect)) = (&hash, expect) {
            if h.clone().finish_hex() != expect {
                // The caller removes the upload's bytes while it is pending.
                return Err(ApiError::HashMismatch);
            }
        }
        tokio::fs::write(&marker, b"").await.map_err(io)?;
        Ok((written as u64, hash))
    }

    /// Opens the checked bytes of `key` with their length.
    pub async fn open(&self, key: &str) -> Result<(tokio::fs::File, u64), ApiError> {
        let path = self.blob_path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ApiError::NotFound("file"))
            }
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().await.map_err(io)?.len();
        Ok((file, len))
    }
}

/// Hashes a whole file (on a blocking thread): its length and SHA-256 hex.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        ctx.update(&buf[..n]);
    }
    Ok((total, hex::encode(ctx.finish().as_ref())))
}

impl BlobStore for DirStore {
    async fn begin(&self, _plan: &Plan) -> Result<Option<String>, ApiError> {
        Ok(None)
    }

    fn part_urls(&self, plan: &Plan, base: &str) -> Result<Vec<UploadPart>, ApiError> {
        (1..=plan.part_count())
            .map(|n| {
                let (offset, size) = plan.part_range(n).unwrap_or((0, 0));
                let path = Self::part_path(&plan.file_id, n);
                let query = self.signer.query("PUT", &path, plan.expires_at);
                Ok(UploadPart {
                    part_number: n,
                    url: format!("{base}{path}?{query}"),
                    method: "PUT".into(),
                    headers: BTreeMap::new(),
                    offset,
                    size,
                    sha256_state: super::chain_wanted(plan, n),
                })
            })
            .collect()
    }

    async fn received_parts(&self, plan: &Plan) -> Result<Vec<i64>, ApiError> {
        let dir = self.upload_dir(&plan.file_id)?;
        let mut out = Vec::new();
        for n in 1..=plan.part_count() {
            if tokio::fs::try_exists(dir.join(format!("part-{n}")))
                .await
                .unwrap_or(false)
            {
                out.push(n);
            }
        }
        Ok(out)
    }

    async fn finish(
        &self,
        plan: &Plan,
        sha256: &str,
        _parts: Option<&[CompletedPart]>,
        proven: bool,
    ) -> Result<u64, ApiError> {
        let blob = self.blob_path(&plan.key)?;
        let dir = self.upload_dir(&plan.file_id)?;
        let received = self.received_parts(plan).await?;
        if received.len() as i64 != plan.part_count() {
            if tokio::fs::try_exists(&blob).await.unwrap_or(false) {
                return Ok(0); // finished before (a repeated call)
            }
            let missing: Vec<i64> = (1..=plan.part_count())
                .filter(|n| !received.contains(n))
                .collect();
            return Err(ApiError::Conflict(format!(
                "parts not received yet: {missing:?}; send them and complete again"
            )));
        }
        let data = dir.join("data");
        let (size, hash, read) = if proven {
            // Every part was hashed as it was written, in a chain that ends
            // in `sha256`: only the length is left to check.
            let size = tokio::fs::metadata(&data).await.map_err(io)?.len();
            (size, sha256.to_string(), 0)
        } else {
            let (size, hash) = tokio::task::spawn_blocking(move || hash_file(&data))
                .await
                .map_err(|e| ApiError::Internal(e.into()))?
                .map_err(io)?;
            (size, hash, size)
        };
        if size != plan.size as u64 {
            return Err(ApiError::SizeMismatch(format!(
                "received {size} bytes, {} were declared; nothing was kept",
                plan.size
            )));
        }
        if hash != sha256 {
            return Err(ApiError::HashMismatch);
        }
        if let Some(parent) = blob.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        tokio::fs::rename(dir.join("data"), &blob)
            .await
            .map_err(io)?;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(read)
    }

    async fn abort(&self, plan: &Plan) -> Result<(), ApiError> {
        let dir = self.upload_dir(&plan.file_id)?;
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        self.delete(&plan.key).await
    }

    fn download_url(&self, d: &Download<'_>, base: &str) -> Result<String, ApiError> {
        let path = Self::download_path(d.file_id);
        let query = self.signer.query("GET", &path, d.expires_at);
        Ok(format!("{base}{path}?{query}"))
    }

    async fn delete(&self, key: &str) -> Result<(), ApiError> {
        match tokio::fs::remove_file(self.blob_path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, ApiError> {
        Ok(tokio::fs::try_exists(self.blob_path(key)?)
            .await
            .unwrap_or(false))
    }
}
