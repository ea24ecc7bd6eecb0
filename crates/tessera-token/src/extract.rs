//! Where a request's credential is read from, in one order shared by the server and every
//! client: `Authorization: Bearer` → the access-token cookie → (WebSocket/SSE handshakes only) a
//! single-use ticket in the query string. Long-lived tokens in the query string are refused
//! unless a legacy switch names the parameter.

use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
use http::{HeaderMap, Method};

use crate::MAX_TOKEN_BYTES;

/// Names and switches for [`extract_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractionPolicy {
    /// Cookie holding the access token.
    pub cookie_name: String,
    /// Query parameter holding a single-use real-time ticket.
    pub ticket_param: String,
    /// Legacy switch: a query parameter accepted to carry an access token itself. `None` (the
    /// default) never accepts a token from the query string, where it would reach logs.
    pub legacy_query_param: Option<String>,
}

impl Default for ExtractionPolicy {
    fn default() -> Self {
        Self {
            cookie_name: "access_token".to_owned(),
            ticket_param: "ticket".to_owned(),
            legacy_query_param: None,
        }
    }
}

/// A credential and where it was found, which decides what else is required (cookie-borne
/// requests need CSRF protection; tickets are redeemed, not verified as tokens).
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// From `Authorization: Bearer`.
    Bearer(String),
    /// From the access-token cookie.
    Cookie(String),
    /// A single-use ticket from the query string of a WebSocket or SSE handshake.
    Ticket(String),
    /// An access token from the query string, through the legacy switch.
    LegacyQuery(String),
}

/// Names the source only: a credential must never reach a log through `{:?}`.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self {
            Self::Bearer(_) => "Bearer",
            Self::Cookie(_) => "Cookie",
            Self::Ticket(_) => "Ticket",
            Self::LegacyQuery(_) => "LegacyQuery",
        };
        write!(f, "{source}([redacted])")
    }
}

impl Credential {
    /// The credential's text.
    pub fn value(&self) -> &str {
        match self {
            Self::Bearer(v) | Self::Cookie(v) | Self::Ticket(v) | Self::LegacyQuery(v) => v,
        }
    }
}

/// A credential was present but unusable. Falling back to another source would let a
/// malformed header hide behind a cookie, so these are errors, not "no credential".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// `Authorization` present but not exactly one `Bearer <token>`.
    #[error("malformed Authorization header")]
    MalformedAuthorization,
    /// The access-token cookie appears more than once (a cookie-tossing attempt, or a stale
    /// cookie for another path or domain).
    #[error("ambiguous access-token cookie")]
    AmbiguousCookie,
    /// The ticket or token parameter appears more than once or is empty.
    #[error("ambiguous query credential")]
    AmbiguousQuery,
    /// Longer than any token Tessera accepts.
    #[error("credential too large")]
    TooLarge,
}

/// Finds the request's credential, or `None` when it carries none.
pub fn extract_token(
    parts: &Parts,
    policy: &ExtractionPolicy,
) -> Result<Option<Credential>, ExtractError> {
    if let Some(token) = bearer(&parts.headers)? {
        return Ok(Some(Credential::Bearer(token)));
    }
    if let Some(token) = cookie_value(&parts.headers, &policy.cookie_name)? {
        return Ok(Some(Credential::Cookie(token)));
    }
    let query = parts.uri.query().unwrap_or_default();
    if query.is_empty() {
        return Ok(None);
    }
    if is_realtime_handshake(parts)
        && let Some(ticket) = query_value(query, &policy.ticket_param)?
    {
        return Ok(Some(Credential::Ticket(ticket)));
    }
    if let Some(name) = &policy.legacy_query_param
        && let Some(token) = query_value(query, name)?
    {
        return Ok(Some(Credential::LegacyQuery(token)));
    }
    Ok(None)
}

fn checked(value: &str) -> Result<String, ExtractError> {
    if value.len() > MAX_TOKEN_BYTES {
        return Err(ExtractError::TooLarge);
    }
    Ok(value.to_owned())
}

fn bearer(headers: &HeaderMap) -> Result<Option<String>, ExtractError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ExtractError::MalformedAuthorization);
    }
    let text = value
        .to_str()
        .map_err(|_| ExtractError::MalformedAuthorization)?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or(ExtractError::MalformedAuthorization)?;
    let token = token.trim_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(ExtractError::MalformedAuthorization);
    }
    checked(token).map(Some)
}

/// The value of cookie `name`, read the way the access-token cookie is: a name sent twice is
/// ambiguous (an error), an empty value is absent, surrounding quotes are dropped.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, ExtractError> {
    let mut seen = false;
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        // Split the raw bytes: another cookie with a non-ASCII value (set by a sibling site,
        // say) must not hide this one.
        for pair in header.as_bytes().split(|b| *b == b';') {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            let (key, value) = (&pair[..eq], &pair[eq + 1..]);
            if key.trim_ascii() != name.as_bytes() {
                continue;
            }
            if seen {
                return Err(ExtractError::AmbiguousCookie);
            }
            seen = true;
            let Ok(value) = std::str::from_utf8(value.trim_ascii()) else {
                continue;
            };
            let value = value.trim_matches('"');
            if !value.is_empty() && value.is_ascii() {
                found = Some(checked(value)?);
            }
        }
    }
    Ok(found)
}

fn query_value(query: &str, name: &str) -> Result<Option<String>, ExtractError> {
    let mut found = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != name {
            continue;
        }
        if found.is_some() || value.is_empty() {
            return Err(ExtractError::AmbiguousQuery);
        }
        found = Some(checked(&value)?);
    }
    Ok(found)
}

/// A WebSocket upgrade or an SSE request: the only requests a browser cannot attach an
/// `Authorization` header to, and so the only ones a ticket may authenticate.
fn is_realtime_handshake(parts: &Parts) -> bool {
    if parts.method != Method::GET {
        return false;
    }
    let header_has = |name: http::header::HeaderName, needle: &str| {
        parts.headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|item| item.trim().to_ascii_lowercase().starts_with(needle))
            })
        })
    };
    header_has(http::header::UPGRADE, "websocket")
        || header_has(http::header::ACCEPT, "text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(builder: http::request::Builder) -> Parts {
        builder.body(()).expect("request").into_parts().0
    }

    fn extract(builder: http::request::Builder) -> Result<Option<Credential>, ExtractError> {
        extract_token(&parts(builder), &ExtractionPolicy::default())
    }

    #[test]
    fn bearer_header_wins_over_cookie() {
        let found = extract(
            Request::get("/")
                .header("authorization", "Bearer header-token")
                .header("cookie", "access_token=cookie-token"),
        );
        assert_eq!(found, Ok(Some(Credential::Bearer("header-token".into()))));
    }

    #[test]
    fn cookie_is_used_without_a_header() {
        let found = extract(Request::get("/").header("cookie", "a=1; access_token=tok; b=2"));
        assert_eq!(found, Ok(Some(Credential::Cookie("tok".into()))));
    }

    #[test]
    fn scheme_is_case_insensitive_but_must_be_bearer() {
        let found = extract(Request::get("/").header("authorization", "bearer t"));
        assert_eq!(found, Ok(Some(Credential::Bearer("t".into()))));
        for bad in [
            "Basic dXNlcjpwdw==",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Token x",
        ] {
            let found = extract(Request::get("/").header("authorization", bad));
            assert_eq!(found, Err(ExtractError::MalformedAuthorization), "{bad}");
        }
    }

    #[test]
    fn a_malformed_header_does_not_fall_back_to_the_cookie() {
        let found = extract(
            Request::get("/")
                .header("authorization", "Basic x")
                .header("cookie", "access_token=tok"),
        );
        assert_eq!(found, Err(ExtractError::MalformedAuthorization));
    }

    #[test]
    fn a_foreign_cookie_with_non_ascii_bytes_does_not_hide_ours() {
        let value = http::HeaderValue::from_bytes("theme=é; access_token=tok".as_bytes())
            .expect("opaque header value");
        let found = extract(Request::get("/").header("cookie", value));
        assert_eq!(found, Ok(Some(Credential::Cookie("tok".into()))));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let shown = format!("{:?}", Credential::Bearer("secret.token.value".into()));
        assert_eq!(shown, "Bearer([redacted])");
    }

    #[test]
    fn duplicate_cookies_and_headers_are_refused() {
        for cookie in [
            "access_token=a; access_token=b",
            "access_token=; access_token=b",
            "access_token=a; access_token=",
        ] {
            let found = extract(Request::get("/").header("cookie", cookie));
            assert_eq!(found, Err(ExtractError::AmbiguousCookie), "{cookie}");
        }
        let found = extract(
            Request::get("/")
                .header("authorization", "Bearer a")
                .header("authorization", "Bearer b"),
        );
        assert_eq!(found, Err(ExtractError::MalformedAuthorization));
    }

    #[test]
    fn tickets_only_on_websocket_or_sse_handshakes() {
        let found = extract(Request::get("/api/v1/realtime/sse?ticket=t1"));
        assert_eq!(found, Ok(None), "plain GET");
        let found = extract(Request::get("/sse?ticket=t1").header("accept", "text/event-stream"));
        assert_eq!(found, Ok(Some(Credential::Ticket("t1".into()))));
        let found = extract(
            Request::get("/ws?ticket=t%2B2")
                .header("upgrade", "websocket")
                .header("connection", "Upgrade"),
        );
        assert_eq!(found, Ok(Some(Credential::Ticket("t+2".into()))));
        let found = extract(Request::post("/sse?ticket=t1").header("accept", "text/event-stream"));
        assert_eq!(found, Ok(None), "handshakes are GETs");
        let found =
            extract(Request::get("/sse?ticket=a&ticket=b").header("accept", "text/event-stream"));
        assert_eq!(found, Err(ExtractError::AmbiguousQuery));
    }

    #[test]
    fn tokens_in_the_query_string_need_the_legacy_switch() {
        let request = || Request::get("/x?access_token=tok").header("upgrade", "websocket");
        assert_eq!(extract(request()), Ok(None));
        let policy = ExtractionPolicy {
            legacy_query_param: Some("access_token".into()),
            ..ExtractionPolicy::default()
        };
        let found = extract_token(&parts(request()), &policy);
        assert_eq!(found, Ok(Some(Credential::LegacyQuery("tok".into()))));
    }

    #[test]
    fn oversized_credentials_are_refused() {
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        let found = extract(Request::get("/").header("authorization", long));
        assert_eq!(found, Err(ExtractError::TooLarge));
    }
}
