//! Who is calling, for the audit log, session records and rate limits: the client IP, the
//! `User-Agent` and the request id.
//!
//! The client IP is the socket peer, unless the peer is one of `http.trusted_proxies`: then
//! the one header they set (`http.forwarded_header`: `X-Forwarded-For`, or `Forwarded` of
//! RFC 7239) is read from the right, skipping every trusted proxy, and the first other
//! address is the client. The other header is never read: proxies pass a client's own copy
//! of a header they do not set. From any other peer both are ignored, so nobody can choose
//! the address their requests are counted under.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;

use super::request_id::RequestId;
use crate::config::{Cidr, ForwardedHeader};

/// Longest `User-Agent` kept; browsers send about 150 bytes, anything far longer is noise or
/// an attempt to bloat the tables.
const MAX_USER_AGENT: usize = 512;

/// Where a request came from, as audit events and sessions record it; empty for CLI and
/// background work. An extractor, and [`meta_of`] for code holding the request parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// Client IP as resolved through trusted proxies.
    pub ip: Option<String>,
    /// `User-Agent`, truncated.
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(meta_of(parts))
    }
}

/// The client address of a request, found once by [`resolve`] and kept in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Which proxies are trusted, and the header they name the client in.
#[derive(Debug, Clone)]
pub struct Proxies {
    /// The trusted proxies.
    pub trusted: Vec<Cidr>,
    /// Their header.
    pub header: ForwardedHeader,
}

/// The client address of a request from `peer`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, proxies: &Proxies) -> IpAddr {
    let trusted = &proxies.trusted;
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops = forwarded_hops(headers, proxies.header);
    let mut client = peer;
    for hop in hops.iter().rev() {
        // An entry that is not an address ("unknown", obfuscated, garbage): the proxy that
        // wrote it is the last address known.
        let Some(ip) = hop else { return client };
        client = ip.to_canonical();
        if !is_trusted(client) {
            return client;
        }
    }
    client
}

/// The addresses `header` names, nearest the client first. `None` for an entry that is not an
/// address.
fn forwarded_hops(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let joined = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    };
    if header == ForwardedHeader::Forwarded {
        let forwarded = joined("forwarded");
        return forwarded
            .split(',')
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(key, _)| key.eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value.trim().trim_matches('"')))
            })
            .collect();
    }
    let xff = joined("x-forwarded-for");
    if xff.is_empty() {
        return Vec::new();
    }
    xff.split(',').map(|hop| parse_node(hop.trim())).collect()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:443`, `[2001:db8::1]:443`,
/// `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    text.rsplit_once(':')
        .and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok())
        .map(IpAddr::V4)
}

/// Middleware: finds the client address once per request and keeps it in the extensions.
pub async fn layer(
    axum::extract::State(proxies): axum::extract::State<std::sync::Arc<Proxies>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let ip = resolve(peer.ip(), request.headers(), &proxies);
        request.extensions_mut().insert(ClientIp(ip));
    }
    next.run(request).await
}

/// The [`RequestMeta`] of a request.
pub fn meta_of(parts: &Parts) -> RequestMeta {
    let ip = parts
        .extensions
        .get::<ClientIp>()
        .map(|ClientIp(ip)| ip.to_string())
        .or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_canonical().to_string())
        });
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| truncate(ua, MAX_USER_AGENT).to_owned());
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned());
    RequestMeta {
        ip,
        user_agent,
        request_id,
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn ranges_parse_and_match() {
        let net = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(net.contains(ip("10.1.2.3")) && !net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")), "mapped IPv4");
        assert!(Cidr::parse("::1").expect("one").contains(ip("::1")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("8.8.8.8"))
        );
        for bad in ["", "10.0.0.0/33", "nope", "10.0.0/8", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted = Proxies {
            trusted: vec![Cidr::parse("10.0.0.0/8").expect("cidr")],
            header: ForwardedHeader::XForwardedFor,
        };
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4")]);
        // From an untrusted peer the header is ignored.
        assert_eq!(
            resolve(ip("203.0.113.9"), &spoof, &trusted),
            ip("203.0.113.9")
        );
        // From a trusted proxy the nearest untrusted hop is the client.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &chain, &trusted),
            ip("198.51.100.7")
        );
        let split = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        assert_eq!(resolve(ip("10.0.0.1"), &split, &trusted), ip("1.2.3.4"));
        let forwarded = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.5",
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        // Only the configured header counts: a client's own `Forwarded` is ignored…
        assert_eq!(resolve(ip("10.0.0.1"), &forwarded, &trusted), ip("9.9.9.9"));
        let spoof_only = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &spoof_only, &trusted),
            ip("10.0.0.1")
        );
        // …unless the proxies are configured to set `Forwarded`.
        let rfc = Proxies {
            header: ForwardedHeader::Forwarded,
            ..trusted.clone()
        };
        assert_eq!(resolve(ip("10.0.0.1"), &forwarded, &rfc), ip("2001:db8::7"));
        let garbage = headers(&[("x-forwarded-for", "evil, 10.0.0.4")]);
        assert_eq!(resolve(ip("10.0.0.1"), &garbage, &trusted), ip("10.0.0.4"));
        let none = HeaderMap::new();
        assert_eq!(resolve(ip("10.0.0.1"), &none, &trusted), ip("10.0.0.1"));
        let with_port = headers(&[("x-forwarded-for", "198.51.100.8:5555")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &with_port, &trusted),
            ip("198.51.100.8")
        );
    }

    #[test]
    fn long_user_agents_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aéb", 2), "a");
        assert_eq!(truncate(&"x".repeat(600), MAX_USER_AGENT).len(), 512);
    }
}
