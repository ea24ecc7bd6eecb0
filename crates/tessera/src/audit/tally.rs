//! Writes the in-memory tallies ([`crate::http::tally`]) to the audit log: one event per
//! group and minute, with the count and a few samples.

use std::sync::Arc;
use std::time::Duration;

use super::{Actor, Event};
use crate::db::Db;
use crate::http::client::RequestMeta;
use crate::http::tally::Tally;
use crate::jobs::Jobs;

/// How often tallies are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Writes what was counted since the last flush, one event per group.
pub async fn flush(tally: &Tally, db: &Db) -> Result<(), sqlx::Error> {
    let groups = tally.take();
    if groups.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin_write().await?;
    for (group, count) in &groups {
        Event::new(tally.action(), &Actor::Anonymous, &RequestMeta::default())
            .failed(group)
            .details(serde_json::json!({
                "count": count.count,
                "samples": count.samples,
                "window_secs": FLUSH_EVERY.as_secs(),
            }))
            .record(&mut tx)
            .await?;
    }
    tx.commit().await
}

/// Flushes every minute until shutdown.
pub fn spawn_flusher(jobs: &Jobs, tally: &Arc<Tally>, db: Db) {
    let tally = Arc::clone(tally);
    jobs.every(FLUSH_EVERY, true, move || {
        let (tally, db) = (Arc::clone(&tally), db.clone());
        async move {
            if let Err(e) = flush(&tally, &db).await {
                tracing::warn!(error = %e, action = tally.action(), "writing a tally failed");
            }
        }
    });
}
