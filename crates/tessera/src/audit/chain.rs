//! The tamper-evident chain over the audit log.
//!
//! Requests write events without a position, so they never wait for one another. One sealer
//! at a time (a PostgreSQL advisory lock; SQLite serves one instance) numbers the unsealed
//! events in order and gives each a hash: HMAC-SHA256, under a key derived from the master
//! key, of the previous event's hash and the event's canonical content. Changing, removing or
//! reordering a sealed event breaks the chain at that point, and without the master key no
//! one can compute a replacement chain. `tessera audit verify` walks it.
//!
//! Retention deletes the oldest sealed events and keeps a checkpoint (the last deleted
//! event's position and hash), so what remains still verifies.

use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::db::{Db, Job};
use crate::digest::hex;
use crate::jobs::Jobs;
use crate::master::MasterKey;

/// Events sealed per transaction.
const BATCH: i64 = 1_000;

/// How often the sealer looks for new events.
const EVERY: Duration = Duration::from_secs(1);

/// The hash before the first event.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Columns in canonical order: the content every hash covers.
pub const COLUMNS: &str = "id, occurred_at, tenant_id, actor_type, actor_id, action, \
     target_type, target_id, outcome, reason, ip, user_agent, request_id, details";

/// The key events are chained with.
#[derive(Clone)]
pub struct ChainKey(hmac::Key);

impl ChainKey {
    /// The chain key of this deployment.
    pub fn new(master: &MasterKey) -> Self {
        Self(hmac::Key::new(
            hmac::HMAC_SHA256,
            &master.derive("tessera audit chain v1"),
        ))
    }

    /// The hash of the event at `seq` with `content`, after `previous`.
    fn link(&self, previous: &str, seq: i64, content: &str) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(previous.as_bytes());
        context.update(b"\n");
        context.update(seq.to_string().as_bytes());
        context.update(b"\n");
        context.update(content.as_bytes());
        hex(context.sign().as_ref())
    }
}

/// An event's content as hashed: its columns, in order, as one JSON array.
pub fn canonical(row: &AnyRow) -> Result<String, sqlx::Error> {
    let text = |name: &str| -> Result<Value, sqlx::Error> {
        Ok(row
            .try_get::<Option<String>, _>(name)?
            .map_or(Value::Null, Value::String))
    };
    let content = json!([
        text("id")?,
        row.try_get::<i64, _>("occurred_at")?,
        text("tenant_id")?,
        text("actor_type")?,
        text("actor_id")?,
        text("action")?,
        text("target_type")?,
        text("target_id")?,
        text("outcome")?,
        text("reason")?,
        text("ip")?,
        text("user_agent")?,
        text("request_id")?,
        text("details")?,
    ]);
    Ok(content.to_string())
}

/// Where the chain ends: the last sealed position and hash (a checkpoint when retention
/// removed everything sealed).
async fn tip(conn: &mut AnyConnection) -> Result<(i64, String), sqlx::Error> {
    let last: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(last) = last {
        return Ok(last);
    }
    let checkpoint: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(checkpoint.unwrap_or_else(|| (0, GENESIS.to_owned())))
}

/// Seals up to one batch of events. `None` when another instance holds the sealer lock.
pub async fn seal_once(db: &Db, key: &ChainKey) -> Result<Option<u64>, sqlx::Error> {
    let Some(mut tx) = db.try_job_lock(Job::AuditChain).await? else {
        return Ok(None);
    };
    let (mut seq, mut previous) = tip(&mut tx).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE seq IS NULL ORDER BY occurred_at, id LIMIT $1"
    )))
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        seq += 1;
        let hash = key.link(&previous, seq, &canonical(row)?);
        let id: String = row.try_get("id")?;
        sqlx::query("UPDATE audit_events SET seq = $1, hash = $2 WHERE id = $3")
            .bind(seq)
            .bind(&hash)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        previous = hash;
    }
    tx.commit().await?;
    if !rows.is_empty() {
        // The tip, outside the database: `tessera audit verify --tip` checks it is still there.
        tracing::info!(tip = %format!("{seq}:{previous}"), sealed = rows.len(), "audit chain sealed");
        metrics::gauge!("tessera_audit_chain_seq").set(seq as f64);
    }
    Ok(Some(u64::try_from(rows.len()).unwrap_or(0)))
}

/// Deletes sealed events that occurred before `cutoff_ms`, oldest first and never past an
/// event still to keep, leaving a checkpoint. How many were deleted (`None`: not our turn).
pub async fn expire(db: &Db, cutoff_ms: i64) -> Result<Option<u64>, sqlx::Error> {
    let Some(mut tx) = db.try_job_lock(Job::AuditChain).await? else {
        return Ok(None);
    };
    // The chain's prefix that is old enough: up to the first sealed event to keep.
    let keep_from: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(seq) FROM audit_events WHERE seq IS NOT NULL AND occurred_at >= $1",
    )
    .bind(cutoff_ms)
    .fetch_one(&mut *tx)
    .await?;
    let last: Option<(i64, String)> = match keep_from {
        Some(first_kept) => {
            sqlx::query_as(
                "SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL AND seq < $1 \
             ORDER BY seq DESC LIMIT 1",
            )
            .bind(first_kept)
            .fetch_optional(&mut *tx)
            .await?
        }
        None => sqlx::query_as(
            "SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?,
    };
    let Some((seq, hash)) = last else {
        return Ok(Some(0));
    };
    sqlx::query("INSERT INTO audit_checkpoints (seq, hash, created_at) VALUES ($1, $2, $3)")
        .bind(seq)
        .bind(&hash)
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query("DELETE FROM audit_events WHERE seq IS NOT NULL AND seq <= $1")
        .bind(seq)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1")
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(deleted))
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every sealed event links to the one before.
    Intact {
        /// Events checked.
        verified: u64,
        /// Where the chain starts (after a checkpoint) and ends.
        from_seq: i64,
        /// The last position checked.
        to_seq: i64,
        /// Events not sealed yet.
        unsealed: u64,
    },
    /// The first broken link.
    Broken {
        /// The position where the chain breaks.
        seq: i64,
        /// What is wrong there.
        reason: String,
    },
}

/// Whether the chain still holds a tip recorded earlier (the event at `seq` with `hash`, or a
/// checkpoint at it after retention). A chain verifies from its start however much of its end
/// was cut off or rewritten; a tip kept elsewhere (the sealer logs it) catches that.
pub async fn holds_tip(db: &Db, seq: i64, hash: &str) -> Result<bool, sqlx::Error> {
    let stored: Option<String> = sqlx::query_scalar(
        "SELECT hash FROM audit_events WHERE seq = $1 \
         UNION ALL SELECT hash FROM audit_checkpoints WHERE seq = $1",
    )
    .bind(seq)
    .fetch_optional(db.pool())
    .await?;
    Ok(stored.as_deref() == Some(hash))
}

/// Walks the whole chain from its start (or its checkpoint).
pub async fn verify(db: &Db, key: &ChainKey) -> Result<Verdict, sqlx::Error> {
    let mut conn = db.pool().acquire().await?;
    let checkpoint: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (start, mut previous) = checkpoint.unwrap_or_else(|| (0, GENESIS.to_owned()));
    let mut expected = start + 1;
    let mut verified = 0_u64;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, seq, hash FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2"
        )))
        .bind(expected)
        .bind(BATCH)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            if seq != expected {
                return Ok(Verdict::Broken {
                    seq: expected,
                    reason: format!("event {expected} is missing (the next is {seq})"),
                });
            }
            let stored: String = row.try_get("hash")?;
            let computed = key.link(&previous, seq, &canonical(row)?);
            if stored != computed {
                return Ok(Verdict::Broken {
                    seq,
                    reason: "the event or its hash was changed".to_owned(),
                });
            }
            previous = stored;
            expected += 1;
            verified += 1;
        }
    }
    let earlier: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE seq < $1")
        .bind(start + 1)
        .fetch_one(&mut *conn)
        .await?;
    if earlier > 0 {
        return Ok(Verdict::Broken {
            seq: start,
            reason: format!("{earlier} events sit before the checkpoint at {start}"),
        });
    }
    let unsealed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE seq IS NULL")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Verdict::Intact {
        verified,
        from_seq: start + 1,
        to_seq: expected - 1,
        unsealed: u64::try_from(unsealed).unwrap_or(0),
    })
}

/// Seals every second, and applies retention (`retention_days`, 0 keeps everything) every
/// hour, until shutdown.
pub fn spawn_sealer(jobs: &Jobs, db: Db, key: ChainKey, retention_days: u32) {
    jobs.spawn(async move {
        let mut ticker = tokio::time::interval(EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            ticker.tick().await;
            // Seal everything there is, a batch per transaction.
            loop {
                match seal_once(&db, &key).await {
                    Ok(Some(n)) if u64::try_from(BATCH).is_ok_and(|b| n == b) => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "sealing the audit log failed");
                        break;
                    }
                }
            }
            ticks += 1;
            if retention_days > 0 && ticks % 3_600 == 1 {
                let cutoff = tessera_token::unix_now_ms() - i64::from(retention_days) * 86_400_000;
                match expire(&db, cutoff).await {
                    Ok(Some(n)) if n > 0 => tracing::info!(deleted = n, "audit retention"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "audit retention failed"),
                }
            }
        }
    });
}
