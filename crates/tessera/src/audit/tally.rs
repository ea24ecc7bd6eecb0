//! Events that can arrive by the thousand under attack (rate-limit refusals, CSP reports)
//! are counted in memory and written as one audit event per group and minute, with the count
//! and a few samples, so an attack cannot flood the log or its writers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Actor, Event, Origin, record};
use crate::db::Db;

/// Samples kept per group and window.
const MAX_SAMPLES: usize = 20;

/// Longest sample kept, in characters.
const MAX_SAMPLE_CHARS: usize = 128;

/// How often tallies are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Count {
    count: u64,
    samples: Vec<String>,
}

/// Counts of one kind of event (`action`) by group, since the last flush.
pub struct Tally {
    action: &'static str,
    groups: Mutex<HashMap<String, Count>>,
}

impl Tally {
    /// A tally written as `action` events.
    pub fn new(action: &'static str) -> Arc<Self> {
        Arc::new(Self {
            action,
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one occurrence in `group`, keeping `sample` if there is room and it is new.
    pub fn note(&self, group: &str, sample: Option<&str>) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: an attacker choosing group names gets one shared bucket past the limit.
        let group = if groups.len() >= 64 && !groups.contains_key(group) {
            "other"
        } else {
            group
        };
        let entry = groups.entry(group.to_owned()).or_default();
        entry.count += 1;
        if let Some(sample) = sample {
            let sample: String = sample.chars().take(MAX_SAMPLE_CHARS).collect();
            if entry.samples.len() < MAX_SAMPLES && !entry.samples.contains(&sample) {
                entry.samples.push(sample);
            }
        }
    }

    /// Writes what was counted since the last flush, one event per group.
    pub async fn flush(&self, db: &Db) -> Result<(), sqlx::Error> {
        let groups = std::mem::take(&mut *self.groups.lock().unwrap_or_else(|p| p.into_inner()));
        if groups.is_empty() {
            return Ok(());
        }
        let mut tx = db.begin_write().await?;
        for (group, count) in &groups {
            record(
                &mut tx,
                &Event {
                    action: self.action,
                    actor: &Actor::Anonymous,
                    tenant_id: None,
                    target: None,
                    success: false,
                    reason: Some(group),
                    origin: &Origin::default(),
                    details: Some(serde_json::json!({
                        "count": count.count,
                        "samples": count.samples,
                        "window_secs": FLUSH_EVERY.as_secs(),
                    })),
                },
            )
            .await?;
        }
        tx.commit().await
    }

    /// Flushes every minute until `db` closes or the tally is dropped.
    pub fn spawn_flusher(self: &Arc<Self>, db: Db) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(FLUSH_EVERY);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(tally) = weak.upgrade() else { return };
                if db.pool().is_closed() {
                    return;
                }
                if let Err(e) = tally.flush(&db).await {
                    tracing::warn!(error = %e, action = tally.action, "writing a tally failed");
                }
            }
        });
    }
}
