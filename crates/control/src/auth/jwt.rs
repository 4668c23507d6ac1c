//! Verification of identity-provider JWTs (Clerk and the like) with `ring`.
//!
//! Accepted algorithms: RS256, ES256, EdDSA (Ed25519). `alg: none` and every
//! HMAC algorithm are refused, whatever the keys. The key is chosen by `kid`
//! (or, without one, every key of the matching type is tried), and a key that
//! names its own `alg` must match the header's. A header with `crit` is
//! refused (no extension is understood, RFC 7515 §4.1.11). Claims checked:
//! `exp` (required), `nbf`, `iss` and `aud`/`azp` (startup requires both to be
//! configured unless explicitly waived). `email_verified` is read (a boolean,
//! or the strings `"true"`/`"false"` some providers send) and decides whether
//! the user may join their domain's org.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// Longest token accepted (bytes).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 60;
/// A JWKS URL is fetched again for an unknown `kid` at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("JWT algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("no key matches the token")]
    UnknownKey,
    #[error("JWT signature is not valid")]
    Signature,
    #[error("JWT has expired")]
    Expired,
    #[error("JWT is not valid yet")]
    NotYetValid,
    #[error("JWT issuer is not accepted")]
    Issuer,
    #[error("JWT audience is not accepted")]
    Audience,
    #[error("JWT lacks the {0} claim")]
    MissingClaim(&'static str),
    #[error("JWT header names critical extensions (crit), which are not supported")]
    Critical,
}

/// The claims Tandem uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// The provider vouches that the subject owns `email`.
    pub email_verified: bool,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// `email_verified` as providers send it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn is_true(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Text(t) => t == "true",
        }
    }
}

#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iss: Option<String>,
    aud: Option<Audience>,
    azp: Option<String>,
    email: Option<String>,
    name: Option<String>,
    email_verified: Option<Flag>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    fn parse(s: &str) -> Result<Alg, JwtError> {
        match s {
            "RS256" => Ok(Alg::Rs256),
            "ES256" => Ok(Alg::Es256),
            "EdDSA" => Ok(Alg::EdDsa),
            other => Err(JwtError::Algorithm(other.chars().take(16).collect())),
        }
    }
}

/// One public key from a JWKS.
#[derive(Debug, Clone)]
struct Key {
    kid: Option<String>,
    alg: Alg,
    material: KeyMaterial,
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed P-256 point, `04 || x || y`.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

impl Jwk {
    /// The key, or `None` for keys Tandem does not use (HMAC, encryption, other curves).
    fn into_key(self) -> Option<Key> {
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let (alg, material) = match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => (
                Alg::Rs256,
                KeyMaterial::Rsa {
                    n: b64(self.n.as_deref()?)?,
                    e: b64(self.e.as_deref()?)?,
                },
            ),
            ("EC", Some("P-256")) => {
                let (x, y) = (b64(self.x.as_deref()?)?, b64(self.y.as_deref()?)?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (Alg::Es256, KeyMaterial::P256(point))
            }
            ("OKP", Some("Ed25519")) => {
                (Alg::EdDsa, KeyMaterial::Ed25519(b64(self.x.as_deref()?)?))
            }
            _ => return None,
        };
        if let Some(declared) = &self.alg {
            if Alg::parse(declared).ok()? != alg {
                return None;
            }
        }
        Some(Key {
            kid: self.kid,
            alg,
            material,
        })
    }
}

/// Parses a JWKS document, keeping the keys Tandem can verify with.
fn parse_jwks(json: &str) -> anyhow::Result<Vec<Key>> {
    let set: JwkSet = serde_json::from_str(json)?;
    Ok(set.keys.into_iter().filter_map(Jwk::into_key).collect())
}

impl Key {
    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            KeyMaterial::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            KeyMaterial::Ed25519(pk) => UnparsedPublicKey::new(&signature::ED25519, pk)
                .verify(message, sig)
                .is_ok(),
        }
    }
}

/// Where the keys come from.
#[derive(Debug, Clone)]
enum KeySource {
    File(String),
    Url(String),
}

/// Verifies identity-provider JWTs against a JWKS file or URL.
pub struct JwtVerifier {
    source: KeySource,
    keys: RwLock<Vec<Key>>,
    /// When the URL was last fetched, to bound refreshes on unknown `kid`s.
    last_fetch: RwLock<Option<Instant>>,
    issuer: Option<String>,
    audiences: Vec<String>,
    http: reqwest::Client,
}

impl JwtVerifier {
    /// Loads the keys from `jwks` (a path, or an `http(s)://` URL).
    pub async fn load(
        jwks: &str,
        issuer: Option<String>,
        audiences: Vec<String>,
    ) -> anyhow::Result<JwtVerifier> {
        let source = if jwks.starts_with("http://") || jwks.starts_with("https://") {
            KeySource::Url(jwks.to_string())
        } else {
            KeySource::File(jwks.to_string())
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let verifier = JwtVerifier {
            source,
            keys: RwLock::new(Vec::new()),
            last_fetch: RwLock::new(None),
            issuer,
            audiences: audiences.into_iter().filter(|a| !a.is_empty()).collect(),
            http,
        };
        verifier.refresh().await?;
        let count = verifier.keys.read().map(|k| k.len()).unwrap_or(0);
        tracing::info!(keys = count, "identity provider keys loaded");
        Ok(verifier)
    }

    async fn refresh(&self) -> anyhow::Result<()> {
        let json = match &self.source {
            KeySource::File(path) => tokio::fs::read_to_string(path).await?,
            KeySource::Url(url) => {
                if let Ok(mut last) = self.last_fetch.write() {
                    *last = Some(Instant::now());
                }
                self.http
                    .get(url)
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await?
            }
        };
        let keys = parse_jwks(&json)?;
        if let Ok(mut slot) = self.keys.write() {
            *slot = keys;
        }
        Ok(())
    }

    /// Verifies a token; on an unknown key, fetches a JWKS URL again (rate-limited).
    pub async fn verify(&self, token: &str, now_secs: i64) -> Result<Claims, JwtError> {
        match self.verify_with_current_keys(token, now_secs) {
            Err(JwtError::UnknownKey) if self.may_refresh() => {
                if let Err(e) = self.refresh().await {
                    tracing::warn!(error = %e, "refreshing identity provider keys failed");
                }
                self.verify_with_current_keys(token, now_secs)
            }
            other => other,
        }
    }

    fn may_refresh(&self) -> bool {
        matches!(self.source, KeySource::Url(_))
            && self
                .last_fetch
                .read()
                .map(|t| t.is_none_or(|t| t.elapsed() >= MIN_REFRESH_INTERVAL))
                .unwrap_or(false)
    }

    fn verify_with_current_keys(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        let keys = self.keys.read().map_err(|_| JwtError::UnknownKey)?;
        verify_token(token, &keys, self.issuer.as_deref(), &self.audiences, now)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, JwtError> {
    let bytes = b64(part).ok_or(JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

fn verify_token(
    token: &str,
    keys: &[Key],
    issuer: Option<&str>,
    audiences: &[String],
    now: i64,
) -> Result<Claims, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: serde_json::Map<String, serde_json::Value> = decode_json(h)?;
    // Any `crit` at all (even null or an empty list) is refused.
    if header.contains_key("crit") {
        return Err(JwtError::Critical);
    }
    let header: Header = serde_json::from_value(serde_json::Value::Object(header))
        .map_err(|_| JwtError::Malformed)?;
    let alg = Alg::parse(&header.alg)?;
    let sig = b64(s).ok_or(JwtError::Malformed)?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];

    let mut candidates = keys
        .iter()
        .filter(|k| k.alg == alg)
        .filter(|k| header.kid.is_none() || k.kid == header.kid)
        .peekable();
    if candidates.peek().is_none() {
        return Err(JwtError::UnknownKey);
    }
    if !candidates.any(|k| k.verify(signed, &sig)) {
        return Err(JwtError::Signature);
    }

    let claims: RawClaims = decode_json(p)?;
    let exp = claims.exp.ok_or(JwtError::MissingClaim("exp"))?;
    if now > exp + LEEWAY_SECS {
        return Err(JwtError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Err(JwtError::NotYetValid);
    }
    if let Some(want) = issuer {
        if claims.iss.as_deref() != Some(want) {
            return Err(JwtError::Issuer);
        }
    }
    if !audiences.is_empty() {
        let mut presented: Vec<&str> = match &claims.aud {
            Some(Audience::One(a)) => vec![a.as_str()],
            Some(Audience::Many(v)) => v.iter().map(String::as_str).collect(),
            None => vec![],
        };
        presented.extend(claims.azp.as_deref());
        if !presented.iter().any(|a| audiences.iter().any(|w| w == a)) {
            return Err(JwtError::Audience);
        }
    }
    let sub = claims
        .sub
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or(JwtError::MissingClaim("sub"))?;
    Ok(Claims {
        sub,
        email: claims.email,
        name: claims.name,
        email_verified: claims.email_verified.is_some_and(|f| f.is_true()),
    })
}

/// Whether a bearer credential looks like a JWT rather than a session token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}
