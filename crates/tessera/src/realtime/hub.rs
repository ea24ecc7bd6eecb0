//! The hub of one instance: its open connections, who is subscribed to what, each channel's
//! history ring, and the fan-out that never waits for anyone.
//!
//! Every event reaches connections the same way, whichever instance published it: the
//! dispatcher reads the event log (`store`) in order and hands each event to
//! [`Hub::deliver`], which appends it to its channel's ring and offers it to every
//! subscriber's bounded queue with `try_send`. A full queue marks a slow consumer: it is
//! closed (4408) and dropped from the channel; the publisher and the other subscribers carry
//! on. Subscribing takes the same lock as delivering, so the history a subscriber is replayed
//! and the live events it then receives neither overlap nor leave a gap.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tessera_token::unix_now_ms;
use tokio::sync::{Notify, mpsc, watch};

use super::channel::ChannelName;
use super::event::Event;
use super::metrics;
use crate::config::RealtimeConfig;

/// Why the hub ends a connection: a WebSocket close code and a short reason (SSE sends the
/// reason in its last event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// The WebSocket close code.
    pub code: u16,
    /// Human-readable, short (a close frame holds 123 bytes of reason).
    pub reason: &'static str,
}

/// The session ended: logout, revocation, refresh-token reuse, password change, user or
/// tenant disabled, or expiry.
pub const SESSION_ENDED: Close = Close {
    code: 4401,
    reason: "session ended",
};
/// The connection was refused as a whole (too many refused subscriptions).
pub const FORBIDDEN: Close = Close {
    code: 4403,
    reason: "forbidden",
};
/// Its queue was full: the client does not read fast enough.
pub const SLOW_CONSUMER: Close = Close {
    code: 4408,
    reason: "slow consumer",
};
/// The client sent nothing, not even a pong, for the idle timeout.
pub const IDLE: Close = Close {
    code: 1001,
    reason: "idle timeout",
};
/// The server is shutting down.
pub const SHUTDOWN: Close = Close {
    code: 1001,
    reason: "server shutting down",
};

/// The transport of a connection, a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `GET /api/v1/realtime/ws`.
    WebSocket,
    /// `GET /api/v1/realtime/sse`.
    Sse,
}

impl Transport {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "ws",
            Self::Sse => "sse",
        }
    }
}

/// Who a connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its session: the connection lives as long as this does.
    pub session_id: String,
    /// The session's user.
    pub user_id: String,
    /// The user's tenant.
    pub tenant_id: String,
    /// When the session ends unless refreshed (Unix seconds).
    pub session_expires_at: i64,
}

/// What the hub holds of one connection, shared with the connection's own task.
#[derive(Debug)]
pub struct Link {
    id: u64,
    /// Who it belongs to.
    pub owner: Owner,
    transport: Transport,
    close: watch::Sender<Option<Close>>,
    recheck: Notify,
    /// When to look at the session again: its expiry as last read.
    recheck_at: AtomicI64,
}

impl Link {
    /// Asks the connection to end with `close` (the first reason given wins).
    pub fn close(&self, close: Close) {
        self.close.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(close);
            true
        });
    }

    /// Why the hub asked this connection to end, if it did.
    pub fn closing(&self) -> Option<Close> {
        *self.close.borrow()
    }

    /// Asks the connection to check its session and subscriptions again.
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }

    /// Resolves when the hub asks for a recheck.
    pub async fn recheck_requested(&self) {
        self.recheck.notified().await;
    }

    /// The session was read again and is live until `expires_at`.
    pub fn session_extended(&self, expires_at: i64) {
        self.recheck_at.store(expires_at, Ordering::Relaxed);
    }
}

/// What a subscriber missed, replayed before its live events.
#[derive(Debug)]
pub struct Replay {
    /// Whether the history reached back far enough: `false` means events after `since` were
    /// lost (the client should reload its state).
    pub recovered: bool,
    /// The events after `since` still in the history, oldest first.
    pub missed: Vec<Arc<Event>>,
}

/// A subscription the hub refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The connection already holds the most subscriptions allowed.
    #[error("a connection may hold at most {0} subscriptions")]
    TooMany(usize),
    /// The connection is closing.
    #[error("the connection is closing")]
    Closing,
}

#[derive(Default)]
struct ChannelState {
    history: VecDeque<Arc<Event>>,
    /// Ids at or below this are not (all) in `history`.
    floor: i64,
    subscribers: HashMap<u64, Subscriber>,
}

struct Subscriber {
    queue: mpsc::Sender<Arc<Event>>,
    link: Arc<Link>,
}

#[derive(Default)]
struct Registry {
    links: HashMap<u64, Arc<Link>>,
    by_session: HashMap<String, HashSet<u64>>,
}

/// History and queue limits, from the configuration.
#[derive(Debug, Clone, Copy)]
struct Limits {
    history_events: usize,
    history_age_ms: i64,
    queue: usize,
    subscriptions: usize,
}

/// The hub of this instance.
pub struct Hub {
    limits: Limits,
    channels: Mutex<HashMap<String, ChannelState>>,
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    /// Ids at or below this are in no history here: published before this instance started
    /// reading the log, or dropped with a channel whose history aged out. `-1` until known
    /// (the log was empty at start: then the first event read sets it).
    floor: AtomicI64,
    closing: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// A hub with `config`'s limits whose history starts after event `start` (0: unknown).
    pub fn new(config: &RealtimeConfig, start: i64) -> Arc<Self> {
        let limits = Limits {
            history_events: usize::try_from(config.history_max_events).unwrap_or(100),
            history_age_ms: i64::try_from(config.history_max_age_secs)
                .unwrap_or(300)
                .saturating_mul(1_000),
            queue: usize::try_from(config.queue_capacity).unwrap_or(256),
            subscriptions: usize::try_from(config.max_subscriptions).unwrap_or(64),
        };
        Arc::new(Self {
            limits,
            channels: Mutex::new(HashMap::new()),
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            floor: AtomicI64::new(if start > 0 { start } else { -1 }),
            closing: watch::Sender::new(false),
        })
    }

    /// Registers a connection of `owner`.
    pub fn connect(self: &Arc<Self>, owner: Owner, transport: Transport) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = watch::channel(None);
        let link = Arc::new(Link {
            id,
            recheck_at: AtomicI64::new(owner.session_expires_at),
            owner,
            transport,
            close,
            recheck: Notify::new(),
        });
        if *self.closing.borrow() {
            link.close(SHUTDOWN);
        }
        {
            let mut registry = lock(&self.registry);
            registry
                .by_session
                .entry(link.owner.session_id.clone())
                .or_default()
                .insert(id);
            registry.links.insert(id, Arc::clone(&link));
        }
        metrics::connection_opened(transport);
        let (queue, events) = mpsc::channel(self.limits.queue);
        Connection {
            hub: Arc::clone(self),
            link,
            queue,
            events,
            closed,
            subscriptions: HashSet::new(),
        }
    }

    fn floor_for(&self, state: Option<&ChannelState>) -> i64 {
        let global = self.floor.load(Ordering::Relaxed);
        state.map_or(global, |s| s.floor.max(global))
    }

    /// The history of `channel` after `since`, for the polling fallback.
    pub fn history(&self, channel: &str, since: i64) -> Replay {
        let channels = lock(&self.channels);
        let state = channels.get(channel);
        replay(state, self.floor_for(state), since, self.cutoff())
    }

    fn cutoff(&self) -> i64 {
        unix_now_ms() - self.limits.history_age_ms
    }

    /// Appends `event` to its channel's history and offers it to every subscriber, never
    /// waiting: a subscriber whose queue is full is closed as a slow consumer.
    pub fn deliver(&self, event: Arc<Event>) {
        let _ =
            self.floor
                .compare_exchange(-1, event.id() - 1, Ordering::Relaxed, Ordering::Relaxed);
        metrics::event_in();
        let mut slow = Vec::new();
        let mut delivered = [0u64; 2];
        {
            let mut channels = lock(&self.channels);
            let floor = self.floor.load(Ordering::Relaxed);
            let state = channels
                .entry(event.envelope.channel.clone())
                .or_insert_with(|| ChannelState {
                    floor,
                    ..ChannelState::default()
                });
            state.history.push_back(Arc::clone(&event));
            trim(state, self.limits.history_events, self.cutoff());
            state.subscribers.retain(|_, subscriber| {
                match subscriber.queue.try_send(Arc::clone(&event)) {
                    Ok(()) => {
                        delivered[usize::from(subscriber.link.transport == Transport::Sse)] += 1;
                        true
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        slow.push(Arc::clone(&subscriber.link));
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
        metrics::events_out(Transport::WebSocket, delivered[0]);
        metrics::events_out(Transport::Sse, delivered[1]);
        for link in slow {
            metrics::slow_consumer(link.transport);
            link.close(SLOW_CONSUMER);
        }
    }

    /// Ends every connection of session `session_id`.
    pub fn close_session(&self, session_id: &str, close: Close) {
        let registry = lock(&self.registry);
        if let Some(ids) = registry.by_session.get(session_id) {
            for id in ids {
                if let Some(link) = registry.links.get(id) {
                    link.close(close);
                }
            }
        }
    }

    /// Applies `act` to every connection `select` picks.
    pub fn each_link(&self, select: impl Fn(&Owner) -> bool, act: impl Fn(&Link)) {
        let links: Vec<Arc<Link>> = lock(&self.registry)
            .links
            .values()
            .filter(|l| select(&l.owner))
            .cloned()
            .collect();
        for link in links {
            act(&link);
        }
    }

    /// Housekeeping, every few seconds: drops aged history (and channels with neither history
    /// nor subscribers), and asks connections whose session may have expired to check it.
    pub fn sweep(&self, now_secs: i64) {
        let cutoff = self.cutoff();
        {
            let mut channels = lock(&self.channels);
            let mut dropped_floor = self.floor.load(Ordering::Relaxed);
            channels.retain(|_, state| {
                trim(state, self.limits.history_events, cutoff);
                let keep = !state.history.is_empty() || !state.subscribers.is_empty();
                if !keep {
                    dropped_floor = dropped_floor.max(state.floor);
                }
                keep
            });
            self.floor.fetch_max(dropped_floor, Ordering::Relaxed);
        }
        self.each_link(
            |_| true,
            |link| {
                if link.recheck_at.load(Ordering::Relaxed) <= now_secs {
                    link.recheck();
                }
            },
        );
    }

    /// Ends every connection (the server is stopping) and refuses new ones.
    pub fn close(&self) {
        self.closing.send_replace(true);
        self.each_link(|_| true, |link| link.close(SHUTDOWN));
    }

    /// How many connections are open here.
    pub fn connections(&self) -> usize {
        lock(&self.registry).links.len()
    }

    fn disconnect(&self, link: &Link, subscriptions: &HashSet<String>) {
        {
            let mut channels = lock(&self.channels);
            for name in subscriptions {
                if let Some(state) = channels.get_mut(name) {
                    state.subscribers.remove(&link.id);
                }
            }
        }
        let mut registry = lock(&self.registry);
        registry.links.remove(&link.id);
        if let Some(ids) = registry.by_session.get_mut(&link.owner.session_id) {
            ids.remove(&link.id);
            if ids.is_empty() {
                registry.by_session.remove(&link.owner.session_id);
            }
        }
        metrics::subscriptions_changed(-(subscriptions.len() as f64));
        metrics::connection_closed(link.transport);
    }
}

/// Drops events beyond the count and older than `cutoff` (Unix ms), raising the floor.
fn trim(state: &mut ChannelState, max_events: usize, cutoff: i64) {
    while let Some(front) = state.history.front() {
        if state.history.len() <= max_events && front.envelope.time >= cutoff {
            break;
        }
        state.floor = state.floor.max(front.id());
        state.history.pop_front();
    }
}

fn replay(state: Option<&ChannelState>, floor: i64, since: i64, cutoff: i64) -> Replay {
    let missed = state.map_or_else(Vec::new, |s| {
        s.history
            .iter()
            .filter(|e| e.id() > since && e.envelope.time >= cutoff)
            .cloned()
            .collect()
    });
    // Events older than the cutoff still held (not trimmed yet) count as lost too.
    let aged = state.map_or(floor, |s| {
        s.history
            .iter()
            .filter(|e| e.envelope.time < cutoff)
            .map(|e| e.id())
            .max()
            .unwrap_or(floor)
            .max(floor)
    });
    Replay {
        recovered: floor >= 0 && since >= aged,
        missed,
    }
}

/// One open connection: its queue of events to send and its subscriptions. Dropping it
/// leaves every channel.
pub struct Connection {
    hub: Arc<Hub>,
    link: Arc<Link>,
    queue: mpsc::Sender<Arc<Event>>,
    /// Events to send, in order.
    pub events: mpsc::Receiver<Arc<Event>>,
    closed: watch::Receiver<Option<Close>>,
    subscriptions: HashSet<String>,
}

impl Connection {
    /// What the hub knows of this connection.
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Whether `channel` is subscribed.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.subscriptions.contains(channel)
    }

    /// The channels subscribed, in no order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.subscriptions.iter().map(String::as_str)
    }

    /// Subscribes to `channel` (already permitted). With `since`, also returns what the
    /// channel's history holds after that id; the live events that follow come through
    /// [`Connection::events`], none before and none twice.
    pub fn subscribe(
        &mut self,
        channel: &ChannelName,
        since: Option<i64>,
    ) -> Result<Replay, SubscribeError> {
        if self.closing().is_some() {
            return Err(SubscribeError::Closing);
        }
        let name = channel.as_str();
        if !self.subscriptions.contains(name)
            && self.subscriptions.len() >= self.hub.limits.subscriptions
        {
            return Err(SubscribeError::TooMany(self.hub.limits.subscriptions));
        }
        let mut channels = lock(&self.hub.channels);
        let floor = self.hub.floor.load(Ordering::Relaxed);
        let state = channels
            .entry(name.to_owned())
            .or_insert_with(|| ChannelState {
                floor,
                ..ChannelState::default()
            });
        let replay = match since {
            Some(since) => replay(
                Some(state),
                state.floor.max(floor),
                since,
                self.hub.cutoff(),
            ),
            None => Replay {
                recovered: true,
                missed: Vec::new(),
            },
        };
        let new = state
            .subscribers
            .insert(
                self.link.id,
                Subscriber {
                    queue: self.queue.clone(),
                    link: Arc::clone(&self.link),
                },
            )
            .is_none();
        drop(channels);
        if new {
            self.subscriptions.insert(name.to_owned());
            metrics::subscriptions_changed(1.0);
        }
        Ok(replay)
    }

    /// Leaves `channel`; `false` when it was not subscribed.
    pub fn unsubscribe(&mut self, channel: &str) -> bool {
        if !self.subscriptions.remove(channel) {
            return false;
        }
        if let Some(state) = lock(&self.hub.channels).get_mut(channel) {
            state.subscribers.remove(&self.link.id);
        }
        metrics::subscriptions_changed(-1.0);
        true
    }

    /// Why the hub wants this connection ended, if it does.
    pub fn closing(&self) -> Option<Close> {
        *self.closed.borrow()
    }

    /// What to wait on for the hub's request to end this connection.
    pub fn close_signal(&self) -> CloseSignal {
        CloseSignal(self.closed.clone())
    }
}

/// The hub's request to end one connection, to wait on beside other work.
pub struct CloseSignal(watch::Receiver<Option<Close>>);

impl CloseSignal {
    /// Resolves with the reason once the hub wants the connection ended.
    pub async fn wait(&mut self) -> Close {
        loop {
            if let Some(close) = *self.0.borrow_and_update() {
                return close;
            }
            if self.0.changed().await.is_err() {
                return SHUTDOWN;
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(close) = self.closing() {
            metrics::closed_with(close.code);
        }
        self.hub.disconnect(&self.link, &self.subscriptions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::event::Envelope;

    fn hub(queue: u32, history: u32) -> Arc<Hub> {
        let config = RealtimeConfig {
            queue_capacity: queue,
            history_max_events: history,
            ..RealtimeConfig::default()
        };
        Hub::new(&config, 10)
    }

    fn event(id: i64, channel: &str) -> Arc<Event> {
        Event::new(Envelope {
            id,
            channel: channel.into(),
            kind: "t".into(),
            data: serde_json::Value::Null,
            time: unix_now_ms(),
        })
    }

    fn owner(session: &str) -> Owner {
        Owner {
            session_id: session.into(),
            user_id: "u".into(),
            tenant_id: "t".into(),
            session_expires_at: i64::MAX,
        }
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).expect("channel")
    }

    #[test]
    fn a_full_queue_closes_only_its_connection() {
        let hub = hub(2, 100);
        let mut slow = hub.connect(owner("s1"), Transport::WebSocket);
        let mut fast = hub.connect(owner("s2"), Transport::WebSocket);
        slow.subscribe(&channel("flags"), None).expect("subscribed");
        fast.subscribe(&channel("flags"), None).expect("subscribed");
        for id in 11..=14 {
            hub.deliver(event(id, "flags"));
            while fast.events.try_recv().is_ok() {}
        }
        assert_eq!(slow.closing(), Some(SLOW_CONSUMER));
        assert_eq!(fast.closing(), None);
    }

    #[test]
    fn resuming_replays_what_the_history_holds_or_says_it_cannot() {
        let hub = hub(16, 3);
        for id in 11..=15 {
            hub.deliver(event(id, "flags"));
        }
        let mut conn = hub.connect(owner("s"), Transport::Sse);
        let replay = conn.subscribe(&channel("flags"), Some(12)).expect("ok");
        assert!(replay.recovered);
        let ids: Vec<i64> = replay.missed.iter().map(|e| e.id()).collect();
        assert_eq!(ids, [13, 14, 15]);
        let replay = hub.history("flags", 11);
        assert!(!replay.recovered, "event 12 was dropped from the ring");
        assert!(
            !hub.history("user:x", 5).recovered,
            "before this instance started"
        );
        assert!(hub.history("user:x", 10).recovered);
    }

    #[test]
    fn closing_a_session_closes_its_connections_only() {
        let hub = hub(8, 8);
        let a = hub.connect(owner("s1"), Transport::WebSocket);
        let b = hub.connect(owner("s2"), Transport::Sse);
        hub.close_session("s1", SESSION_ENDED);
        assert_eq!(a.closing(), Some(SESSION_ENDED));
        assert_eq!(b.closing(), None);
        drop(a);
        assert_eq!(hub.connections(), 1);
    }
}
