//! Feature flags and the public platform configuration: one place every backend and frontend
//! reads its flags from, through standard clients, seeing a change within a second.
//!
//! - [`model`] and [`rules`]: what a flag is, declared in the config file (`[flags.<key>]`)
//!   or through the admin API, checked and compiled once.
//! - [`eval`]: pure evaluation (disabled → tenant override → rules → rollout → default),
//!   bucketing identical to flagd's.
//! - [`set`]: the effective flag set, built from its layers (config < `TESSERA_FLAG_<KEY>`
//!   < admin API, then tenant overrides at evaluation).
//! - [`store`]: the tables, and the change table every instance polls.
//! - [`caller`]: who asks, and the context attributes their identity decides.
//! - [`routes`]: OpenFeature Remote Evaluation Protocol with its change stream,
//!   `GET /api/v1/platform/config`, and the admin API.
//!
//! **Learning of changes in-process.** [`Flags::subscribe`] hands out a
//! `tokio::sync::watch::Receiver<Arc<FlagSet>>`: it holds the current set and wakes on every
//! new one, whichever instance made the change (each set's [`FlagSet::changes`] names the
//! flags and tenants concerned, and [`FlagSet::revision`] is the OFREP change stream's
//! `etag`). The admin routes announce each change once on the real-time hub's `flags`
//! channel (`flag.changed`), which carries it to every instance's subscribers.

pub mod caller;
pub mod eval;
pub mod model;
pub mod routes;
pub mod rules;
pub mod set;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::db::Db;
use crate::jobs::Jobs;
pub use set::{Declared, FlagSet};

/// How often each instance looks for changes made by any instance.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// How long change rows are kept; streams only need the newest.
const KEEP_CHANGES_MS: i64 = 24 * 3_600 * 1_000;

/// Most change rows read into one set's [`FlagSet::changes`].
const MAX_CHANGES_READ: i64 = 1_000;

/// Most change streams one caller may hold open on one instance.
pub const MAX_STREAMS_PER_CALLER: usize = 8;

/// This instance's flags: the current set, reloaded when anything changes.
pub struct Flags {
    declared: Declared,
    current: watch::Sender<Arc<FlagSet>>,
    wake: Notify,
    /// Open change streams per caller.
    streams: Mutex<HashMap<String, usize>>,
    /// Set at shutdown, so open change streams end.
    closing: watch::Sender<bool>,
}

/// One open change stream, counted against its caller while it lives.
pub struct StreamSlot {
    flags: Arc<Flags>,
    subject: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.flags.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = streams.get_mut(&self.subject) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.subject);
            }
        }
    }
}

impl Flags {
    /// Builds the first set from the config (whose flags must be valid: see
    /// [`Declared::from_config`]) and the database.
    pub async fn load(config: &Config, db: &Db) -> anyhow::Result<Arc<Self>> {
        let declared = Declared::from_config(config).map_err(|problems| {
            anyhow::anyhow!(crate::config::ConfigError { problems }.to_string())
        })?;
        let stored = store::load(db).await?;
        let first = FlagSet::build(&declared, &stored, Arc::from(Vec::new()));
        Ok(Arc::new(Self {
            declared,
            current: watch::Sender::new(Arc::new(first)),
            wake: Notify::new(),
            streams: Mutex::new(HashMap::new()),
            closing: watch::Sender::new(false),
        }))
    }

    /// Counts a change stream opened by `subject` until the slot is dropped; `None` when it
    /// already holds [`MAX_STREAMS_PER_CALLER`].
    pub fn open_stream(self: &Arc<Self>, subject: &str) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let open = streams.entry(subject.to_owned()).or_default();
        if *open >= MAX_STREAMS_PER_CALLER {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            flags: Arc::clone(self),
            subject: subject.to_owned(),
        })
    }

    /// Resolves when the server shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every open change stream (at shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The current set. Cheap: an `Arc` clone.
    pub fn snapshot(&self) -> Arc<FlagSet> {
        Arc::clone(&self.current.borrow())
    }

    /// The current set now and every new one after: how other capabilities (the real-time
    /// hub) learn of flag changes in-process.
    pub fn subscribe(&self) -> watch::Receiver<Arc<FlagSet>> {
        self.current.subscribe()
    }

    /// The declared flags (config file with environment values).
    pub fn declared(&self) -> &Declared {
        &self.declared
    }

    /// Reads the database again now (after a change committed here) instead of at the next
    /// poll, so this instance answers with the change at once.
    pub async fn reload(&self, db: &Db) -> Result<(), sqlx::Error> {
        let seq = self.current.borrow().seq;
        let stored = store::load(db).await?;
        if stored.seq <= seq {
            return Ok(());
        }
        let changes = store::changes_after(db, seq, MAX_CHANGES_READ)
            .await
            .unwrap_or_default();
        let next = Arc::new(FlagSet::build(&self.declared, &stored, Arc::from(changes)));
        // Two reloads may race; the newer set wins and a set never goes back.
        self.current.send_if_modified(|current| {
            if next.seq > current.seq {
                *current = Arc::clone(&next);
                true
            } else {
                false
            }
        });
        Ok(())
    }

    /// Looks for changes now instead of at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Follows changes made by any instance, on the application's task set, until shutdown,
    /// `db` closes or the service is dropped, and prunes old change rows once an hour.
    pub fn spawn_poller(self: &Arc<Self>, jobs: &Jobs, db: Db) {
        let weak: Weak<Self> = Arc::downgrade(self);
        jobs.spawn(async move {
            let mut last_prune = tokio::time::Instant::now();
            loop {
                let Some(flags) = weak.upgrade() else { return };
                if db.pool().is_closed() {
                    return;
                }
                match store::newest_change(&db).await {
                    Ok(newest) if newest > flags.current.borrow().seq => {
                        if let Err(e) = flags.reload(&db).await {
                            tracing::warn!(error = %e, "reloading the flags failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reading the flag changes failed"),
                }
                if last_prune.elapsed() > Duration::from_secs(3_600) {
                    last_prune = tokio::time::Instant::now();
                    let cutoff = tessera_token::unix_now_ms() - KEEP_CHANGES_MS;
                    if let Err(e) = store::prune_changes(&db, cutoff).await {
                        tracing::warn!(error = %e, "pruning flag changes failed");
                    }
                }
                tokio::select! {
                    () = flags.wake.notified() => {}
                    () = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        });
    }
}
