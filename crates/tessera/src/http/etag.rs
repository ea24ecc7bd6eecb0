//! Conditional GETs: `ETag` plus `If-None-Match` → `304 Not Modified`, with a deliberate
//! `Cache-Control` on both answers.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Whether `If-None-Match` already names `etag` (weak comparison, as RFC 9110 §13.1.2 asks
/// for GET; `*` matches anything).
pub fn matches(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = strip_weak(etag.as_bytes());
    request.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .map(|t| t.trim_ascii())
            .any(|t| t == b"*" || strip_weak(t) == ours)
    })
}

fn strip_weak(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// A JSON body with its ETag, or 304 when the client has it already.
pub fn json_response(
    request: &HeaderMap,
    body: impl Into<axum::body::Body>,
    etag: &HeaderValue,
    cache_control: HeaderValue,
) -> Response {
    let mut response = if matches(request, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut ok = (StatusCode::OK, body.into()).into_response();
        ok.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        ok
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, cache_control);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn if_none_match_compares_weakly_and_in_lists() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(matches(&with("\"abc\""), &etag));
        assert!(matches(&with("W/\"abc\""), &etag));
        assert!(matches(&with("\"x\", \"abc\""), &etag));
        assert!(matches(&with("*"), &etag));
        assert!(!matches(&with("\"abcd\""), &etag));
        assert!(!matches(&HeaderMap::new(), &etag));
    }
}
