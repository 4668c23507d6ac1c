//! Allowed browser origins (`TANDEM_CORS_ORIGINS`): one parser and one
//! matcher, shared by control (CORS) and the relay (the `Origin` check of a
//! WebSocket handshake).
//!
//! The list is comma-separated. Each entry is an origin as browsers send it,
//! `scheme://host[:port]` (compared case-insensitively, a trailing `/`
//! ignored), or the same with a port wildcard, `http://localhost:*`, which
//! allows every port of that scheme and host (and no port at all). A lone
//! `*` allows every origin. Empty entries are skipped.

use std::fmt;

/// A parsed `TANDEM_CORS_ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginList {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `*`
    Any,
    /// `scheme://host[:port]`, lowercased.
    Exact(String),
    /// `scheme://host:*`: the part before `:*`, lowercased.
    AnyPort(String),
}

/// Why an entry of the list is not an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginListError(pub String);

impl fmt::Display for OriginListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an origin (expected scheme://host[:port|:*] or *)",
            self.0
        )
    }
}

impl std::error::Error for OriginListError {}

/// `scheme://host` with a non-empty scheme and host and nothing after the host
/// but an optional `:port` (digits).
fn is_origin(s: &str, port_required: bool) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 literal without a port: `[::1]`.
        Some((h, p)) if !rest.ends_with(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    let port_ok = match port {
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
        None => !port_required,
    };
    scheme_ok && host_ok && port_ok
}

impl OriginList {
    /// Parses a comma-separated list (see the module docs).
    pub fn parse(list: &str) -> Result<OriginList, OriginListError> {
        let mut entries = Vec::new();
        for raw in list.split(',') {
            let e = raw.trim().trim_end_matches('/').to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            if e == "*" {
                entries.push(Entry::Any);
            } else if let Some(base) = e.strip_suffix(":*") {
                if !is_origin(base, false) {
                    return Err(OriginListError(raw.trim().to_string()));
                }
                entries.push(Entry::AnyPort(base.to_string()));
            } else if is_origin(&e, false) {
                entries.push(Entry::Exact(e));
            } else {
                return Err(OriginListError(raw.trim().to_string()));
            }
        }
        Ok(OriginList { entries })
    }

    /// Whether the list has no entries (nothing is allowed).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a request's `Origin` header value is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if !is_origin(&o, false) {
            return self.entries.contains(&Entry::Any) && o != "null";
        }
        self.entries.iter().any(|e| match e {
            Entry::Any => true,
            Entry::Exact(x) => *x == o,
            Entry::AnyPort(base) => {
                o == *base
                    || o.strip_prefix(base.as_str())
                        .and_then(|rest| rest.strip_prefix(':'))
                        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_port_wildcards() {
        let l =
            OriginList::parse("http://localhost:*, http://127.0.0.1:*,https://App.Example.com/")
                .unwrap();
        for ok in [
            "http://localhost:3000",
            "http://localhost",
            "HTTP://LOCALHOST:5173",
            "http://127.0.0.1:8080",
            "https://app.example.com",
            "https://app.example.com/",
        ] {
            assert!(l.allows(ok), "{ok}");
        }
        for bad in [
            "https://localhost:3000",
            "http://localhost.evil.com:3000",
            "http://localhost:3000x",
            "http://localhost:",
            "https://app.example.com:8443",
            "https://example.com",
            "http://app.example.com",
            "null",
            "",
            "localhost:3000",
        ] {
            assert!(!l.allows(bad), "{bad}");
        }
    }

    #[test]
    fn star_allows_every_real_origin() {
        let l = OriginList::parse("*").unwrap();
        assert!(l.allows("https://anything.example"));
        assert!(!l.allows("null"));
    }

    #[test]
    fn empty_list_allows_nothing() {
        let l = OriginList::parse(" , ").unwrap();
        assert!(l.is_empty());
        assert!(!l.allows("http://localhost:3000"));
    }

    #[test]
    fn refuses_what_is_not_an_origin() {
        for bad in [
            "localhost:3000",
            "http://",
            "http://host/path",
            "http://host:abc",
            "http://host:*x",
            "*.example.com",
            "http://ho st",
        ] {
            assert!(OriginList::parse(bad).is_err(), "{bad}");
        }
        assert!(OriginList::parse("http://[::1]:*")
            .unwrap()
            .allows("http://[::1]:3000"));
    }
}
