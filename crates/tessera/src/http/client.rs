//! Who is calling, for the audit log and session records: the client IP (the socket peer;
//! forwarded headers are trusted only once trusted proxies are configured, which they are not
//! yet, so they are ignored), the `User-Agent` and the request id.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;

use super::request_id::RequestId;
use crate::audit::Origin;

/// Longest `User-Agent` kept; browsers send about 150 bytes, anything far longer is noise or
/// an attempt to bloat the tables.
const MAX_USER_AGENT: usize = 512;

/// The request's [`Origin`], as an extractor.
#[derive(Debug, Clone, Default)]
pub struct Client(pub Origin);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(origin_of(parts)))
    }
}

/// The [`Origin`] of a request.
pub fn origin_of(parts: &Parts) -> Origin {
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical().to_string());
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| truncate(ua, MAX_USER_AGENT).to_owned());
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned());
    Origin {
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

    #[test]
    fn long_user_agents_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aéb", 2), "a");
        assert_eq!(truncate(&"x".repeat(600), MAX_USER_AGENT).len(), 512);
    }
}
