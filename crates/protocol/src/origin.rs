//! Browser origins allowed to call Tandem (`TANDEM_CORS_ORIGINS`): a
//! comma-separated list of `scheme://host[:port]`, where the port may be `*`
//! (any port, or none: `http://localhost:*`) and `*` alone allows every
//! origin. Pure matching, no I/O: control (CORS) and relay (`Origin` check)
//! use the same rules.

/// A parsed origin list. The empty list allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginList {
    any: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    scheme: String,
    host: String,
    /// `None`: any port (or none); `Some("")`: no port given.
    port: Option<String>,
}

/// Longest origin considered (a browser's `Origin` is short).
const MAX_ORIGIN_LEN: usize = 512;

impl OriginList {
    /// Parses the setting; an entry that is not an origin is an error that
    /// names it. Blank entries are skipped, so `""` allows nothing.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut parsed = OriginList::default();
        for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if raw == "*" {
                parsed.any = true;
                continue;
            }
            let entry = split(raw, true).ok_or_else(|| {
                format!("{raw:?} is not an origin (scheme://host[:port], port may be *)")
            })?;
            parsed.entries.push(entry);
        }
        Ok(parsed)
    }

    /// Whether `origin` (the value of an `Origin` header) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(o) = split(origin, false) else {
            return false;
        };
        self.entries.iter().any(|e| {
            e.scheme == o.scheme
                && e.host == o.host
                && e.port.as_ref().is_none_or(|p| Some(p) == o.port.as_ref())
        })
    }

    /// Nothing is allowed (the setting is unset or blank).
    pub fn is_empty(&self) -> bool {
        !self.any && self.entries.is_empty()
    }
}

/// Splits `scheme://host[:port]`; `wildcard` allows the port `*`.
fn split(raw: &str, wildcard: bool) -> Option<Entry> {
    if raw.len() > MAX_ORIGIN_LEN || !raw.is_ascii() {
        return None;
    }
    let lower = raw.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok || rest.is_empty() {
        return None;
    }
    // The port follows the last ':' after an IPv6 literal's ']'.
    let host_end = rest.rfind(']').map_or(0, |i| i + 1);
    let (host, port) = match rest[host_end..].rfind(':') {
        Some(i) => (&rest[..host_end + i], &rest[host_end + i + 1..]),
        None => (rest, ""),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b));
    if !host_ok || (host_end == 0 && host.contains(':')) {
        return None;
    }
    let port = match port {
        "*" if wildcard => None,
        p if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.to_string()),
        _ => return None,
    };
    if rest.ends_with(':') {
        return None;
    }
    Some(Entry {
        scheme: scheme.to_string(),
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> OriginList {
        OriginList::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn port_wildcard_matches_any_port_of_that_host_only() {
        let l = list("http://localhost:*, https://app.example.com");
        assert!(l.allows("http://localhost:3000"));
        assert!(l.allows("http://localhost"));
        assert!(l.allows("HTTP://LocalHost:5173"));
        assert!(!l.allows("https://localhost:3000"));
        assert!(!l.allows("http://localhost.evil.com:3000"));
        assert!(!l.allows("http://evil.com/http://localhost:1"));
        assert!(l.allows("https://app.example.com"));
        assert!(!l.allows("https://app.example.com:8443"));
        assert!(!l.allows("https://app.example.com.evil"));
        assert!(!l.allows("null"));
    }

    #[test]
    fn exact_ports_and_ipv6() {
        let l = list("http://127.0.0.1:3000,http://[::1]:*");
        assert!(l.allows("http://127.0.0.1:3000"));
        assert!(!l.allows("http://127.0.0.1:3001"));
        assert!(l.allows("http://[::1]:8080"));
        assert!(!l.allows("http://[::2]:8080"));
    }

    #[test]
    fn star_allows_everything_and_blank_nothing() {
        assert!(list("*").allows("https://anything.example"));
        assert!(list(" , ").is_empty());
        assert!(!list("").allows("http://localhost:3000"));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "localhost:3000",
            "http://",
            "http://host/path",
            "http://host:port",
            "http://host:",
            "http://a b",
            "http://host:123456",
        ] {
            let err = OriginList::parse(bad).err().unwrap_or_default();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(OriginList::parse("http://ok:*,https://x.y").is_ok());
    }
}
