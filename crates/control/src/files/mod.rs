//! File storage: where the bytes of uploaded files live, behind one trait
//! ([`BlobStore`]) with two backends — a directory on this machine
//! ([`dir::DirStore`], the default: control signs the transfer URLs with an
//! HMAC and serves them itself) and any S3-compatible store
//! ([`s3::S3Store`]: presigned URLs). The metadata (what a workspace holds,
//! who refers to it) is in the database (`store::files`); the
//! [`collector`] removes bytes nothing refers to any more.

pub mod collector;
pub mod dir;
pub mod s3;

use std::time::{SystemTime, UNIX_EPOCH};

use ring::hmac;
use tandem_protocol::files::{CompletedPart, UploadPart};

use crate::config::ControlConfig;
use crate::error::ApiError;

/// What a backend needs to know about one upload.
#[derive(Debug, Clone)]
pub struct Plan {
    pub file_id: String,
    pub key: String,
    pub size: i64,
    /// 0: one PUT of the whole file.
    pub part_bytes: i64,
    pub multipart_id: Option<String>,
    pub content_type: String,
    /// The declared SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    /// Unix seconds; the part URLs expire then.
    pub expires_at: u64,
    /// The parts of a multipart upload go through control.
    pub parts_through_control: bool,
}

impl Plan {
    /// Number of parts (1 for a single PUT).
    pub fn part_count(&self) -> i64 {
        part_count(self.size, self.part_bytes)
    }

    /// Offset and length of part `n` (from 1), if there is such a part.
    pub fn part_range(&self, n: i64) -> Option<(i64, i64)> {
        if n < 1 || n > self.part_count() {
            return None;
        }
        if self.part_bytes == 0 {
            return Some((0, self.size));
        }
        let offset = (n - 1) * self.part_bytes;
        Some((offset, (self.size - offset).min(self.part_bytes)))
    }
}

/// Parts of a file of `size` bytes sent in parts of `part_bytes` (0: one part).
pub fn part_count(size: i64, part_bytes: i64) -> i64 {
    if part_bytes <= 0 {
        1
    } else {
        ((size + part_bytes - 1) / part_bytes).max(1)
    }
}

/// Whether part `n` of `plan`, when its bytes pass control, is to come with
/// the SHA-256 state at its offset: every part after the first of a
/// multipart upload whose parts end on 64-byte blocks.
pub fn chain_wanted(plan: &Plan, n: i64) -> bool {
    plan.part_bytes > 0 && plan.part_bytes % 64 == 0 && n > 1
}

/// Whether the recorded parts of an upload (`store::files::parts`) prove
/// its bytes hash to `sha256`: each of its `count` parts was sent once
/// through control, which hashed part 1 from SHA-256's initial state and
/// every later part from the state its client claimed, that claim is the
/// state the part before ended in, and the last part ended in `sha256`.
/// Anything less (a part sent twice, a missing or wrong claim) proves
/// nothing, and the upload is read back instead.
pub fn chain_proves(parts: &[crate::store::files::PartRecord], count: i64, sha256: &str) -> bool {
    if parts.len() as i64 != count {
        return false;
    }
    let mut before: Option<&str> = None;
    for (i, part) in parts.iter().enumerate() {
        let Some(end) = part.end_state.as_deref() else {
            return false;
        };
        let follows = i == 0 || part.start_state.as_deref() == before;
        if part.part_number != i as i64 + 1 || part.attempts != 1 || !follows {
            return false;
        }
        before = Some(end);
    }
    before == Some(sha256)
}

/// How a stored file is to be named and typed when downloaded.
#[derive(Debug, Clone)]
pub struct Download<'a> {
    pub file_id: &'a str,
    pub key: &'a str,
    pub name: &'a str,
    pub content_type: &'a str,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The bytes of files: one implementation per backend. Every method is
/// idempotent, so an interrupted caller may simply call again.
#[allow(async_fn_in_trait)]
pub trait BlobStore {
    /// Prepares an upload; returns the backend's multipart id, if any.
    async fn begin(&self, plan: &Plan) -> Result<Option<String>, ApiError>;
    /// Signed URLs for every part. `base` is control's URL as the client reached it.
    fn part_urls(&self, plan: &Plan, base: &str) -> Result<Vec<UploadPart>, ApiError>;
    /// The parts already received (for resuming).
    async fn received_parts(&self, plan: &Plan) -> Result<Vec<i64>, ApiError>;
    /// Assembles the parts and checks the bytes are `size` long with SHA-256
    /// `sha256`: `HashMismatch` or `SizeMismatch` when they are not (the
    /// caller then aborts: nothing is kept); missing parts are a `Conflict`
    /// that keeps what was received, so the client can resume. `proven`:
    /// the parts' recorded SHA-256 states already prove the hash
    /// ([`chain_proves`]), so a backend need not read the bytes back.
    /// Returns the bytes read back to check them.
    async fn finish(
        &self,
        plan: &Plan,
        sha256: &str,
        parts: Option<&[CompletedPart]>,
        proven: bool,
    ) -> Result<u64, ApiError>;
    /// Removes an upload's parts and bytes (after a failed check, or an
    /// abandoned upload).
    async fn abort(&self, plan: &Plan) -> Result<(), ApiError>;
    /// A signed URL that downloads the file until `d.expires_at`.
    fn download_url(&self, d: &Download<'_>, base: &str) -> Result<String, ApiError>;
    /// Removes the stored bytes of `key`; removing what is not there is fine.
    async fn delete(&self, key: &str) -> Result<(), ApiError>;
    /// Whether bytes are stored under `key` (for checks and tests).
    async fn exists(&self, key: &str) -> Result<bool, ApiError>;
}

/// The configured backend.
pub enum Storage {
    Dir(dir::DirStore),
    S3(Box<s3::S3Store>),
}

impl Storage {
    pub fn from_config(config: &ControlConfig, signer: UrlSigner) -> anyhow::Result<Storage> {
        check_config(config)?;
        match config.files_backend.as_str() {
            "dir" => Ok(Storage::Dir(dir::DirStore::new(
                config.files_dir.clone(),
                signer,
            ))),
            "s3" => Ok(Storage::S3(Box::new(s3::S3Store::from_config(
                config, signer,
            )?))),
            other => anyhow::bail!("TANDEM_FILES_BACKEND must be dir or s3 (got {other:?})"),
        }
    }

    /// Whether the bytes of `plan` are sent to control (which counts them
    /// in `files_bytes_in` as they pass) rather than straight to the store.
    pub fn bytes_pass_control(&self, plan: &Plan) -> bool {
        match self {
            Storage::Dir(_) => true,
            Storage::S3(s) => s.through_control(plan),
        }
    }

    /// Whether part `n` of `plan` is to come with its SHA-256 state.
    pub fn wants_state(&self, plan: &Plan, n: i64) -> bool {
        match self {
            Storage::Dir(_) => chain_wanted(plan, n),
            Storage::S3(s) => s.wants_state(plan, n),
        }
    }

    /// Whether a multipart upload begun now sends its parts through control.
    pub fn parts_through_control(&self) -> bool {
        match self {
            Storage::Dir(_) => false,
            Storage::S3(s) => s.parts_through_control,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Storage::Dir(_) => "dir",
            Storage::S3(_) => "s3",
        }
    }

    /// Signs the URLs control serves itself (every upload and download of
    /// the directory backend; small uploads to S3).
    pub fn signer(&self) -> &UrlSigner {
        match self {
            Storage::Dir(d) => &d.signer,
            Storage::S3(s) => &s.signer,
        }
    }

    /// The directory backend, which serves its own URLs.
    pub fn dir(&self) -> Option<&dir::DirStore> {
        match self {
            Storage::Dir(d) => Some(d),
            Storage::S3(_) => None,
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Storage::Dir($s) => $e,
            Storage::S3($s) => $e,
        }
    };
}

impl BlobStore for Storage {
    async fn begin(&self, plan: &Plan) -> Result<Option<String>, ApiError> {
        each!(self, s => s.begin(plan).await)
    }
    fn part_urls(&self, plan: &Plan, base: &str) -> Result<Vec<UploadPart>, ApiError> {
        each!(self, s => s.part_urls(plan, base))
    }
    async fn received_parts(&self, plan: &Plan) -> Result<Vec<i64>, ApiError> {
        each!(self, s => s.received_parts(plan).await)
    }
    async fn finish(
        &self,
        plan: &Plan,
        sha256: &str,
        parts: Option<&[CompletedPart]>,
        proven: bool,
    ) -> Result<u64, ApiError> {
        each!(self, s => s.finish(plan, sha256, parts, proven).await)
    }
    async fn abort(&self, plan: &Plan) -> Result<(), ApiError> {
        each!(self, s => s.abort(plan).await)
    }
    fn download_url(&self, d: &Download<'_>, base: &str) -> Result<String, ApiError> {
        each!(self, s => s.download_url(d, base))
    }
    async fn delete(&self, key: &str) -> Result<(), ApiError> {
        each!(self, s => s.delete(key).await)
    }
    async fn exists(&self, key: &str) -> Result<bool, ApiError> {
        each!(self, s => s.exists(key).await)
    }
}

/// Smallest part S3 accepts (all but the last part of a multipart upload).
const S3_MIN_PART: i64 = 5 * 1024 * 1024;
/// Largest part, and largest single `PUT`, S3 accepts.
const S3_MAX_PART: i64 = 5 * 1024 * 1024 * 1024;
/// Most parts of one S3 multipart upload.
const S3_MAX_PARTS: i64 = 10_000;

/// Refuses file settings that cannot work, at startup, with the setting to
/// change; better than uploads failing later.
pub fn check_config(c: &ControlConfig) -> anyhow::Result<()> {
    use anyhow::ensure;
    ensure!(
        c.files_max_bytes > 0,
        "TANDEM_FILES_MAX_BYTES must be more than 0 (got {})",
        c.files_max_bytes
    );
    ensure!(
        c.files_quota_bytes >= 0,
        "TANDEM_FILES_QUOTA_BYTES must not be negative (got {})",
        c.files_quota_bytes
    );
    ensure!(
        c.files_part_bytes > 0,
        "TANDEM_FILES_PART_BYTES must be more than 0 (got {})",
        c.files_part_bytes
    );
    ensure!(
        (0..=S3_MAX_PART).contains(&c.s3_through_control_bytes),
        "TANDEM_S3_THROUGH_CONTROL_BYTES must be from 0 to 5 GiB (got {})",
        c.s3_through_control_bytes
    );
    ensure!(
        c.files_url_ttl_secs > 0 && c.files_upload_ttl_secs > 0,
        "TANDEM_FILES_URL_TTL_SECS and TANDEM_FILES_UPLOAD_TTL_SECS must be more than 0"
    );
    if let Some(url) = &c.public_control_url {
        let parsed: url::Url = url
            .parse()
            .map_err(|e| anyhow::anyhow!("TANDEM_PUBLIC_CONTROL_URL {url:?}: {e}"))?;
        ensure!(
            matches!(parsed.scheme(), "http" | "https")
                && parsed.host().is_some()
                && parsed.path() == "/"
                && parsed.query().is_none()
                && parsed.username().is_empty(),
            "TANDEM_PUBLIC_CONTROL_URL must be an http(s) origin such as https://api.example.com \
             (no path, query or credentials; got {url:?})"
        );
    }
    let s3 = [
        ("TANDEM_S3_ENDPOINT", &c.s3_endpoint),
        ("TANDEM_S3_BUCKET", &c.s3_bucket),
        ("TANDEM_S3_ACCESS_KEY_ID", &c.s3_access_key_id),
        ("TANDEM_S3_SECRET_ACCESS_KEY", &c.s3_secret_access_key),
    ];
    let set: Vec<&str> = s3
        .iter()
        .filter(|(_, v)| v.as_deref().is_some_and(|v| !v.trim().is_empty()))
        .map(|(name, _)| *name)
        .collect();
    let unset: Vec<&str> = s3
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !set.contains(name))
        .collect();
    match c.files_backend.as_str() {
        "dir" => ensure!(
            set.is_empty(),
            "{} set but TANDEM_FILES_BACKEND is dir: set TANDEM_FILES_BACKEND=s3 to use S3, \
             or unset them",
            set.join(", ")
        ),
        "s3" => {
            ensure!(
                unset.is_empty(),
                "TANDEM_FILES_BACKEND=s3 needs {} as well",
                unset.join(", ")
            );
            s3::Verify::parse(&c.s3_verify)?;
            ensure!(
                (S3_MIN_PART..=S3_MAX_PART).contains(&c.files_part_bytes),
                "TANDEM_FILES_PART_BYTES must be from 5 MiB to 5 GiB with S3 (got {})",
                c.files_part_bytes
            );
            let most = part_count(c.files_max_bytes, c.files_part_bytes);
            ensure!(
                most <= S3_MAX_PARTS,
                "TANDEM_FILES_MAX_BYTES / TANDEM_FILES_PART_BYTES would make {most} parts; \
                 S3 takes at most {S3_MAX_PARTS}: raise the part size or lower the maximum"
            );
        }
        other => anyhow::bail!("TANDEM_FILES_BACKEND must be dir or s3 (got {other:?})"),
    }
    Ok(())
}

/// Signs the directory backend's URLs: `?expires=SECS&signature=HEX`, an
/// HMAC-SHA256 over `METHOD\npath\nexpires` with a key derived from the
/// relay secret (which every replica shares).
#[derive(Clone)]
pub struct UrlSigner {
    key: hmac::Key,
}

impl UrlSigner {
    pub fn new(secret: &str) -> UrlSigner {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let derived = hmac::sign(&root, b"tandem files url signing v1");
        UrlSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    fn message(method: &str, path: &str, expires: u64) -> String {
        format!("{method}\n{path}\n{expires}")
    }

    /// The query string that makes `method path` valid until `expires`.
    pub fn query(&self, method: &str, path: &str, expires: u64) -> String {
        let tag = hmac::sign(&self.key, Self::message(method, path, expires).as_bytes());
        format!("expires={expires}&signature={}", hex::encode(tag.as_ref()))
    }

    /// Checks a signed request; an altered or expired URL is refused.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        expires: Option<&str>,
        signature: Option<&str>,
    ) -> Result<(), ApiError> {
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(ApiError::InvalidSignature(
                "this URL needs expires and signature parameters",
            ));
        };
        let expires: u64 = expires
            .parse()
            .map_err(|_| ApiError::InvalidSignature("the URL's signature is not valid"))?;
        let tag = hex::decode(signature)
            .map_err(|_| ApiError::InvalidSignature("the URL's signature is not valid"))?;
        hmac::verify(
            &self.key,
            Self::message(method, path, expires).as_bytes(),
            &tag,
        )
        .map_err(|_| ApiError::InvalidSignature("the URL's signature is not valid"))?;
        if expires < now_secs() {
            return Err(ApiError::InvalidSignature(
                "the URL has expired; ask for a new one",
            ));
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `attachment; filename*=UTF-8''…` for a file name (any characters).
pub fn content_disposition(name: &str) -> String {
    let mut out = String::from("attachment; filename*=UTF-8''");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3() -> ControlConfig {
        let mut c = ControlConfig::for_tests("sqlite://:memory:");
        c.files_backend = "s3".into();
        c.s3_endpoint = Some("http://127.0.0.1:9000".into());
        c.s3_bucket = Some("b".into());
        c.s3_access_key_id = Some("k".into());
        c.s3_secret_access_key = Some("s".into());
        c
    }

    fn refused(c: &ControlConfig, says: &str) {
        let e = check_config(c).expect_err(says).to_string();
        assert!(e.contains(says), "{e:?} should mention {says:?}");
    }

    #[test]
    fn good_settings_pass() {
        check_config(&ControlConfig::for_tests("sqlite://:memory:")).unwrap();
        check_config(&s3()).unwrap();
        let mut c = s3();
        c.s3_verify = "readback".into();
        c.public_control_url = Some("https://api.example.com".into());
        check_config(&c).unwrap();
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let dir = || ControlConfig::for_tests("sqlite://:memory:");
        let mut c = dir();
        c.files_part_bytes = 0;
        refused(&c, "TANDEM_FILES_PART_BYTES");
        let mut c = dir();
        c.files_max_bytes = 0;
        refused(&c, "TANDEM_FILES_MAX_BYTES");
        let mut c = dir();
        c.files_quota_bytes = -1;
        refused(&c, "TANDEM_FILES_QUOTA_BYTES");
        let mut c = dir();
        c.files_url_ttl_secs = 0;
        refused(&c, "TANDEM_FILES_URL_TTL_SECS");
        let mut c = dir();
        c.s3_through_control_bytes = -1;
        refused(&c, "TANDEM_S3_THROUGH_CONTROL_BYTES");
        let mut c = dir();
        c.files_backend = "ftp".into();
        refused(&c, "TANDEM_FILES_BACKEND");
        // Half-set S3 settings, either way round.
        let mut c = dir();
        c.s3_bucket = Some("b".into());
        refused(&c, "TANDEM_S3_BUCKET set but TANDEM_FILES_BACKEND is dir");
        let mut c = s3();
        c.s3_secret_access_key = None;
        refused(&c, "needs TANDEM_S3_SECRET_ACCESS_KEY");
        let mut c = s3();
        c.s3_endpoint = Some("  ".into());
        refused(&c, "needs TANDEM_S3_ENDPOINT");
        let mut c = s3();
        c.s3_verify = "trust".into();
        refused(&c, "TANDEM_S3_VERIFY");
        // S3's part limits.
        let mut c = s3();
        c.files_part_bytes = 1024 * 1024;
        refused(&c, "5 MiB to 5 GiB");
        let mut c = s3();
        c.files_part_bytes = 6 * 1024 * 1024 * 1024;
        refused(&c, "5 MiB to 5 GiB");
        let mut c = s3();
        c.files_part_bytes = S3_MIN_PART;
        c.files_max_bytes = 10_001 * S3_MIN_PART;
        refused(&c, "10001 parts");
        for url in [
            "not a url",
            "ftp://x.example",
            "https://x.example/api",
            "https://x.example/?a=b",
            "https://u:p@x.example",
        ] {
            let mut c = dir();
            c.public_control_url = Some(url.into());
            refused(&c, "TANDEM_PUBLIC_CONTROL_URL");
        }
    }
}
