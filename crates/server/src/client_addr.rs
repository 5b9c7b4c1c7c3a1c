//! Who the client is: the socket peer, or — only when the peer is one of the
//! configured `trustedProxies` — the address your proxies wrote in the proxy
//! header (`proxyHeader`: `x-forwarded-for`, the default, or RFC 7239
//! `forwarded`).
//!
//! The header's entries are walked right to left (the right-most was written by
//! the proxy nearest to us): an entry that is itself a trusted proxy is
//! skipped, the first untrusted address is the client. Everything left of it
//! was written by the client or by proxies we do not know, and is ignored. An
//! entry we cannot use (`unknown`, an obfuscated `_id`, garbage) stops the walk:
//! the trusted hop that wrote it is then the client, never an entry further
//! left that the client could have chosen. Ports (`[2001:db8::1]:4711`,
//! `192.0.2.7:80`) and RFC 7239's quoting are accepted.
//!
//! Only one header is read: a proxy that writes `X-Forwarded-For` passes a
//! client's own `Forwarded` through untouched, so reading both would let the
//! client choose. A proxy header from a peer that is not trusted is ignored,
//! and logged once per process as a warning (a proxy missing from the list,
//! or a client trying its luck).
//!
//! Deprecated: `trustedProxyHeader` (any peer trusted, the named header's last
//! entry used) still works for this release when `trustedProxies` is empty,
//! with a warning at start.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyHeader {
    XForwardedFor,
    Forwarded,
}

impl ProxyHeader {
    fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// The resolved client-address rule of one server.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    trusted: Vec<IpNet>,
    header: ProxyHeader,
    /// The deprecated `trustedProxyHeader` with no `trustedProxies`: its last
    /// entry, from any peer (the old behaviour).
    legacy: Option<String>,
}

impl ClientAddr {
    /// No proxies: the socket peer is the client.
    pub fn direct() -> Self {
        Self {
            trusted: Vec::new(),
            header: ProxyHeader::XForwardedFor,
            legacy: None,
        }
    }

    /// From `trustedProxies` (addresses or CIDRs), `proxyHeader` and the
    /// deprecated `trustedProxyHeader`; `Err` names the bad entry.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut trusted = Vec::with_capacity(config.trusted_proxies.len());
        for entry in &config.trusted_proxies {
            let entry = entry.trim();
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("trustedProxies: {entry:?} is not an address or CIDR like 10.0.0.0/8")
                })?;
            trusted.push(net);
        }
        let header = match config.proxy_header.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => ProxyHeader::XForwardedFor,
            "forwarded" => ProxyHeader::Forwarded,
            other => {
                return Err(format!(
                    "proxyHeader: {other:?} is neither \"x-forwarded-for\" nor \"forwarded\""
                ))
            }
        };
        let legacy = match &config.trusted_proxy_header {
            Some(name) if trusted.is_empty() => {
                tracing::warn!(
                    header = %name,
                    "trustedProxyHeader is deprecated and trusts the header from ANY peer: \
                     set trustedProxies to your proxies' addresses instead (it is removed \
                     in the next release)"
                );
                Some(name.trim().to_ascii_lowercase())
            }
            Some(_) => {
                tracing::warn!(
                    "trustedProxyHeader is deprecated and ignored: trustedProxies is set \
                     (choose the header with proxyHeader)"
                );
                None
            }
            None => None,
        };
        Ok(Self {
            trusted,
            header,
            legacy,
        })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address; `None` when there is no socket peer (a router
    /// driven without connect info) and nothing trusted says otherwise.
    pub fn resolve(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let peer = peer.map(|p| p.ip().to_canonical());
        if let Some(name) = &self.legacy {
            // Only the very last entry: falling back to an earlier
            // (client-written) one would let clients choose their address.
            let last = header_values(headers, name)
                .rsplit(',')
                .next()
                .and_then(|v| node(v).ip());
            return last.or(peer);
        }
        let peer = peer?;
        if !self.is_trusted(peer) {
            if headers.contains_key("forwarded") || headers.contains_key("x-forwarded-for") {
                warn_untrusted_once(peer);
            }
            return Some(peer);
        }
        let joined = header_values(headers, self.header.name());
        let entries: Vec<Node> = match self.header {
            ProxyHeader::XForwardedFor => split_outside_quotes(&joined, ',')
                .into_iter()
                .map(node)
                .collect(),
            ProxyHeader::Forwarded => split_outside_quotes(&joined, ',')
                .into_iter()
                .map(forwarded_for)
                .collect(),
        };
        let mut client = peer;
        for entry in entries.iter().rev() {
            match entry.ip() {
                Some(ip) if self.is_trusted(ip) => client = ip,
                Some(ip) => return Some(ip),
                None => return Some(client),
            }
        }
        Some(client)
    }
}

fn warn_untrusted_once(peer: IpAddr) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %peer,
            "a Forwarded/X-Forwarded-For header came from a peer not in trustedProxies: \
             it is ignored and the peer counts as the client. If this server is behind a \
             proxy, add the proxy's address to trustedProxies (logged once)"
        );
    }
}

/// Every line of the header, in order, joined as one list.
fn header_values(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// One hop as a proxy header names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Ip(IpAddr),
    /// `unknown`, an obfuscated `_id`, a missing `for=`, or garbage.
    Unusable,
}

impl Node {
    fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) => Some(ip.to_canonical()),
            Self::Unusable => None,
        }
    }
}

/// `192.0.2.7`, `192.0.2.7:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711` (the port may be obfuscated, `_p`); quoted or not.
fn node(raw: &str) -> Node {
    let s = unquote(raw.trim());
    let s = s.trim();
    let ip = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once(']')
            .filter(|(_, tail)| tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port))
            .and_then(|(addr, _)| addr.parse::<std::net::Ipv6Addr>().ok())
            .map(IpAddr::V6)
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        Some(ip)
    } else {
        s.rsplit_once(':')
            .filter(|(_, port)| is_port(port))
            .and_then(|(addr, _)| addr.parse::<std::net::Ipv4Addr>().ok())
            .map(IpAddr::V4)
    };
    ip.map_or(Node::Unusable, Node::Ip)
}

/// A port number, or RFC 7239's obfuscated port (`_` and letters, digits, `.`, `-`).
fn is_port(p: &str) -> bool {
    (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        || (p.starts_with('_')
            && p.len() > 1
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
}

/// The `for=` node of one `Forwarded` element (`for=…;proto=…;by=…`).
fn forwarded_for(element: &str) -> Node {
    split_outside_quotes(element, ';')
        .into_iter()
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
        .map_or(Node::Unusable, |(_, value)| node(value))
}

/// Splits at `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// RFC 7230 quoted-string to its text (backslash escapes removed); anything
/// else as it is.
fn unquote(s: &str) -> std::borrow::Cow<'_, str> {
    match s
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
    {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                });
            }
            out.into()
        }
        None => s.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn rule(trusted: &[&str], header: &str) -> ClientAddr {
        let config = Config {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            proxy_header: header.into(),
            ..Config::default()
        };
        ClientAddr::from_config(&config).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_nodes_with_ports_and_quotes() {
        let cases = [
            ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            ("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
            ("proto=https; for=\"192.0.2.43:47011\"", "192.0.2.43"),
            ("for=\"192.0.2.43:_hidden\"", "192.0.2.43"),
            ("for=\"\\[2001:db8::1\\]:80\"", "2001:db8::1"),
            ("for=\"[::ffff:198.51.100.1]:443\"", "198.51.100.1"),
        ];
        for (element, want) in cases {
            assert_eq!(forwarded_for(element).ip(), ip(want), "{element}");
        }
        for unusable in [
            "for=unknown",
            "for=_gazonk",
            "for=\"_SEVKISEK\"",
            "proto=http;by=203.0.113.43",
            "for=[2001:db8::1]:99999999",
            "for=2001:db8::1:80x",
            "for=\"[2001:db8::1\"",
            "for=",
            "",
        ] {
            assert_eq!(forwarded_for(unusable), Node::Unusable, "{unusable}");
        }
        // A quoted comma or semicolon does not split the header.
        assert_eq!(
            split_outside_quotes("for=\"a,b\";by=x, for=1.2.3.4", ','),
            ["for=\"a,b\";by=x", " for=1.2.3.4"]
        );
    }

    #[test]
    fn x_forwarded_for_entries_with_ports() {
        for (entry, want) in [
            ("203.0.113.7", "203.0.113.7"),
            (" 203.0.113.7:4711 ", "203.0.113.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
        ] {
            assert_eq!(node(entry).ip(), ip(want), "{entry}");
        }
        assert_eq!(node("2001:db8::1:4711x"), Node::Unusable);
        assert_eq!(node("unknown"), Node::Unusable);
    }

    #[test]
    fn walks_right_to_left_past_trusted_proxies() {
        let r = rule(&["10.0.0.0/8", "127.0.0.1"], "x-forwarded-for");
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.9"),
            ("x-forwarded-for", "10.1.2.3:80"),
        ]);
        // The right-most untrusted entry; the client-written 6.6.6.6 is ignored.
        assert_eq!(r.resolve(&h, peer("127.0.0.1:5000")), ip("198.51.100.9"));
        // From an untrusted peer nothing in the header counts.
        assert_eq!(r.resolve(&h, peer("192.0.2.1:5000")), ip("192.0.2.1"));
        // An unusable entry stops the walk at the hop that wrote it.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, unknown, 10.9.9.9")]);
        assert_eq!(r.resolve(&h, peer("127.0.0.1:1")), ip("10.9.9.9"));
        // Only trusted hops: the farthest of them.
        let h = headers(&[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]);
        assert_eq!(r.resolve(&h, peer("127.0.0.1:1")), ip("10.0.0.5"));
        // No header: the peer.
        assert_eq!(
            r.resolve(&HeaderMap::new(), peer("127.0.0.1:1")),
            ip("127.0.0.1")
        );
        // The other header is not read: the proxy would pass it through.
        let h = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(r.resolve(&h, peer("127.0.0.1:1")), ip("127.0.0.1"));
        // A mapped peer address is its IPv4 one.
        assert_eq!(
            r.resolve(&HeaderMap::new(), peer("[::ffff:10.0.0.1]:1")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_header_from_a_trusted_proxy() {
        let r = rule(&["::1", "127.0.0.0/8"], "Forwarded");
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8:1:2::99]:4711\";proto=https, for=127.0.0.2",
        )]);
        assert_eq!(r.resolve(&h, peer("[::1]:9")), ip("2001:db8:1:2::99"));
        let h = headers(&[("forwarded", "for=6.6.6.6, for=_hidden")]);
        assert_eq!(r.resolve(&h, peer("127.0.0.1:9")), ip("127.0.0.1"));
    }

    #[test]
    fn bad_config_is_refused_and_legacy_still_works() {
        let config = Config {
            trusted_proxies: vec!["10.0.0.0/33".into()],
            ..Config::default()
        };
        assert!(ClientAddr::from_config(&config).is_err());
        let config = Config {
            proxy_header: "x-real-ip".into(),
            ..Config::default()
        };
        assert!(ClientAddr::from_config(&config).is_err());
        let config = Config {
            trusted_proxy_header: Some("X-Forwarded-For".into()),
            ..Config::default()
        };
        let r = ClientAddr::from_config(&config).unwrap();
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.9:80")]);
        assert_eq!(r.resolve(&h, None), ip("198.51.100.9"));
        assert_eq!(ClientAddr::direct().resolve(&h, None), None);
    }
}
