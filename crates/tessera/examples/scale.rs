//! Scale check: what the admin and audit reads cost once a tenant is large. It seeds N
//! accounts through `tessera users import` (the operator's real path, which also writes one
//! `user.created` audit event per account), starts the release server on loopback, waits
//! until the audit chain has sealed the import, and times each read a console leans on with a
//! simple sequential client: p50 and p99 over `--samples` requests each, printed as a table.
//!
//! ```text
//! cargo build --release -p tessera --example scale
//! target/release/examples/scale --users 100000 [--database-url postgres://…/EMPTY_DB]
//! ```
//!
//! A benchmark, never a test: it exits 0 whatever the numbers are. [`measure`] only needs a
//! base URL and an admin token, so a bench suite can call it against a server it runs itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

const ADMIN_EMAIL: &str = "scale-admin@example.com";
const ADMIN_PASSWORD: &str = "scale-admin-password-1";

/// A well-formed stored hash: imports skip hashing (the accounts never log in here).
const STORED_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2NhbGVzYWx0c2NhbGU$\
                           aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

/// One timed read.
#[derive(Debug, Clone)]
pub struct Measured {
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

/// Times the admin and audit reads of a server holding at least `users` imported accounts
/// (emails `userNNNNNN@example.com`, first names `FirstN`), `samples` sequential requests
/// each after a short warm-up.
pub async fn measure(
    base: &str,
    token: &str,
    users: usize,
    samples: usize,
) -> anyhow::Result<Vec<Measured>> {
    let client = reqwest::Client::new();
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
    // The cursor after the deep page, where the server gives one.
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
        let (_, body) = get(&client, base, token, &path).await?;
        if let Some(cursor) = body["next_cursor"].as_str() {
            let glue = if path.contains("q=") { "&" } else { "?" };
            let base_path = path.split(['?', '&']).next().unwrap_or(&path).to_owned();
            let query = if path.contains("q=") {
                format!("{path}{glue}after={cursor}")
            } else {
                format!("{base_path}?after={cursor}")
            };
            reads.push((name.to_owned(), query));
        }
    }
    let mut measured = Vec::new();
    for (name, path) in reads {
        for _ in 0..3 {
            get(&client, base, token, &path).await?;
        }
        let mut times = Vec::with_capacity(samples);
        let mut errors = 0;
        let mut last_body = Value::Null;
        for _ in 0..samples {
            let started = Instant::now();
            let (status, body) = get(&client, base, token, &path).await?;
            times.push(started.elapsed().as_secs_f64() * 1_000.0);
            if status != 200 {
                errors += 1;
            }
            last_body = body;
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        measured.push(Measured {
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

/// The table [`measure`] results are printed as.
pub fn table(rows: &[Measured]) -> String {
    let mut out = String::from(
        "| read | p50 ms | p99 ms | errors | total | items |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let total = match row.total {
            Some(n) if row.estimate => format!("≥{n}"),
            Some(n) => n.to_string(),
            None => "-".into(),
        };
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {} | {} | {} |\n",
            row.name, row.p50_ms, row.p99_ms, row.errors, total, row.items
        ));
    }
    out
}

struct Args {
    users: usize,
    samples: usize,
    database_url: Option<String>,
    binary: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        users: 100_000,
        samples: 100,
        database_url: None,
        binary: std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|release| release.join("tessera"))
            .context("cannot locate the release folder")?,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || {
            given
                .next()
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--users" => args.users = value()?.parse()?,
            "--samples" => args.samples = value()?.parse()?,
            "--database-url" => args.database_url = Some(value()?),
            "--binary" => args.binary = value()?.into(),
            other => bail!(
                "unknown argument {other}; use --users N --samples N --database-url URL --binary PATH"
            ),
        }
    }
    Ok(args)
}

/// The server this run started; stopped (by its own pid) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tessera(binary: &Path, dir: &Path, database_url: &str, base: &str, port: u16) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars() {
        if key.starts_with("TESSERA_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env("TESSERA_DATA_DIR", dir.join("data"))
        .env("TESSERA_DATABASE__URL", database_url)
        .env("TESSERA_HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("TESSERA_PUBLIC_URL", base)
        .env("TESSERA_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("TESSERA_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("TESSERA_LOG__LEVEL", "warn");
    command
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("data"))?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("data/tessera.db").display()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = tessera(&args.binary, dir.path(), &database_url, &base, port)
        .arg("serve")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", args.binary.display()))?;
    let server = Server(child);
    let client = reqwest::Client::new();
    let ready_by = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        if Instant::now() > ready_by {
            bail!("the server was not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let file = dir.path().join("users.jsonl");
    let mut lines = String::with_capacity(args.users * 200);
    for i in 0..args.users {
        lines.push_str(
            &serde_json::json!({
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
    let import = tessera(&args.binary, dir.path(), &database_url, &base, port)
        .args(["users", "import"])
        .arg(&file)
        .stdout(Stdio::null())
        .output()?;
    if !import.status.success() {
        bail!("import failed: {}", String::from_utf8_lossy(&import.stderr));
    }
    println!(
        "imported {} accounts in {:.1} s",
        args.users,
        started.elapsed().as_secs_f64()
    );

    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "delivery": "body"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"]
        .as_str()
        .context("the admin could not log in")?
        .to_owned();
    // The sealer numbers events oldest first: once the newest has a position, all have.
    let started = Instant::now();
    loop {
        let (_, newest) = get(&client, &base, &token, "/api/v1/audit?page_size=1").await?;
        if newest["items"][0]["seq"].is_i64() {
            break;
        }
        if started.elapsed() > Duration::from_secs(1_800) {
            bail!("the audit chain did not seal the import within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "audit chain sealed after {:.1} s; server RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        rss_mib(server.0.id()).unwrap_or(f64::NAN)
    );

    if database_url.starts_with("postgres") {
        // What autovacuum does soon after a bulk load and its sealing (it may be off on a development server):
        // without statistics the planner guesses a 100,000-row tenant holds a few hundred rows.
        use sqlx::{Connection as _, Executor as _};
        let mut conn = sqlx::PgConnection::connect(&database_url).await?;
        for table in ["users", "user_roles", "audit_events"] {
            conn.execute(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                .await?;
        }
        conn.close().await?;
    }

    let rows = measure(&base, &token, args.users, args.samples).await?;
    let backend = if database_url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "\n{} accounts on {backend}, {} samples per read; server RSS {:.0} MiB\n",
        args.users,
        args.samples,
        rss_mib(server.0.id()).unwrap_or(f64::NAN)
    );
    print!("{}", table(&rows));
    drop(server);
    Ok(())
}
