//! `GET /api/v1/audit` (a page, newest first) and `GET /api/v1/audit/export` (NDJSON, oldest
//! first, streamed), for callers allowed `audit:read`. Filters: `action` (exact, or a prefix
//! ending in `.`: `login.`), `actor`, `target`, `outcome` (`success` | `failure`), `from` and
//! `to` (Unix seconds, `to` exclusive). A tenant's administrators see their tenant's events;
//! platform administrators see every event and may narrow with `tenant`.
//!
//! `GET /api/v1/audit/chain`: whether the tamper-evident chain verifies (what `tessera audit
//! verify` prints), for platform administrators with `audit:read`: the chain spans every
//! tenant, and walking it reads the whole log, so tenant administrators get neither.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::chain::{self as audit_chain, Verdict};
use super::store::{self, EventView, Filter, invalid};
use crate::caller::Authenticated;
use crate::http::cursor::Scope;
use crate::http::openapi::ApiRouter;
use crate::http::pagination::{After, Page, PageRequest, capped_total};
use crate::http::{ApiError, Json};
use crate::permissions::Perm;
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;
use utoipa_axum::routes;

/// The audit routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(export))
        .routes(routes!(chain_status))
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct RawFilter {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    tenant: Option<String>,
}

/// The filters of `raw` a caller may use: a tenant's administrators see their tenant's
/// events; platform administrators every event, or one tenant's.
fn filter_of(raw: RawFilter, caller: &Authenticated) -> Result<Filter, ApiError> {
    let mut filter = Filter::default();
    let platform = caller.tenant_id() == SYSTEM_TENANT_ID;
    match (platform, raw.tenant) {
        (false, Some(_)) => {
            return Err(ApiError::forbidden(
                "forbidden",
                "only platform administrators choose a tenant",
            ));
        }
        (false, None) => filter.text("tenant_id = ", caller.tenant_id().to_owned())?,
        (true, Some(tenant)) => filter.text("tenant_id = ", tenant)?,
        (true, None) => {}
    }
    if let Some(action) = raw.action {
        match action.strip_suffix('.') {
            Some(prefix) if !prefix.is_empty() => {
                // A prefix, without LIKE: no wildcard in the input can widen it.
                let cut = i64::try_from(action.len()).unwrap_or(0);
                let n = filter.number(cut);
                filter.text(
                    &format!("SUBSTR(action, 1, CAST(${n} AS INTEGER)) = "),
                    action,
                )?;
            }
            _ => filter.text("action = ", action)?,
        }
    }
    if let Some(actor) = raw.actor {
        filter.text("actor_id = ", actor)?;
    }
    if let Some(target) = raw.target {
        filter.text("target_id = ", target)?;
    }
    if let Some(outcome) = raw.outcome {
        if outcome != "success" && outcome != "failure" {
            return Err(invalid("`outcome` is `success` or `failure`"));
        }
        filter.text("outcome = ", outcome)?;
    }
    for (name, value, op) in [("from", raw.from, ">="), ("to", raw.to, "<")] {
        if let Some(value) = value {
            let secs: i64 = value
                .parse()
                .ok()
                .filter(|s| (0..=253_402_300_799).contains(s))
                .ok_or_else(|| invalid(format!("`{name}` is a time in Unix seconds")))?;
            let n = filter.number(secs * 1_000);
            filter.condition(format!("occurred_at {op} ${n}"));
        }
    }
    Ok(filter)
}

/// The audit list's total is exact up to this many events, an estimate past it: events
/// accumulate for as long as retention keeps them, and counting them all per request would
/// make every page cost the whole log.
const TOTAL_CAP: i64 = 10_000;

/// Where a page ends: the last event's time and id, the list's order.
type Position = (i64, String);

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    responses((status = 200, description = "A page of audit events", body = Page<EventView>))
)]
async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    page: PageRequest,
    After(after): After,
    Query(raw): Query<RawFilter>,
) -> Result<Json<Page<EventView>>, ApiError> {
    caller.require(&state, Perm::AuditRead).await?;
    // Canonical form of the filters, which a cursor is bound to.
    let filters = serde_json::to_string(&raw).unwrap_or_default();
    let filter = filter_of(raw, &caller)?;
    let scope = Scope {
        list: "audit",
        tenant_id: caller.tenant_id(),
        filter: &filters,
    };
    let position: Option<Position> = after
        .as_deref()
        .map(|cursor| state.cursors().open(&scope, cursor))
        .transpose()?;
    let db = state.db();
    let counted = store::count_capped(db, &filter, TOTAL_CAP).await?;
    let start = match &position {
        Some((time, id)) => store::Start::After(*time, id),
        None => store::Start::Skip(page.offset()),
    };
    let mut items = store::page(db, &filter, start, page.limit() + 1).await?;
    let more = i64::try_from(items.len()).unwrap_or(i64::MAX) > page.limit();
    items.truncate(usize::try_from(page.limit()).unwrap_or(0));
    let offset = if position.is_some() { 0 } else { page.offset() };
    let total = capped_total(counted, TOTAL_CAP, offset, items.len(), more);
    let next_cursor = match items.last() {
        Some(last) if more => Some(
            state
                .cursors()
                .seal(&scope, &(last.occurred_at, last.id.clone())),
        ),
        _ => None,
    };
    Ok(Json(page.keyset_page(
        items,
        total,
        next_cursor,
        position.is_some(),
    )))
}

/// The chain's verdict, walked now.
#[utoipa::path(
    get,
    path = "/api/v1/audit/chain",
    tag = "audit",
    responses((status = 200, description = "The hash chain's verification", body = Object))
)]
async fn chain_status(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<Json<Value>, ApiError> {
    caller.require(&state, Perm::AuditRead).await?;
    if caller.tenant_id() != SYSTEM_TENANT_ID {
        return Err(ApiError::forbidden(
            "forbidden",
            "the chain spans every tenant: only platform administrators check it",
        ));
    }
    let verdict = audit_chain::verify(state.db(), state.audit_chain()).await?;
    Ok(Json(match verdict {
        Verdict::Intact {
            verified,
            from_seq,
            to_seq,
            unsealed,
        } => json!({
            "intact": true,
            "verified": verified,
            "from_seq": from_seq,
            "to_seq": to_seq,
            "unsealed": unsealed,
        }),
        Verdict::Broken { seq, reason } => json!({
            "intact": false,
            "broken_at": seq,
            "reason": reason,
        }),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/export",
    tag = "audit",
    responses((status = 200, description = "Every matching event, one JSON object a line", body = String, content_type = "application/x-ndjson"))
)]
async fn export(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(raw): Query<RawFilter>,
) -> Result<Response, ApiError> {
    caller.require(&state, Perm::AuditRead).await?;
    let filter = filter_of(raw, &caller)?;
    let (lines, receiver) = mpsc::channel::<Bytes>(4);
    let db = state.db().clone();
    tokio::spawn(async move {
        if let Err(e) = store::stream(&db, &filter, &lines).await {
            tracing::warn!(error = %e, "audit export stopped");
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(receiver, |mut r| async move {
        r.recv().await.map(|line| (Ok::<_, Infallible>(line), r))
    }));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit.ndjson\""),
    );
    Ok(response)
}
