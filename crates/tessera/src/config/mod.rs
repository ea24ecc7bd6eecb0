//! Tessera's configuration: the typed settings, where they come from and what makes them valid.
//!
//! The types in this file are the single source of truth. Their `///` comments become the
//! generated documentation (`tessera config example`, `tessera config env`), their serde
//! attributes decide what is accepted, and [`schema`] derives the key tree every loader and
//! generator walks, so documentation cannot drift from the code.

mod cidr;
mod docs;
mod load;
mod rates;
mod schema;
mod secret;
mod secret_files;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

pub use cidr::Cidr;
pub use docs::{env_dotenv, env_table, example_toml, show_toml};
pub use load::{ConfigError, Problem, Source, load, load_from};
pub use rates::{Policies, Policy, parse_rate};
pub use schema::{Field, Kind, env_var_name, schema};
pub use secret::{DatabaseUrl, REDACTED, Secret};
pub use validate::decode_master_key;

/// Tessera configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Deployment environment. `staging` and `production` require a master key; `production`
    /// also an https public URL, PostgreSQL and explicit CORS origins.
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
    /// File holding the master key (surrounding whitespace trimmed), as orchestrators mount
    /// secrets. Instead of `master_key`, never with it.
    pub master_key_file: Option<PathBuf>,
    /// HTTP server.
    pub http: HttpConfig,
    /// Database.
    pub database: DatabaseConfig,
    /// Access tokens and signing keys.
    pub token: TokenConfig,
    /// Password hashing and policy.
    pub passwords: PasswordConfig,
    /// Sessions, refresh tokens, browser cookies and registration.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Request rate limits and login lockout.
    pub rate_limits: RateLimitConfig,
    /// Redis, shared by every instance for rate-limit counters. Optional.
    pub redis: RedisConfig,
    /// How many instances serve this deployment and how they tell each other of changes.
    pub cluster: ClusterConfig,
    /// The audit log.
    pub audit: AuditConfig,
    /// Capabilities that can be switched off.
    pub features: FeaturesConfig,
    /// Where Prometheus metrics (`GET /metrics`) are served, and to whom.
    pub metrics: MetricsConfig,
    /// What `GET /api/v1/platform/config` tells frontends besides the flags.
    pub platform: PlatformConfig,
    /// Feature flags declared as code, one `[flags.<key>]` table each (see the README), as
    /// written: the flags capability checks and compiles them (`TESSERA_FLAG_<KEY>` overrides a
    /// declared flag's default).
    #[schemars(skip)]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, serde_json::Value>,
    /// The `TESSERA_FLAG_<KEY>` variables seen at load, by name (raw values).
    #[schemars(skip)]
    #[serde(skip)]
    pub flag_env: BTreeMap<String, String>,
    /// The real-time hub (`/api/v1/realtime/*`): history, queues, timeouts.
    pub realtime: RealtimeConfig,
    /// Distributed tracing.
    pub telemetry: TelemetryConfig,
    /// `Idempotency-Key` on state-changing requests.
    pub idempotency: IdempotencyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            environment: Environment::Development,
            public_url: Url::parse("http://127.0.0.1:8080").expect("static URL is valid"),
            data_dir: PathBuf::from("./data"),
            master_key: None,
            master_key_file: None,
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            token: TokenConfig::default(),
            passwords: PasswordConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            rate_limits: RateLimitConfig::default(),
            redis: RedisConfig::default(),
            cluster: ClusterConfig::default(),
            audit: AuditConfig::default(),
            features: FeaturesConfig::default(),
            metrics: MetricsConfig::default(),
            platform: PlatformConfig::default(),
            flags: BTreeMap::new(),
            flag_env: BTreeMap::new(),
            realtime: RealtimeConfig::default(),
            telemetry: TelemetryConfig::default(),
            idempotency: IdempotencyConfig::default(),
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

impl Config {
    /// The token issuer (`iss`) and base of every published URL: `public_url` without a
    /// trailing slash.
    pub fn issuer(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }
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
    /// Reverse proxies (addresses or CIDRs such as `10.0.0.0/8`) whose `X-Forwarded-For` and
    /// `Forwarded` headers name the client. From any other peer those headers are ignored and
    /// the client is the socket peer.
    pub trusted_proxies: Vec<String>,
    /// The one header the trusted proxies set to name the client: `x-forwarded-for` or
    /// `forwarded` (RFC 7239). The other is ignored, since proxies pass a client's own copy
    /// of a header they do not set.
    pub forwarded_header: ForwardedHeader,
    /// `Content-Security-Policy` of HTML pages (API answers get `default-src 'none'`).
    /// Violations are reported to `/api/v1/csp-report`.
    pub html_csp: String,
    /// A stricter policy to try on HTML pages without enforcing it
    /// (`Content-Security-Policy-Report-Only`); unset sends none.
    pub html_csp_report_only: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            cors_allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            html_csp: "default-src 'self'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; font-src 'self'; \
                       object-src 'none'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'; report-uri /api/v1/csp-report; report-to csp"
                .to_owned(),
            html_csp_report_only: None,
        }
    }
}

/// Which header trusted proxies name the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`.
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), its `for=` parameters.
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// Rate limits: each `COUNT/PERIOD` (`10/min`, `5/hour`, `5/5min`, `600/60s`) or `off`.
/// Exceeding one answers 429 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Logins per client IP and account (or, for names of no account, login name).
    pub login_per_ip_account: String,
    /// Logins per client IP, whatever the account.
    pub login_per_ip: String,
    /// Registrations per client IP.
    pub register_per_ip: String,
    /// Refreshes per session.
    pub refresh_per_session: String,
    /// Client-credentials token requests per client.
    pub token_per_client: String,
    /// CSP violation reports per client IP.
    pub csp_report_per_ip: String,
    /// OFREP evaluations per caller (user or service account). Off by default: services
    /// should evaluate in bulk and keep the values (as `tessera-client` does).
    pub flags_per_caller: String,
    /// Consecutive wrong passwords (or, counted apart, codes) of one account, from any IP and
    /// at any endpoint that checks them, after which each further attempt waits, doubling
    /// from one second up to `lockout_max_secs`. 0 turns lockout off.
    pub lockout_after: u32,
    /// Longest wait between attempts on a locked account, in seconds.
    #[schemars(range(min = 1, max = 86400))]
    pub lockout_max_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            login_per_ip_account: "10/min".to_owned(),
            login_per_ip: "30/min".to_owned(),
            register_per_ip: "5/hour".to_owned(),
            refresh_per_session: "60/min".to_owned(),
            token_per_client: "600/min".to_owned(),
            csp_report_per_ip: "60/min".to_owned(),
            flags_per_caller: "off".to_owned(),
            lockout_after: 10,
            lockout_max_secs: 900,
        }
    }
}

/// Capabilities that can be switched off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    /// TOTP second factor: enrollment, and a code after the password for enrolled accounts.
    /// Off: the MFA endpoints answer 404 and logins ask for the password only.
    pub mfa_enabled: bool,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        Self { mfa_enabled: true }
    }
}

/// Prometheus metrics. They reveal traffic, error rates and build details, so production
/// serves them publicly only to a scraper that presents `token`; the usual setup is a separate
/// listener (`bind`) that only the scraper's network reaches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of a separate listener serving only `/metrics` (for example `127.0.0.1:9090`).
    /// When set, the public listener does not serve `/metrics` at all.
    #[schemars(with = "Option<String>", extend("format" = "socket-address"))]
    pub bind: Option<SocketAddr>,
    /// Bearer token (at least 16 characters) a scraper must send as `Authorization: Bearer …`
    /// wherever `/metrics` is served. Without it and without `bind`, production answers
    /// `/metrics` with 404; development and staging serve it to anyone.
    pub token: Option<Secret>,
}

/// The real-time hub: WebSocket and SSE connections bound to their session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Migration window for old clients that put an access token in the handshake's query
    /// string (`?access_token=`): accepted until the end of this day (UTC, `YYYY-MM-DD`),
    /// each use logged with a warning and counted. Unset (the default) or past: refused.
    pub legacy_query_token_until: Option<String>,
    /// Most events each channel keeps for resume (`Last-Event-ID`, `since`) and
    /// `GET /api/v1/realtime/history`.
    #[schemars(range(min = 1, max = 10000))]
    pub history_max_events: u32,
    /// Longest an event stays in its channel's history, in seconds.
    #[schemars(range(min = 1, max = 86400))]
    pub history_max_age_secs: u64,
    /// Events waiting to be written to one connection. A connection whose queue is full is
    /// a slow consumer: it is closed (WebSocket code 4408) instead of slowing anyone down.
    #[schemars(range(min = 8, max = 65536))]
    pub queue_capacity: u32,
    /// A WebSocket that sends nothing (not even a pong) for this many seconds is closed.
    #[schemars(range(min = 30, max = 3600))]
    pub idle_timeout_secs: u64,
    /// Most channels one connection may subscribe to.
    #[schemars(range(min = 1, max = 1024))]
    pub max_subscriptions: u32,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            legacy_query_token_until: None,
            history_max_events: 100,
            history_max_age_secs: 300,
            queue_capacity: 256,
            idle_timeout_secs: 75,
            max_subscriptions: 64,
        }
    }
}

/// `Idempotency-Key` on state-changing requests (see the README's API conventions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long a key and its stored answer are kept, in seconds: a retry within this window
    /// replays the first answer; the hourly cleanup deletes older keys.
    #[schemars(range(min = 60, max = 604800))]
    pub ttl_secs: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self { ttl_secs: 86_400 }
    }
}

/// Distributed tracing: a span per request, exported over OTLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector (such as `http://otel-collector:4318`); spans are posted as JSON to
    /// `{otlp_endpoint}/v1/traces`. Unset: no traces. A request's W3C `traceparent` is
    /// continued, and a parent that was not sampled is not exported.
    #[schemars(with = "Option<String>", extend("format" = "uri"))]
    pub otlp_endpoint: Option<Url>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "tessera".to_owned(),
        }
    }
}

impl RealtimeConfig {
    /// The first Unix second after the legacy query-token window (the end of
    /// `legacy_query_token_until`, UTC); `None` when unset or not a `YYYY-MM-DD` date.
    pub fn legacy_query_token_end(&self) -> Option<i64> {
        let text = self.legacy_query_token_until.as_deref()?;
        end_of_day(text)
    }
}

/// The Unix second at which the UTC day `YYYY-MM-DD` ends, if `text` is such a date.
fn end_of_day(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, i64, i64) =
        (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) {
        return None;
    }
    // Days since 1970-01-01 of the proleptic Gregorian calendar (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((days + 1) * 86_400)
}

/// Audit log settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days events are kept; older sealed events are deleted (hourly), leaving a checkpoint
    /// so the rest still verifies. 0 keeps everything.
    pub retention_days: u32,
}

/// Redis settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0`. When set, rate-limit and lockout counters live in Redis, shared
    /// by every instance; while it is unreachable each instance counts on its own.
    pub url: Option<Secret>,
    /// Prefix of every key Tessera writes, so several deployments can share one Redis.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "tessera:".to_owned(),
        }
    }
}

/// Several instances behind one load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How many identical instances serve this deployment. More than one requires PostgreSQL
    /// (every instance reads and writes one database) and, with `share_limits`, `redis.url`.
    #[schemars(range(min = 1, max = 1000))]
    pub instances: u32,
    /// Whether rate limits and login lockout must count across instances (Redis), rather than
    /// per instance (each would allow the full rate).
    pub share_limits: bool,
    /// How a change committed on one instance reaches the others: `auto` (PostgreSQL
    /// `LISTEN/NOTIFY` on PostgreSQL, in-process on SQLite), `database` (the same, stated),
    /// or `redis` (Redis pub/sub; needs `redis.url`).
    pub bus: BusKind,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            instances: 1,
            share_limits: true,
            bus: BusKind::Auto,
        }
    }
}

/// The change bus's transport (`cluster.bus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// The database's own: `LISTEN/NOTIFY` on PostgreSQL, in-process on SQLite.
    Auto,
    /// Same as `auto`, stated.
    Database,
    /// Redis pub/sub (`redis.url`).
    Redis,
}

/// Database settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (file and folder created on first use) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`. PostgreSQL is required in production.
    pub url: DatabaseUrl,
    /// File holding the database URL (surrounding whitespace trimmed), for a URL that carries
    /// a password. Instead of `url`, never with it.
    pub url_file: Option<PathBuf>,
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
            url_file: None,
            max_connections: 10,
            acquire_timeout_secs: 5,
            migrate_on_start: true,
        }
    }
}

/// Access-token and signing-key settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Signing algorithm. New keys are generated for `EdDSA` (Ed25519) or `ES256` (P-256);
    /// `HS256` is the legacy shared-secret mode: every verifier then needs the secret, and the
    /// JWKS publishes nothing.
    pub algorithm: SigningAlgorithm,
    /// Audience (`aud`) of issued access tokens; verifiers expect it.
    pub audience: String,
    /// Lifetime of an access token, in seconds.
    #[schemars(range(min = 30, max = 86400))]
    pub access_ttl_secs: u64,
    /// Clock skew tolerated on `exp`/`nbf`/`iat`, in seconds.
    #[schemars(range(max = 300))]
    pub leeway_secs: u64,
    /// How long a rotated key is published before it starts signing, in seconds, so every
    /// verifier has fetched it first. 0 switches at once.
    pub rotation_delay_secs: u64,
    /// HS256 secret, used as-is (its UTF-8 bytes, at least 32). Only with `algorithm = "HS256"`;
    /// prefer `hs256_secret_file`.
    pub hs256_secret: Option<Secret>,
    /// File holding the HS256 secret (surrounding whitespace trimmed). Only with
    /// `algorithm = "HS256"`.
    pub hs256_secret_file: Option<PathBuf>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::EdDSA,
            audience: "platform".to_owned(),
            access_ttl_secs: 600,
            leeway_secs: 30,
            rotation_delay_secs: 300,
            hs256_secret: None,
            hs256_secret_file: None,
        }
    }
}

impl TokenConfig {
    /// The HS256 secret from `hs256_secret` or `hs256_secret_file`; `Err` names the key and
    /// the problem. Never called outside HS256 mode.
    pub fn hs256_secret_bytes(&self) -> Result<Secret, Problem> {
        let secret = match (&self.hs256_secret, &self.hs256_secret_file) {
            (Some(secret), None) => secret.clone(),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => Secret::new(text.trim()),
                Err(e) => {
                    return Err(Problem::key(
                        "token.hs256_secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            },
            (Some(_), Some(_)) => {
                return Err(Problem::key(
                    "token.hs256_secret",
                    "set either token.hs256_secret or token.hs256_secret_file, not both",
                ));
            }
            (None, None) => {
                return Err(Problem::key(
                    "token.hs256_secret",
                    "HS256 needs a secret: set token.hs256_secret_file (or TESSERA_TOKEN__HS256_SECRET)",
                ));
            }
        };
        let len = secret.expose().len();
        if len < tessera_token::MIN_HMAC_SECRET_BYTES {
            let key = if self.hs256_secret.is_some() {
                "token.hs256_secret"
            } else {
                "token.hs256_secret_file"
            };
            return Err(Problem::key(
                key,
                format!(
                    "an HS256 secret must be at least {} bytes, this one has {len}",
                    tessera_token::MIN_HMAC_SECRET_BYTES
                ),
            ));
        }
        Ok(secret)
    }
}

/// Password hashing (Argon2id) and policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    /// Argon2id memory cost, in KiB (OWASP: 19456).
    #[schemars(range(min = 8192, max = 1048576))]
    pub argon2_memory_kib: u32,
    /// Argon2id passes over memory (OWASP: 2).
    #[schemars(range(min = 1, max = 16))]
    pub argon2_iterations: u32,
    /// Argon2id lanes (OWASP: 1).
    #[schemars(range(min = 1, max = 16))]
    pub argon2_parallelism: u32,
    /// Shortest accepted new password, in characters.
    #[schemars(range(min = 8, max = 128))]
    pub min_length: u32,
    /// Hashing jobs allowed to wait for a free core; beyond them, logins get 503 with
    /// `Retry-After` instead of queueing without bound. Hashing runs on as many threads as
    /// there are cores, never on the request threads.
    #[schemars(range(min = 1, max = 100000))]
    pub max_queued_hashes: u32,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            min_length: 10,
            max_queued_hashes: 64,
        }
    }
}

/// Sessions, refresh tokens, browser cookies and self-service registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether anyone may create an account with `POST /api/v1/auth/register` (`open`), or
    /// only administrators and operators create accounts (`closed`).
    pub registration: Registration,
    /// A session unused (never refreshed) for this long ends, in seconds.
    #[schemars(range(min = 60))]
    pub session_idle_ttl_secs: u64,
    /// A session ends this long after its login whatever its use, in seconds.
    #[schemars(range(min = 60))]
    pub session_absolute_ttl_secs: u64,
    /// How long an already-rotated refresh token still returns the same successor (two tabs
    /// refreshing at once), in seconds. Presented later, it is reuse: the session is revoked.
    #[schemars(range(max = 120))]
    pub refresh_grace_secs: u64,
    /// Prefix of every cookie name (`access_token`, `refresh_token`, `csrf_token`), such as
    /// `__Secure-` or `myapp_`. `__Host-` is not possible: the refresh cookie is scoped to
    /// the refresh path.
    pub cookie_prefix: String,
    /// `Domain` attribute of the cookies; unset (the default) keeps them to this host.
    pub cookie_domain: Option<String>,
    /// `SameSite` of the access and CSRF cookies; the refresh cookie is always `Strict`.
    pub cookie_same_site: SameSite,
    /// Whether cookies carry `Secure`. Unset: when `public_url` is https. Always on outside
    /// development, whatever this says.
    pub cookie_secure: Option<bool>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            registration: Registration::Closed,
            session_idle_ttl_secs: 14 * 86_400,
            session_absolute_ttl_secs: 30 * 86_400,
            refresh_grace_secs: 10,
            cookie_prefix: String::new(),
            cookie_domain: None,
            cookie_same_site: SameSite::Lax,
            cookie_secure: None,
        }
    }
}

/// Who may create accounts through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Only administrators and operators.
    Closed,
    /// Anyone, through `POST /api/v1/auth/register`.
    Open,
}

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Sent only with requests from this site.
    Strict,
    /// Also sent on top-level navigations from other sites.
    Lax,
    /// Sent everywhere (requires `Secure`); for a frontend on another site.
    None,
}

impl SameSite {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

impl Config {
    /// Whether cookies carry `Secure`: forced outside development, otherwise as configured
    /// or, unset, when the public URL is https.
    pub fn cookie_secure(&self) -> bool {
        self.environment != Environment::Development
            || self
                .auth
                .cookie_secure
                .unwrap_or(self.public_url.scheme() == "https")
    }
}

/// Signing algorithm of access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SigningAlgorithm {
    /// Ed25519 signatures: small, fast, the default.
    EdDSA,
    /// ECDSA P-256 with SHA-256, for verifiers without Ed25519 support.
    ES256,
    /// HMAC-SHA256 with a shared secret (legacy mode).
    HS256,
}

impl From<SigningAlgorithm> for tessera_token::Algorithm {
    fn from(value: SigningAlgorithm) -> Self {
        match value {
            SigningAlgorithm::EdDSA => Self::EdDSA,
            SigningAlgorithm::ES256 => Self::ES256,
            SigningAlgorithm::HS256 => Self::HS256,
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

/// Prefix of the environment variables that override a declared flag's default at start-up.
pub const FLAG_ENV_PREFIX: &str = "TESSERA_FLAG_";

/// The public platform configuration frontends load at start (`GET /api/v1/platform/config`).
/// URLs may be relative (to this server) or absolute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformConfig {
    /// Application name frontends show.
    pub app_name: String,
    /// Application version; unset: Tessera's own version.
    pub app_version: Option<String>,
    /// Base of the platform's REST API.
    pub rest_url: String,
    /// The platform's GraphQL endpoint; unset when it has none.
    pub graphql_url: Option<String>,
    /// Server-sent events endpoint of the real-time hub.
    pub sse_url: String,
    /// WebSocket endpoint of the real-time hub.
    pub ws_url: String,
    /// Where frontends send logins.
    pub login_url: String,
    /// Branding frontends apply.
    pub branding: BrandingConfig,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            app_name: "Tessera".to_owned(),
            app_version: None,
            rest_url: "/api/v1".to_owned(),
            graphql_url: None,
            sse_url: "/api/v1/realtime/sse".to_owned(),
            ws_url: "/api/v1/realtime/ws".to_owned(),
            login_url: "/api/v1/auth/login".to_owned(),
            branding: BrandingConfig::default(),
        }
    }
}

/// Branding published to frontends; unset values are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BrandingConfig {
    /// Product name shown in titles.
    pub product_name: Option<String>,
    /// URL of the logo.
    pub logo_url: Option<String>,
    /// URL of the favicon.
    pub favicon_url: Option<String>,
    /// Main colour, such as `#0055ff`.
    pub primary_color: Option<String>,
    /// Support contact shown to users.
    pub support_email: Option<String>,
}
#[cfg(test)]
mod tests {
    use super::end_of_day;

    #[test]
    fn a_legacy_window_ends_at_the_end_of_its_utc_day() {
        assert_eq!(end_of_day("1970-01-01"), Some(86_400));
        assert_eq!(end_of_day("2000-03-01"), Some(951_955_200));
        assert_eq!(end_of_day("2024-02-29"), Some(1_709_251_200));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "24-01-01",
            "2024-01-01x",
            "",
        ] {
            assert_eq!(end_of_day(bad), None, "{bad}");
        }
    }
}
