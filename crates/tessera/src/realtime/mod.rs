//! The real-time hub: authenticated SSE (`GET /api/v1/realtime/sse`) and WebSocket
//! (`GET /api/v1/realtime/ws`) connections bound to their **session**, events published by
//! services (`POST /api/v1/realtime/publish`) and by Tessera itself ([`Realtime::publish`]),
//! a short per-channel history for resume (`GET /api/v1/realtime/history`).
//!
//! - **Authentication** ([`handshake`]): Bearer, cookie, then a single-use ticket
//!   ([`tickets`]); every refusal is an HTTP problem answer before any upgrade.
//! - **Channels and permissions** ([`channel`], [`access`]).
//! - **Session binding**: the hub follows the revocation feed, which every revoking
//!   transaction writes to (logout, revoke, revoke-others, refresh-token reuse, password
//!   change, user and tenant disable) and which each instance follows on the change bus
//!   ([`crate::bus`]): a session entry closes
//!   that session's connections on every instance (WebSocket 4401, SSE `auth.revoked`); a
//!   subject entry (a user's access changed) makes its connections check their session and
//!   subscriptions again; a sweep every few seconds catches sessions that simply expired.
//! - **Across instances**: every event is appended to the `realtime_events` log and every
//!   instance delivers what it reads from the log, in log order, to its own connections. The
//!   publishing transaction announces the event's number on the change bus, and every
//!   instance reads the log past its position when it hears a number beyond it (and at the
//!   bus's reconciliation reads). The log's number is the event id, the same everywhere, so
//!   a client resumes on any instance.
//!
//! Flags and other capabilities publish with [`Realtime::publish`]:
//!
//! ```ignore
//! let channel = ChannelName::parse("flags")?;
//! state.realtime().publish(&channel, "flag.changed", json!({"key": "new_ui"})).await?;
//! ```

pub mod access;
pub mod channel;
pub mod event;
pub mod handshake;
pub mod hub;
mod metrics;
pub mod routes;
pub mod sse;
pub mod store;
pub mod tickets;
pub mod ws;

use std::sync::{Arc, Weak};
use std::time::Duration;

use tessera_token::{Revoked, unix_now};
use tokio::sync::{broadcast, watch};

use crate::bus::{Bus, Followed, Topic};
use crate::caller::cache::Lookup;
use crate::config::Config;
use crate::db::Db;
use crate::http::openapi::ApiRouter;
use crate::jobs::Jobs;
use crate::revocations::Feed;
use crate::state::AppState;
use channel::ChannelName;
use event::{Envelope, Event};
use hub::{Connection, Hub, SESSION_ENDED};
use store::{NewEvent, Written};
use utoipa_axum::routes;

/// How often connections' sessions are looked at for expiry, and aged history dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How long the log keeps events: long enough for any history and for idempotency keys.
const LOG_KEEP_MS: i64 = 24 * 3_600 * 1_000;

/// How often the log and the tickets are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Longest a publish waits for its event to be read back here.
const DELIVERY_WAIT: Duration = Duration::from_secs(2);

/// Longest event type.
pub const MAX_TYPE_BYTES: usize = 128;

/// Largest `data` of one event, as JSON.
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The event type or data is not acceptable; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The idempotency key was used before with another request.
    #[error("the Idempotency-Key was used with a different request")]
    KeyReused,
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A publish that went through.
#[derive(Debug)]
pub struct Published {
    /// The event as subscribers receive it.
    pub envelope: Envelope,
    /// Whether an earlier request with the same idempotency key published it.
    pub replayed: bool,
}

/// The hub of this instance and its link to the event log.
pub struct Realtime {
    hub: Arc<Hub>,
    db: Db,
    bus: Arc<Bus>,
    /// The id of the last event the reader delivered here.
    delivered: watch::Sender<i64>,
}

/// Checks an event type: 1–128 of letters, digits, `.`, `_`, `-`.
pub fn check_type(kind: &str) -> Result<(), PublishError> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_TYPE_BYTES
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PublishError::Invalid(format!(
            "`type` must be 1-{MAX_TYPE_BYTES} letters, digits, `.`, `_` or `-`"
        )))
    }
}

impl Realtime {
    /// The hub, reading the log from its current end, with its background tasks: the log
    /// reader, the follower of `feed`, and the sweeper. Subscribe before the feed's first
    /// poll so no revocation passes by.
    pub async fn start(
        config: &Config,
        db: &Db,
        bus: &Arc<Bus>,
        feed: &Feed,
        jobs: &Jobs,
    ) -> Result<Arc<Self>, sqlx::Error> {
        let start = store::newest(db).await?;
        let realtime = Arc::new(Self {
            hub: Hub::new(&config.realtime, start),
            db: db.clone(),
            bus: Arc::clone(bus),
            delivered: watch::Sender::new(start),
        });
        follow_log(jobs, bus, Arc::downgrade(&realtime), start);
        spawn_follower(jobs, Arc::downgrade(&realtime.hub), feed.subscribe());
        spawn_sweeper(jobs, Arc::downgrade(&realtime));
        Ok(realtime)
    }

    /// The connections and channels of this instance.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Publishes an event from Tessera itself (no idempotency key): appended to the log,
    /// then delivered here at once and on other instances when the bus announces it. Waits for the
    /// database write and this instance's read of the log (so this instance's history holds
    /// the event when it returns), never for subscribers.
    pub async fn publish(
        &self,
        channel: &ChannelName,
        kind: &str,
        data: serde_json::Value,
    ) -> Result<Envelope, PublishError> {
        let published = self
            .publish_as(channel, kind, &data, "system", None)
            .await?;
        Ok(published.envelope)
    }

    /// Publishes for `publisher` (`client:<id>`, `user:<id>`), honouring an idempotency key
    /// and the digest of the request it came with.
    pub async fn publish_as(
        &self,
        channel: &ChannelName,
        kind: &str,
        data: &serde_json::Value,
        publisher: &str,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Published, PublishError> {
        check_type(kind)?;
        if data.to_string().len() > MAX_DATA_BYTES {
            return Err(PublishError::Invalid(format!(
                "`data` may hold at most {MAX_DATA_BYTES} bytes of JSON"
            )));
        }
        let written = store::append(
            &self.db,
            &NewEvent {
                channel: channel.as_str(),
                kind,
                data,
                publisher,
                idempotency,
            },
        )
        .await?;
        match written {
            Written::New(envelope) => {
                self.bus.publish(Topic::Realtime, envelope.id);
                self.delivered_here(envelope.id).await;
                Ok(Published {
                    envelope,
                    replayed: false,
                })
            }
            Written::Replayed(envelope) => Ok(Published {
                envelope,
                replayed: true,
            }),
            Written::KeyReused => Err(PublishError::KeyReused),
        }
    }

    /// Waits (briefly) until this instance's reader has delivered event `id`, so that once a
    /// publish has answered, the history here holds its event. Waits for the log read only,
    /// never for subscribers.
    async fn delivered_here(&self, id: i64) {
        let mut delivered = self.delivered.subscribe();
        let reached = delivered.wait_for(|last| *last >= id);
        if tokio::time::timeout(DELIVERY_WAIT, reached).await.is_err() {
            tracing::warn!(id, "a published event was not read back in time");
        }
    }

    /// Ends every connection: the server is stopping.
    pub fn close(&self) {
        self.hub.close();
    }
}

/// Delivers the log, in order, from `start` on, whenever the bus announces an event beyond
/// what was delivered (this instance's publishes and every other instance's).
fn follow_log(jobs: &Jobs, bus: &Arc<Bus>, realtime: Weak<Realtime>, start: i64) {
    bus.follow(jobs, Topic::Realtime, start, move |mut cursor| {
        let realtime = realtime.clone();
        async move {
            let Some(realtime) = realtime.upgrade() else {
                return Followed::Gone;
            };
            if realtime.db.pool().is_closed() {
                return Followed::Gone;
            }
            loop {
                match store::read_after(&realtime.db, cursor).await {
                    Ok(events) => {
                        let full = events.len() >= usize::try_from(store::PAGE).unwrap_or(1_000);
                        for envelope in events {
                            cursor = envelope.id;
                            realtime.hub.deliver(Event::new(envelope));
                        }
                        realtime.delivered.send_replace(cursor);
                        if !full {
                            return Followed::At(cursor);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the real-time event log failed");
                        return Followed::Failed;
                    }
                }
            }
        }
    });
}

/// Closes the connections of every session the revocation feed reports ended, and asks the
/// connections of a user whose access changed to check again.
fn spawn_follower(
    jobs: &Jobs,
    hub: Weak<Hub>,
    mut batches: broadcast::Receiver<Arc<crate::revocations::Batch>>,
) {
    jobs.spawn(async move {
        loop {
            let received = batches.recv().await;
            let Some(hub) = hub.upgrade() else { return };
            match received {
                Ok(batch) => {
                    for entry in &batch.entries {
                        apply(&hub, &entry.revocation.tid, &entry.revocation.target);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    hub.each_link(|_| true, hub::Link::recheck);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

fn apply(hub: &Hub, tenant_id: &str, target: &Revoked) {
    match target {
        Revoked::Session { sid } => hub.close_session(sid, SESSION_ENDED),
        Revoked::Tenant { .. } => hub.each_link(
            |owner| owner.tenant_id == tenant_id,
            |link| link.close(SESSION_ENDED),
        ),
        Revoked::Subject { sub, .. } => hub.each_link(
            |owner| owner.tenant_id == tenant_id && owner.user_id == *sub,
            hub::Link::recheck,
        ),
        // Connections are bound to sessions, not to the token that opened them.
        Revoked::Token { .. } => {}
    }
}

fn spawn_sweeper(jobs: &Jobs, realtime: Weak<Realtime>) {
    jobs.spawn(async move {
        let mut ticker = tokio::time::interval(SWEEP_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = tokio::time::Instant::now();
        loop {
            ticker.tick().await;
            let Some(realtime) = realtime.upgrade() else {
                return;
            };
            if realtime.db.pool().is_closed() {
                return;
            }
            realtime.hub.sweep(unix_now());
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                if let Err(e) = store::prune(&realtime.db, LOG_KEEP_MS).await {
                    tracing::warn!(error = %e, "pruning the real-time log failed");
                }
            }
        }
    });
}

/// What a recheck found: the session ended (the connection is being closed), or these
/// subscriptions are no longer allowed and were dropped.
pub enum Rechecked {
    /// The session is over; the connection has been told to close.
    Ended,
    /// Still live; these channels were unsubscribed.
    Dropped(Vec<String>),
}

/// Reads the connection's session again (closing the connection if it ended) and drops the
/// subscriptions its owner may no longer hold.
pub async fn recheck(state: &AppState, connection: &mut Connection) -> Rechecked {
    let link = Arc::clone(connection.link());
    let lookup = state
        .session_cache()
        .get(state.db(), &link.owner.session_id, unix_now())
        .await;
    match lookup {
        Ok(Lookup::Live(info)) => link.session_extended(info.session.expires_at()),
        Ok(Lookup::Ended) => {
            link.close(SESSION_ENDED);
            return Rechecked::Ended;
        }
        // Checked again at the next sweep.
        Err(e) => {
            tracing::warn!(error = %e, "checking a real-time connection's session failed");
            link.session_extended(unix_now() + 5);
            return Rechecked::Dropped(Vec::new());
        }
    }
    let subscribed: Vec<String> = connection.subscriptions().map(str::to_owned).collect();
    let mut dropped = Vec::new();
    for name in subscribed {
        let Ok(channel) = ChannelName::parse(&name) else {
            continue;
        };
        if access::may_subscribe(state, &link.owner, &channel)
            .await
            .is_err()
        {
            connection.unsubscribe(&name);
            dropped.push(name);
        }
    }
    Rechecked::Dropped(dropped)
}

/// Every real-time route.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .merge(routes::router())
        .merge(tickets::router())
        .merge(ws::router())
        .merge(sse::router())
}
