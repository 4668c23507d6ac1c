//! Webhook delivery: the [`dispatch`] loop, one signed HTTP attempt at a
//! time per claimed delivery, and the guard that keeps attempts off private
//! networks (SSRF).
//!
//! Every attempt is signed afresh (Standard Webhooks): `webhook-id` is the
//! message id (the same on every attempt), `webhook-timestamp` the attempt's
//! Unix seconds, `webhook-signature` `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`. Redirects are not followed (a 3xx is a
//! failure), an attempt has `TANDEM_WEBHOOK_TIMEOUT_MS`, at most 64 KiB of the
//! answer is read and its first 4 KiB kept.
//!
//! Unless `TANDEM_WEBHOOK_ALLOW_PRIVATE` is set, a target that is, or whose
//! name resolves to, a non-public address is refused — when the endpoint is
//! made or changed, and again at every attempt: the client's resolver checks
//! what it resolves and connects only to the addresses it checked, so a DNS
//! answer that changed since creation cannot point an attempt inward.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::now_ms;
use crate::store::webhooks::{self as store, Claimed, EndpointRow, Outcome};

/// Most bytes of an answer read (the rest is not waited for).
pub const MAX_READ_BYTES: usize = 64 * 1024;

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network", incl. 0.0.0.0
        || a >= 240 // reserved
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))) // benchmarking
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // 64:ff9b::/96 (NAT64) and 2002::/16 (6to4) carry an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || s[0..6] == [0, 0, 0, 0, 0, 0] // ::/96, IPv4-compatible (deprecated)
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
}

fn refused(host: &str, ip: IpAddr) -> String {
    format!("refused: {host} is (or resolves to) the non-public address {ip}")
}

/// Resolves `host` and refuses it when any of its addresses is not public
/// (unless `allow_private`); the addresses to connect to.
async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("cannot resolve {host}: no addresses"));
    }
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(refused(host, bad.ip()));
        }
    }
    Ok(addrs)
}

/// The host of a URL as an IP literal, if it is one.
fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Checks where a (well-formed) webhook URL points, as an endpoint is made or
/// changed: 422 `webhook_target_refused` for a non-public target, 422
/// `validation_failed` for a name that does not resolve.
pub async fn check_target(url: &url::Url, allow_private: bool) -> Result<(), ApiError> {
    if allow_private {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default().to_string();
    if let Some(ip) = literal_ip(url) {
        return if is_public(ip) {
            Ok(())
        } else {
            Err(ApiError::TargetRefused(refused(&host, ip)))
        };
    }
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::time::timeout(Duration::from_secs(5), resolve_checked(&host, port, false)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(why)) if why.starts_with("refused") => Err(ApiError::TargetRefused(why)),
        Ok(Err(why)) => Err(ApiError::validation(format!("url: {why}"))),
        Err(_) => Err(ApiError::validation(format!(
            "url: resolving {host} timed out"
        ))),
    }
}

/// The client's resolver: every name an attempt connects to is checked.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs = resolve_checked(name.as_str(), 0, allow)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of webhook attempts: no redirects, no proxies from the
/// environment, names resolved through the guard.
pub fn client(allow_private: bool) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("Tandem-Webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(2)
        .build()?)
}

/// How long a claimed delivery is reserved for the replica that claimed it.
fn lease_ms(state: &AppState) -> i64 {
    i64::try_from(state.config.webhook_timeout_ms)
        .unwrap_or(i64::MAX / 2)
        .saturating_add(30_000)
}

/// The dispatcher prunes once at start and then once per this many
/// recorded attempts (as the workspace feed prunes once per 64 events):
/// each prune removes at most `PRUNE_BATCH` deliveries, more than this many
/// attempts can have finished, so the tables cannot outgrow it.
pub const PRUNE_EVERY: u64 = 64;

/// `TANDEM_WEBHOOK_RETENTION_DAYS` in milliseconds.
fn retention_ms(state: &AppState) -> i64 {
    let ms = state.config.webhook_retention_days * 86_400_000.0;
    if ms.is_finite() {
        (ms.max(0.0).min(i64::MAX as f64 / 2.0)) as i64
    } else {
        i64::MAX / 2
    }
}

/// Removes one batch of finished deliveries past the retention and of
/// expired `document.saved` debounce marks ([`store::prune`]).
pub async fn prune(state: &AppState) -> Result<store::Pruned, ApiError> {
    let retention = retention_ms(state);
    let debounce = i64::try_from(state.config.webhook_save_debounce_ms).unwrap_or(i64::MAX / 2);
    let pruned = state
        .db(move |c| store::prune(c, retention, debounce))
        .await?;
    if pruned != store::Pruned::default() {
        tracing::debug!(?pruned, "old webhook deliveries pruned");
    }
    Ok(pruned)
}

async fn prune_logged(state: &AppState) {
    if let Err(e) = prune(state).await {
        tracing::warn!(error = %e, "cannot prune old webhook deliveries; will retry");
    }
}

/// Delivers due webhooks until shutdown, at most `TANDEM_WEBHOOK_CONCURRENCY`
/// attempts at once: woken when deliveries are written here or an attempt
/// ends, and every `TANDEM_OUTBOX_POLL_MS` for those written by other
/// replicas or due for a retry.
pub async fn dispatch(state: Arc<AppState>) {
    let every = Duration::from_millis(state.config.outbox_poll_ms.max(10));
    let slots = Arc::new(tokio::sync::Semaphore::new(
        state.config.webhook_concurrency.max(1),
    ));
    let recorded = Arc::new(AtomicU64::new(0));
    prune_logged(&state).await;
    loop {
        let woken = state.webhook_wake.notified();
        loop {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            let lease = lease_ms(&state);
            match state.db(move |c| store::claim_one(c, lease)).await {
                Ok(Some(claimed)) => {
                    let (state, recorded) = (state.clone(), recorded.clone());
                    tokio::spawn(async move {
                        attempt(&state, claimed).await;
                        if recorded.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1
                        {
                            prune_logged(&state).await;
                        }
                        drop(permit);
                        state.webhook_wake.notify_waiters();
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatch failed; will retry");
                    break;
                }
            }
        }
        if !state.nap(woken, every).await {
            return;
        }
    }
}

/// Makes one attempt and records it.
async fn attempt(state: &Arc<AppState>, claimed: Claimed) {
    let at = now_ms();
    let started = Instant::now();
    let sent = send(state, &claimed).await;
    let duration_ms = started.elapsed().as_millis() as i64;
    let outcome = match sent {
        Ok((status, body)) => Outcome {
            at,
            status_code: Some(status),
            error: (!(200..300).contains(&status)).then(|| {
                if (300..400).contains(&status) {
                    format!("HTTP {status}: redirect not followed")
                } else {
                    format!("HTTP {status}")
                }
            }),
            duration_ms,
            response_body: Some(body),
        },
        Err(error) => Outcome {
            at,
            status_code: None,
            error: Some(error),
            duration_ms,
            response_body: None,
        },
    };
    let ok = outcome.ok();
    let scale = state.config.webhook_retry_scale;
    let (id, event_type) = (
        claimed.endpoint.id.clone(),
        claimed.delivery.event_type.clone(),
    );
    let error = outcome.error.clone();
    match state
        .db(move |c| store::record_attempt(c, &claimed, &outcome, scale))
        .await
    {
        Ok(disabled) => {
            if ok {
                tracing::debug!(endpoint = %id, %event_type, "webhook delivered");
            } else {
                tracing::info!(endpoint = %id, %event_type, error = ?error, "webhook attempt failed");
            }
            if let Some(reason) = disabled {
                tracing::warn!(endpoint = %id, reason, "webhook endpoint disabled");
            }
        }
        Err(e) => tracing::warn!(endpoint = %id, error = %e, "cannot record a webhook attempt"),
    }
}

/// Opens an endpoint's secret.
fn secret(state: &AppState, e: &EndpointRow) -> Result<String, String> {
    let sbox = state
        .secrets
        .as_ref()
        .ok_or("TANDEM_SETTINGS_KEY is not set, so the secret cannot be read")?;
    sbox.open(
        &e.secret_key_id,
        &e.secret_sealed,
        &EndpointRow::secret_aad(&e.id),
    )
    .map_err(|e| format!("cannot open the signing secret: {e}"))
}

/// Sends one signed request: the status and the kept start of the body, or
/// why there was no answer.
async fn send(state: &AppState, c: &Claimed) -> Result<(u16, String), String> {
    let secret = secret(state, &c.endpoint)?;
    let url = url::Url::parse(&c.endpoint.url).map_err(|e| format!("bad url: {e}"))?;
    if let Some(ip) = literal_ip(&url) {
        if !state.config.webhook_allow_private && !is_public(ip) {
            return Err(refused(url.host_str().unwrap_or_default(), ip));
        }
    }
    let timestamp = now_ms() / 1000;
    let d = &c.delivery;
    let signature = crate::crypto::webhook_signature(&secret, &d.event_id, timestamp, &d.payload)
        .ok_or("the signing secret is malformed")?;
    let request = state
        .webhook_client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload.clone());
    let timeout = Duration::from_millis(state.config.webhook_timeout_ms.max(1));
    let exchange = async {
        let mut res = request.send().await.map_err(describe)?;
        let status = res.status().as_u16();
        let mut body = Vec::new();
        while body.len() < MAX_READ_BYTES {
            match res.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status is the answer; a broken body does not change it.
                Err(_) => break,
            }
        }
        body.truncate(store::STORED_BODY_BYTES);
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("timed out after {} ms", timeout.as_millis()))?
}

/// A request error with its causes (the guard's refusal is one of them),
/// for the delivery's record and the log: without the endpoint's URL, whose
/// path or query may hold a secret of the receiver.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if let Some(refusal) = parts.iter().find(|p| p.starts_with("refused:")) {
        return refusal.clone();
    }
    parts.dedup();
    let mut out = parts.join(": ");
    out.truncate(500);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn non_public_addresses_are_recognized() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!public(ip), "{ip} counted as public");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(public(ip), "{ip} counted as private");
        }
    }

    #[tokio::test]
    async fn targets_are_checked_unless_private_ones_are_allowed() {
        let refused = |u: &str| {
            let url = url::Url::parse(u).unwrap();
            async move { check_target(&url, false).await }
        };
        for u in [
            "http://127.0.0.1:9/x",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://localhost:8080/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(
                matches!(refused(u).await, Err(ApiError::TargetRefused(_))),
                "{u}"
            );
        }
        let url = url::Url::parse("http://127.0.0.1:9/").unwrap();
        assert!(check_target(&url, true).await.is_ok());
        assert!(
            check_target(&url::Url::parse("https://1.1.1.1/").unwrap(), false)
                .await
                .is_ok()
        );
    }
}
