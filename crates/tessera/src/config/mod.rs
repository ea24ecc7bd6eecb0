//! Tessera's configuration: the typed settings, where they come from and what makes them valid.
//!
//! The types in this file are the single source of truth. Their `///` comments become the
//! generated documentation (`tessera config example`, `tessera config env`), their serde
//! attributes decide what is accepted, and [`schema`] derives the key tree every loader and
//! generator walks, so documentation cannot drift from the code.

mod docs;
mod load;
mod schema;
mod secret;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

pub use docs::{env_table, example_toml, show_toml};
pub use load::{ConfigError, Problem, Source, load, load_from};
pub use schema::{Field, Kind, env_var_name, schema};
pub use secret::{DatabaseUrl, REDACTED, Secret};

/// Tessera configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Deployment environment. `production` makes an https public URL, a master key,
    /// PostgreSQL and explicit CORS origins mandatory.
    pub environment: Environment,
    /// Base URL under which clients reach this server; the token issuer and every absolute link
    /// derive from it.
    #[schemars(with = "String", extend("format" = "uri"))]
    pub public_url: Url,
    /// Folder for local state: the SQLite database by default and, in development only, the
    /// generated master key.
    pub data_dir: PathBuf,
    /// Master key (32 bytes, base64) that encrypts private signing keys at rest. Required outside
    /// development; in development one is generated into `data_dir` when unset.
    pub master_key: Option<Secret>,
    /// HTTP server.
    pub http: HttpConfig,
    /// Database.
    pub database: DatabaseConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            environment: Environment::Development,
            public_url: Url::parse("http://127.0.0.1:8080").expect("static URL is valid"),
            data_dir: PathBuf::from("./data"),
            master_key: None,
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// Where this instance runs; stricter rules apply the closer it is to production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's machine: generated secrets and relaxed rules, with warnings.
    Development,
    /// A production-like environment for testing releases.
    Staging,
    /// Real users: every safety setting is mandatory.
    Production,
}

impl Environment {
    /// The lowercase name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on.
    #[schemars(with = "String", extend("format" = "socket-address"))]
    pub bind: SocketAddr,
    /// Largest accepted request body, in bytes; larger requests get 413.
    #[schemars(range(min = 1))]
    pub body_limit_bytes: u64,
    /// Longest time a request may take before the server answers 503, in seconds. Streams
    /// (SSE, WebSocket) are not cut by it once their response has started.
    #[schemars(range(min = 1))]
    pub request_timeout_secs: u64,
    /// Browser origins allowed to call the API with credentials (CORS), such as
    /// `https://app.example.com`. `*` is never accepted.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Database settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (file and folder created on first use) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`. PostgreSQL is required in production.
    pub url: DatabaseUrl,
    /// Most connections the pool opens.
    #[schemars(range(min = 1))]
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing, in seconds.
    #[schemars(range(min = 1))]
    pub acquire_timeout_secs: u64,
    /// Whether `serve` applies pending migrations at start-up. When off, `serve` refuses to
    /// start on an outdated schema; run `tessera migrate up` first.
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::parse("sqlite://./data/tessera.db").expect("static URL is valid"),
            max_connections: 10,
            acquire_timeout_secs: 5,
            migrate_on_start: true,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format: `pretty` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// Level filter such as `info` or `tessera=debug,sqlx=warn`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}
