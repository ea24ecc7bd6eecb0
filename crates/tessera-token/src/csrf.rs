//! The CSRF rule for cookie-authenticated requests, the same in Tessera and in every service
//! that accepts Tessera's cookies.
//!
//! A browser attaches cookies to requests any site makes, so a state-changing request
//! authenticated by cookie must also prove that one of the platform's own pages made it:
//!
//! 1. the CSRF header (`X-CSRF-Token`), sent exactly once, equal to the CSRF cookie, sent
//!    exactly once (only pages of the cookie's site can read it). Where the verifier knows the
//!    value the session must carry (Tessera binds it to the session with an HMAC), both must
//!    equal that value too, so a token planted for one session is worthless for another;
//! 2. the request's origin (`Origin`, or the origin of `Referer` when a browser sent no
//!    `Origin`) is allowed: one of the configured origins or, with none configured, the
//!    origin of the request's own `Host`. A request naming neither is refused: every browser
//!    sends `Origin` on requests that change things.
//!
//! Requests authenticated by `Authorization: Bearer` need none of this: a browser never adds
//! that header by itself.

use http::{HeaderMap, header};
use subtle::ConstantTimeEq as _;

use crate::cookie_value;

/// Where a CSRF proof is read and which origins may send one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfPolicy {
    /// Name of the CSRF cookie (`csrf_token` by default).
    pub cookie_name: String,
    /// Name of the request header, lowercase (`x-csrf-token`).
    pub header_name: String,
    /// Serialized origins (`https://app.example.com`) allowed to send cookie requests. Empty:
    /// only the origin of the request's own `Host`.
    pub allowed_origins: Vec<String>,
}

impl Default for CsrfPolicy {
    fn default() -> Self {
        Self {
            cookie_name: "csrf_token".to_owned(),
            header_name: "x-csrf-token".to_owned(),
            allowed_origins: Vec::new(),
        }
    }
}

/// Why a request failed the CSRF rule. Answer every one the same way (`403 csrf_failed`);
/// the reason is for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    /// No CSRF header.
    #[error("the CSRF header is missing")]
    MissingHeader,
    /// No CSRF cookie.
    #[error("the CSRF cookie is missing")]
    MissingCookie,
    /// The header or the cookie was sent more than once.
    #[error("the CSRF header or cookie was sent more than once")]
    Repeated,
    /// Header, cookie and (where known) the session's value differ.
    #[error("the CSRF header does not match the CSRF cookie of this session")]
    Mismatch,
    /// Neither `Origin` nor a usable `Referer`.
    #[error("the request names no Origin or Referer")]
    NoOrigin,
    /// The origin is not allowed.
    #[error("the request comes from an origin that is not allowed")]
    OriginNotAllowed,
}

impl CsrfPolicy {
    /// Checks an unsafe request authenticated by cookie. `expected` is the value the session
    /// must carry, when the caller can compute it (Tessera); without it the double submit
    /// alone is checked (a service that does not hold Tessera's key).
    pub fn check(&self, headers: &HeaderMap, expected: Option<&str>) -> Result<(), CsrfError> {
        self.check_origin(headers)?;
        let mut sent = headers.get_all(self.header_name.as_str()).iter();
        let header = match (sent.next(), sent.next()) {
            (Some(value), None) => value.as_bytes(),
            (None, _) => return Err(CsrfError::MissingHeader),
            (Some(_), Some(_)) => return Err(CsrfError::Repeated),
        };
        let cookie = cookie_value(headers, &self.cookie_name)
            .map_err(|_| CsrfError::Repeated)?
            .ok_or(CsrfError::MissingCookie)?;
        let mut same: bool = header.ct_eq(cookie.as_bytes()).into();
        if let Some(expected) = expected {
            same &= bool::from(cookie.as_bytes().ct_eq(expected.as_bytes()));
        }
        if same && !cookie.is_empty() {
            Ok(())
        } else {
            Err(CsrfError::Mismatch)
        }
    }

    /// Checks that the request's origin (see [`request_origin`]) is allowed.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), CsrfError> {
        let origin = request_origin(headers).ok_or(CsrfError::NoOrigin)?;
        if self.allows(&origin, headers) {
            Ok(())
        } else {
            Err(CsrfError::OriginNotAllowed)
        }
    }

    /// Whether `origin` may send cookie requests: listed, or, with no list, the origin of
    /// the request's own `Host` (either scheme: the service may sit behind a TLS proxy).
    pub fn allows(&self, origin: &str, headers: &HeaderMap) -> bool {
        if !self.allowed_origins.is_empty() {
            return self.allowed_origins.iter().any(|o| o == origin);
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        matches!((authority, host), (Some(a), Some(h)) if a == h)
    }
}

/// The origin a request names: its `Origin` header (`null` counts as none allowed, so it is
/// returned as is and matches no list), or else the origin of its `Referer`, serialized as
/// browsers serialize `Origin` (lowercase scheme and host, default port left out). `None`
/// when neither is usable.
pub fn request_origin(headers: &HeaderMap) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().ok().map(str::to_owned);
    }
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let url = url::Url::parse(referer).ok()?;
    match url.origin() {
        origin @ url::Origin::Tuple(..) => Some(origin.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    /// One table for both verifiers: Tessera (which knows the session's value, `Some`) and
    /// a service (which does not, `None`), with a configured list and without one.
    #[test]
    fn the_csrf_rule_table() {
        use CsrfError::*;
        let listed = CsrfPolicy {
            allowed_origins: vec!["https://app.example".into()],
            ..CsrfPolicy::default()
        };
        let unlisted = CsrfPolicy::default();
        let good = "c2Vzc2lvbi1ib3VuZA";
        let cookie = format!("csrf_token={good}");
        let twice = format!("{cookie}; {cookie}");
        let host = ("host", "api.example");
        let app = ("origin", "https://app.example");
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Result<(), CsrfError>);
        let cases: Vec<Case<'_>> = vec![
            (
                "all present",
                vec![app, ("x-csrf-token", good), ("cookie", &cookie)],
                Ok(()),
            ),
            (
                "referer instead of origin",
                vec![
                    ("referer", "https://APP.example:443/settings?tab=1"),
                    ("x-csrf-token", good),
                    ("cookie", &cookie),
                ],
                Ok(()),
            ),
            (
                "no header",
                vec![app, ("cookie", &cookie)],
                Err(MissingHeader),
            ),
            (
                "no cookie",
                vec![app, ("x-csrf-token", good)],
                Err(MissingCookie),
            ),
            (
                "no origin or referer",
                vec![("x-csrf-token", good), ("cookie", &cookie)],
                Err(NoOrigin),
            ),
            (
                "foreign origin",
                vec![
                    ("origin", "https://evil.example"),
                    ("x-csrf-token", good),
                    ("cookie", &cookie),
                ],
                Err(OriginNotAllowed),
            ),
            (
                "null origin",
                vec![
                    ("origin", "null"),
                    ("x-csrf-token", good),
                    ("cookie", &cookie),
                ],
                Err(OriginNotAllowed),
            ),
            (
                "header differs from cookie",
                vec![app, ("x-csrf-token", "other"), ("cookie", &cookie)],
                Err(Mismatch),
            ),
            (
                "header sent twice",
                vec![
                    app,
                    ("x-csrf-token", good),
                    ("x-csrf-token", good),
                    ("cookie", &cookie),
                ],
                Err(Repeated),
            ),
            (
                "cookie sent twice",
                vec![app, ("x-csrf-token", good), ("cookie", &twice)],
                Err(Repeated),
            ),
            (
                "empty header and cookie",
                vec![app, ("x-csrf-token", ""), ("cookie", "csrf_token=")],
                Err(MissingCookie),
            ),
        ];
        for (name, pairs, expected) in &cases {
            let map = headers(pairs);
            assert_eq!(
                listed.check(&map, Some(good)),
                *expected,
                "{name}, knowing the value"
            );
            assert_eq!(
                listed.check(&map, None),
                *expected,
                "{name}, double submit only"
            );
        }

        // A planted pair (header and cookie agree, but not with this session) passes only
        // where the session's value is unknown.
        let planted = headers(&[
            app,
            ("x-csrf-token", "planted"),
            ("cookie", "csrf_token=planted"),
        ]);
        assert_eq!(listed.check(&planted, Some(good)), Err(Mismatch));
        assert_eq!(listed.check(&planted, None), Ok(()));

        // Without a list, the request's own host is the one allowed origin.
        let own = headers(&[
            host,
            ("origin", "https://api.example"),
            ("x-csrf-token", good),
            ("cookie", &cookie),
        ]);
        assert_eq!(unlisted.check(&own, None), Ok(()));
        let elsewhere = headers(&[host, app, ("x-csrf-token", good), ("cookie", &cookie)]);
        assert_eq!(unlisted.check(&elsewhere, None), Err(OriginNotAllowed));
        let nothing = headers(&[host, ("x-csrf-token", good), ("cookie", &cookie)]);
        assert_eq!(unlisted.check(&nothing, None), Err(NoOrigin));
    }
}
