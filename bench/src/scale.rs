//! The scale phase: what the admin and audit reads cost once a tenant is large. It imports N
//! accounts through `tessera users import` (the operator's real path, which also writes one
//! `user.created` audit event per account) into a fresh Tessera, waits until the audit chain
//! has sealed the import, and times each read a console leans on with a sequential client:
//! p50 and p99 over a number of samples each. Slow reads do not fail it; an answer other
//! than 200 does.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::server::{self, Database, Tessera};

/// A well-formed stored hash: imports skip hashing (the accounts never log in here).
const STORED_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2NhbGVzYWx0c2NhbGU$\
                           aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

/// Longest wait for the audit chain to seal an import.
const SEAL_TIMEOUT: Duration = Duration::from_secs(1_800);

/// One timed read.
#[derive(Debug, Clone, Serialize)]
pub struct Read {
    /// What was read.
    pub name: String,
    /// The path and query sent.
    pub path: String,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Answers other than 200.
    pub errors: usize,
    /// The list's `total` in the last answer.
    pub total: Option<i64>,
    /// Whether that total was an estimate (a lower bound).
    pub estimate: bool,
    /// Items in the last answer.
    pub items: usize,
}

/// The scale phase on one database.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    /// Accounts imported.
    pub users: usize,
    /// Samples per read.
    pub samples: usize,
    /// How long the import took, seconds.
    pub import_s: f64,
    /// How long the audit chain then took to seal it, seconds.
    pub seal_s: f64,
    /// Tessera's resident memory once the import was sealed, MiB.
    pub rss_mib: Option<f64>,
    /// The reads, in order.
    pub reads: Vec<Read>,
}

impl Scale {
    /// Whether every read answered 200 every time.
    pub fn clean(&self) -> bool {
        self.reads.iter().all(|r| r.errors == 0)
    }

    /// The Markdown table of the reads, under a line of context.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Scale: {} accounts imported in {:.1} s, the audit chain sealed {:.1} s later, RSS \
             {} MiB; {} sequential samples per read\n\n\
             | read | p50 ms | p99 ms | errors | total | items |\n|---|---:|---:|---:|---:|---:|\n",
            self.users,
            self.import_s,
            self.seal_s,
            self.rss_mib.map_or("-".to_owned(), |m| format!("{m:.1}")),
            self.samples,
        );
        for read in &self.reads {
            let total = match read.total {
                Some(n) if read.estimate => format!("≥{n}"),
                Some(n) => n.to_string(),
                None => "-".into(),
            };
            out.push_str(&format!(
                "| {} | {:.2} | {:.2} | {} | {} | {} |\n",
                read.name, read.p50_ms, read.p99_ms, read.errors, total, read.items
            ));
        }
        out
    }
}

/// Runs the scale phase: a fresh Tessera on `database` (fresh too), `users` accounts imported, each read
/// timed `samples` times.
pub async fn run(
    binary: &std::path::Path,
    database: &Database,
    users: usize,
    samples: usize,
) -> anyhow::Result<Scale> {
    let tessera = Tessera::prepare(binary, database).await?;
    let mut server = tessera.serve().await?;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()?;

    let import_s = import(&tessera, users).await?;
    let token = admin_token(&client, &base).await?;
    let seal_s = wait_for_seal(&client, &base, &token).await?;
    database
        .analyze(&["users", "user_roles", "audit_events"])
        .await?;
    let rss_mib = server.rss_kib().map(|k| k as f64 / 1024.0);
    let reads = measure(&client, &base, &token, users, samples).await;
    let alive = server.alive();
    server.stop().await;
    let reads = reads.with_context(|| {
        format!(
            "the scale reads failed{}; server log:\n{}",
            if alive { "" } else { " (tessera exited)" },
            tessera.log_tail()
        )
    })?;
    Ok(Scale {
        users,
        samples,
        import_s,
        seal_s,
        rss_mib,
        reads,
    })
}

/// Imports `users` accounts (emails `userNNNNNN@example.com`, first names `FirstN`) with the
/// CLI; returns how long it took, seconds.
async fn import(tessera: &Tessera, users: usize) -> anyhow::Result<f64> {
    let file = tessera.path("users.jsonl");
    let mut lines = String::with_capacity(users * 200);
    for i in 0..users {
        lines.push_str(
            &json!({
                "email": format!("user{i:06}@example.com"),
                "username": format!("user{i:06}"),
                "first_name": format!("First{i}"),
                "last_name": format!("Last{i}"),
                "password_hash": STORED_HASH,
            })
            .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(&file, lines)?;
    let started = Instant::now();
    let output = tessera
        .command()
        .args(["users", "import"])
        .arg(&file)
        .output()
        .await
        .context("run tessera users import")?;
    if !output.status.success() {
        bail!(
            "tessera users import failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn admin_token(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({
            "login": server::ADMIN_EMAIL,
            "password": server::ADMIN_PASSWORD,
            "delivery": "body",
        }))
        .send()
        .await?
        .json()
        .await?;
    Ok(login["access_token"]
        .as_str()
        .context("the admin could not log in")?
        .to_owned())
}

/// Waits until the newest audit event has its place in the chain (the sealer numbers events
/// oldest first: once the newest has one, all have); returns how long that took, seconds.
async fn wait_for_seal(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        let (_, newest) = get(client, base, token, "/api/v1/audit?page_size=1").await?;
        if newest["items"][0]["seq"].is_i64() {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > SEAL_TIMEOUT {
            bail!("the audit chain did not seal the import within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The reads a console leans on: the first and a deep page of the account list and the audit
/// log, searches with one match, many and a one-character query, and the pages after a deep
/// cursor where the server gives one.
async fn reads(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    users: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let deep = (users / 25).max(1);
    let last = format!("user{:06}", users.saturating_sub(1));
    let mut reads: Vec<(String, String)> = vec![
        ("users page 1".into(), "/api/v1/admin/users".into()),
        (
            format!("users page {deep}"),
            format!("/api/v1/admin/users?page={deep}"),
        ),
        (
            format!("users ?q={last}"),
            format!("/api/v1/admin/users?q={last}"),
        ),
        (
            "users ?q=First5".into(),
            "/api/v1/admin/users?q=First5".into(),
        ),
        (
            "users ?q=5 (short)".into(),
            "/api/v1/admin/users?q=5".into(),
        ),
        ("audit page 1".into(), "/api/v1/audit".into()),
        (
            format!("audit page {deep}"),
            format!("/api/v1/audit?page={deep}"),
        ),
    ];
    for (name, path) in [
        (
            "users after deep cursor",
            format!("/api/v1/admin/users?page={deep}"),
        ),
        (
            "audit after deep cursor",
            format!("/api/v1/audit?page={deep}"),
        ),
        (
            "users ?q=First5 after cursor",
            "/api/v1/admin/users?q=First5".to_owned(),
        ),
    ] {
        let (_, body) = get(client, base, token, &path).await?;
        let Some(cursor) = body["next_cursor"].as_str() else {
            continue;
        };
        let query = match path.split_once('?') {
            Some((route, query)) if query.contains("q=") => {
                format!("{route}?{query}&after={cursor}")
            }
            Some((route, _)) => format!("{route}?after={cursor}"),
            None => format!("{path}?after={cursor}"),
        };
        reads.push((name.to_owned(), query));
    }
    Ok(reads)
}

async fn measure(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    users: usize,
    samples: usize,
) -> anyhow::Result<Vec<Read>> {
    let samples = samples.max(1);
    let mut measured = Vec::new();
    for (name, path) in reads(client, base, token, users).await? {
        for _ in 0..3 {
            get(client, base, token, &path).await?;
        }
        let mut times = Vec::with_capacity(samples);
        let mut errors = 0;
        let mut last_body = Value::Null;
        for _ in 0..samples {
            let started = Instant::now();
            let (status, body) = get(client, base, token, &path).await?;
            times.push(started.elapsed().as_secs_f64() * 1_000.0);
            if status != 200 {
                errors += 1;
            }
            last_body = body;
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        measured.push(Read {
            name,
            path,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            errors,
            total: last_body["total"].as_i64(),
            estimate: last_body["total_is_estimate"].as_bool().unwrap_or(false),
            items: last_body["items"].as_array().map_or(0, Vec::len),
        });
    }
    Ok(measured)
}

async fn get(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
) -> anyhow::Result<(u16, Value)> {
    let response = client
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}
