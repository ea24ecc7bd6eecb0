//! OpenFeature Remote Evaluation Protocol (OFREP v1), so every OpenFeature SDK evaluates
//! Tessera's flags unchanged:
//!
//! - `POST /ofrep/v1/evaluate/flags/{key}`: one flag (server-side providers).
//! - `POST /ofrep/v1/evaluate/flags`: every flag (client-side providers), with an `ETag` of
//!   the flag-set revision and the evaluation context, and 304 on `If-None-Match`.
//! - `GET /ofrep/v1/events`: server-sent events; a `refetchEvaluation` message (with the new
//!   revision as `etag`) whenever a flag, or an override of the caller's tenant, changes.
//!   The bulk answer names it in `eventStreams`.
//!
//! Errors carry OFREP's `key`, `errorCode` and `errorDetails` inside the problem+json body
//! every Tessera error has: `FLAG_NOT_FOUND` (404), `PARSE_ERROR`, `INVALID_CONTEXT`,
//! `TARGETING_KEY_MISSING`, `TYPE_MISMATCH` (400), `GENERAL` (500). Callers authenticate as
//! users (Bearer or cookie) or as service accounts holding `flags:read` (401/403 otherwise).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::AppState;
use crate::flags::caller::Caller;
use crate::flags::eval::{Context, Evaluation, Reason};
use crate::flags::set::FlagSet;
use crate::flags::{Flags, MAX_STREAMS_PER_CALLER, StreamSlot};
use crate::http::openapi::ApiRouter;
use crate::http::{ApiError, etag};
use utoipa_axum::routes;

/// Most attributes an evaluation context may hold.
const MAX_ATTRIBUTES: usize = 256;

/// Longest targeting key.
const MAX_TARGETING_KEY: usize = 256;

/// How often an idle change stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Seconds a client in the background may keep the change stream before closing it.
const INACTIVITY_DELAY_SECS: u64 = 120;

/// The path of the change stream.
pub const EVENTS_PATH: &str = "/ofrep/v1/events";

/// The OFREP routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(evaluate_one))
        .routes(routes!(evaluate_all))
        .routes(routes!(events))
}

/// An OFREP error: its HTTP status, Tessera code, OFREP code and details.
fn failure(
    status: StatusCode,
    code: &'static str,
    ofrep_code: &str,
    key: Option<&str>,
    details: impl Into<String>,
) -> ApiError {
    let details = details.into();
    let mut extra = json!({ "errorCode": ofrep_code, "errorDetails": details });
    if let Some(key) = key {
        extra["key"] = Value::String(key.to_owned());
    }
    ApiError::new(status, code, details).with_extra(extra)
}

fn invalid_context(details: &str) -> ApiError {
    failure(
        StatusCode::BAD_REQUEST,
        "invalid_context",
        "INVALID_CONTEXT",
        None,
        details,
    )
}

/// The request body: `{"context": {"targetingKey": "…", …}}`; an empty body or a missing
/// context is an empty context.
pub fn parse_request(body: &[u8]) -> Result<(Option<String>, Map<String, Value>), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, Map::new()));
    }
    let parsed: Value = serde_json::from_slice(body).map_err(|_| {
        failure(
            StatusCode::BAD_REQUEST,
            "parse_error",
            "PARSE_ERROR",
            None,
            "the request body is not valid JSON",
        )
    })?;
    let Value::Object(mut request) = parsed else {
        return Err(invalid_context("the request body must be a JSON object"));
    };
    let mut context = match request.remove("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(context)) => context,
        Some(_) => return Err(invalid_context("`context` must be an object")),
    };
    if context.len() > MAX_ATTRIBUTES {
        return Err(invalid_context(&format!(
            "a context holds at most {MAX_ATTRIBUTES} attributes"
        )));
    }
    let targeting_key = match context.remove("targetingKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) if key.len() <= MAX_TARGETING_KEY => Some(key),
        Some(Value::String(_)) => {
            return Err(invalid_context(&format!(
                "`targetingKey` has at most {MAX_TARGETING_KEY} bytes"
            )));
        }
        Some(_) => return Err(invalid_context("`targetingKey` must be a string")),
    };
    Ok((targeting_key, context))
}

/// One flag's evaluation as OFREP shows it.
#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Success {
        key: &'a str,
        value: &'a Value,
        reason: &'static str,
        variant: &'a str,
    },
    Failure {
        key: &'a str,
        #[serde(rename = "errorCode")]
        error_code: &'static str,
        #[serde(rename = "errorDetails")]
        error_details: &'static str,
    },
}

fn item<'a>(key: &'a str, evaluation: &Evaluation<'a>) -> Item<'a> {
    match evaluation.error {
        Some(error) if evaluation.reason == Reason::Error => Item::Failure {
            key,
            error_code: error.code(),
            error_details: error.details(),
        },
        _ => Item::Success {
            key,
            value: evaluation.value,
            reason: evaluation.reason.as_str(),
            variant: evaluation.variant,
        },
    }
}

fn json_response(body: Vec<u8>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What every evaluation starts from: an authenticated caller within its rate
/// (`rate_limits.flags_per_caller`: 429 with `Retry-After` beyond it), the context of the
/// request with the caller's identity in it, and the current flag set.
async fn prepare(
    state: &AppState,
    caller: Caller,
    body: &[u8],
) -> Result<(Caller, Context, Arc<FlagSet>), ApiError> {
    let caller = caller.required()?;
    if let Some(policy) = state.limiter().policies().flags_per_caller {
        let decision = state
            .limiter()
            .check(policy, &format!("flags:{}", caller.subject()))
            .await;
        if !decision.allowed {
            return Err(decision.refusal());
        }
    }
    let (targeting_key, attributes) = parse_request(body)?;
    let context = caller.context(targeting_key, attributes);
    Ok((caller, context, state.flags().snapshot()))
}

#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags/{key}",
    tag = "flags",
    request_body = Object,
    responses((status = 200, description = "The OFREP evaluation of one flag", body = Object))
)]
async fn evaluate_one(
    State(state): State<AppState>,
    Path(key): Path<String>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, context, set) = prepare(&state, caller, &body).await?;
    let Some(entry) = set.get(&key) else {
        // Only a well-formed key is echoed back.
        let shown = crate::flags::model::FlagKey::parse(&key).ok();
        return Err(failure(
            StatusCode::NOT_FOUND,
            "flag_not_found",
            "FLAG_NOT_FOUND",
            shown.as_ref().map(|k| k.as_str()),
            "no flag has this key",
        ));
    };
    let evaluation = set.evaluate(entry, &context);
    if let (Reason::Error, Some(error)) = (evaluation.reason, evaluation.error) {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            if error.code() == "TYPE_MISMATCH" {
                "type_mismatch"
            } else {
                "targeting_key_missing"
            },
            error.code(),
            Some(&key),
            error.details(),
        ));
    }
    let body = serde_json::to_vec(&item(&key, &evaluation)).map_err(ApiError::internal)?;
    Ok(json_response(body))
}

/// The bulk answer.
#[derive(Serialize)]
struct Bulk<'a> {
    flags: Vec<Item<'a>>,
    #[serde(rename = "eventStreams")]
    event_streams: [EventStream; 1],
    metadata: BulkMetadata<'a>,
}

#[derive(Serialize)]
struct EventStream {
    #[serde(rename = "type")]
    kind: &'static str,
    url: String,
    #[serde(rename = "inactivityDelaySec")]
    inactivity_delay_sec: u64,
}

#[derive(Serialize)]
struct BulkMetadata<'a> {
    revision: &'a str,
}

/// The bulk ETag: the flag-set revision, the caller and the context they evaluate in, so it
/// changes whenever any of them does.
pub fn bulk_etag(set: &FlagSet, caller: &Caller, context: &Context) -> HeaderValue {
    let mut input = Vec::with_capacity(256);
    input.extend_from_slice(set.revision.as_bytes());
    input.push(0);
    input.extend_from_slice(caller.subject().as_bytes());
    input.push(0);
    if let Some(key) = &context.targeting_key {
        input.extend_from_slice(key.as_bytes());
    }
    input.push(0);
    // Serializing a map of JSON values cannot fail.
    let _ = serde_json::to_writer(&mut input, &context.attributes);
    super::platform::content_etag(&input)
}

#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags",
    tag = "flags",
    request_body = Object,
    responses((status = 200, description = "Every flag evaluated (OFREP bulk)", body = Object), (status = 304, description = "`If-None-Match` names the current ETag"))
)]
async fn evaluate_all(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (caller, context, set) = prepare(&state, caller, &body).await?;
    let tag = bulk_etag(&set, &caller, &context);
    let cache_control = HeaderValue::from_static("private, no-cache");
    if etag::matches(&headers, &tag) {
        return Ok(etag::json_response(
            &headers,
            Vec::new(),
            &tag,
            cache_control,
        ));
    }
    let flags = set
        .iter()
        .map(|entry| item(entry.flag.key.as_str(), &set.evaluate(entry, &context)))
        .collect();
    let bulk = Bulk {
        flags,
        event_streams: [EventStream {
            kind: "sse",
            url: format!("{}{EVENTS_PATH}", state.config().issuer()),
            inactivity_delay_sec: INACTIVITY_DELAY_SECS,
        }],
        metadata: BulkMetadata {
            revision: &set.revision,
        },
    };
    let body = serde_json::to_vec(&bulk).map_err(ApiError::internal)?;
    Ok(etag::json_response(&headers, body, &tag, cache_control))
}

/// What the change stream remembers between events.
struct Follower {
    sets: watch::Receiver<Arc<FlagSet>>,
    closing: watch::Receiver<bool>,
    seen: i64,
    tenant: Option<String>,
    every_tenant: bool,
    first: Option<Event>,
    _slot: StreamSlot,
}

#[utoipa::path(
    get,
    path = EVENTS_PATH,
    tag = "flags",
    responses((status = 200, description = "Flag changes as they happen", body = String, content_type = "text/event-stream"))
)]
async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = caller.required()?;
    let flags: &Arc<Flags> = state.flags();
    let slot = flags.open_stream(&caller.subject()).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "a caller may hold {} change streams open at once",
                MAX_STREAMS_PER_CALLER
            ),
        )
        .retry_after(KEEP_ALIVE.as_secs())
    })?;
    let mut sets = flags.subscribe();
    let set = Arc::clone(&sets.borrow_and_update());
    let resumed_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    // A reader resuming from before the current set missed a change: it refetches at once.
    let first = match resumed_from {
        Some(seen) if seen < set.seq => refetch_event(&set),
        _ => message(&set, "ready"),
    };
    let follower = Follower {
        sets,
        closing: flags.closing(),
        seen: set.seq,
        tenant: caller.tenant_id().map(str::to_owned),
        every_tenant: caller.spans_tenants(),
        first: Some(first),
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(follower, next_event);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The next event for a follower: its first, then one per relevant new set; `None` when the
/// server shuts down.
async fn next_event(mut follower: Follower) -> Option<(Result<Event, Infallible>, Follower)> {
    if let Some(first) = follower.first.take() {
        return Some((Ok(first), follower));
    }
    loop {
        let changed = tokio::select! {
            changed = follower.sets.changed() => changed.is_ok(),
            _ = follower.closing.wait_for(|closing| *closing) => false,
        };
        if !changed {
            return None;
        }
        let set = Arc::clone(&follower.sets.borrow_and_update());
        if set.seq <= follower.seen {
            continue;
        }
        let concerned = concerns(
            &set,
            follower.seen,
            follower.tenant.as_deref(),
            follower.every_tenant,
        );
        follower.seen = set.seq;
        if concerned {
            return Some((Ok(refetch_event(&set)), follower));
        }
    }
}

/// Whether a set read after `seen` changed anything `tenant`'s callers see. When the changes
/// in between are not all known (the first set, pruned rows, gaps), it did.
fn concerns(set: &FlagSet, seen: i64, tenant: Option<&str>, every_tenant: bool) -> bool {
    let Some(first) = set.changes.first() else {
        return true;
    };
    if first.seq > seen + 1 {
        return true;
    }
    set.changes
        .iter()
        .filter(|c| c.seq > seen)
        .any(|c| every_tenant || c.tenant_id.is_none() || c.tenant_id.as_deref() == tenant)
}

fn message(set: &FlagSet, kind: &str) -> Event {
    Event::default()
        .id(set.seq.to_string())
        .event("message")
        .data(
            json!({ "type": kind, "etag": set.revision, "lastModified": set.changed_at })
                .to_string(),
        )
}

fn refetch_event(set: &FlagSet) -> Event {
    message(set, "refetchEvaluation")
}
