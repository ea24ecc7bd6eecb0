//! `tessera-bench realtime`: the real-time hub under load, on one `tessera serve` (SQLite).
//!
//! 1. **Idle connections**: N authenticated WebSockets held open (the client side spread over
//!    127.0.0.1–127.0.0.k source addresses, 20,000 each, so the ephemeral ports of one address
//!    are never the limit; the file limit raised to its hard maximum first); reports the
//!    server's RSS per connection.
//! 2. **Fan-out**: one event published (`POST /api/v1/realtime/publish`) to M subscribers of
//!    one channel, several times; reports the delivery latency p50/p99 over every delivery,
//!    and the p50/p99 of the time until the last subscriber had it.
//! 3. **Revoke → close**: a session with an open socket logged out, R times; reports the time
//!    from the logout request to the 4401 close frame, p50/p99.
//!
//! A benchmark, never a test: slow numbers do not fail it; a missing delivery, a wrong close
//! code or a refused connection does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::server::{ADMIN_EMAIL, ADMIN_PASSWORD, Database, Tessera};

/// Client sockets per source address.
const PER_SOURCE: usize = 20_000;

/// Handshakes in flight at once.
const OPENING: usize = 256;

/// Longest wait for any one expected message.
const WAIT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Small numbers (200 idle, 50 subscribers, 3 events, 5 revokes): checks answers, for CI.
    #[arg(long)]
    smoke: bool,
    /// Idle WebSocket connections held open at once.
    #[arg(long, default_value_t = 100_000)]
    connections: usize,
    /// Subscribers of the fan-out channel (taken from the idle connections).
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Events published to them, one at a time.
    #[arg(long, default_value_t = 20)]
    events: usize,
    /// Sessions revoked while a socket is open.
    #[arg(long, default_value_t = 200)]
    revokes: usize,
    /// Where `realtime.md` and `realtime.json` go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

type Ws = WebSocketStream<TcpStream>;

/// Raises this process's open-file limit to its hard maximum (the server, a child, inherits
/// it); returns the limit now in force.
fn raise_fd_limit(wanted: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let target = wanted.max(current.current.unwrap_or(0));
    // Root may raise the hard limit too; anyone may raise the soft one up to it.
    for limit in [target, current.maximum.unwrap_or(target)] {
        let raised = Rlimit {
            current: Some(limit),
            maximum: Some(limit.max(current.maximum.unwrap_or(0))),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            break;
        }
        let soft = Rlimit {
            current: Some(limit.min(current.maximum.unwrap_or(limit))),
            maximum: current.maximum,
        };
        if setrlimit(Resource::Nofile, soft).is_ok() {
            break;
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(0)
}

/// Runs the three parts and writes the report.
pub async fn run(binary: PathBuf, args: Args) -> anyhow::Result<()> {
    let mut args = args;
    if args.smoke {
        args.connections = 200;
        args.subscribers = 50;
        args.events = 3;
        args.revokes = 5;
    }
    ensure!(
        args.subscribers <= args.connections,
        "--subscribers cannot exceed --connections"
    );
    // Each side (this process and the server, which inherits the limit) holds one file per
    // connection, plus a few hundred of its own.
    let limit = raise_fd_limit(u64::try_from(args.connections + 1_024)?);
    ensure!(
        u64::try_from(args.connections + 256)? <= limit,
        "the open-file limit is {limit}; {} connections need about {} in each process. \
         Raise the hard limit (`ulimit -Hn`, as root) or ask for fewer connections.",
        args.connections,
        args.connections + 256
    );
    let tessera = Tessera::prepare(&binary, &Database::Sqlite).await?;
    let mut server = tessera.serve().await?;
    eprintln!("tessera (SQLite) on {}", server.addr);
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let admin = login(&http, &base).await?;
    let me: Value = http
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await?;
    let tenant = me["tenant"]["id"]
        .as_str()
        .or_else(|| me["tenant_id"].as_str())
        .context("tenant of the admin")?
        .to_owned();
    let channel = format!("tenant:{tenant}:bench");

    // 1. Idle connections.
    let before = server.rss_kib().unwrap_or(0);
    let opened = Instant::now();
    let mut sockets = open_many(server.addr, &admin, args.connections).await?;
    let open_secs = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kib().unwrap_or(0);
    let per_connection_kib = after.saturating_sub(before) as f64 / args.connections as f64;
    eprintln!(
        "{} idle connections open in {open_secs:.1} s; server RSS {:.1} → {:.1} MiB, {per_connection_kib:.2} KiB each",
        args.connections,
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );

    // 2. Fan-out.
    let subscribers: Vec<Ws> = sockets.drain(..args.subscribers).collect();
    let fanout = fan_out(&http, &base, &admin, &channel, subscribers, args.events).await?;
    eprintln!("{}", fanout.line());
    drop(sockets);

    // 3. Revoke → close.
    let revoke = revoke_to_close(&http, &base, server.addr, args.revokes).await?;
    eprintln!(
        "revoke → close over {} sessions: p50 {:.1} ms, p99 {:.1} ms",
        args.revokes,
        ms(revoke.value_at_quantile(0.5)),
        ms(revoke.value_at_quantile(0.99))
    );
    let rss_end = server.rss_kib().unwrap_or(0);
    ensure!(server.alive(), "tessera exited:\n{}", tessera.log_tail());
    server.stop().await;

    let report = json!({
        "smoke": args.smoke,
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "idle": {
            "connections": args.connections,
            "open_seconds": open_secs,
            "server_rss_before_mib": before as f64 / 1024.0,
            "server_rss_after_mib": after as f64 / 1024.0,
            "server_kib_per_connection": per_connection_kib,
        },
        "fan_out": fanout.json(),
        "revoke_to_close_ms": {
            "sessions": args.revokes,
            "p50": ms(revoke.value_at_quantile(0.5)),
            "p99": ms(revoke.value_at_quantile(0.99)),
            "max": ms(revoke.max()),
        },
        "server_rss_end_mib": rss_end as f64 / 1024.0,
    });
    let markdown = markdown(&report);
    println!("{markdown}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("realtime.md"), &markdown)?;
    std::fs::write(
        args.out.join("realtime.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

async fn login(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let response = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "delivery": "body"}))
        .send()
        .await?;
    ensure!(response.status() == 200, "login: {}", response.status());
    let body: Value = response.json().await?;
    Ok(body["access_token"]
        .as_str()
        .context("access token")?
        .to_owned())
}

/// The `index`-th client source address: 127.0.0.1, then .2, … every [`PER_SOURCE`] sockets.
fn source(index: usize) -> IpAddr {
    let host = u8::try_from(1 + index / PER_SOURCE).unwrap_or(u8::MAX);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))
}

/// One authenticated WebSocket from `from`, optionally subscribed by the handshake.
async fn open_one(
    server: SocketAddr,
    from: IpAddr,
    token: &str,
    query: &str,
) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{server}/api/v1/realtime/ws{query}").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    // Small buffers on this side too: 100,000 sockets at the default 128 KiB each would not fit.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

/// Opens `count` authenticated connections, [`OPENING`] handshakes at a time.
async fn open_many(server: SocketAddr, token: &str, count: usize) -> anyhow::Result<Vec<Ws>> {
    let gate = Arc::new(Semaphore::new(OPENING));
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        let gate = Arc::clone(&gate);
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            open_one(server, source(index), &token, "").await
        }));
    }
    let mut sockets = Vec::with_capacity(count);
    for task in tasks {
        sockets.push(task.await??);
    }
    Ok(sockets)
}

/// Fan-out figures.
struct FanOut {
    subscribers: usize,
    events: usize,
    /// Publish to each delivery, microseconds.
    delivery: Histogram<u64>,
    /// Publish to the last delivery of each event, microseconds.
    complete: Histogram<u64>,
}

impl FanOut {
    fn line(&self) -> String {
        format!(
            "fan-out of {} events to {} subscribers: delivery p50 {:.1} ms, p99 {:.1} ms; \
             all delivered p50 {:.1} ms, p99 {:.1} ms",
            self.events,
            self.subscribers,
            ms(self.delivery.value_at_quantile(0.5)),
            ms(self.delivery.value_at_quantile(0.99)),
            ms(self.complete.value_at_quantile(0.5)),
            ms(self.complete.value_at_quantile(0.99)),
        )
    }

    fn json(&self) -> Value {
        json!({
            "subscribers": self.subscribers,
            "events": self.events,
            "delivery_p50_ms": ms(self.delivery.value_at_quantile(0.5)),
            "delivery_p99_ms": ms(self.delivery.value_at_quantile(0.99)),
            "all_delivered_p50_ms": ms(self.complete.value_at_quantile(0.5)),
            "all_delivered_p99_ms": ms(self.complete.value_at_quantile(0.99)),
        })
    }
}

/// Reads until `ws` carries a message of `kind`; its JSON.
async fn expect(ws: &mut Ws, kind: &str) -> anyhow::Result<Value> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("no message in time")?;
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text)?;
                if value["type"] == kind {
                    return Ok(value);
                }
            }
            Some(Ok(_)) => {}
            other => bail!("the socket ended: {other:?}"),
        }
    }
}

async fn fan_out(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    channel: &str,
    subscribers: Vec<Ws>,
    events: usize,
) -> anyhow::Result<FanOut> {
    let count = subscribers.len();
    let deliveries: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let mut readers = Vec::with_capacity(count);
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel::<()>(count.max(1));
    for mut ws in subscribers {
        let deliveries = Arc::clone(&deliveries);
        let ready_tx = ready_tx.clone();
        let channel = channel.to_owned();
        readers.push(tokio::spawn(async move {
            let subscribe = json!({"type": "subscribe", "channel": channel}).to_string();
            ws.send(Message::Text(subscribe.into())).await?;
            expect(&mut ws, "subscribed").await?;
            ready_tx.send(()).await.ok();
            for _ in 0..events {
                let event = expect(&mut ws, "event").await?;
                let n = event["event"]["data"]["n"].as_u64().context("n")?;
                deliveries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((n, Instant::now()));
            }
            anyhow::Ok(ws)
        }));
    }
    drop(ready_tx);
    for _ in 0..count {
        ready
            .recv()
            .await
            .context("a subscriber failed to subscribe")?;
    }
    let mut published = Vec::with_capacity(events);
    for n in 0..events {
        let started = Instant::now();
        let response = http
            .post(format!("{base}/api/v1/realtime/publish"))
            .bearer_auth(token)
            .json(&json!({"channel": channel, "type": "bench.tick", "data": {"n": n}}))
            .send()
            .await?;
        ensure!(response.status() == 201, "publish: {}", response.status());
        published.push(started);
        // One event at a time: wait until every subscriber has it.
        let deadline = Instant::now() + WAIT;
        loop {
            let done = deliveries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(m, _)| *m == n as u64)
                .count();
            if done == count {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "event {n}: {done} of {count} delivered"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for reader in readers {
        reader.await??;
    }
    let mut delivery = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut complete = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let deliveries = deliveries.lock().unwrap_or_else(|p| p.into_inner());
    for (n, start) in published.iter().enumerate() {
        let mut last = 0;
        for (_, at) in deliveries.iter().filter(|(m, _)| *m == n as u64) {
            let us = u64::try_from(at.duration_since(*start).as_micros())?.max(1);
            delivery.saturating_record(us);
            last = last.max(us);
        }
        complete.saturating_record(last);
    }
    Ok(FanOut {
        subscribers: count,
        events,
        delivery,
        complete,
    })
}

async fn revoke_to_close(
    http: &reqwest::Client,
    base: &str,
    server: SocketAddr,
    sessions: usize,
) -> anyhow::Result<Histogram<u64>> {
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for _ in 0..sessions {
        let token = login(http, base).await?;
        let mut ws = open_one(server, source(0), &token, "?channel=flags").await?;
        expect(&mut ws, "subscribed").await?;
        let started = Instant::now();
        let response = http
            .post(format!("{base}/api/v1/auth/logout"))
            .bearer_auth(&token)
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "logout: {}",
            response.status()
        );
        let code = loop {
            let message = tokio::time::timeout(WAIT, ws.next())
                .await
                .context("the socket was not closed in time")?;
            match message {
                Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
                Some(Ok(_)) => {}
                other => bail!("the socket ended without a close frame: {other:?}"),
            }
        };
        ensure!(code == 4401, "closed with {code}, expected 4401");
        latencies.saturating_record(u64::try_from(started.elapsed().as_micros())?.max(1));
    }
    Ok(latencies)
}

fn markdown(report: &Value) -> String {
    let idle = &report["idle"];
    let fan = &report["fan_out"];
    let revoke = &report["revoke_to_close_ms"];
    format!(
        "## Real-time hub ({cores} cores{smoke})\n\n\
         | measure | value |\n|---|---|\n\
         | idle WebSocket connections | {conns} (opened in {open:.1} s) |\n\
         | server RSS before → after | {before:.1} → {after:.1} MiB |\n\
         | server RSS per idle connection | {per:.2} KiB |\n\
         | fan-out: one event to {subs} subscribers ({events} events), delivery p50 / p99 | {d50:.1} / {d99:.1} ms |\n\
         | fan-out: until the last subscriber has it, p50 / p99 | {c50:.1} / {c99:.1} ms |\n\
         | revoke → 4401 close ({sessions} sessions), p50 / p99 | {r50:.1} / {r99:.1} ms |\n",
        cores = report["cores"],
        smoke = if report["smoke"] == true {
            ", smoke: figures not judged"
        } else {
            ""
        },
        conns = idle["connections"],
        open = idle["open_seconds"].as_f64().unwrap_or(0.0),
        before = idle["server_rss_before_mib"].as_f64().unwrap_or(0.0),
        after = idle["server_rss_after_mib"].as_f64().unwrap_or(0.0),
        per = idle["server_kib_per_connection"].as_f64().unwrap_or(0.0),
        subs = fan["subscribers"],
        events = fan["events"],
        d50 = fan["delivery_p50_ms"].as_f64().unwrap_or(0.0),
        d99 = fan["delivery_p99_ms"].as_f64().unwrap_or(0.0),
        c50 = fan["all_delivered_p50_ms"].as_f64().unwrap_or(0.0),
        c99 = fan["all_delivered_p99_ms"].as_f64().unwrap_or(0.0),
        sessions = revoke["sessions"],
        r50 = revoke["p50"].as_f64().unwrap_or(0.0),
        r99 = revoke["p99"].as_f64().unwrap_or(0.0),
    )
}
