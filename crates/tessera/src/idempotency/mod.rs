//! `Idempotency-Key` on every state-changing request (POST, PUT, PATCH, DELETE), as one layer
//! in front of every route: a client that retries with the same key gets the first answer
//! again (same status and body, plus `Idempotent-Replayed: true`) instead of a second change.
//!
//! - **Scope.** A key belongs to its [`Principal`] (`user:<id>`, `client:<id>` or
//!   `anonymous`): one caller can never replay another's answer. Authentication is the full
//!   one (live session, unrevoked token), so a revoked credential replays nothing.
//! - **Same request.** The key is bound to the method, path and exact body; the same key
//!   with another request is 422 `idempotency_key_reused`. While the first request runs,
//!   the same key again is 409 `idempotency_in_flight` (with `Retry-After`).
//! - **What is kept.** Only 2xx answers: any other answer changed nothing, so the key is
//!   released and a retry runs again. Keys live in the database (identical on every
//!   instance) for `idempotency.ttl_secs` (24 h by default); the hourly cleanup deletes them.
//! - **Secrets shown once.** Answers can hold a secret shown once (a new client secret, a
//!   TOTP secret). The replay store never holds one in plaintext: every answer is sealed
//!   (AES-256-GCM) under a key derived from the master key *and the idempotency key itself*,
//!   which is stored only as an HMAC. A replay to the same caller with the same key and body
//!   therefore answers exactly as the first time, secret included (the caller already
//!   received it, and holds the credentials to rotate it anyway); a database reader cannot
//!   open a stored answer even with the master key, without the key only the caller has.
//! - **Where keys are refused.** Sign-in ceremonies (login, refresh, logout, second-factor
//!   verification), single-use real-time tickets, the OAuth endpoints, CSP reports and OFREP
//!   evaluation answer 422 `idempotency_not_supported` to a key: their answers are fresh
//!   credentials (a replay would hand a rotated refresh token out again, past reuse
//!   detection) or they change nothing. See [`EXEMPT`].

pub mod store;

use aws_lc_rs::hmac;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::caller::Principal;
use crate::config::Config;
use crate::digest::{hex, sha256_hex};
use crate::http::ApiError;
use crate::master::MasterKey;
use crate::state::AppState;
use store::Claim;

/// The request header.
pub const KEY_HEADER: &str = "idempotency-key";

/// The header a replayed answer carries.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 255;

/// Largest answer kept for replay; a larger one is answered but not kept (the key is released).
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Answer headers a replay repeats; the rest (cookies above all) are not kept.
const KEPT_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::ETAG,
    header::LINK,
];

/// Paths (exact, or every path under one ending in `/`) where a key is refused, and why.
pub const EXEMPT: &[(&str, &str)] = &[
    (
        "/oauth2/",
        "OAuth endpoints follow their RFCs; a token answer is issued fresh",
    ),
    ("/api/v1/auth/login", "a sign-in issues fresh credentials"),
    (
        "/api/v1/auth/refresh",
        "refresh rotation detects reuse; a replay would bypass it",
    ),
    (
        "/api/v1/auth/logout",
        "ending a session is idempotent by itself",
    ),
    (
        "/api/v1/auth/mfa/verify",
        "a second-factor code is single-use",
    ),
    ("/api/v1/realtime/ticket", "tickets are single-use"),
    ("/api/v1/realtime/ticket/redeem", "tickets are single-use"),
    (
        "/api/v1/csp-report",
        "browsers' reports are counted, not changes",
    ),
    ("/ofrep/", "flag evaluation changes nothing"),
];

/// The keys of the replay store, derived from the master key.
pub struct Idempotency {
    /// Names a (principal, key) pair in the table.
    scope: hmac::Key,
    /// Derives the key each stored answer is sealed under.
    seal: hmac::Key,
    /// How long keys are kept, in seconds.
    ttl_secs: i64,
    /// A key in flight longer than this (the request timeout and a margin) was left by a
    /// request that died.
    stale_secs: i64,
    /// Largest request body, as the stack enforces it.
    body_limit: usize,
}

impl Idempotency {
    /// The replay store's keys for `config`, derived from `master`.
    pub fn new(config: &Config, master: &MasterKey) -> Self {
        let key = |label| hmac::Key::new(hmac::HMAC_SHA256, &master.derive(label));
        Self {
            scope: key("tessera idempotency scope v1"),
            seal: key("tessera idempotency answer v1"),
            ttl_secs: i64::try_from(config.idempotency.ttl_secs).unwrap_or(i64::MAX),
            stale_secs: i64::try_from(config.http.request_timeout_secs)
                .unwrap_or(i64::MAX)
                .saturating_add(5),
            body_limit: usize::try_from(config.http.body_limit_bytes).unwrap_or(usize::MAX),
        }
    }

    /// How long keys are kept, in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    fn mac(key: &hmac::Key, principal: &str, idempotency_key: &str) -> hmac::Tag {
        let mut context = hmac::Context::with_key(key);
        context.update(principal.as_bytes());
        context.update(&[0]);
        context.update(idempotency_key.as_bytes());
        context.sign()
    }

    /// The row naming `principal`'s `key` in the table.
    pub fn scope_of(&self, principal: &str, key: &str) -> String {
        hex(Self::mac(&self.scope, principal, key).as_ref())
    }

    fn sealer(&self, principal: &str, key: &str) -> MasterKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(Self::mac(&self.seal, principal, key).as_ref());
        MasterKey::from_bytes(&bytes)
    }
}

/// A stored answer, before sealing.
#[derive(Serialize, Deserialize)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn problem(status: StatusCode, code: &'static str, detail: &str) -> Response {
    ApiError::new(status, code, detail).into_response()
}

/// The request's key: `None` without the header; 422 `invalid_idempotency_key` for several
/// values, an empty or long one, or one with characters other than visible ASCII.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_BYTES && values.next().is_none());
    match key {
        Some(key) if key.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(key.to_owned())),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_idempotency_key",
            format!("`Idempotency-Key` must be one value of 1-{MAX_KEY_BYTES} visible characters"),
        )),
    }
}

/// Whether `path` refuses keys (see [`EXEMPT`]).
pub fn is_exempt(path: &str) -> bool {
    EXEMPT.iter().any(|(exempt, _)| {
        if exempt.ends_with('/') {
            path.starts_with(exempt)
        } else {
            path == *exempt
        }
    })
}

/// What a key is bound to: method, path with query, and the exact body.
pub fn fingerprint(method: &Method, uri: &Uri, body: &[u8]) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut text = Vec::with_capacity(body.len() + path.len() + 16);
    text.extend_from_slice(method.as_str().as_bytes());
    text.push(0);
    text.extend_from_slice(path.as_bytes());
    text.push(0);
    text.extend_from_slice(body);
    sha256_hex(&text)
}

/// The layer: see the module documentation.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(request).await;
    }
    let key = match key_of(request.headers()) {
        Ok(None) => return next.run(request).await,
        Ok(Some(key)) => key,
        Err(e) => return e.into_response(),
    };
    if is_exempt(request.uri().path()) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_not_supported",
            "this endpoint does not take an `Idempotency-Key` (see the API conventions)",
        );
    }
    let service = state.idempotency();
    let (mut parts, body) = request.into_parts();
    let body = match to_bytes(body, service.body_limit).await {
        Ok(body) => body,
        Err(_) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this server accepts",
            );
        }
    };
    // A credential that does not verify names nobody: the handler refuses it, and a refusal
    // is never kept, so nothing is stored or replayed under `anonymous` for it.
    let principal = Principal::from_request_parts(&mut parts, &state)
        .await
        .map_or_else(|_| "anonymous".to_owned(), |p| p.name());
    let scope = service.scope_of(&principal, &key);
    let sealer = service.sealer(&principal, &key);
    let now = state.clock().now();
    let claimed = store::claim(
        state.db(),
        &scope,
        &fingerprint(&parts.method, &parts.uri, &body),
        now,
        now - service.stale_secs,
        now - service.ttl_secs,
    )
    .await;
    match claimed {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(Claim::Fresh) => {}
        Ok(Claim::InFlight) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_flight",
                "a request with this Idempotency-Key is still running; retry when it has answered",
            )
            .retry_after(1)
            .into_response();
        }
        Ok(Claim::Mismatch) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            );
        }
        Ok(Claim::Done(sealed)) => return replay(&sealer, &scope, &sealed),
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    keep(&state, &sealer, &scope, now, response).await
}

/// Stores a 2xx answer for replay (sealed), releases the key otherwise; answers as it came.
async fn keep(
    state: &AppState,
    sealer: &MasterKey,
    scope: &str,
    claimed_at: i64,
    response: Response,
) -> Response {
    let db = state.db();
    if !response.status().is_success() {
        if let Err(e) = store::release(db, scope, claimed_at).await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_ANSWER_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            // Too large to keep (or the body failed): the caller gets what there is, and the key
            // is freed rather than left to replay something else.
            tracing::warn!(error = %e, "an answer was not kept for idempotent replay");
            let _ = store::release(db, scope, claimed_at).await;
            return ApiError::internal("answer body could not be read").into_response();
        }
    };
    let answer = Answer {
        status: parts.status.as_u16(),
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), value.to_owned()))
            })
            .collect(),
        body: STANDARD.encode(&bytes),
    };
    let sealed = serde_json::to_vec(&answer)
        .map_err(ApiError::internal)
        .and_then(|plain| sealer.seal(scope, &plain).map_err(ApiError::internal));
    let stored = match sealed {
        Ok(sealed) => store::finish(
            db,
            scope,
            claimed_at,
            answer.status,
            &STANDARD.encode(sealed),
        )
        .await
        .map_err(ApiError::internal),
        Err(e) => Err(e),
    };
    if stored.is_err() {
        let _ = store::release(db, scope, claimed_at).await;
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The stored answer again, marked as a replay.
fn replay(sealer: &MasterKey, scope: &str, sealed: &str) -> Response {
    let answer = STANDARD
        .decode(sealed)
        .map_err(ApiError::internal)
        .and_then(|bytes| sealer.open(scope, &bytes).map_err(ApiError::internal))
        .and_then(|plain| serde_json::from_slice::<Answer>(&plain).map_err(ApiError::internal))
        .and_then(|answer| {
            let body = STANDARD.decode(&answer.body).map_err(ApiError::internal)?;
            Ok((answer, Bytes::from(body)))
        });
    let (answer, body) = match answer {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.insert(name, value);
        }
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_value_of_visible_ascii() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(KEY_HEADER, HeaderValue::from_str(value).expect("value"));
            key_of(&headers)
        };
        assert_eq!(with("order-7").ok().flatten().as_deref(), Some("order-7"));
        assert!(with("").is_err());
        assert!(with("has space").is_err());
        assert!(with(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert_eq!(key_of(&HeaderMap::new()).ok(), Some(None));
        let mut twice = HeaderMap::new();
        twice.append(KEY_HEADER, HeaderValue::from_static("a"));
        twice.append(KEY_HEADER, HeaderValue::from_static("b"));
        assert!(key_of(&twice).is_err());
    }

    #[test]
    fn exempt_paths_match_exactly_or_below_a_folder() {
        assert!(is_exempt("/oauth2/token"));
        assert!(is_exempt("/api/v1/auth/login"));
        assert!(!is_exempt("/api/v1/auth/login/x"));
        assert!(!is_exempt("/api/v1/admin/clients"));
        assert!(!is_exempt("/api/v1/auth/register"));
    }

    #[test]
    fn scopes_and_seals_differ_by_principal_and_key() {
        let service = Idempotency::new(&Config::default(), &MasterKey::from_bytes(&[3; 32]));
        let a = service.scope_of("user:a", "k");
        assert_ne!(a, service.scope_of("user:b", "k"));
        assert_ne!(a, service.scope_of("user:a", "k2"));
        // The separator keeps (`user:a`, `bk`) apart from (`user:ab`, `k`).
        assert_ne!(
            service.scope_of("user:a", "bk"),
            service.scope_of("user:ab", "k")
        );
        let sealed = service
            .sealer("user:a", "k")
            .seal(&a, b"secret")
            .expect("sealed");
        assert!(service.sealer("user:b", "k").open(&a, &sealed).is_err());
        assert_eq!(
            service
                .sealer("user:a", "k")
                .open(&a, &sealed)
                .expect("opened"),
            b"secret"
        );
    }
}
