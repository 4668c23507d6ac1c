//! Which email domains are personal: free-mail providers and disposable
//! inboxes, from the list embedded at `data/free_email_domains.txt` (its
//! header names the source, version and license). An address at one of them,
//! or at any subdomain of one, never joins a shared organization: its owner
//! gets a solo org, like the seeds' eleven personal domains.

use std::collections::HashSet;
use std::sync::LazyLock;

static LIST: &str = include_str!("../../data/free_email_domains.txt");

/// The seeds' personal domains (plan 004), kept even if the list drops one.
const SEED_DOMAINS: [&str; 11] = [
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "protonmail.com",
    "proton.me",
];

static DOMAINS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    LIST.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .chain(SEED_DOMAINS)
        .collect()
});

/// How many domains the embedded list holds (for the startup log).
pub fn count() -> usize {
    DOMAINS.len()
}

/// Whether `domain` (lowercase, as `validate::email` leaves it) or one of its
/// parent domains is a free-mail or disposable domain: `mail.yahoo.co.uk`
/// counts because `yahoo.co.uk` does.
pub fn is_personal(domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    let mut rest = domain;
    loop {
        if DOMAINS.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            // Stop before a bare top-level label: `com` is never listed.
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

/// The domain part of an email address.
pub fn of_email(email: &str) -> &str {
    email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_personal_domains() {
        for d in [
            "yahoo.co.uk",
            "gmx.de",
            "web.de",
            "mail.ru",
            "qq.com",
            "fastmail.com",
            "gmail.com",
            "mailinator.com",
            "proton.me",
            "googlemail.com",
        ] {
            assert!(is_personal(d), "{d} should be personal");
        }
        assert!(count() > 10_000, "the whole list is embedded: {}", count());
    }

    #[test]
    fn work_domains_and_subdomains() {
        for d in [
            "acme.com",
            "sparkcapital.com",
            "co.uk",
            "com",
            "example.org",
        ] {
            assert!(!is_personal(d), "{d} should not be personal");
        }
        assert!(is_personal("eu.mailinator.com"), "subdomains count");
        assert!(is_personal("a.b.gmx.de"));
        assert!(!is_personal("gmail.com.acme.io"), "only parents count");
        assert_eq!(of_email("ada@acme.com"), "acme.com");
        assert_eq!(of_email("nobody"), "");
    }
}
