//! CSRF protection for cookie-authenticated requests. A browser attaches cookies to requests
//! any site makes, so a state-changing request authenticated by cookie must also prove it was
//! made by our own pages: an `X-CSRF-Token` header equal to the CSRF cookie (which only pages
//! of the cookie's site can read) and bound to the session (an HMAC of its id, so a token
//! planted for one session is worthless for another), plus an `Origin` (or, failing that,
//! `Referer`) from the allow-list. Bearer-authenticated requests need none of this: a browser
//! never adds an `Authorization` header by itself.

use aws_lc_rs::hmac;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;
use url::Url;

use super::error::ApiError;
use crate::config::Config;
use crate::keys::master::MasterKey;

/// The request header carrying the token.
pub const HEADER: &str = "x-csrf-token";

/// The CSRF policy of one instance.
pub struct Csrf {
    key: hmac::Key,
    cookie_name: String,
    /// Serialized origins (`https://app.example.com`) allowed to make cookie requests.
    allowed_origins: Vec<String>,
}

/// Why a request failed the check; logged, never detailed to the client beyond the code.
fn failed(detail: &str) -> ApiError {
    ApiError::forbidden("csrf_failed", detail)
}

impl Csrf {
    /// The policy for `config`: this server's own origin plus `http.cors_allowed_origins`.
    pub fn new(config: &Config, master: &MasterKey, cookie_name: String) -> Self {
        let mut allowed_origins = vec![config.public_url.origin().ascii_serialization()];
        for origin in &config.http.cors_allowed_origins {
            if let Ok(url) = Url::parse(origin) {
                allowed_origins.push(url.origin().ascii_serialization());
            }
        }
        allowed_origins.sort();
        allowed_origins.dedup();
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &master.derive("tessera csrf token v1")),
            cookie_name,
            allowed_origins,
        }
    }

    /// The CSRF token of a session.
    pub fn token_for(&self, session_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, session_id.as_bytes()))
    }

    /// The name of the cookie holding it.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Checks an unsafe request authenticated by cookie for session `session_id`.
    pub fn check(&self, headers: &HeaderMap, session_id: &str) -> Result<(), ApiError> {
        self.check_origin(headers)?;
        let expected = self.token_for(session_id);
        let mut sent = headers.get_all(HEADER).iter();
        let header = match (sent.next(), sent.next()) {
            (Some(value), None) => value.as_bytes(),
            (None, _) => return Err(failed("the X-CSRF-Token header is missing")),
            (Some(_), Some(_)) => return Err(failed("X-CSRF-Token was sent more than once")),
        };
        let cookie = tessera_token::cookie_value(headers, &self.cookie_name)
            .map_err(|_| failed("the CSRF cookie was sent more than once"))?
            .ok_or_else(|| failed("the CSRF cookie is missing"))?;
        let header_ok: bool = header.ct_eq(expected.as_bytes()).into();
        let cookie_ok: bool = cookie.as_bytes().ct_eq(expected.as_bytes()).into();
        if header_ok && cookie_ok {
            Ok(())
        } else {
            Err(failed(
                "X-CSRF-Token does not match this session's CSRF cookie",
            ))
        }
    }

    /// Checks that the request comes from an allowed origin: `Origin` when sent (every
    /// browser sends it on cross-origin and on POST requests), else the origin of `Referer`.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let origin = match headers.get(header::ORIGIN) {
            Some(value) => value.to_str().ok().map(str::to_owned),
            None => headers
                .get(header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| Url::parse(r).ok())
                .map(|url| url.origin().ascii_serialization()),
        };
        match origin {
            Some(origin) if self.allows(&origin) => Ok(()),
            Some(_) => Err(failed(
                "the request comes from an origin that is not allowed",
            )),
            None => Err(failed("the request names no Origin or Referer")),
        }
    }

    /// Whether `origin` is allowed; login with cookie delivery uses this only when a browser
    /// sent one.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    fn csrf() -> Csrf {
        let mut config = Config::default();
        config.http.cors_allowed_origins = vec!["https://app.example.com".into()];
        Csrf::new(
            &config,
            &MasterKey::from_bytes(&[9u8; 32]),
            "csrf_token".into(),
        )
    }

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

    #[test]
    fn matching_header_cookie_and_origin_pass() {
        let csrf = csrf();
        let token = csrf.token_for("s1");
        let cookie = format!("csrf_token={token}");
        for origin in ["http://127.0.0.1:8080", "https://app.example.com"] {
            let ok = headers(&[
                ("origin", origin),
                ("x-csrf-token", &token),
                ("cookie", &cookie),
            ]);
            assert!(csrf.check(&ok, "s1").is_ok(), "{origin}");
        }
        let referer = headers(&[
            ("referer", "https://app.example.com/settings?tab=1"),
            ("x-csrf-token", &token),
            ("cookie", &cookie),
        ]);
        assert!(csrf.check(&referer, "s1").is_ok());
    }

    #[test]
    fn every_missing_or_foreign_part_fails() {
        let csrf = csrf();
        let token = csrf.token_for("s1");
        let other = csrf.token_for("s2");
        let cookie = format!("csrf_token={token}");
        let origin = "https://app.example.com";
        let cases = [
            headers(&[("origin", origin), ("cookie", &cookie)]),
            headers(&[("origin", origin), ("x-csrf-token", &token)]),
            headers(&[("x-csrf-token", &token), ("cookie", &cookie)]),
            headers(&[
                ("origin", "https://evil.example"),
                ("x-csrf-token", &token),
                ("cookie", &cookie),
            ]),
            headers(&[
                ("origin", "null"),
                ("x-csrf-token", &token),
                ("cookie", &cookie),
            ]),
            headers(&[
                ("origin", origin),
                ("x-csrf-token", "forged"),
                ("cookie", "csrf_token=forged"),
            ]),
            headers(&[
                ("origin", origin),
                ("x-csrf-token", &other),
                ("cookie", &format!("csrf_token={other}")),
            ]),
            headers(&[
                ("origin", origin),
                ("x-csrf-token", &token),
                ("cookie", &format!("csrf_token={token}; csrf_token={token}")),
            ]),
        ];
        for (i, case) in cases.iter().enumerate() {
            let error = csrf.check(case, "s1").expect_err("refused");
            assert_eq!((i, error.code()), (i, "csrf_failed"));
        }
    }
}
