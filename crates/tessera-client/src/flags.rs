//! The flags client: every flag evaluated by Tessera's OFREP bulk endpoint for one context,
//! kept in memory, refreshed whenever Tessera's change stream (`/ofrep/v1/events`) says
//! something changed (and every `poll_every` besides, in case the stream is down).
//!
//! Getters never wait on the network: they read the last values fetched and fall back to the
//! caller's default for a flag never seen. When no refresh has succeeded for `stale_after`,
//! [`Flags::is_stale`] says so, a warning is logged once and the gauge
//! `tessera_client_flags_stale` is 1.
//!
//! ```no_run
//! # async fn run() -> Result<(), tessera_client::FlagsError> {
//! let flags = tessera_client::Flags::builder("https://auth.example.com")
//!     .client_credentials("client-id", "tss_secret")
//!     .build()
//!     .await?;
//! if flags.bool("banking_enabled", false) { /* … */ }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::fetch::{self, ClientCredentials, REQUEST_TIMEOUT};
use crate::sse;

/// How long a change stream may stay silent (Tessera sends a comment every 15 s).
const STREAM_IDLE: Duration = Duration::from_secs(45);

/// Shortest and longest waits between reconnections.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why the flags client could not be set up or refreshed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagsError {
    /// The base URL is not a URL.
    #[error("invalid Tessera URL: {0}")]
    Url(String),
    /// Neither client credentials nor a token were given.
    #[error("the flags client needs client credentials or a bearer token")]
    NoCredentials,
    /// Tessera could not be reached or answered something unexpected.
    #[error("flags refresh failed: {0}")]
    Fetch(String),
}

/// How the client authenticates.
#[derive(Clone)]
enum Credentials {
    /// A service account (its token needs `flags:read`); tokens are fetched and renewed.
    Client(ClientCredentials),
    /// A fixed bearer token.
    Bearer(String),
}

/// Sets a [`Flags`] client up.
pub struct FlagsBuilder {
    base: String,
    credentials: Option<Credentials>,
    context: Map<String, Value>,
    poll_every: Duration,
    stale_after: Duration,
    http: Option<reqwest::Client>,
}

impl FlagsBuilder {
    /// Authenticates as a service account (client credentials; `flags:read` needed).
    pub fn client_credentials(mut self, id: &str, secret: &str) -> Self {
        self.credentials = Some(Credentials::Client(ClientCredentials::new(id, secret)));
        self
    }

    /// Authenticates with a fixed bearer token.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Some(Credentials::Bearer(token.into()));
        self
    }

    /// The evaluation context sent with every bulk request (`targetingKey` and attributes).
    pub fn context(mut self, context: Map<String, Value>) -> Self {
        self.context = context;
        self
    }

    /// How often to refetch even without a change event (default 60 s).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// How long without a successful refresh makes the values stale (default 5 min).
    pub fn stale_after(mut self, after: Duration) -> Self {
        self.stale_after = after;
        self
    }

    /// Uses this HTTP client.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Fetches the flags once and starts following changes. A failed first fetch is logged,
    /// not returned: the client starts empty (getters answer their defaults) and keeps trying.
    pub async fn build(self) -> Result<Flags, FlagsError> {
        let base = url::Url::parse(&self.base).map_err(|e| FlagsError::Url(e.to_string()))?;
        let base = base.as_str().trim_end_matches('/').to_owned();
        let credentials = self.credentials.ok_or(FlagsError::NoCredentials)?;
        let (revision, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            http: self.http.unwrap_or_default(),
            bulk_url: format!("{base}/ofrep/v1/evaluate/flags"),
            events_url: format!("{base}/ofrep/v1/events"),
            token_url: format!("{base}/oauth2/token"),
            credentials,
            body: serde_json::json!({ "context": self.context }).to_string(),
            values: RwLock::new(Arc::new(HashMap::new())),
            etag: Mutex::new(None),
            token: Mutex::new(None),
            refreshed: Mutex::new(None),
            stale_after: self.stale_after,
            warned_stale: AtomicBool::new(false),
            revision,
        });
        if let Err(e) = inner.refresh().await {
            tracing::warn!(error = %e, "first flags fetch failed; serving defaults until it works");
        }
        inner.spawn_follower(self.poll_every);
        Ok(Flags { inner })
    }
}

/// Tessera's flags for one context, always answered from memory.
#[derive(Clone)]
pub struct Flags {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    bulk_url: String,
    events_url: String,
    token_url: String,
    credentials: Credentials,
    /// The bulk request body, the same every time (so the ETag can match).
    body: String,
    values: RwLock<Arc<HashMap<String, Value>>>,
    etag: Mutex<Option<String>>,
    token: Mutex<Option<(String, Instant)>>,
    refreshed: Mutex<Option<Instant>>,
    stale_after: Duration,
    warned_stale: AtomicBool,
    /// Counts refreshes that changed something.
    revision: watch::Sender<u64>,
}

impl Flags {
    /// Sets a client up for the Tessera at `base_url`.
    pub fn builder(base_url: &str) -> FlagsBuilder {
        FlagsBuilder {
            base: base_url.to_owned(),
            credentials: None,
            context: Map::new(),
            poll_every: Duration::from_secs(60),
            stale_after: Duration::from_secs(300),
            http: None,
        }
    }

    /// The flag's last known value, if it was ever fetched and evaluated without error.
    pub fn value(&self, key: &str) -> Option<Value> {
        self.inner.check_stale();
        self.inner.snapshot().get(key).cloned()
    }

    /// A bool flag, or `default` when unknown or not a bool.
    pub fn bool(&self, key: &str, default: bool) -> bool {
        self.read(key, Value::as_bool).unwrap_or(default)
    }

    /// A string flag, or `default`.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.read(key, |v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| default.to_owned())
    }

    /// A number flag, or `default`.
    pub fn number(&self, key: &str, default: f64) -> f64 {
        self.read(key, Value::as_f64).unwrap_or(default)
    }

    /// An object flag, or `None`.
    pub fn object(&self, key: &str) -> Option<Map<String, Value>> {
        self.read(key, |v| v.as_object().cloned())
    }

    fn read<T>(&self, key: &str, pick: impl FnOnce(&Value) -> Option<T>) -> Option<T> {
        self.inner.check_stale();
        self.inner.snapshot().get(key).and_then(pick)
    }

    /// Whether no refresh has succeeded for the configured `stale_after`.
    pub fn is_stale(&self) -> bool {
        self.inner.is_stale()
    }

    /// Fetches now; `true` when something changed.
    pub async fn refresh(&self) -> Result<bool, FlagsError> {
        self.inner.refresh().await
    }

    /// Wakes whenever a refresh changed the values.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }
}

impl Inner {
    fn snapshot(&self) -> Arc<HashMap<String, Value>> {
        Arc::clone(&self.values.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn is_stale(&self) -> bool {
        let refreshed = *self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
        refreshed.is_none_or(|at| at.elapsed() > self.stale_after)
    }

    fn check_stale(&self) {
        let stale = self.is_stale();
        metrics::gauge!("tessera_client_flags_stale").set(if stale { 1.0 } else { 0.0 });
        if stale && !self.warned_stale.swap(true, Ordering::Relaxed) {
            tracing::warn!("serving last known flag values: no refresh succeeded lately");
        }
    }

    fn heard(&self) {
        *self.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.warned_stale.store(false, Ordering::Relaxed);
    }

    /// The `Authorization` header value, fetching a service token when needed.
    async fn authorization(&self) -> Result<String, FlagsError> {
        let credentials = match &self.credentials {
            Credentials::Bearer(token) => return Ok(format!("Bearer {token}")),
            Credentials::Client(credentials) => credentials,
        };
        if let Some((token, until)) = &*self.token.lock().unwrap_or_else(|p| p.into_inner())
            && Instant::now() < *until
        {
            return Ok(format!("Bearer {token}"));
        }
        let response = self
            .http
            .post(&self.token_url)
            .timeout(REQUEST_TIMEOUT)
            .header(http::header::AUTHORIZATION, credentials.header())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body("grant_type=client_credentials&scope=flags%3Aread")
            .send()
            .await
            .map_err(|e| FlagsError::Fetch(e.without_url().to_string()))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FlagsError::Fetch(format!(
                "the token endpoint answered {}",
                response.status()
            )));
        }
        let bytes = fetch::body(response).await.map_err(FlagsError::Fetch)?;
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|e| FlagsError::Fetch(e.to_string()))?;
        // Renewed a little before it expires.
        let lifetime = Duration::from_secs(answer.expires_in.saturating_sub(30).max(1));
        let header = format!("Bearer {}", answer.access_token);
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((answer.access_token, Instant::now() + lifetime));
        Ok(header)
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// One bulk request with the last ETag; `true` when the values changed.
    async fn refresh(&self) -> Result<bool, FlagsError> {
        let authorization = self.authorization().await?;
        let mut request = self
            .http
            .post(&self.bulk_url)
            .timeout(REQUEST_TIMEOUT)
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(self.body.clone());
        let etag = self.etag.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| FlagsError::Fetch(e.without_url().to_string()))?;
        match response.status() {
            reqwest::StatusCode::NOT_MODIFIED => {
                self.heard();
                return Ok(false);
            }
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::UNAUTHORIZED => {
                self.forget_token();
                return Err(FlagsError::Fetch("Tessera answered 401".to_owned()));
            }
            status => return Err(FlagsError::Fetch(format!("Tessera answered {status}"))),
        }
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = fetch::body(response).await.map_err(FlagsError::Fetch)?;
        let bulk: Bulk =
            serde_json::from_slice(&bytes).map_err(|e| FlagsError::Fetch(e.to_string()))?;
        let values: HashMap<String, Value> = bulk
            .flags
            .into_iter()
            .filter_map(|f| Some((f.key, f.value?)))
            .collect();
        let changed = *self.snapshot() != values;
        *self.values.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(values);
        *self.etag.lock().unwrap_or_else(|p| p.into_inner()) = etag;
        self.heard();
        if changed {
            self.revision.send_modify(|r| *r += 1);
        }
        Ok(changed)
    }

    /// Follows the change stream (reconnecting with backoff) and polls every `poll_every`,
    /// until the client is dropped.
    fn spawn_follower(self: &Arc<Self>, poll_every: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = BACKOFF_MIN;
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let outcome = inner.follow_once(poll_every, &mut backoff).await;
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "flag change stream failed; reconnecting");
                }
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        });
    }

    async fn follow_once(
        &self,
        poll_every: Duration,
        backoff: &mut Duration,
    ) -> Result<(), String> {
        let authorization = self.authorization().await.map_err(|e| e.to_string())?;
        let mut response = self
            .http
            .get(&self.events_url)
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if response.status() != reqwest::StatusCode::OK {
            if response.status() == reqwest::StatusCode::UNAUTHORIZED {
                self.forget_token();
            }
            return Err(format!("the change stream answered {}", response.status()));
        }
        // Anything missed while disconnected is read now.
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "flags refresh failed");
        }
        *backoff = BACKOFF_MIN;
        let mut parser = sse::Parser::default();
        let mut poll = tokio::time::interval(poll_every);
        poll.tick().await;
        loop {
            let chunk = tokio::select! {
                chunk = tokio::time::timeout(STREAM_IDLE, response.chunk()) => chunk,
                _ = poll.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "flags refresh failed");
                    }
                    continue;
                }
            };
            let chunk = chunk
                .map_err(|_| "the change stream went silent".to_owned())?
                .map_err(|e| e.without_url().to_string())?;
            let Some(chunk) = chunk else { return Ok(()) };
            for event in parser.push(&chunk).map_err(|e| e.to_string())? {
                let kind = serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .and_then(|d| d.get("type").and_then(Value::as_str).map(str::to_owned));
                if kind.as_deref() == Some("refetchEvaluation")
                    && let Err(e) = self.refresh().await
                {
                    tracing::warn!(error = %e, "flags refresh failed");
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(serde::Deserialize)]
struct Bulk {
    flags: Vec<BulkItem>,
}

/// One flag of a bulk answer; failed evaluations have no value and keep their default.
#[derive(serde::Deserialize)]
struct BulkItem {
    key: String,
    value: Option<Value>,
}
