//! The change bus: how a change committed on one instance takes effect on every other.
//!
//! Every cross-instance effect lives in a log table with a database-assigned sequence number
//! (`revocations`, `flag_changes`, `realtime_events`, `cache_changes`), written in the same
//! transaction as the change. The bus carries only "topic T reached number N"; each follower
//! keeps the number of the last row it applied and, on a message beyond it, reads the rows
//! after it. A lost or reordered message therefore never loses a change: the next message
//! (or the reconciliation read) reads the gap. Numbers are in commit order on every log (its
//! writers lock it on PostgreSQL; SQLite has one writer), so "after N" never skips a row.
//!
//! Transports ([`Transport`]):
//! - **PostgreSQL** `LISTEN/NOTIFY`: the writer's transaction sends `pg_notify`, delivered at
//!   commit and dropped on rollback, so two instances need nothing but their database; the
//!   CLI's changes are announced the same way.
//! - **Redis** pub/sub (`cluster.bus = "redis"` with `redis.url`): each instance publishes
//!   after its commit.
//! - **In-process** (SQLite): instances of one process sharing a database file share one
//!   channel.
//!
//! After any (re)connection of the transport, or when a follower fell behind the channel,
//! every follower reads its log again. Besides, each reads it every [`RECONCILE_EVERY`]
//! whatever it heard: that bounds the delay of a change whose message was lost (a write from
//! another process on SQLite, a Redis outage). No decision compares clocks across instances.

pub mod changes;
mod transport;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::AnyConnection;
use tokio::sync::{broadcast, mpsc};

use crate::config::{BusKind, Config};
use crate::health::Check;
use crate::jobs::Jobs;

pub use transport::{Transport, preflight};

/// How often every follower reads its log whatever the bus said: the longest a change can
/// take to reach an instance when its message was lost.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// After a failed read, how long a follower waits before reading again.
const RETRY_READ_AFTER: Duration = Duration::from_millis(500);

/// Messages waiting for slow followers; one that falls further behind reads its log again.
const BACKLOG: usize = 1_024;

/// The PostgreSQL channel and Redis channel suffix every instance listens on.
pub(crate) const CHANNEL: &str = "tessera_bus";

/// A log whose progress the bus announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// The revocation feed (sessions, subjects, tokens, tenants): session cache, deny list,
    /// role floors, real-time session closes, feed streams.
    Revocations,
    /// Feature flag changes.
    Flags,
    /// The real-time event log (publishes).
    Realtime,
    /// Cache invalidations ([`changes`]): roles, clients, tenants, keys, users.
    Changes,
}

impl Topic {
    /// The name carried in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Revocations => "revocations",
            Self::Flags => "flags",
            Self::Realtime => "realtime",
            Self::Changes => "changes",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            Self::Revocations,
            Self::Flags,
            Self::Realtime,
            Self::Changes,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }
}

/// What a follower hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `topic`'s log holds rows up to `seq` (0: a change of unknown number; read to see).
    Advanced {
        /// The log.
        topic: Topic,
        /// Its number, as the database assigned it.
        seq: i64,
    },
    /// Messages may have been missed (the transport (re)connected): every log is read again.
    Resync,
}

impl Signal {
    /// The text sent on the wire: `topic:seq`.
    pub(crate) fn encode(topic: Topic, seq: i64) -> String {
        format!("{}:{seq}", topic.name())
    }

    /// Parses a message; anything else (another version's topic) is ignored.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let (topic, seq) = text.split_once(':')?;
        Some(Self::Advanced {
            topic: Topic::parse(topic)?,
            seq: seq.parse().ok()?,
        })
    }
}

/// One instance's end of the bus. Cheap to share behind an `Arc`.
pub struct Bus {
    signals: Arc<broadcast::Sender<Signal>>,
    transport: Transport,
    /// Whether the transport is connected (always, in-process).
    connected: AtomicBool,
    /// Messages for the Redis publisher task.
    outbox: Option<mpsc::UnboundedSender<String>>,
}

/// What a follower's read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// Applied every row up to this number.
    At(i64),
    /// The read failed; it is tried again shortly.
    Failed,
    /// What it fed is gone (shutting down): the follower ends.
    Gone,
}

impl Bus {
    /// The bus `config` chooses, its listener started on `jobs`.
    pub async fn start(config: &Config, jobs: &Jobs) -> anyhow::Result<Arc<Self>> {
        let transport = Transport::choose(config)?;
        let signals = transport::local_channel(&transport, BACKLOG);
        let (outbox, queued) = match transport {
            Transport::Redis { .. } => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let bus = Arc::new(Self {
            signals,
            connected: AtomicBool::new(matches!(transport, Transport::InProcess { .. })),
            transport,
            outbox,
        });
        transport::spawn(&bus, jobs, queued);
        Ok(bus)
    }

    /// Which transport this instance uses.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Every signal from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.signals.subscribe()
    }

    /// After a commit here: wakes this instance's follower of `topic` at once and tells the
    /// others when the transport needs it (on PostgreSQL the commit itself did, through
    /// [`announce`]). `seq` is the number written, or 0 when unknown.
    pub fn publish(&self, topic: Topic, seq: i64) {
        // In-process, this reaches every instance of the process sharing the channel.
        let _ = self.signals.send(Signal::Advanced { topic, seq });
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(Signal::encode(topic, seq));
        }
    }

    /// Readiness of the bus: connected, or why not.
    pub fn health(&self) -> Check {
        let name = self.transport.name();
        if self.connected.load(Ordering::Acquire) {
            Check::ok("bus", format!("{name}: listening"))
        } else {
            Check::failed(
                "bus",
                format!(
                    "{name}: not connected; changes made elsewhere arrive within {} s",
                    RECONCILE_EVERY.as_secs()
                ),
            )
        }
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        let was = self.connected.swap(connected, Ordering::AcqRel);
        if connected && !was {
            // Whatever was said while disconnected is lost: every follower reads again.
            let _ = self.signals.send(Signal::Resync);
        }
        if was != connected {
            tracing::info!(transport = self.transport.name(), connected, "change bus");
        }
    }

    pub(crate) fn deliver(&self, signal: Signal) {
        let _ = self.signals.send(signal);
    }

    /// Runs `read` on `jobs` until shutdown or until it reports [`Followed::Gone`]: now, then
    /// whenever `topic` is announced beyond the number the last read reached, after every
    /// [`Signal::Resync`] or missed message, and at least every [`RECONCILE_EVERY`]. `read`
    /// applies the log's rows after the number it is given.
    pub fn follow<F, Fut>(self: &Arc<Self>, jobs: &Jobs, topic: Topic, start: i64, mut read: F)
    where
        F: FnMut(i64) -> Fut + Send + 'static,
        Fut: Future<Output = Followed> + Send,
    {
        let mut signals = self.subscribe();
        jobs.spawn(async move {
            let mut cursor = start;
            let mut wait = Duration::ZERO;
            loop {
                if !wait.is_zero() {
                    // Waits for a reason to read: an announcement beyond the cursor, a resync,
                    // or the reconciliation period (or the retry delay after a failure).
                    let deadline = tokio::time::sleep(wait);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            () = &mut deadline => break,
                            received = signals.recv() => match received {
                                Ok(Signal::Advanced { topic: t, seq })
                                    if t == topic && (seq == 0 || seq > cursor) => break,
                                Ok(Signal::Advanced { .. }) => {}
                                Ok(Signal::Resync)
                                | Err(broadcast::error::RecvError::Lagged(_)) => break,
                                Err(broadcast::error::RecvError::Closed) => return,
                            },
                        }
                    }
                }
                match read(cursor).await {
                    Followed::At(reached) => {
                        cursor = cursor.max(reached);
                        wait = RECONCILE_EVERY;
                    }
                    Followed::Failed => wait = RETRY_READ_AFTER,
                    Followed::Gone => return,
                }
            }
        });
    }
}

/// Announces on `conn`, the writing transaction, that `topic`'s log holds `seq`: on
/// PostgreSQL a `NOTIFY` every instance receives when (and only if) the transaction commits.
/// Other backends announce after the commit ([`Bus::publish`]).
pub async fn announce(conn: &mut AnyConnection, topic: Topic, seq: i64) -> Result<(), sqlx::Error> {
    if conn.backend_name() == "PostgreSQL" {
        // The channel is named after the schema, so deployments (and tests) sharing one
        // PostgreSQL database do not wake each other.
        sqlx::query("SELECT pg_notify($1 || '_' || current_schema(), $2)::text AS sent")
            .bind(CHANNEL)
            .bind(Signal::encode(topic, seq))
            .execute(conn)
            .await?;
    }
    Ok(())
}

impl BusKind {
    /// Whether this choice needs Redis.
    pub fn uses_redis(self) -> bool {
        matches!(self, Self::Redis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_unknown_ones_are_ignored() {
        let text = Signal::encode(Topic::Flags, 42);
        assert_eq!(text, "flags:42");
        assert_eq!(
            Signal::decode(&text),
            Some(Signal::Advanced {
                topic: Topic::Flags,
                seq: 42
            })
        );
        assert_eq!(Signal::decode("later-topic:1"), None);
        assert_eq!(Signal::decode("flags:x"), None);
        assert_eq!(Signal::decode("flags"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_reads_on_announcements_beyond_it_and_at_the_reconciliation_bound() {
        let jobs = Jobs::new();
        let bus = Arc::new(Bus {
            signals: Arc::new(broadcast::channel(16).0),
            transport: Transport::InProcess { key: "unit".into() },
            connected: AtomicBool::new(true),
            outbox: None,
        });
        let (reads_tx, mut reads) = mpsc::unbounded_channel();
        let head = Arc::new(std::sync::atomic::AtomicI64::new(3));
        let log = Arc::clone(&head);
        bus.follow(&jobs, Topic::Flags, 0, move |after| {
            let reads_tx = reads_tx.clone();
            let log = Arc::clone(&log);
            async move {
                let _ = reads_tx.send(after);
                Followed::At(log.load(Ordering::SeqCst))
            }
        });
        assert_eq!(reads.recv().await, Some(0), "reads at start");
        // Already read: no read. Another topic: no read.
        bus.deliver(Signal::Advanced {
            topic: Topic::Flags,
            seq: 3,
        });
        bus.deliver(Signal::Advanced {
            topic: Topic::Realtime,
            seq: 9,
        });
        tokio::task::yield_now().await;
        assert!(reads.try_recv().is_err());
        // Beyond: reads from where it stood (a gap of missed numbers is read with it).
        head.store(7, Ordering::SeqCst);
        bus.deliver(Signal::Advanced {
            topic: Topic::Flags,
            seq: 7,
        });
        assert_eq!(reads.recv().await, Some(3));
        // Nothing heard: read again within the bound anyway.
        let start = tokio::time::Instant::now();
        assert_eq!(reads.recv().await, Some(7));
        assert!(start.elapsed() <= RECONCILE_EVERY);
        bus.deliver(Signal::Resync);
        assert_eq!(reads.recv().await, Some(7), "a resync reads again");
        jobs.shutdown().await;
    }
}
