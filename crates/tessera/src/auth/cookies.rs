//! The browser cookies: `access_token` (HttpOnly, every path), `refresh_token` (HttpOnly,
//! only the refresh endpoint, always `SameSite=Strict`) and `csrf_token` (readable by the
//! page's scripts, which echo it in `X-CSRF-Token`). Names take the configured prefix.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::config::{Config, SameSite};

/// The one path the refresh cookie is sent to.
pub const REFRESH_PATH: &str = "/api/v1/auth/refresh";

/// Cookie names and attributes of one instance.
pub struct Cookies {
    access: String,
    refresh: String,
    csrf: String,
    domain: Option<String>,
    same_site: SameSite,
    secure: bool,
}

/// What one login or refresh hands a browser.
pub struct Issue<'a> {
    /// The access token and its lifetime in seconds.
    pub access: (&'a str, i64),
    /// The refresh token and the session's remaining lifetime in seconds.
    pub refresh: (&'a str, i64),
    /// The session's CSRF token.
    pub csrf: &'a str,
}

impl Cookies {
    /// Names and attributes from `config` (`Secure` as [`Config::cookie_secure`] decides).
    pub fn new(config: &Config) -> Self {
        let prefix = &config.auth.cookie_prefix;
        Self {
            access: format!("{prefix}access_token"),
            refresh: format!("{prefix}refresh_token"),
            csrf: format!("{prefix}csrf_token"),
            domain: config.auth.cookie_domain.clone(),
            same_site: config.auth.cookie_same_site,
            secure: config.cookie_secure(),
        }
    }

    /// Name of the access-token cookie.
    pub fn access_name(&self) -> &str {
        &self.access
    }

    /// Name of the refresh-token cookie.
    pub fn refresh_name(&self) -> &str {
        &self.refresh
    }

    /// Name of the CSRF cookie.
    pub fn csrf_name(&self) -> &str {
        &self.csrf
    }

    /// Appends the three cookies of a login or refresh to `headers`.
    pub fn set(&self, headers: &mut HeaderMap, issue: &Issue<'_>) {
        let (access, access_ttl) = issue.access;
        let (refresh, session_ttl) = issue.refresh;
        self.append(
            headers,
            &self.access,
            access,
            "/",
            true,
            self.same_site,
            access_ttl,
        );
        self.append(
            headers,
            &self.refresh,
            refresh,
            REFRESH_PATH,
            true,
            SameSite::Strict,
            session_ttl,
        );
        self.append(
            headers,
            &self.csrf,
            issue.csrf,
            "/",
            false,
            self.same_site,
            session_ttl,
        );
    }

    /// Appends cookies that delete all three (logout).
    pub fn clear(&self, headers: &mut HeaderMap) {
        self.append(headers, &self.access, "", "/", true, self.same_site, 0);
        self.append(
            headers,
            &self.refresh,
            "",
            REFRESH_PATH,
            true,
            SameSite::Strict,
            0,
        );
        self.append(headers, &self.csrf, "", "/", false, self.same_site, 0);
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &self,
        headers: &mut HeaderMap,
        name: &str,
        value: &str,
        path: &str,
        http_only: bool,
        same_site: SameSite,
        max_age: i64,
    ) {
        let mut cookie = format!(
            "{name}={value}; Path={path}; Max-Age={}; SameSite={}",
            max_age.max(0),
            same_site.as_str()
        );
        if http_only {
            cookie.push_str("; HttpOnly");
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(domain) = &self.domain {
            cookie.push_str("; Domain=");
            cookie.push_str(domain);
        }
        // Names and attributes are validated config, values are base64url or JWTs: always
        // valid header text.
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;

    fn set_cookies(config: &Config) -> Vec<String> {
        let mut headers = HeaderMap::new();
        Cookies::new(config).set(
            &mut headers,
            &Issue {
                access: ("a.b.c", 600),
                refresh: ("tsr_x", 1_000),
                csrf: "c",
            },
        );
        headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    #[test]
    fn the_three_cookies_carry_their_attributes() {
        let cookies = set_cookies(&Config::default());
        assert_eq!(
            cookies,
            [
                "access_token=a.b.c; Path=/; Max-Age=600; SameSite=Lax; HttpOnly",
                "refresh_token=tsr_x; Path=/api/v1/auth/refresh; Max-Age=1000; SameSite=Strict; HttpOnly",
                "csrf_token=c; Path=/; Max-Age=1000; SameSite=Lax",
            ]
        );
    }

    #[test]
    fn secure_is_forced_outside_development_and_prefix_and_domain_apply() {
        let mut config = Config {
            environment: Environment::Staging,
            ..Config::default()
        };
        config.auth.cookie_prefix = "__Secure-".into();
        config.auth.cookie_domain = Some("example.com".into());
        config.auth.cookie_secure = None;
        for cookie in set_cookies(&config) {
            assert!(cookie.starts_with("__Secure-"), "{cookie}");
            assert!(cookie.contains("; Secure"), "{cookie}");
            assert!(cookie.ends_with("; Domain=example.com"), "{cookie}");
        }
    }
}
