//! The S3 backend: any S3-compatible store (AWS, MinIO, SeaweedFS, R2…),
//! path-style URLs. Clients send and fetch the bytes with presigned URLs
//! (`PUT` object, or `UploadPart` of a multipart upload; `GET` object with
//! the name and type set by `response-content-*`); control itself only
//! starts, lists, completes and aborts multipart uploads, checks the
//! SHA-256 of what arrived, and deletes objects. Requests are signed with
//! `rusty-s3` (sans-IO) and sent with `reqwest`.
//!
//! Checking the bytes ([`Verify`]): a one-part upload's URL signs
//! `x-amz-checksum-sha256` (the declared hash) and `content-length`, so the
//! store refuses any other body (`BadDigest`) and control only asks it for
//! the stored checksum (`HEAD` with `x-amz-checksum-mode: ENABLED`). An
//! object the store keeps no SHA-256 of, every multipart upload (S3 keeps
//! per-part checksums only, which say nothing of the whole file's SHA-256),
//! and `TANDEM_S3_VERIFY=readback` are read back and hashed, the hashing
//! overlapping the download.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use ring::digest;
use rusty_s3::actions::{CreateMultipartUpload, ListParts};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tandem_protocol::files::{CompletedPart, Sha256State, UploadPart};

use super::{content_disposition, now_secs, BlobStore, Download, Plan, UrlSigner};
use crate::config::ControlConfig;
use crate::error::ApiError;

/// Lifetime of the URLs control signs for its own requests.
const OWN_REQUEST_TTL: Duration = Duration::from_secs(120);

/// How completion checks an upload's bytes (`TANDEM_S3_VERIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The store verifies a signed `x-amz-checksum-sha256`; read back only
    /// what it keeps no checksum of (and multipart uploads).
    Checksum,
    /// Always read the object back and hash it.
    Readback,
}

impl Verify {
    pub fn parse(s: &str) -> anyhow::Result<Verify> {
        match s {
            "checksum" => Ok(Verify::Checksum),
            "readback" => Ok(Verify::Readback),
            other => anyhow::bail!("TANDEM_S3_VERIFY must be checksum or readback (got {other:?})"),
        }
    }
}

pub struct S3Store {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
    verify: Verify,
    /// Signs the URLs of uploads sent through control.
    pub signer: UrlSigner,
    /// One-part uploads of at most this many bytes go through control
    /// (`TANDEM_S3_THROUGH_CONTROL_BYTES`; 0: none).
    through_control: i64,
    /// The parts of multipart uploads begun now go through control
    /// (`TANDEM_S3_PARTS_THROUGH_CONTROL`).
    pub parts_through_control: bool,
}

/// The `x-amz-checksum-sha256` value (base64) of a hex SHA-256.
fn checksum_header(sha256_hex: &str) -> Result<String, ApiError> {
    let raw = hex::decode(sha256_hex).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(raw))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "S3 {what} failed");
    ApiError::Unavailable
}

/// [`unavailable`] for an error of the request to the store, logged without
/// its URL: a presigned URL carries a signature valid for minutes.
fn store_failed(what: &str, e: reqwest::Error) -> ApiError {
    unavailable(what, e.without_url())
}

fn status_error(what: &str, status: reqwest::StatusCode) -> ApiError {
    tracing::warn!(%status, "S3 {what} answered an error");
    ApiError::Unavailable
}

/// Passes `body` on to `tx` chunk by chunk, hashing it into `hash` if there
/// is one. When the bytes are not exactly `len` long, or (with `expect`)
/// their hash does not end in that SHA-256, the chunk that shows it is not
/// passed on: an error is, which cuts the receiving request short. Returns
/// the hash after the last byte.
async fn pass_on_checked<S, E>(
    mut body: S,
    len: u64,
    mut hash: Option<Sha256State>,
    expect: Option<&str>,
    tx: tokio::sync::mpsc::Sender<Result<actix_web::web::Bytes, std::io::Error>>,
) -> Result<Option<Sha256State>, ApiError>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    let mut written = 0u64;
    let wrong = |hash: &Option<Sha256State>| match (hash, expect) {
        (Some(hash), Some(e)) => hash.clone().finish_hex() != e,
        _ => false,
    };
    let checked = loop {
        let chunk = match body.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => break Err(ApiError::BadRequest(format!("reading the body: {e}"))),
            None if written < len => {
                break Err(ApiError::SizeMismatch(format!(
                    "exactly {len} bytes were expected; {written} were sent"
                )))
            }
            // Only an empty body gets here unchecked.
            None if len == 0 && wrong(&hash) => break Err(ApiError::HashMismatch),
            None => break Ok(()),
        };
        written += chunk.len() as u64;
        if written > len {
            break Err(ApiError::SizeMismatch(format!(
                "exactly {len} bytes were expected; more were sent"
            )));
        }
        if let Some(hash) = &mut hash {
            hash.update(&chunk);
        }
        if written == len && wrong(&hash) {
            break Err(ApiError::HashMismatch);
        }
        if tx.send(Ok(chunk)).await.is_err() {
            break Err(ApiError::Unavailable); // the store's request ended
        }
    };
    if let Err(e) = &checked {
        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
    }
    checked.map(|()| hash)
}

impl S3Store {
    pub fn from_config(config: &ControlConfig, signer: UrlSigner) -> anyhow::Result<S3Store> {
        super::check_config(config)?;
        let need = |v: &Option<String>, name: &str| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| anyhow::anyhow!("TANDEM_FILES_BACKEND=s3 needs {name}"))
        };
        let endpoint = need(&config.s3_endpoint, "TANDEM_S3_ENDPOINT")?;
        let bucket = need(&config.s3_bucket, "TANDEM_S3_BUCKET")?;
        let key = need(&config.s3_access_key_id, "TANDEM_S3_ACCESS_KEY_ID")?;
        let secret = need(&config.s3_secret_access_key, "TANDEM_S3_SECRET_ACCESS_KEY")?;
        let endpoint: url::Url = endpoint
            .parse()
            .map_err(|e| anyhow::anyhow!("TANDEM_S3_ENDPOINT: {e}"))?;
        let bucket = Bucket::new(endpoint, UrlStyle::Path, bucket, config.s3_region.clone())
            .map_err(|e| anyhow::anyhow!("TANDEM_S3_ENDPOINT/BUCKET: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(S3Store {
            bucket,
            credentials: Credentials::new(key, secret),
            http,
            verify: Verify::parse(&config.s3_verify)?,
            signer,
            through_control: config.s3_through_control_bytes,
            parts_through_control: config.s3_parts_through_control,
        })
    }

    /// Whether the bytes of `plan` are sent to control, which passes them on
    /// to the store: a one-part upload of at most
    /// `TANDEM_S3_THROUGH_CONTROL_BYTES` (its `PUT` completes it: one
    /// request fewer, which is most of a small file's time), and the parts
    /// of a multipart upload begun while `TANDEM_S3_PARTS_THROUGH_CONTROL`
    /// was on.
    pub fn through_control(&self, plan: &Plan) -> bool {
        if plan.part_bytes > 0 {
            return plan.parts_through_control;
        }
        plan.multipart_id.is_none() && plan.size <= self.through_control
    }

    /// Whether part `n` of `plan`, sent through control, is to come with the
    /// SHA-256 state at its offset: every part after the first, when parts
    /// end on 64-byte blocks.
    pub fn wants_state(&self, plan: &Plan, n: i64) -> bool {
        super::chain_wanted(plan, n) && self.through_control(plan)
    }

    /// Passes part `n` of an upload on to the store as it arrives (a
    /// one-part upload's whole body, or a part of a multipart upload),
    /// hashing it from `hash` (the state at the part's offset), if given.
    /// With `expect`, the part must end in that SHA-256 (a one-part upload
    /// or the last part, in the file's), and bytes that are not exactly the
    /// part's length never complete the store's request either: its body is
    /// cut short and `HashMismatch` (or the size error) returned. A store
    /// may still keep what it got: on `HashMismatch` the caller removes it,
    /// otherwise the part is sent again over it or the upload is collected
    /// when it expires. Returns the hash after the part.
    pub async fn put_part_through<S, E>(
        &self,
        plan: &Plan,
        n: i64,
        hash: Option<Sha256State>,
        expect: Option<&str>,
        body: S,
    ) -> Result<Option<Sha256State>, ApiError>
    where
        S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let Some((_, len)) = plan.part_range(n) else {
            return Err(ApiError::NotFound("upload part"));
        };
        if plan.part_bytes == 0 {
            let action = self.bucket.put_object(self.creds(), &plan.key);
            return self.pass_on(action, len as u64, hash, expect, body).await;
        }
        let Some(upload) = &plan.multipart_id else {
            return Err(ApiError::NotFound("upload part"));
        };
        let number = u16::try_from(n).map_err(|_| ApiError::validation("more than 10000 parts"))?;
        let action = self
            .bucket
            .upload_part(self.creds(), &plan.key, number, upload);
        self.pass_on(action, len as u64, hash, expect, body).await
    }

    /// Sends `body` to the store with `action` (a `PUT`), exactly `len`
    /// bytes, checked by [`pass_on_checked`] on the way.
    async fn pass_on<'a, A, S, E>(
        &self,
        mut action: A,
        len: u64,
        hash: Option<Sha256State>,
        expect: Option<&str>,
        body: S,
    ) -> Result<Option<Sha256State>, ApiError>
    where
        A: S3Action<'a>,
        S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        action
            .headers_mut()
            .insert("content-length", len.to_string());
        let url = action.sign(OWN_REQUEST_TTL);
        type Chunk = Result<actix_web::web::Bytes, std::io::Error>;
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(16);
        let chunks =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
            );
        let send = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(chunks))
            .send();
        let pump = pass_on_checked(body, len, hash, expect, tx);
        let (pumped, sent) = futures_util::join!(pump, send);
        let hash = pumped?;
        let res = sent.map_err(|e| store_failed("put", e))?;
        if !res.status().is_success() {
            return Err(status_error("put", res.status()));
        }
        Ok(hash)
    }

    fn creds(&self) -> Option<&Credentials> {
        Some(&self.credentials)
    }

    /// Seconds from now until `expires_at` (at least one).
    fn ttl_until(expires_at: u64) -> Duration {
        Duration::from_secs(expires_at.saturating_sub(now_secs()).max(1))
    }

    /// The parts S3 holds of a multipart upload: `(number, etag, size)`.
    async fn list_parts(
        &self,
        key: &str,
        upload: &str,
    ) -> Result<Vec<(i64, String, u64)>, ApiError> {
        let mut out = Vec::new();
        let mut marker: Option<u16> = None;
        loop {
            let mut action = ListParts::new(&self.bucket, self.creds(), key, upload);
            if let Some(m) = marker {
                action.set_part_number_marker(m);
            }
            let res = self
                .http
                .get(action.sign(OWN_REQUEST_TTL))
                .send()
                .await
                .map_err(|e| store_failed("list parts", e))?;
            if res.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(out);
            }
            if !res.status().is_success() {
                return Err(status_error("list parts", res.status()));
            }
            let body = res
                .bytes()
                .await
                .map_err(|e| store_failed("list parts", e))?;
            let parsed =
                ListParts::parse_response(&body).map_err(|e| unavailable("list parts", e))?;
            for p in &parsed.parts {
                out.push((i64::from(p.number), p.etag.clone(), p.size));
            }
            match parsed.next_part_number_marker {
                Some(m) if !parsed.parts.is_empty() && marker != Some(m) => marker = Some(m),
                _ => return Ok(out),
            }
        }
    }

    /// Reads an object back: its length and SHA-256 hex; `None` when absent.
    /// An object whose length is not `expected` is not read (or no further
    /// than one chunk past it): its length alone refuses it. Hashing runs on
    /// a blocking thread while the next chunks arrive.
    async fn hash_object(
        &self,
        key: &str,
        expected: u64,
    ) -> Result<Option<(u64, String)>, ApiError> {
        let url = self
            .bucket
            .get_object(self.creds(), key)
            .sign(OWN_REQUEST_TTL);
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| store_failed("read back", e))?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !res.status().is_success() {
            return Err(status_error("read back", res.status()));
        }
        if let Some(len) = res.content_length().filter(|len| *len != expected) {
            return Ok(Some((len, String::new())));
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<actix_web::web::Bytes>(64);
        let hasher = tokio::task::spawn_blocking(move || {
            let mut ctx = digest::Context::new(&digest::SHA256);
            while let Some(chunk) = rx.blocking_recv() {
                ctx.update(&chunk);
            }
            hex::encode(ctx.finish().as_ref())
        });
        let mut total = 0u64;
        let mut res = res;
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| store_failed("read back", e))?
        {
            total += chunk.len() as u64;
            if total > expected {
                return Ok(Some((total, String::new())));
            }
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(tx);
        let hash = hasher.await.map_err(|e| ApiError::Internal(e.into()))?;
        Ok(Some((total, hash)))
    }

    /// The stored length and `x-amz-checksum-sha256` (base64) of an object,
    /// if the store keeps one; `None` when there is no such object.
    async fn stored_checksum(&self, key: &str) -> Result<Option<(u64, Option<String>)>, ApiError> {
        let mut action = self.bucket.head_object(self.creds(), key);
        action
            .headers_mut()
            .insert("x-amz-checksum-mode", "ENABLED");
        let url = action.sign(OWN_REQUEST_TTL);
        let res = self
            .http
            .head(url)
            .header("x-amz-checksum-mode", "ENABLED")
            .send()
            .await
            .map_err(|e| store_failed("head", e))?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !res.status().is_success() {
            return Err(status_error("head", res.status()));
        }
        let len = res
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| unavailable("head", "no content-length"))?;
        let checksum = res
            .headers()
            .get("x-amz-checksum-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Some((len, checksum)))
    }

    async fn complete_multipart(&self, plan: &Plan, upload: &str) -> Result<(), ApiError> {
        let listed = self.list_parts(&plan.key, upload).await?;
        let mut missing = Vec::new();
        let mut etags = Vec::new();
        for n in 1..=plan.part_count() {
            let (_, len) = plan.part_range(n).unwrap_or((0, 0));
            match listed.iter().find(|p| p.0 == n) {
                Some((_, etag, size)) if *size == len as u64 => etags.push(etag.clone()),
                Some((_, _, size)) => {
                    return Err(ApiError::SizeMismatch(format!(
                        "part {n} has {size} bytes, not {len}; nothing was kept"
                    )))
                }
                None => missing.push(n),
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::Conflict(format!(
                "parts not received yet: {missing:?}; send them and complete again"
            )));
        }
        let action = self.bucket.complete_multipart_upload(
            self.creds(),
            &plan.key,
            upload,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(OWN_REQUEST_TTL);
        let res = self
            .http
            .post(url)
            .body(action.body())
            .send()
            .await
            .map_err(|e| store_failed("complete multipart", e))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        // S3 may answer 200 with an <Error> body.
        if !status.is_success() || text.contains("<Error>") {
            if self.exists(&plan.key).await? {
                return Ok(()); // completed by an earlier call
            }
            tracing::warn!(%status, body = %text.chars().take(300).collect::<String>(), "S3 complete multipart failed");
            return Err(ApiError::Unavailable);
        }
        Ok(())
    }
}

impl BlobStore for S3Store {
    async fn begin(&self, plan: &Plan) -> Result<Option<String>, ApiError> {
        if plan.part_bytes == 0 {
            return Ok(None);
        }
        let mut action = CreateMultipartUpload::new(&self.bucket, self.creds(), &plan.key);
        action
            .headers_mut()
            .insert("content-type", plan.content_type.clone());
        let url = action.sign(OWN_REQUEST_TTL);
        let res = self
            .http
            .post(url)
            .header("content-type", plan.content_type.as_str())
            .send()
            .await
            .map_err(|e| store_failed("create multipart", e))?;
        if !res.status().is_success() {
            return Err(status_error("create multipart", res.status()));
        }
        let body = res
            .bytes()
            .await
            .map_err(|e| store_failed("create multipart", e))?;
        let parsed = CreateMultipartUpload::parse_response(&body)
            .map_err(|e| unavailable("create multipart", e))?;
        Ok(Some(parsed.upload_id().to_string()))
    }

    fn part_urls(&self, plan: &Plan, base: &str) -> Result<Vec<UploadPart>, ApiError> {
        let ttl = Self::ttl_until(plan.expires_at);
        (1..=plan.part_count())
            .map(|n| {
                let (offset, size) = plan.part_range(n).unwrap_or((0, 0));
                if self.through_control(plan) {
                    let path = super::dir::DirStore::part_path(&plan.file_id, n);
                    let query = self.signer.query("PUT", &path, plan.expires_at);
                    return Ok(UploadPart {
                        part_number: n,
                        url: format!("{base}{path}?{query}"),
                        method: "PUT".into(),
                        headers: BTreeMap::new(),
                        offset,
                        size,
                        sha256_state: self.wants_state(plan, n),
                    });
                }
                let mut headers = BTreeMap::new();
                let url = match &plan.multipart_id {
                    Some(upload) => {
                        let number = u16::try_from(n)
                            .map_err(|_| ApiError::validation("more than 10000 parts"))?;
                        self.bucket
                            .upload_part(self.creds(), &plan.key, number, upload)
                            .sign(ttl)
                    }
                    None => {
                        let mut action = self.bucket.put_object(self.creds(), &plan.key);
                        if self.verify == Verify::Checksum {
                            // Signed: the store refuses other bytes (or no header).
                            let checksum = checksum_header(&plan.sha256)?;
                            action
                                .headers_mut()
                                .insert("x-amz-checksum-sha256", checksum.clone());
                            if size > 0 {
                                action
                                    .headers_mut()
                                    .insert("content-length", size.to_string());
                            }
                            headers.insert("x-amz-checksum-sha256".to_string(), checksum);
                        }
                        action.sign(ttl)
                    }
                };
                Ok(UploadPart {
                    part_number: n,
                    url: url.to_string(),
                    method: "PUT".into(),
                    headers,
                    offset,
                    size,
                    sha256_state: false,
                })
            })
            .collect()
    }

    async fn received_parts(&self, plan: &Plan) -> Result<Vec<i64>, ApiError> {
        match &plan.multipart_id {
            Some(upload) => {
                let listed = self.list_parts(&plan.key, upload).await?;
                let mut out: Vec<i64> = (1..=plan.part_count())
                    .filter(|n| {
                        let len = plan.part_range(*n).map(|r| r.1 as u64);
                        listed.iter().any(|p| p.0 == *n && Some(p.2) == len)
                    })
                    .collect();
                out.dedup();
                Ok(out)
            }
            None => Ok(if self.exists(&plan.key).await? {
                vec![1]
            } else {
                Vec::new()
            }),
        }
    }

    async fn finish(
        &self,
        plan: &Plan,
        sha256: &str,
        _parts: Option<&[CompletedPart]>,
        proven: bool,
    ) -> Result<u64, ApiError> {
        if let Some(upload) = &plan.multipart_id {
            self.complete_multipart(plan, upload).await?;
            if proven {
                // Every part passed control, which hashed it from the state
                // the part before ended in, and the last ended in `sha256`;
                // complete_multipart checked each part's length.
                return Ok(0);
            }
        } else if self.verify == Verify::Checksum {
            let Some((size, stored)) = self.stored_checksum(&plan.key).await? else {
                return Err(ApiError::Conflict(
                    "the file has not been received yet; send it and complete again".into(),
                ));
            };
            if size != plan.size as u64 {
                return Err(ApiError::SizeMismatch(format!(
                    "received {size} bytes, {} were declared; nothing was kept",
                    plan.size
                )));
            }
            match stored {
                // The store checked the body against this signed checksum.
                Some(c) if c == checksum_header(sha256)? => return Ok(0),
                Some(_) => return Err(ApiError::HashMismatch),
                None => {
                    tracing::debug!("the S3 store keeps no SHA-256 checksum: reading back");
                }
            }
        }
        let Some((size, hash)) = self.hash_object(&plan.key, plan.size as u64).await? else {
            return Err(ApiError::Conflict(
                "the file has not been received yet; send it and complete again".into(),
            ));
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
        Ok(size)
    }

    async fn abort(&self, plan: &Plan) -> Result<(), ApiError> {
        if let Some(upload) = &plan.multipart_id {
            let url = self
                .bucket
                .abort_multipart_upload(self.creds(), &plan.key, upload)
                .sign(OWN_REQUEST_TTL);
            // A completed upload cannot be aborted (404 NoSuchUpload, or
            // another error on some stores): the object is deleted below
            // either way, so a failed abort is only logged.
            match self.http.delete(url).send().await {
                Ok(res)
                    if res.status().is_success()
                        || res.status() == reqwest::StatusCode::NOT_FOUND => {}
                Ok(res) => tracing::info!(status = %res.status(), "S3 abort multipart refused"),
                Err(e) => tracing::info!(error = %e, "S3 abort multipart failed"),
            }
        }
        self.delete(&plan.key).await
    }

    fn download_url(&self, d: &Download<'_>, _base: &str) -> Result<String, ApiError> {
        let mut action = self.bucket.get_object(self.creds(), d.key);
        action
            .query_mut()
            .insert("response-content-disposition", content_disposition(d.name));
        action
            .query_mut()
            .insert("response-content-type", d.content_type.to_string());
        Ok(action.sign(Self::ttl_until(d.expires_at)).to_string())
    }

    async fn delete(&self, key: &str) -> Result<(), ApiError> {
        let url = self
            .bucket
            .delete_object(self.creds(), key)
            .sign(OWN_REQUEST_TTL);
        let res = self
            .http
            .delete(url)
            .send()
            .await
            .map_err(|e| store_failed("delete", e))?;
        let s = res.status();
        if !s.is_success() && s != reqwest::StatusCode::NOT_FOUND {
            return Err(status_error("delete", s));
        }
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, ApiError> {
        let url = self
            .bucket
            .head_object(self.creds(), key)
            .sign(OWN_REQUEST_TTL);
        let res = self
            .http
            .head(url)
            .send()
            .await
            .map_err(|e| store_failed("head", e))?;
        match res.status() {
            s if s.is_success() => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            s => Err(status_error("head", s)),
        }
    }
}
