//! CSRF protection for cookie-authenticated requests: the rule shared with every service
//! (`tessera_token::CsrfPolicy`: header equal to cookie, an allowed `Origin` or `Referer`),
//! with the token bound to its session (an HMAC of the session id under a key derived from
//! the master key), so a token planted for one session is worthless for another. Only
//! Tessera holds that key; services check the double submit and the origin.

use aws_lc_rs::hmac;
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_token::{CsrfError, CsrfPolicy};
use url::Url;

use super::error::ApiError;
use crate::config::Config;
use crate::master::MasterKey;

/// The request header carrying the token.
pub const HEADER: &str = "x-csrf-token";

/// The CSRF policy of one instance: the shared rule ([`CsrfPolicy`], the same that
/// `tessera-client` applies) plus the key that binds each token to its session.
pub struct Csrf {
    key: hmac::Key,
    policy: CsrfPolicy,
}

/// Every failure gets the same code; the reason is for the log and the detail.
fn failed(error: CsrfError) -> ApiError {
    ApiError::forbidden("csrf_failed", error.to_string())
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
            policy: CsrfPolicy {
                cookie_name,
                header_name: HEADER.to_owned(),
                allowed_origins,
            },
        }
    }

    /// The CSRF token of a session.
    pub fn token_for(&self, session_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, session_id.as_bytes()))
    }

    /// The name of the cookie holding it.
    pub fn cookie_name(&self) -> &str {
        &self.policy.cookie_name
    }

    /// Checks an unsafe request authenticated by cookie for session `session_id`.
    pub fn check(&self, headers: &HeaderMap, session_id: &str) -> Result<(), ApiError> {
        self.policy
            .check(headers, Some(&self.token_for(session_id)))
            .map_err(failed)
    }

    /// Checks that the request comes from an allowed origin: `Origin` when sent (every
    /// browser sends it on cross-origin and on POST requests), else the origin of `Referer`.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.policy.check_origin(headers).map_err(failed)
    }

    /// Whether `origin` is allowed; login with cookie delivery uses this only when a browser
    /// sent one.
    pub fn allows(&self, origin: &str) -> bool {
        self.policy.allowed_origins.iter().any(|o| o == origin)
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
    fn a_token_is_bound_to_its_session() {
        let csrf = csrf();
        let other = csrf.token_for("s2");
        let planted = headers(&[
            ("origin", "https://app.example.com"),
            ("x-csrf-token", &other),
            ("cookie", &format!("csrf_token={other}")),
        ]);
        let error = csrf.check(&planted, "s1").expect_err("refused");
        assert_eq!(error.code(), "csrf_failed");
    }
}
