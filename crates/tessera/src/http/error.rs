//! The one HTTP error type: RFC 9457 `application/problem+json` with a stable `code` and the
//! request id. 5xx details are logged, never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::request_id::current_request_id;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: Option<String>,
    /// Machine-readable extras such as per-field validation errors.
    extra: Option<serde_json::Value>,
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a serde_json::Value>,
}

impl ApiError {
    /// An error with a status, a stable code and an explanation safe to show the client.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: Some(detail.into()),
            extra: None,
            retry_after: None,
        }
    }

    /// The status's own meaning is the whole story (404, 405, …).
    pub fn bare(status: StatusCode, code: &'static str) -> Self {
        Self {
            status,
            code,
            detail: None,
            extra: None,
            retry_after: None,
        }
    }

    /// An unexpected failure: logged in full here, answered as an opaque 500.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::bare(StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
    }

    /// A dependency is down: 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, detail: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail).retry_after(retry_after)
    }

    /// 404 for a path or resource the caller may not know about.
    pub fn not_found() -> Self {
        Self::bare(StatusCode::NOT_FOUND, "not_found")
    }

    /// Adds machine-readable members to the body (they must not clash with the standard ones).
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }

    /// Adds `Retry-After` in seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = ProblemBody {
            kind: format!("urn:tessera:problem:{}", self.code),
            title,
            status: self.status.as_u16(),
            code: self.code,
            detail: self.detail.as_deref(),
            request_id: current_request_id(),
            extra: self.extra.as_ref(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The stable code for an error status produced outside a handler (routing, body limits,
/// timeouts, panics).
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    }
}

/// Router fallback: every unknown path is a problem+json 404.
pub async fn not_found() -> ApiError {
    ApiError::not_found()
}
