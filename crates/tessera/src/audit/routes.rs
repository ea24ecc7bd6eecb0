//! `GET /api/v1/audit` (a page, newest first) and `GET /api/v1/audit/export` (NDJSON, oldest
//! first, streamed), for callers allowed `audit:read`. Filters: `action` (exact, or a prefix
//! ending in `.`: `login.`), `actor`, `target`, `outcome` (`success` | `failure`), `from` and
//! `to` (Unix seconds, `to` exclusive). A tenant's administrators see their tenant's events;
//! platform administrators see every event and may narrow with `tenant`.

use std::convert::Infallible;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use tokio::sync::mpsc;

use super::chain::COLUMNS;
use crate::caller::Authenticated;
use crate::db::Db;
use crate::http::cursor::Scope;
use crate::http::error::db_error;
use crate::http::pagination::{After, Page, PageRequest, capped_total};
use crate::http::{ApiError, Json};
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;

/// The audit routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(list))
        .route("/api/v1/audit/export", get(export))
}

/// Longest filter value accepted.
const MAX_FILTER: usize = 200;

/// Events read per query while exporting.
const EXPORT_BATCH: i64 = 500;

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

/// Validated filters, as SQL conditions and their values.
struct Filter {
    conditions: Vec<String>,
    values: Vec<FilterValue>,
}

enum FilterValue {
    Text(String),
    Number(i64),
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter", detail)
}

impl Filter {
    fn build(raw: RawFilter, caller: &Authenticated) -> Result<Self, ApiError> {
        let mut filter = Self {
            conditions: Vec::new(),
            values: Vec::new(),
        };
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
                    filter.values.push(FilterValue::Number(cut));
                    let n = filter.values.len();
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
                filter.values.push(FilterValue::Number(secs * 1_000));
                let n = filter.values.len();
                filter.conditions.push(format!("occurred_at {op} ${n}"));
            }
        }
        Ok(filter)
    }

    fn text(&mut self, condition: &str, value: String) -> Result<(), ApiError> {
        if value.is_empty() || value.len() > MAX_FILTER {
            return Err(invalid(format!(
                "filter values have 1 to {MAX_FILTER} characters"
            )));
        }
        self.values.push(FilterValue::Text(value));
        self.conditions
            .push(format!("{condition}${}", self.values.len()));
        Ok(())
    }

    fn sql_where(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// The next placeholder number after the filter's own.
    fn next(&self) -> usize {
        self.values.len() + 1
    }

    fn bind<'q>(
        &'q self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        for value in &self.values {
            query = match value {
                FilterValue::Text(text) => query.bind(text.as_str()),
                FilterValue::Number(n) => query.bind(*n),
            };
        }
        query
    }
}

/// An event as administrators see it.
#[derive(Debug, Serialize)]
struct EventView {
    id: String,
    /// Unix milliseconds.
    occurred_at: i64,
    tenant_id: Option<String>,
    actor: Party,
    action: String,
    target: Option<Party>,
    outcome: String,
    reason: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    details: Option<Value>,
    /// Position in the chain; absent until sealed.
    seq: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Party {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

fn view(row: &AnyRow) -> Result<EventView, sqlx::Error> {
    let target_type: Option<String> = row.try_get("target_type")?;
    let target_id: Option<String> = row.try_get("target_id")?;
    let details: Option<String> = row.try_get("details")?;
    Ok(EventView {
        id: row.try_get("id")?,
        occurred_at: row.try_get("occurred_at")?,
        tenant_id: row.try_get("tenant_id")?,
        actor: Party {
            kind: row.try_get("actor_type")?,
            id: row.try_get("actor_id")?,
        },
        action: row.try_get("action")?,
        target: target_type.map(|kind| Party {
            kind,
            id: target_id,
        }),
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        request_id: row.try_get("request_id")?,
        details: details.and_then(|d| serde_json::from_str(&d).ok()),
        seq: row.try_get("seq")?,
    })
}

/// The audit list's total is exact up to this many events, an estimate past it: events
/// accumulate for as long as retention keeps them, and counting them all per request would
/// make every page cost the whole log.
const TOTAL_CAP: i64 = 10_000;

/// Where a page ends: the last event's time and id, the list's order.
type Position = (i64, String);

async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    page: PageRequest,
    After(after): After,
    Query(raw): Query<RawFilter>,
) -> Result<Json<Page<EventView>>, ApiError> {
    caller.require(&state, "audit:read").await?;
    // Canonical form of the filters, which a cursor is bound to.
    let filters = serde_json::to_string(&raw).unwrap_or_default();
    let filter = Filter::build(raw, &caller)?;
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
    let where_ = filter.sql_where();
    let next = filter.next();
    let counted: i64 = filter
        .bind(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM audit_events {where_} LIMIT ${next}) AS capped"
        ))))
        .bind(TOTAL_CAP + 1)
        .fetch_one(db.pool())
        .await
        .map_err(db_error)?
        .try_get("n")
        .map_err(db_error)?;
    let glue = if where_.is_empty() { "WHERE" } else { " AND" };
    // Both read the (tenant, time, id) or (time, id) index in order: a cursor seeks to its
    // position; a page number skips index entries to find where the page starts.
    let (start, values): (String, Vec<FilterValue>) = match &position {
        Some((time, id)) => (
            format!("{glue} (occurred_at, id) < (${next}, ${})", next + 1),
            vec![FilterValue::Number(*time), FilterValue::Text(id.clone())],
        ),
        None if page.offset() > 0 => (
            format!(
                "{glue} (occurred_at, id) <= (SELECT occurred_at, id FROM audit_events {where_} \
                 ORDER BY occurred_at DESC, id DESC LIMIT 1 OFFSET ${next})"
            ),
            vec![FilterValue::Number(page.offset())],
        ),
        None => (String::new(), Vec::new()),
    };
    let limit = next + values.len();
    let mut query = filter.bind(sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, seq FROM audit_events {where_}{start} \
         ORDER BY occurred_at DESC, id DESC LIMIT ${limit}"
    ))));
    for value in &values {
        query = match value {
            FilterValue::Text(text) => query.bind(text.as_str()),
            FilterValue::Number(n) => query.bind(*n),
        };
    }
    let rows = query
        .bind(page.limit() + 1)
        .fetch_all(db.pool())
        .await
        .map_err(db_error)?;
    let mut items: Vec<EventView> = rows
        .iter()
        .map(view)
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
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

async fn export(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(raw): Query<RawFilter>,
) -> Result<Response, ApiError> {
    caller.require(&state, "audit:read").await?;
    let filter = Filter::build(raw, &caller)?;
    let (lines, receiver) = mpsc::channel::<Bytes>(4);
    let db = state.db().clone();
    tokio::spawn(async move {
        if let Err(e) = stream_events(&db, &filter, &lines).await {
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

/// Every event (or one tenant's), oldest first, as JSON lines: `tessera audit export`.
pub fn export_lines(db: Db, tenant: Option<String>) -> mpsc::Receiver<Bytes> {
    let (lines, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut filter = Filter {
            conditions: Vec::new(),
            values: Vec::new(),
        };
        if let Some(tenant) = tenant {
            filter.values.push(FilterValue::Text(tenant));
            filter.conditions.push("tenant_id = $1".to_owned());
        }
        if let Err(e) = stream_events(&db, &filter, &lines).await {
            tracing::warn!(error = %e, "audit export stopped");
        }
    });
    receiver
}

/// Sends every matching event, oldest first, one JSON line each, reading in batches by
/// position so memory stays flat whatever the size.
async fn stream_events(
    db: &Db,
    filter: &Filter,
    lines: &mpsc::Sender<Bytes>,
) -> Result<(), sqlx::Error> {
    let where_ = filter.sql_where();
    let glue = if where_.is_empty() { "WHERE" } else { " AND" };
    let (after_time, after_id, limit) = (filter.next(), filter.next() + 1, filter.next() + 2);
    let sql = format!(
        "SELECT {COLUMNS}, seq FROM audit_events {where_}{glue} \
         (occurred_at > ${after_time} OR (occurred_at = ${after_time} AND id > ${after_id})) \
         ORDER BY occurred_at, id LIMIT ${limit}"
    );
    let (mut time, mut id) = (i64::MIN, String::new());
    loop {
        let rows = filter
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql.clone())))
            .bind(time)
            .bind(id.clone())
            .bind(EXPORT_BATCH)
            .fetch_all(db.pool())
            .await?;
        for row in &rows {
            let event = view(row)?;
            let mut line = serde_json::to_vec(&event).unwrap_or_default();
            line.push(b'\n');
            if lines.send(Bytes::from(line)).await.is_err() {
                return Ok(());
            }
            time = event.occurred_at;
            id = event.id;
        }
        if i64::try_from(rows.len()).unwrap_or(0) < EXPORT_BATCH {
            return Ok(());
        }
    }
}
