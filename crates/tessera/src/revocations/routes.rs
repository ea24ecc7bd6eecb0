//! `GET /api/v1/auth/revocations` (a page after a cursor) and
//! `GET /api/v1/auth/revocations/stream` (SSE: catch-up, then every new entry as it is
//! written, resumable with `Last-Event-ID`), for clients holding `tokens:introspect`
//! (`client_secret_basic`). A tenant's clients see their tenant's entries; the `system`
//! tenant's see all. A stream ends once its client may no longer follow: at once when an
//! entry revoking the client or its tenant passes through it, otherwise at the next check.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tessera_token::{RevocationPage, Revoked};
use tokio::sync::{broadcast, mpsc, watch};

use super::{Batch, Entry, MAX_PAGE, MAX_STREAMS_PER_CLIENT, parse_cursor, read_after};
use crate::clients::{CachedClient, Client};
use crate::http::ApiError;
use crate::http::openapi::ApiRouter;
use crate::oauth::client_auth::{self, no_store};
use crate::permissions::Perm;
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;
use utoipa_axum::routes;

/// Page size unless `limit` says otherwise.
const DEFAULT_PAGE: i64 = 500;

/// How long a stream waits for its reader to take an event before dropping it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an open stream checks that its client may still follow the feed.
const RECHECK_CLIENT: Duration = Duration::from_secs(30);

/// How often an idle stream sends a comment, so proxies keep it open and a dead peer shows.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The feed routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(stream))
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// The client following the feed.
async fn follower(state: &AppState, headers: &HeaderMap) -> Result<Client, ApiError> {
    let client = client_auth::authenticate_basic(state, headers).await?;
    client_auth::require_scope(&client, Perm::TokensIntrospect)?;
    Ok(client)
}

/// Which tenant's entries `client` sees (`None`: every tenant's).
fn tenant_of(client: &Client) -> Option<String> {
    (client.tenant_id != SYSTEM_TENANT_ID).then(|| client.tenant_id.clone())
}

fn visible(tenant: Option<&str>, entry: &Entry) -> bool {
    tenant.is_none_or(|t| t == entry.revocation.tid)
}

fn cursor_param(text: Option<&str>, name: &str) -> Result<i64, ApiError> {
    match text {
        None | Some("") => Ok(0),
        Some(text) => parse_cursor(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_cursor",
                format!("`{name}` must be a cursor this feed handed out"),
            )
        }),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/revocations",
    tag = "revocations",
    security(("client_basic" = [])),
    responses((status = 200, description = "Revocation entries after a cursor", body = Object))
)]
async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&follower(&state, &headers).await?);
    let after = cursor_param(query.after.as_deref(), "after")?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_limit",
                    format!("`limit` must be a number from 1 to {MAX_PAGE}"),
                )
            })?,
    };
    let read = read_after(state.db(), after, limit).await?;
    let body = RevocationPage {
        items: read
            .entries
            .into_iter()
            .filter(|e| visible(tenant.as_deref(), e))
            .map(|e| e.revocation)
            .collect(),
        cursor: read.cursor.to_string(),
        has_more: read.has_more,
    };
    let mut response = axum::Json(body).into_response();
    no_store(response.headers_mut());
    Ok(response)
}

#[derive(Deserialize)]
struct StreamQuery {
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/revocations/stream",
    tag = "revocations",
    security(("client_basic" = [])),
    responses((status = 200, description = "Revocation entries as they happen", body = String, content_type = "text/event-stream"))
)]
async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let client = follower(&state, &headers).await?;
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("invalid"));
    let start = match resume {
        Some(id) => cursor_param(Some(id), "Last-Event-ID")?,
        None => cursor_param(query.after.as_deref(), "after")?,
    };
    let slot = state.feed().open_stream(&client.id).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("a client may hold {MAX_STREAMS_PER_CLIENT} streams open at once"),
        )
        .retry_after(KEEP_ALIVE.as_secs())
    })?;
    // Subscribed before catching up, so nothing written meanwhile is missed.
    let pushed = state.feed().subscribe();
    let (events, receiver) = mpsc::channel(64);
    let opened = state
        .clients()
        .get(state.db(), &client.id)
        .await?
        .ok_or_else(|| ApiError::client_unauthorized("client authentication failed"))?;
    tokio::spawn(async move {
        let _slot = slot;
        let _counted = crate::telemetry::signals::StreamGuard::open();
        follow(state, opened, start, pushed, events).await;
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (event, receiver))
    });
    let mut response = sse(body).into_response();
    no_store(response.headers_mut());
    Ok(response)
}

fn sse(body: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> impl IntoResponse {
    Sse::new(body).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

fn revocation_event(entry: &Entry) -> Result<Event, Infallible> {
    let event = Event::default()
        .id(entry.seq.to_string())
        .event("revocation")
        .json_data(&entry.revocation)
        .unwrap_or_else(|_| Event::default().comment("unserializable entry"));
    Ok(event)
}

/// Whether `entry` revokes the follower `client` itself, or its whole tenant: then its
/// stream must check at once whether it may go on.
fn names(entry: &Entry, client: &Client) -> bool {
    let revocation = &entry.revocation;
    revocation.tid == client.tenant_id
        && match &revocation.target {
            Revoked::Tenant { .. } => true,
            Revoked::Subject { sub, .. } => *sub == client.id,
            Revoked::Session { .. } | Revoked::Token { .. } => false,
        }
}

/// Whether the client that opened a stream as `opened` may keep it: it and its tenant still
/// active, still allowed the scope, and its secret not replaced since.
async fn still_allowed(state: &AppState, opened: &CachedClient) -> bool {
    match state.clients().get(state.db(), &opened.client.id).await {
        Ok(Some(now)) => {
            now.usable()
                && now.same_secret(opened)
                && client_auth::require_scope(&now.client, Perm::TokensIntrospect).is_ok()
        }
        Ok(None) => false,
        // Unknown right now: keep serving revocations rather than cut off every service.
        Err(_) => true,
    }
}

/// Sends `event` unless the reader left, the server is shutting down, or the reader has not
/// taken anything for [`SEND_TIMEOUT`] (it would hold its task and a slot for good).
async fn deliver(
    events: &mpsc::Sender<Result<Event, Infallible>>,
    event: Result<Event, Infallible>,
    closing: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        sent = tokio::time::timeout(SEND_TIMEOUT, events.send(event)) => matches!(sent, Ok(Ok(()))),
        _ = closing.wait_for(|closing| *closing) => false,
    }
}

/// Sends the stream's events until the reader leaves or the server shuts down: every entry
/// after `cursor` from the database, a `ready` event once caught up, then each pushed entry.
/// A reader too slow for the push backlog catches up from the database again.
async fn follow(
    state: AppState,
    opened: Arc<CachedClient>,
    mut cursor: i64,
    mut pushed: broadcast::Receiver<Arc<Batch>>,
    events: mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut closing = state.feed().closing();
    let tenant = tenant_of(&opened.client);
    let tenant = tenant.as_deref();
    let mut recheck = tokio::time::interval(RECHECK_CLIENT);
    recheck.tick().await;
    'catch_up: loop {
        loop {
            let read = match read_after(state.db(), cursor, MAX_PAGE).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(error = %e, "revocation stream could not read the feed");
                    return;
                }
            };
            for entry in read.entries.iter().filter(|e| visible(tenant, e)) {
                if !deliver(&events, revocation_event(entry), &mut closing).await {
                    return;
                }
            }
            cursor = read.cursor;
            if !read.has_more {
                break;
            }
        }
        let ready = Event::default()
            .id(cursor.to_string())
            .event("ready")
            .data("caught up");
        if !deliver(&events, Ok(ready), &mut closing).await {
            return;
        }
        loop {
            let batch = tokio::select! {
                received = pushed.recv() => Some(received),
                () = events.closed() => return,
                _ = closing.wait_for(|closing| *closing) => return,
                _ = recheck.tick() => None,
            };
            let batch = match batch {
                None if still_allowed(&state, &opened).await => continue,
                None => return,
                Some(Ok(batch)) => batch,
                Some(Err(broadcast::error::RecvError::Lagged(_))) => continue 'catch_up,
                Some(Err(broadcast::error::RecvError::Closed)) => return,
            };
            if batch.after > cursor {
                // Read from further on than this stream has seen: fill the gap from the
                // database.
                continue 'catch_up;
            }
            for entry in &batch.entries {
                if entry.seq > cursor && visible(tenant, entry) {
                    if !deliver(&events, revocation_event(entry), &mut closing).await {
                        return;
                    }
                    crate::telemetry::signals::revocation_delivered(
                        entry.created_ms,
                        tessera_token::unix_now_ms(),
                    );
                }
            }
            cursor = cursor.max(batch.cursor);
            // The poller indexed the batch before pushing it, so the client cache already
            // reads a client or tenant it names again.
            let named = batch.entries.iter().any(|e| names(e, &opened.client));
            if named && !still_allowed(&state, &opened).await {
                return;
            }
        }
    }
}
