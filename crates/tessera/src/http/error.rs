//! The one HTTP error type: RFC 9457 `application/problem+json` with a stable `code` and the
//! request id. 5xx details are logged, never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::request_id::current_request_id;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answered to an HTTP client. Boxed: it travels in every handler's `Result`, which
/// should stay small on the success path.
#[derive(Debug)]
pub struct ApiError(Box<Problem>);

#[derive(Debug)]
struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: Option<String>,
    /// Machine-readable extras such as per-field validation errors.
    extra: Option<serde_json::Value>,
    retry_after: Option<u64>,
    /// `WWW-Authenticate` for 401 answers.
    challenge: Option<&'static str>,
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
        Self(Box::new(Problem {
            status,
            code,
            detail: Some(detail.into()),
            extra: None,
            retry_after: None,
            challenge: None,
        }))
    }

    /// The status's own meaning is the whole story (404, 405, …).
    pub fn bare(status: StatusCode, code: &'static str) -> Self {
        Self(Box::new(Problem {
            status,
            code,
            detail: None,
            extra: None,
            retry_after: None,
            challenge: None,
        }))
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
        self.0.extra = Some(extra);
        self
    }

    /// Adds `Retry-After` in seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.0.retry_after = Some(seconds);
        self
    }

    /// 401 with a `WWW-Authenticate: Bearer` challenge naming `error` (RFC 6750 §3).
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, code, detail);
        error.0.challenge = Some(if code == "unauthenticated" {
            "Bearer"
        } else {
            "Bearer error=\"invalid_token\""
        });
        error
    }

    /// 401 with a `WWW-Authenticate: Basic` challenge: client credentials missing or wrong.
    pub fn client_unauthorized(detail: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", detail);
        error.0.challenge = Some("Basic realm=\"tessera\"");
        error
    }

    /// 403 for a caller who is known but may not do this.
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.0.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0.status.as_u16(), self.0.code)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = *self.0;
        let title = problem.status.canonical_reason().unwrap_or("Error");
        let body = ProblemBody {
            kind: format!("urn:tessera:problem:{}", problem.code),
            title,
            status: problem.status.as_u16(),
            code: problem.code,
            detail: problem.detail.as_deref(),
            request_id: current_request_id(),
            extra: problem.extra.as_ref(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (problem.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = problem.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = problem.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
            .extensions_mut()
            .insert(crate::telemetry::signals::ProblemCode(problem.code));
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

/// A database failure on a request path. A constraint violation (a unique value taken, a
/// referenced row gone) means the request lost a race with another change or repeats one:
/// 409 `conflict`, whichever write path hit it. Anything else is logged and answered as an
/// opaque 500.
pub fn db_error<E: std::error::Error + 'static>(error: E) -> ApiError {
    if is_unstorable_input(&error) {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "the request holds a value that cannot be stored or compared (a NUL character, or a \
             number out of range)",
        );
    }
    if violates_constraint(&error) {
        tracing::info!(error = %error, "a write conflicted with the stored state");
        return ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the change conflicts with the current state (another change came first); \
             read it again and retry",
        );
    }
    if is_unavailable(&error) {
        tracing::warn!(error = %error, "the database is unavailable");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database cannot be reached right now; retry shortly",
        )
        .retry_after(5);
    }
    ApiError::internal(error)
}

/// Whether `error` says the database cannot be reached (down, restarting, failing over, every
/// connection busy past `database.acquire_timeout_secs`), rather than that the request was
/// wrong: a 503 the client may retry, never a hang or an opaque 500.
fn is_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        match e.downcast_ref::<sqlx::Error>() {
            Some(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => return true,
            // Class 08: connection exceptions; 57P: the server shutting down or starting.
            Some(sqlx::Error::Database(db)) => {
                return db
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P"));
            }
            _ => {}
        }
        current = e.source();
    }
    false
}

/// The database error `error` is or wraps, if any. Error enums must wrap `sqlx::Error` as
/// their source (not `#[error(transparent)]`, which hides it behind the driver's error).
fn database_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn sqlx::error::DatabaseError + 'static)> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() {
            return Some(db.as_ref());
        }
        current = e.source();
    }
    None
}

/// Whether `error` is a database constraint violation.
fn violates_constraint(error: &(dyn std::error::Error + 'static)) -> bool {
    database_error(error).is_some_and(|db| !matches!(db.kind(), sqlx::error::ErrorKind::Other))
}

/// Whether the database refused a value the request carried: SQLSTATE class 22, "data
/// exception" (PostgreSQL refuses a NUL character in text, 22021, and numbers out of range,
/// 22003). The request is at fault, whichever field it was, and nothing was written.
pub fn is_unstorable_input(error: &(dyn std::error::Error + 'static)) -> bool {
    database_error(error)
        .and_then(|db| db.code())
        .is_some_and(|code| code.starts_with("22"))
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        db_error(error)
    }
}

/// Router fallback: every unknown path is a problem+json 404.
pub async fn not_found() -> ApiError {
    ApiError::not_found()
}
