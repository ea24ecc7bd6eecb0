//! The queries behind the audit log's list and export: filters as SQL conditions, a page by
//! position, the capped count, and the batched export stream.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use tokio::sync::mpsc;

use super::chain::COLUMNS;
use crate::db::Db;
use crate::http::ApiError;

/// Longest filter value accepted.
pub const MAX_FILTER: usize = 200;

/// Events read per query while exporting.
const EXPORT_BATCH: i64 = 500;

/// A refused filter.
pub fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter", detail)
}

/// Validated filters, as SQL conditions and their values.
#[derive(Default)]
pub struct Filter {
    conditions: Vec<String>,
    values: Vec<FilterValue>,
}

/// A value a condition compares with.
pub enum FilterValue {
    /// Text.
    Text(String),
    /// A number.
    Number(i64),
}

impl Filter {
    /// Adds a number the conditions refer to; its placeholder number.
    pub fn number(&mut self, value: i64) -> usize {
        self.values.push(FilterValue::Number(value));
        self.values.len()
    }

    /// Adds a condition written with the placeholders of the values added so far.
    pub fn condition(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    /// Adds `condition` `$n` with `value`, checked: 1 to [`MAX_FILTER`] characters.
    pub fn text(&mut self, condition: &str, value: String) -> Result<(), ApiError> {
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// The event id.
    pub id: String,
    /// Unix milliseconds.
    pub occurred_at: i64,
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
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

/// Where a page of the newest-first list starts.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// Right after the event at this time and id (a cursor).
    After(i64, &'a str),
    /// After skipping this many events (a page number).
    Skip(i64),
}

/// How many events match, counted up to `cap + 1` only.
pub async fn count_capped(db: &Db, filter: &Filter, cap: i64) -> Result<i64, sqlx::Error> {
    let where_ = filter.sql_where();
    let next = filter.next();
    filter
        .bind(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM audit_events {where_} LIMIT ${next}) AS capped"
        ))))
        .bind(cap + 1)
        .fetch_one(db.pool())
        .await?
        .try_get("n")
}

/// Up to `limit` matching events, newest first, from `start`. Both starts read the
/// (tenant, time, id) or (time, id) index in order: a cursor seeks to its position; a page
/// number skips index entries to find where the page starts.
pub async fn page(
    db: &Db,
    filter: &Filter,
    start: Start<'_>,
    limit: i64,
) -> Result<Vec<EventView>, sqlx::Error> {
    let where_ = filter.sql_where();
    let next = filter.next();
    let glue = if where_.is_empty() { "WHERE" } else { " AND" };
    let (start, values): (String, Vec<FilterValue>) = match start {
        Start::After(time, id) => (
            format!("{glue} (occurred_at, id) < (${next}, ${})", next + 1),
            vec![FilterValue::Number(time), FilterValue::Text(id.to_owned())],
        ),
        Start::Skip(offset) if offset > 0 => (
            format!(
                "{glue} (occurred_at, id) <= (SELECT occurred_at, id FROM audit_events {where_} \
                 ORDER BY occurred_at DESC, id DESC LIMIT 1 OFFSET ${next})"
            ),
            vec![FilterValue::Number(offset)],
        ),
        Start::Skip(_) => (String::new(), Vec::new()),
    };
    let limit_at = next + values.len();
    let mut query = filter.bind(sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, seq FROM audit_events {where_}{start} \
         ORDER BY occurred_at DESC, id DESC LIMIT ${limit_at}"
    ))));
    for value in &values {
        query = match value {
            FilterValue::Text(text) => query.bind(text.as_str()),
            FilterValue::Number(n) => query.bind(*n),
        };
    }
    let rows = query.bind(limit).fetch_all(db.pool()).await?;
    rows.iter().map(view).collect()
}

/// Every event (or one tenant's), oldest first, as JSON lines: `tessera audit export`.
pub fn export_lines(db: Db, tenant: Option<String>) -> mpsc::Receiver<Bytes> {
    let (lines, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut filter = Filter::default();
        if let Some(tenant) = tenant {
            filter.values.push(FilterValue::Text(tenant));
            filter.conditions.push("tenant_id = $1".to_owned());
        }
        if let Err(e) = stream(&db, &filter, &lines).await {
            tracing::warn!(error = %e, "audit export stopped");
        }
    });
    receiver
}

/// Sends every matching event, oldest first, one JSON line each, reading in batches by
/// position so memory stays flat whatever the size.
pub async fn stream(
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
