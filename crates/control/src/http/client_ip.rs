//! The client's IP address, for per-IP limits. By default it is the socket
//! peer. Behind load balancers listed in `TANDEM_TRUSTED_PROXIES` (IPs or
//! CIDRs), a request whose peer is one of them is attributed to the
//! right-most address of `X-Forwarded-For` that is not a trusted proxy: each
//! proxy appends the address it saw, so everything left of the first
//! untrusted hop was written by the client and is ignored.

use std::net::IpAddr;

use actix_web::HttpRequest;

/// At most this many `X-Forwarded-For` entries are looked at.
const MAX_HOPS: usize = 32;

/// One `IP/prefix` network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `fd00::/8`, or a single address.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not an IP address or CIDR");
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The configured trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        list.iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| Cidr::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client of a request from `peer` with these `X-Forwarded-For`
    /// header values (in order).
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = canonical(ip);
                    if !self.trusts(client) {
                        return client;
                    }
                }
                // Unreadable: stop at the last hop a trusted proxy vouched for.
                Err(_) => return client,
            }
        }
        client
    }

    /// The client of an actix request; `None` without a peer address.
    pub fn of_request(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        let values = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok());
        Some(self.client_ip(peer, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Cidr::parse("192.168.0.7")
            .unwrap()
            .contains(ip("192.168.0.7")));
        assert!(!Cidr::parse("192.168.0.7")
            .unwrap()
            .contains(ip("192.168.0.8")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn right_most_untrusted_hop() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.168.1.1".into()]).unwrap();
        let lb = ip("10.0.0.5");
        // The client's own header value (a lie) is left of what the proxies appended.
        let xff = ["1.2.3.4, 203.0.113.9, 192.168.1.1"];
        assert_eq!(t.client_ip(lb, xff.into_iter()), ip("203.0.113.9"));
        // Several header lines count as one list.
        let lines = ["6.6.6.6", "203.0.113.9"];
        assert_eq!(t.client_ip(lb, lines.into_iter()), ip("203.0.113.9"));
        // An untrusted peer's header is ignored.
        let stranger = ip("198.51.100.1");
        assert_eq!(t.client_ip(stranger, xff.into_iter()), stranger);
        // No header, or only proxies: the left-most proxy seen.
        assert_eq!(t.client_ip(lb, std::iter::empty()), lb);
        assert_eq!(t.client_ip(lb, ["10.9.9.9"].into_iter()), ip("10.9.9.9"));
        // Garbage stops the walk at the last vouched-for hop.
        assert_eq!(t.client_ip(lb, ["203.0.113.9, junk"].into_iter()), lb);
        // Nothing trusted: always the peer.
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(lb, xff.into_iter()), lb);
    }
}
