//! The hub's queries: the event log every instance reads (`realtime_events`) and the
//! single-use tickets (`realtime_tickets`).
//!
//! Event numbers become visible in order: on PostgreSQL a publishing transaction locks the
//! log against other writers (readers are not blocked) before it takes its number, exactly as
//! the revocation feed does, so an instance that read event N never finds an N-1 committed
//! later. SQLite has one writer at a time anyway.

use sqlx::{AnyConnection, Row as _};
use tessera_token::{unix_now, unix_now_ms};

use super::event::Envelope;
use crate::db::{Backend, Db};

/// Most events read at once.
pub const PAGE: i64 = 1_000;

/// A new event as a publisher hands it over.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// The channel (already parsed and permitted).
    pub channel: &'a str,
    /// The event type.
    pub kind: &'a str,
    /// The payload.
    pub data: &'a serde_json::Value,
    /// `client:<id>`, `user:<id>` or `system`.
    pub publisher: &'a str,
    /// The `Idempotency-Key` and the digest of the request it came with.
    pub idempotency: Option<(&'a str, &'a str)>,
}

/// What a publish wrote, or found already written under the same idempotency key.
#[derive(Debug)]
pub enum Written {
    /// A new event.
    New(Envelope),
    /// The event an earlier request with the same key and body published.
    Replayed(Envelope),
    /// The key was used before with a different request.
    KeyReused,
}

const COLUMNS: &str = "seq, channel, event_type, data, created_at";

fn envelope(row: &sqlx::any::AnyRow) -> Result<Envelope, sqlx::Error> {
    let data: String = row.try_get("data")?;
    Ok(Envelope {
        id: row.try_get("seq")?,
        channel: row.try_get("channel")?,
        kind: row.try_get("event_type")?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        time: row.try_get("created_at")?,
    })
}

/// Appends `event` to the log in one transaction, or replays the earlier publish with the
/// same idempotency key.
pub async fn append(db: &Db, event: &NewEvent<'_>) -> Result<Written, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    if db.backend() == Backend::Postgres {
        // Numbers in commit order (see the module documentation). Held to the commit; it
        // also makes concurrent publishes with one idempotency key take turns.
        sqlx::query("LOCK TABLE realtime_events IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
    }
    if let Some((key, digest)) = event.idempotency
        && let Some(earlier) = earlier_publish(&mut tx, event.publisher, key).await?
    {
        return Ok(if earlier.1 == digest {
            Written::Replayed(earlier.0)
        } else {
            Written::KeyReused
        });
    }
    let time = unix_now_ms();
    let data = event.data.to_string();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO realtime_events (channel, event_type, data, created_at, publisher, \
         idempotency_key, request_digest) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
    )
    .bind(event.channel)
    .bind(event.kind)
    .bind(&data)
    .bind(time)
    .bind(event.publisher)
    .bind(event.idempotency.map(|(key, _)| key))
    .bind(event.idempotency.map(|(_, digest)| digest))
    .fetch_one(&mut *tx)
    .await?;
    crate::bus::announce(&mut tx, crate::bus::Topic::Realtime, id).await?;
    tx.commit().await?;
    Ok(Written::New(Envelope {
        id,
        channel: event.channel.to_owned(),
        kind: event.kind.to_owned(),
        data: event.data.clone(),
        time,
    }))
}

async fn earlier_publish(
    conn: &mut AnyConnection,
    publisher: &str,
    key: &str,
) -> Result<Option<(Envelope, String)>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS}, request_digest FROM realtime_events \
         WHERE publisher = $1 AND idempotency_key = $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(publisher)
        .bind(key)
        .fetch_optional(conn)
        .await?;
    row.map(|row| {
        let digest: Option<String> = row.try_get("request_digest")?;
        Ok((envelope(&row)?, digest.unwrap_or_default()))
    })
    .transpose()
}

/// Up to [`PAGE`] events after `after`, in order.
pub async fn read_after(db: &Db, after: i64) -> Result<Vec<Envelope>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM realtime_events WHERE seq > $1 ORDER BY seq LIMIT $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(PAGE)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(envelope)
        .collect()
}

/// The newest event number, 0 when the log is empty: where an instance starts reading.
pub async fn newest(db: &Db) -> Result<i64, sqlx::Error> {
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM realtime_events")
        .fetch_one(db.pool())
        .await?;
    Ok(newest.unwrap_or(0))
}

/// Stores a ticket's hash for `session_id` (and `audience`, a service's client id), valid
/// until `expires_at`.
pub async fn insert_ticket(
    db: &Db,
    ticket_hash: &str,
    session_id: &str,
    audience: Option<&str>,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    let _turn = db.write_turn().await;
    sqlx::query(
        "INSERT INTO realtime_tickets (ticket_hash, session_id, audience, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ticket_hash)
    .bind(session_id)
    .bind(audience)
    .bind(expires_at)
    .bind(unix_now())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// How many unexpired tickets `session_id` holds.
pub async fn outstanding_tickets(db: &Db, session_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM realtime_tickets WHERE session_id = $1 AND expires_at > $2",
    )
    .bind(session_id)
    .bind(unix_now())
    .fetch_one(db.pool())
    .await
}

/// A ticket taken out of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    /// The session it was minted for.
    pub session_id: String,
    /// Who may redeem it: `None` for Tessera's hub, else a client id.
    pub audience: Option<String>,
}

/// Takes the ticket with `ticket_hash` out of the store, whoever presents it (so a ticket
/// shown to the wrong party is spent too); `None` when unknown, spent or expired. One
/// statement: of two concurrent redemptions exactly one gets it.
pub async fn take_ticket(db: &Db, ticket_hash: &str) -> Result<Option<Redeemed>, sqlx::Error> {
    let _turn = db.write_turn().await;
    let row = sqlx::query(
        "DELETE FROM realtime_tickets WHERE ticket_hash = $1 \
         RETURNING session_id, audience, expires_at",
    )
    .bind(ticket_hash)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let expires_at: i64 = row.try_get("expires_at")?;
    if expires_at <= unix_now() {
        return Ok(None);
    }
    Ok(Some(Redeemed {
        session_id: row.try_get("session_id")?,
        audience: row.try_get("audience")?,
    }))
}

/// Deletes expired tickets and events older than `keep_ms`; returns how many rows went.
pub async fn prune(db: &Db, keep_ms: i64) -> Result<u64, sqlx::Error> {
    let _turn = db.write_turn().await;
    let tickets = sqlx::query("DELETE FROM realtime_tickets WHERE expires_at <= $1")
        .bind(unix_now())
        .execute(db.pool())
        .await?
        .rows_affected();
    let events = sqlx::query("DELETE FROM realtime_events WHERE created_at < $1")
        .bind(unix_now_ms() - keep_ms)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(tickets + events)
}
