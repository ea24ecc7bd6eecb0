//! The servers under load, each its own process on a free loopback port: the hello ceiling
//! (this binary's `hello` subcommand) and the `tessera` release binary on a fresh database.
//! Both are killed when their handle is dropped, so no run leaves a server behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::{Connection, Executor};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Longest wait for a server to print that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The first admin, created by Tessera at start from the environment.
pub const ADMIN_EMAIL: &str = "bench-admin@example.com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "bench-admin-password-1";

/// A running server process.
pub struct Process {
    child: Child,
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
}

impl Process {
    /// Its resident memory now, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Reads lines of `stdout` until one starts with `prefix`, and parses the rest as an address
/// (`127.0.0.1:port` or `http://127.0.0.1:port`). Then keeps draining the pipe in the
/// background, so the server never blocks on a full pipe.
async fn listening_on(stdout: ChildStdout, prefix: &str) -> anyhow::Result<SocketAddr> {
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                let rest = rest.trim().trim_start_matches("http://");
                return Ok(rest.trim_end_matches('/').parse::<SocketAddr>()?);
            }
        }
        bail!("the server exited before it listened")
    })
    .await
    .context("the server did not listen in time")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found)
}

/// Starts the hello server: this binary, `hello` subcommand.
pub async fn start_hello() -> anyhow::Result<Process> {
    let exe = std::env::current_exe().context("path of this binary")?;
    let mut child = Command::new(exe)
        .arg("hello")
        // It exits when this pipe closes, i.e. when this process ends.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start the hello server")?;
    let stdout = child.stdout.take().context("hello stdout")?;
    let addr = listening_on(stdout, crate::hello::READY_LINE).await?;
    Ok(Process { child, addr })
}

/// The database a Tessera run uses, removed afterwards.
pub enum Database {
    /// A SQLite file in the run's data folder.
    Sqlite,
    /// A fresh schema in a PostgreSQL database, dropped afterwards.
    Postgres {
        /// The database as given, to create and drop the schema.
        admin_url: String,
        /// The schema's name (it also names the server's connections).
        schema: String,
    },
}

impl Database {
    /// A fresh schema in the PostgreSQL database at `admin_url`.
    pub async fn postgres(admin_url: &str) -> anyhow::Result<Self> {
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .context("connect to the PostgreSQL URL given")?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .context("create the bench schema")?;
        let _ = conn.close().await;
        Ok(Self::Postgres {
            admin_url: admin_url.to_owned(),
            schema,
        })
    }

    /// Another fresh database of the same kind (a new schema of the same PostgreSQL database).
    pub async fn fresh_like(&self) -> anyhow::Result<Self> {
        match self {
            Self::Sqlite => Ok(Self::Sqlite),
            Self::Postgres { admin_url, .. } => Self::postgres(admin_url).await,
        }
    }

    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }

    fn url(&self, data_dir: &Path) -> anyhow::Result<String> {
        match self {
            Self::Sqlite => Ok(format!("sqlite://{}/tessera.db", data_dir.display())),
            Self::Postgres { admin_url, schema } => {
                let mut url = url::Url::parse(admin_url).context("the PostgreSQL URL")?;
                url.query_pairs_mut()
                    .append_pair("options", &format!("-c search_path={schema}"))
                    .append_pair("application_name", schema);
                Ok(url.to_string())
            }
        }
    }

    /// Refreshes the planner's statistics of `tables` on PostgreSQL, as autovacuum does soon
    /// after a bulk load (it may be off on a development server): without them the planner
    /// guesses a 100,000-row tenant holds a few hundred rows. Nothing to do on SQLite.
    pub async fn analyze(&self, tables: &[&str]) -> anyhow::Result<()> {
        let Self::Postgres { admin_url, schema } = self else {
            return Ok(());
        };
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        for table in tables {
            conn.execute(sqlx::AssertSqlSafe(format!(
                "VACUUM ANALYZE {schema}.{table}"
            )))
            .await
            .with_context(|| format!("VACUUM ANALYZE {table}"))?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Drops the schema (after ending the connections left to it).
    pub async fn remove(self) -> anyhow::Result<()> {
        let Self::Postgres { admin_url, schema } = self else {
            return Ok(());
        };
        let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{schema}' AND pid <> pg_backend_pid()"
        )))
        .await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .await?;
        let _ = conn.close().await;
        Ok(())
    }
}

/// Tessera's binary and the environment of one run: what `serve` and the CLI commands of a
/// phase's setup both use.
pub struct Tessera {
    binary: PathBuf,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Tessera {
    /// The environment for `binary` on `database`: a fresh folder, every `TESSERA_*` variable
    /// of the caller dropped, every rate limit off (the keys read from `tessera config env`,
    /// so a limit added later is switched off too) and lockout off; everything else default.
    pub async fn prepare(binary: &Path, database: &Database) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("tessera-bench").tempdir()?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let mut env = vec![
            (
                "TESSERA_DATA_DIR".to_owned(),
                data_dir.display().to_string(),
            ),
            ("TESSERA_DATABASE__URL".to_owned(), database.url(&data_dir)?),
            ("TESSERA_HTTP__BIND".to_owned(), "127.0.0.1:0".to_owned()),
            // Request logs at `info` would measure the terminal; warnings still show.
            ("TESSERA_LOG__LEVEL".to_owned(), "warn".to_owned()),
            (
                "TESSERA_BOOTSTRAP_ADMIN_EMAIL".to_owned(),
                ADMIN_EMAIL.to_owned(),
            ),
            (
                "TESSERA_BOOTSTRAP_ADMIN_PASSWORD".to_owned(),
                ADMIN_PASSWORD.to_owned(),
            ),
        ];
        env.extend(rate_limits_off(binary, dir.path()).await?);
        Ok(Self {
            binary: binary.to_owned(),
            dir,
            env,
        })
    }

    /// `tessera` with this run's environment and folder, for CLI commands.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        for (key, _) in std::env::vars() {
            if key.starts_with("TESSERA_") {
                command.env_remove(key);
            }
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // So that no tessera.toml of the caller's folder is read.
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Starts `tessera serve` and waits until it listens (migrated, admin created).
    pub async fn serve(&self) -> anyhow::Result<Process> {
        let log = std::fs::File::create(self.log_path())?;
        let mut child = self
            .command()
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("start tessera serve")?;
        let stdout = child.stdout.take().context("tessera stdout")?;
        let addr = listening_on(stdout, "tessera listening on ")
            .await
            .with_context(|| format!("tessera serve did not start:\n{}", self.log_tail()))?;
        Ok(Process { child, addr })
    }

    /// A file in this run's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    /// The last lines the server logged, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// `TESSERA_RATE_LIMITS__*` set to `off`, and lockout to 0, for every key `tessera config
/// env` lists.
async fn rate_limits_off(binary: &Path, dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let output = Command::new(binary)
        .args(["config", "env"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .context("run tessera config env")?;
    if !output.status.success() {
        bail!("tessera config env failed");
    }
    let env = rate_limit_env(&String::from_utf8_lossy(&output.stdout));
    if env.len() < 2 {
        bail!("tessera config env listed no rate limits to switch off");
    }
    Ok(env)
}

/// From the Markdown table of `tessera config env`: every string-valued
/// `TESSERA_RATE_LIMITS__*` key set to `off`, and `LOCKOUT_AFTER` to 0.
fn rate_limit_env(table: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for line in table.lines() {
        let mut cells = line.split('|').map(str::trim).skip(1);
        let (Some(key), Some(kind)) = (cells.next(), cells.next()) else {
            continue;
        };
        let key = key.trim_matches('`');
        if !key.starts_with("TESSERA_RATE_LIMITS__") {
            continue;
        }
        if key == "TESSERA_RATE_LIMITS__LOCKOUT_AFTER" {
            env.push((key.to_owned(), "0".to_owned()));
        } else if kind == "string" {
            env.push((key.to_owned(), "off".to_owned()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::rate_limit_env;

    #[test]
    fn every_rate_limit_config_env_lists_is_switched_off_and_lockout_too() {
        let table = "\
| `TESSERA_LOG__LEVEL` | string | `\"info\"` | Level filter. |
| `TESSERA_RATE_LIMITS__LOGIN_PER_IP` | string | `\"30/min\"` | Logins per client IP. |
| `TESSERA_RATE_LIMITS__SOMETHING_NEW` | string | `\"5/hour\"` | A limit added later. |
| `TESSERA_RATE_LIMITS__LOCKOUT_AFTER` | integer from 0 to 4294967295 | `10` | Lockout. |
| `TESSERA_RATE_LIMITS__LOCKOUT_MAX_SECS` | integer from 1 to 86400 | `900` | Longest wait. |
";
        let env = rate_limit_env(table);
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("TESSERA_RATE_LIMITS__LOGIN_PER_IP", "off"),
                ("TESSERA_RATE_LIMITS__SOMETHING_NEW", "off"),
                ("TESSERA_RATE_LIMITS__LOCKOUT_AFTER", "0"),
            ]
        );
    }
}
