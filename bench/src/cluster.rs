//! The scale-out benchmark: two `tessera serve` processes on one PostgreSQL schema (one
//! deployment, as behind a load balancer). It reports:
//!
//! - **cross-instance revoke → refused**: a session revoked on instance A (logout), then
//!   `/me` with its token on instance B in a tight loop until B refuses it; the time from A's
//!   answer to B's first refusal, over many sessions (p50, p99, max). This is the change bus's
//!   latency as a client sees it.
//! - **1 vs 2 instances**: aggregate `/me`, refresh and introspection throughput with all
//!   connections on one instance, then split over two. Both processes share this machine's
//!   cores, so the figure to read is the efficiency (two instances' aggregate ÷ one's), not
//!   scaling.
//!
//! A benchmark, never a test: slow numbers do not fail it; a wrong answer does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::load::{self, Call};
use crate::phases::RefreshChain;
use crate::server::{ADMIN_EMAIL, ADMIN_PASSWORD, Database, Process, Tessera};

/// Options of `tessera-bench cluster`.
#[derive(clap::Args)]
pub struct Args {
    /// The PostgreSQL database (a fresh schema is made and dropped).
    #[arg(long, value_name = "URL")]
    postgres: String,
    /// Sessions revoked for the latency figure.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Seconds each throughput phase runs.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Connections per throughput phase (split evenly over the instances).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// A few samples, 1 s phases, 8 connections: checks the answers, for CI.
    #[arg(long)]
    smoke: bool,
    /// Where `cluster.md` and `cluster.json` go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// Revoke → refused latency, milliseconds.
#[derive(Serialize)]
struct Latency {
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// One throughput phase at 1 and 2 instances.
#[derive(Serialize)]
struct Scaling {
    phase: &'static str,
    one_per_sec: f64,
    two_per_sec: f64,
    /// `two_per_sec / one_per_sec`.
    efficiency: f64,
}

#[derive(Serialize)]
struct Results {
    connections: usize,
    duration_secs: u64,
    revoke_to_refused: Latency,
    scaling: Vec<Scaling>,
}

/// Runs the cluster benchmark with `binary`.
pub async fn run(binary: PathBuf, mut args: Args) -> anyhow::Result<()> {
    if args.smoke {
        args.samples = args.samples.min(10);
        args.duration = 1;
        args.connections = 8;
    }
    let database = Database::postgres(&args.postgres).await?;
    let outcome = run_on(&binary, &database, &args).await;
    database.remove().await?;
    let results = outcome?;
    std::fs::create_dir_all(&args.out)?;
    let markdown = markdown(&results);
    std::fs::write(args.out.join("cluster.md"), &markdown)?;
    std::fs::write(
        args.out.join("cluster.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!("{markdown}");
    Ok(())
}

async fn run_on(
    binary: &std::path::Path,
    database: &Database,
    args: &Args,
) -> anyhow::Result<Results> {
    let tessera = Tessera::prepare(binary, database).await?;
    // The first migrates and creates the admin and the master key; the second finds them.
    let first = tessera.serve().await?;
    let second = tessera.serve().await?;
    let outcome = measure(&first, &second, args).await;
    first.stop().await;
    second.stop().await;
    outcome.with_context(|| tessera.log_tail())
}

async fn measure(a: &Process, b: &Process, args: &Args) -> anyhow::Result<Results> {
    let http = reqwest::Client::new();
    let revoke_to_refused = revoke_to_refused(&http, a.addr, b.addr, args.samples).await?;
    eprintln!(
        "revoke → refused across instances: p50 {:.2} ms, p99 {:.2} ms",
        revoke_to_refused.p50_ms, revoke_to_refused.p99_ms
    );
    let duration = Duration::from_secs(args.duration);
    let mut scaling = Vec::new();

    let token = login(&http, a.addr).await?["access_token"]
        .as_str()
        .context("access token")?
        .to_owned();
    let me = Call::get("/api/v1/auth/me")
        .with(http::header::AUTHORIZATION, &format!("Bearer {token}"))?;
    let me_scripts = load::repeat(me);
    scaling.push(
        compare(
            "me bearer",
            [a.addr, b.addr],
            args.connections,
            duration,
            |_, _| Ok(Arc::clone(&me_scripts)),
        )
        .await?,
    );

    let (id, secret) = introspecting_client(&http, a.addr, &token).await?;
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{id}:{secret}")
        )
    );
    let body = format!("token={token}");
    let introspect =
        Call::post_form("/oauth2/introspect", &body).with(http::header::AUTHORIZATION, &basic)?;
    let introspect_scripts = load::repeat(introspect);
    scaling.push(
        compare(
            "introspection",
            [a.addr, b.addr],
            args.connections,
            duration,
            |_, _| Ok(Arc::clone(&introspect_scripts)),
        )
        .await?,
    );

    // A refresh chain per connection, each logged in before the phase.
    let mut chains = Vec::new();
    for _ in 0..2 {
        let mut tokens = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            let answer = login(&http, a.addr).await?;
            tokens.push(
                answer["refresh_token"]
                    .as_str()
                    .context("refresh token")?
                    .to_owned(),
            );
        }
        chains.push(Arc::new(tokens));
    }
    scaling.push(
        compare(
            "refresh",
            [a.addr, b.addr],
            args.connections,
            duration,
            |run, offset| {
                let tokens = Arc::clone(&chains[run]);
                Ok(Arc::new(move |n: usize| {
                    Box::new(RefreshChain {
                        token: tokens.get(n + offset).cloned(),
                    }) as Box<dyn load::Script>
                }))
            },
        )
        .await?,
    );
    Ok(Results {
        connections: args.connections,
        duration_secs: args.duration,
        revoke_to_refused,
        scaling,
    })
}

/// The throughput of `phase` with every connection on the first instance, then with the
/// connections split over both. `scripts(run, offset)` makes the scripts of run 0 (alone) or
/// 1 (split) for connections numbered from `offset` (chains of one-use tokens must not be
/// shared between runs or instances).
async fn compare(
    phase: &'static str,
    instances: [SocketAddr; 2],
    connections: usize,
    duration: Duration,
    scripts: impl Fn(usize, usize) -> anyhow::Result<load::Scripts>,
) -> anyhow::Result<Scaling> {
    let alone = load::run(instances[0], connections, duration, &scripts(0, 0)?).await;
    check(phase, &alone)?;
    let half = connections.div_ceil(2);
    let (left, right) = (scripts(1, 0)?, scripts(1, half)?);
    let (one, two) = tokio::join!(
        load::run(instances[0], half, duration, &left),
        load::run(instances[1], connections - half, duration, &right),
    );
    check(phase, &one)?;
    check(phase, &two)?;
    let one_per_sec = alone.ok_per_sec();
    let two_per_sec = one.ok_per_sec() + two.ok_per_sec();
    eprintln!("{phase}: 1 instance {one_per_sec:.0}/s, 2 instances {two_per_sec:.0}/s");
    Ok(Scaling {
        phase,
        one_per_sec,
        two_per_sec,
        efficiency: if one_per_sec > 0.0 {
            two_per_sec / one_per_sec
        } else {
            0.0
        },
    })
}

fn check(phase: &str, outcome: &load::Outcome) -> anyhow::Result<()> {
    let unexpected = outcome.unexpected(&[200]);
    if !unexpected.is_empty() || outcome.errors > 0 {
        bail!(
            "{phase}: unexpected answers {unexpected:?}, {} errors",
            outcome.errors
        );
    }
    Ok(())
}

async fn login(http: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<Value> {
    let response = http
        .post(format!("http://{addr}/api/v1/auth/login"))
        .json(&json!({"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "delivery": "body"}))
        .send()
        .await?;
    if response.status() != 200 {
        bail!("login answered {}", response.status());
    }
    Ok(response.json().await?)
}

async fn introspecting_client(
    http: &reqwest::Client,
    addr: SocketAddr,
    admin: &str,
) -> anyhow::Result<(String, String)> {
    let created: Value = http
        .post(format!("http://{addr}/api/v1/admin/clients"))
        .bearer_auth(admin)
        .json(&json!({"name": "bench-gate", "scopes": ["tokens:introspect"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok((
        created["id"].as_str().context("client id")?.to_owned(),
        created["client_secret"]
            .as_str()
            .context("client secret")?
            .to_owned(),
    ))
}

/// Logs in on `a`, checks `/me` on `b` (so B has the session cached as live), logs out on
/// `a`, then asks `b` until it refuses: the time from A's answer to B's refusal.
async fn revoke_to_refused(
    http: &reqwest::Client,
    a: SocketAddr,
    b: SocketAddr,
    samples: usize,
) -> anyhow::Result<Latency> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let answer = login(http, a).await?;
        let token = answer["access_token"].as_str().context("access token")?;
        let me = format!("http://{b}/api/v1/auth/me");
        let cached = http.get(&me).bearer_auth(token).send().await?.status();
        if cached != 200 {
            bail!("/me on the second instance answered {cached} before the revocation");
        }
        let logout = http
            .post(format!("http://{a}/api/v1/auth/logout"))
            .bearer_auth(token)
            .send()
            .await?
            .status();
        if logout != 204 {
            bail!("logout answered {logout}");
        }
        let revoked = Instant::now();
        loop {
            let status = http.get(&me).bearer_auth(token).send().await?.status();
            if status == 401 {
                break;
            }
            if status != 200 {
                bail!("/me answered {status} while the revocation travelled");
            }
            if revoked.elapsed() > Duration::from_secs(30) {
                bail!("the second instance never refused the revoked session");
            }
        }
        latencies.push(revoked.elapsed().as_secs_f64() * 1_000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index]
    };
    Ok(Latency {
        samples,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
    })
}

fn markdown(results: &Results) -> String {
    let r = &results.revoke_to_refused;
    let mut out = format!(
        "## Two instances on one PostgreSQL database\n\n\
         Cross-instance revoke → refused (logout answered on A → first 401 from `/me` on B), \
         {} sessions: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms.\n\n\
         Throughput, {} connections, {} s per phase, both instances on this machine's cores \
         (efficiency = two instances' aggregate ÷ one instance's):\n\n\
         | phase | 1 instance req/s | 2 instances req/s | efficiency |\n|---|---:|---:|---:|\n",
        r.samples, r.p50_ms, r.p99_ms, r.max_ms, results.connections, results.duration_secs
    );
    for s in &results.scaling {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2} |\n",
            s.phase, s.one_per_sec, s.two_per_sec, s.efficiency
        ));
    }
    out
}
