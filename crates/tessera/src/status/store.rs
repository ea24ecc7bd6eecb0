//! The `status_events` table.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Status, StatusEvent};
use crate::db::Db;
use crate::http::pagination::PageRequest;

/// Most services the status page lists.
pub const MAX_SERVICES: i64 = 500;

const COLUMNS: &str = "id, service, status, message, ends_at, created_at";

fn from_row(row: &AnyRow) -> Result<StatusEvent, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let created_ms: i64 = row.try_get("created_at")?;
    Ok(StatusEvent {
        id: row.try_get("id")?,
        service: row.try_get("service")?,
        status: Status::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: format!("unknown status `{status}`").into(),
        })?,
        message: row.try_get("message")?,
        ends_at: row.try_get("ends_at")?,
        created_at: created_ms.div_euclid(1000),
    })
}

/// A new event to store.
pub struct NewEvent<'a> {
    /// The service.
    pub service: &'a str,
    /// Its status.
    pub status: Status,
    /// The message.
    pub message: &'a str,
    /// When it ends (Unix seconds), if known.
    pub ends_at: Option<i64>,
    /// `user:<id>` or `client:<id>`.
    pub author: &'a str,
}

/// Stores `event` as of `now_ms` (Unix milliseconds).
pub async fn insert(
    db: &Db,
    event: &NewEvent<'_>,
    now_ms: i64,
) -> Result<StatusEvent, sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO status_events (id, service, status, message, ends_at, author, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(event.service)
    .bind(event.status.as_str())
    .bind(event.message)
    .bind(event.ends_at)
    .bind(event.author)
    .bind(now_ms)
    .execute(db.pool())
    .await?;
    Ok(StatusEvent {
        id,
        service: event.service.to_owned(),
        status: event.status,
        message: event.message.to_owned(),
        ends_at: event.ends_at,
        created_at: now_ms.div_euclid(1000),
    })
}

/// Each service's latest event, by service name (at most [`MAX_SERVICES`]): one index
/// probe on `(service, created_at DESC)` per service.
pub async fn latest_per_service(db: &Db) -> Result<Vec<StatusEvent>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM status_events WHERE id IN (\
         SELECT (SELECT l.id FROM status_events l WHERE l.service = s.service \
                 ORDER BY l.created_at DESC, l.id DESC LIMIT 1) \
         FROM (SELECT DISTINCT service FROM status_events ORDER BY service LIMIT $1) s) \
         ORDER BY service"
    )))
    .bind(MAX_SERVICES)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// One page of every event, newest first, and the total.
pub async fn recent(db: &Db, page: &PageRequest) -> Result<(Vec<StatusEvent>, i64), sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM status_events ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
    )))
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(db.pool())
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM status_events")
        .fetch_one(db.pool())
        .await?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}
