//! The bus's transports: PostgreSQL `LISTEN`, Redis `SUBSCRIBE`/`PUBLISH`, or a channel
//! shared in-process. Each listener reconnects by itself (backing off to a few seconds) and
//! reports the connection to [`Bus::set_connected`], which makes every follower read again.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{broadcast, mpsc};

use super::{Bus, CHANNEL, Signal};
use crate::config::{BusKind, Config};
use crate::jobs::Jobs;

/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a bus reaches the other instances.
pub enum Transport {
    /// Instances of this process sharing the database `key` share one channel (SQLite).
    InProcess {
        /// The database the channel belongs to.
        key: String,
    },
    /// PostgreSQL `LISTEN/NOTIFY` on the database itself.
    Postgres {
        /// Where to listen (a secret: the URL may hold a password).
        url: String,
    },
    /// Redis pub/sub.
    Redis {
        /// The server (a secret: the URL may hold a password).
        url: String,
        /// `redis.key_prefix` + the bus channel.
        channel: String,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Transport {
    /// The transport `cluster.bus` chooses for this database.
    pub fn choose(config: &Config) -> anyhow::Result<Self> {
        let database = config.database.url.expose().to_string();
        let postgres = config.database.url.is_postgres();
        Ok(match config.cluster.bus {
            BusKind::Redis => {
                let Some(url) = &config.redis.url else {
                    anyhow::bail!("cluster.bus = \"redis\" needs redis.url");
                };
                Self::Redis {
                    url: url.expose().to_owned(),
                    channel: format!("{}{CHANNEL}", config.redis.key_prefix),
                }
            }
            BusKind::Auto | BusKind::Database if postgres => Self::Postgres { url: database },
            BusKind::Auto | BusKind::Database => Self::InProcess { key: database },
        })
    }

    /// Its name in readiness and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InProcess { .. } => "in-process",
            Self::Postgres { .. } => "postgresql",
            Self::Redis { .. } => "redis",
        }
    }
}

/// In-process channels by database, shared by the instances of this process using it.
static LOCAL: LazyLock<Mutex<HashMap<String, Weak<broadcast::Sender<Signal>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The channel a new bus sends on: shared for in-process transports, its own otherwise.
pub(super) fn local_channel(
    transport: &Transport,
    backlog: usize,
) -> Arc<broadcast::Sender<Signal>> {
    let Transport::InProcess { key } = transport else {
        return Arc::new(broadcast::channel(backlog).0);
    };
    let mut channels = LOCAL.lock().unwrap_or_else(|p| p.into_inner());
    channels.retain(|_, sender| sender.strong_count() > 0);
    if let Some(shared) = channels.get(key).and_then(Weak::upgrade) {
        return shared;
    }
    let sender = Arc::new(broadcast::channel(backlog).0);
    channels.insert(key.clone(), Arc::downgrade(&sender));
    sender
}

/// Starts the listener (and the Redis publisher) of `bus` on `jobs`.
pub(super) fn spawn(bus: &Arc<Bus>, jobs: &Jobs, outbox: Option<mpsc::UnboundedReceiver<String>>) {
    let weak = Arc::downgrade(bus);
    match &bus.transport {
        Transport::InProcess { .. } => {}
        Transport::Postgres { url } => jobs.spawn(listen_postgres(weak, url.clone())),
        Transport::Redis { url, channel } => {
            jobs.spawn(listen_redis(weak, url.clone(), channel.clone()));
            if let Some(outbox) = outbox {
                jobs.spawn(publish_redis(url.clone(), channel.clone(), outbox));
            }
        }
    }
}

fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

async fn listen_postgres(bus: Weak<Bus>, url: String) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match connect_postgres(&url).await {
            Ok(mut listener) => {
                backoff = Duration::from_millis(100);
                warned = false;
                let Some(live) = bus.upgrade() else { return };
                live.set_connected(true);
                drop(live);
                // `Ok(None)`: the connection was lost; a new one is made below.
                while let Ok(Some(message)) = listener.try_recv().await {
                    let Some(live) = bus.upgrade() else { return };
                    if let Some(signal) = Signal::decode(message.payload()) {
                        live.deliver(signal);
                    }
                }
                let Some(live) = bus.upgrade() else { return };
                live.set_connected(false);
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "the change bus cannot listen on PostgreSQL");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}

async fn connect_postgres(url: &str) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    // A lost connection is reported (`Ok(None)`) rather than silently replaced, so the bus
    // knows to resynchronise.
    listener.eager_reconnect(false);
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut listener)
        .await?;
    listener.listen(&format!("{CHANNEL}_{schema}")).await?;
    Ok(listener)
}

async fn listen_redis(bus: Weak<Bus>, url: String, channel: String) {
    let client = match redis::Client::open(url.as_str()) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the change bus cannot use redis.url");
            return;
        }
    };
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(MAX_BACKOFF, subscribed).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                warned = false;
                let Some(live) = bus.upgrade() else { return };
                live.set_connected(true);
                drop(live);
                let mut messages = pubsub.into_on_message();
                // The stream ends when the connection does.
                while let Some(message) = messages.next().await {
                    let Some(live) = bus.upgrade() else { return };
                    let payload: Result<String, _> = message.get_payload();
                    if let Some(signal) = payload.ok().as_deref().and_then(Signal::decode) {
                        live.deliver(signal);
                    }
                }
                let Some(live) = bus.upgrade() else { return };
                live.set_connected(false);
            }
            Ok(Err(e)) if !warned => {
                tracing::warn!(error = %e, "the change bus cannot subscribe on Redis");
                warned = true;
            }
            Err(_) if !warned => {
                tracing::warn!("the change bus cannot subscribe on Redis: no answer");
                warned = true;
            }
            _ => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}

async fn publish_redis(url: String, channel: String, mut outbox: mpsc::UnboundedReceiver<String>) {
    let manager = redis::Client::open(url.as_str()).and_then(|client| {
        let settings = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        redis::aio::ConnectionManager::new_lazy_with_config(client, settings)
    });
    let mut conn = match manager {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "the change bus cannot publish on Redis");
            return;
        }
    };
    while let Some(message) = outbox.recv().await {
        let sent: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&message)
            .query_async(&mut conn)
            .await;
        // Lost: other instances read it at their reconciliation read.
        if let Err(e) = sent {
            tracing::debug!(error = %e, "publishing on the change bus failed");
        }
    }
}

/// `tessera check`: a message sent on the transport `config` chooses comes back to a
/// listener (a connection pooler in transaction mode, for one, would drop `LISTEN`).
pub async fn preflight(config: &Config) -> crate::health::Check {
    use crate::health::Check;
    let transport = match Transport::choose(config) {
        Ok(transport) => transport,
        Err(e) => return Check::failed("bus", e.to_string()),
    };
    let name = transport.name();
    let probe = format!("preflight:{}", uuid::Uuid::new_v4().simple());
    let round_trip = async {
        match &transport {
            Transport::InProcess { .. } => Ok(()),
            Transport::Postgres { url } => {
                let mut listener = connect_postgres(url).await.map_err(|e| e.to_string())?;
                let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
                    .fetch_one(&mut listener)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut sender = sqlx::postgres::PgListener::connect(url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query("SELECT pg_notify($1, $2)::text")
                    .bind(format!("{CHANNEL}_{schema}"))
                    .bind(&probe)
                    .execute(&mut sender)
                    .await
                    .map_err(|e| e.to_string())?;
                loop {
                    match listener.try_recv().await.map_err(|e| e.to_string())? {
                        Some(n) if n.payload() == probe => return Ok(()),
                        Some(_) => {}
                        None => return Err("the listening connection was lost".to_owned()),
                    }
                }
            }
            Transport::Redis { url, channel } => {
                let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
                pubsub.subscribe(channel).await.map_err(|e| e.to_string())?;
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                let _: i64 = redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(&probe)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    if message.get_payload::<String>().ok().as_deref() == Some(probe.as_str()) {
                        return Ok(());
                    }
                }
                Err("the subscription ended".to_owned())
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(3), round_trip).await {
        Ok(Ok(())) if matches!(transport, Transport::InProcess { .. }) => Check::ok(
            "bus",
            "in-process (one instance; cluster.instances > 1 needs PostgreSQL)",
        ),
        Ok(Ok(())) => Check::ok("bus", format!("{name}: a message came back")),
        Ok(Err(e)) => Check::failed("bus", format!("{name}: {e}")),
        Err(_) => Check::failed("bus", format!("{name}: no message came back within 3 s")),
    }
}
