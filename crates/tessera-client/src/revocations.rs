//! Following Tessera's revocation feed: catch up by cursor, then hold the SSE stream open and
//! apply each entry as it arrives, reconnecting with backoff. Checking a token is then a few
//! hash lookups in `tessera-token`'s [`RevocationSet`] (the index the server's own
//! introspection uses too), with no call to Tessera per request.
//!
//! Kinds this version applies: `session` (a `sid`), `subject` (a user or client, tokens
//! issued until `issued_before`), `token` (a `jti`) and `tenant` (every token of the `tid`
//! issued until `issued_before`: the tenant was disabled). An entry of a kind it does not know
//! is skipped with a warning, so a newer server never stops an older verifier.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tessera_token::{AccessClaims, Revocation, RevocationSet, unix_now};

use crate::fetch::{self, ClientCredentials};
use crate::sse;

/// Longest silence on the stream before it is taken for dead (Tessera comments every 15 s).
const STREAM_IDLE: Duration = Duration::from_secs(45);

/// First and longest wait before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The feed as this service follows it.
pub(crate) struct Revocations {
    http: reqwest::Client,
    page_url: String,
    stream_url: String,
    credentials: ClientCredentials,
    leeway: i64,
    set: RwLock<RevocationSet>,
    cursor: Mutex<String>,
    /// Whether the stream is open and caught up.
    live: AtomicBool,
    /// Unix seconds of the last word from the feed (an event, a comment, a page).
    last_contact: AtomicI64,
}

impl Revocations {
    pub fn new(
        http: reqwest::Client,
        page_url: String,
        stream_url: String,
        credentials: ClientCredentials,
        leeway: i64,
    ) -> Self {
        Self {
            http,
            page_url,
            stream_url,
            credentials,
            leeway,
            set: RwLock::new(RevocationSet::default()),
            cursor: Mutex::new("0".to_owned()),
            live: AtomicBool::new(false),
            last_contact: AtomicI64::new(0),
        }
    }

    /// Whether `claims` were revoked.
    pub fn covers(&self, claims: &AccessClaims) -> bool {
        self.set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .covers(claims)
    }

    /// Whether the stream is open and caught up.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Seconds since the feed was last heard from.
    pub fn silence_secs(&self) -> i64 {
        unix_now() - self.last_contact.load(Ordering::Relaxed)
    }

    /// How many revocations are held.
    pub fn len(&self) -> usize {
        self.set.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn cursor(&self) -> String {
        self.cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_cursor(&self, cursor: &str) {
        cursor.clone_into(&mut self.cursor.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn apply(&self, entries: impl IntoIterator<Item = Revocation>) {
        let now = unix_now();
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        for entry in entries {
            set.insert(entry, now, self.leeway);
        }
    }

    fn heard(&self) {
        self.last_contact.store(unix_now(), Ordering::Relaxed);
    }

    /// Reads every page after the cursor.
    pub async fn catch_up(&self) -> Result<(), String> {
        loop {
            let url = format!("{}?after={}&limit=1000", self.page_url, self.cursor());
            let page: RawPage = fetch::get_json(&self.http, &url, Some(&self.credentials)).await?;
            self.heard();
            self.apply(page.items.into_iter().filter_map(readable));
            self.set_cursor(&page.cursor);
            if !page.has_more {
                return Ok(());
            }
        }
    }

    /// Follows the stream until the verifier is dropped: reconnecting (with backoff) after
    /// any failure, resuming from the last cursor.
    pub fn spawn_follower(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = BACKOFF_MIN;
            loop {
                let Some(feed) = weak.upgrade() else { return };
                let outcome = feed.stream_once(&mut backoff).await;
                feed.live.store(false, Ordering::Relaxed);
                match outcome {
                    Ok(()) => tracing::info!("revocation stream ended; reconnecting"),
                    Err(e) => tracing::warn!(error = %e, "revocation stream failed; reconnecting"),
                }
                drop(feed);
                tokio::time::sleep(jittered(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        });
    }

    /// One connection: events are applied until it ends. `backoff` is reset once the stream
    /// caught up.
    async fn stream_once(&self, backoff: &mut Duration) -> Result<(), String> {
        let mut response = self
            .http
            .get(&self.stream_url)
            .header(http::header::AUTHORIZATION, self.credentials.header())
            .header(http::header::ACCEPT, "text/event-stream")
            .header("last-event-id", self.cursor())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("the stream answered {}", response.status()));
        }
        let mut parser = sse::Parser::default();
        loop {
            let chunk = tokio::time::timeout(STREAM_IDLE, response.chunk())
                .await
                .map_err(|_| "the stream went silent".to_owned())?
                .map_err(|e| e.without_url().to_string())?;
            let Some(chunk) = chunk else { return Ok(()) };
            self.heard();
            for event in parser.push(&chunk).map_err(|e| e.to_string())? {
                match event.event.as_str() {
                    "revocation" => {
                        let entry = serde_json::from_str(&event.data).ok().and_then(readable);
                        self.apply(entry);
                    }
                    "ready" => {
                        self.live.store(true, Ordering::Relaxed);
                        *backoff = BACKOFF_MIN;
                        self.set
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .prune(unix_now(), self.leeway);
                    }
                    _ => {}
                }
                if let Some(id) = &event.id {
                    self.set_cursor(id);
                }
            }
        }
    }
}

/// A feed page whose entries are read one by one, so one this version does not understand
/// (a newer kind) is passed over instead of stopping the feed.
#[derive(serde::Deserialize)]
struct RawPage {
    items: Vec<serde_json::Value>,
    cursor: String,
    has_more: bool,
}

fn readable(value: serde_json::Value) -> Option<Revocation> {
    match serde_json::from_value(value) {
        Ok(entry) => Some(entry),
        Err(e) => {
            tracing::warn!(error = %e, "skipping a revocation this version cannot read");
            None
        }
    }
}

/// `base` plus up to a quarter more, so many services do not reconnect in step.
fn jittered(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base + base / 4 * (nanos % 1_000) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_token::Revoked;

    #[test]
    fn entries_of_unknown_kinds_are_passed_over_and_tenants_are_read() {
        let page: RawPage = serde_json::from_value(serde_json::json!({
            "items": [
                {"tid": "t1", "kind": "galaxy", "revoked_at": 1, "expires_at": 2},
                {"tid": "t1", "kind": "token", "jti": "j1", "revoked_at": 1, "expires_at": 2},
                {"tid": "t1", "kind": "tenant", "issued_before": 1, "revoked_at": 1, "expires_at": 2},
            ],
            "cursor": "9",
            "has_more": false,
        }))
        .expect("page");
        let read: Vec<Revocation> = page.items.into_iter().filter_map(readable).collect();
        let entry = |target| Revocation {
            tid: "t1".into(),
            target,
            revoked_at: 1,
            expires_at: 2,
        };
        assert_eq!(
            read,
            [
                entry(Revoked::Token { jti: "j1".into() }),
                entry(Revoked::Tenant { issued_before: 1 })
            ]
        );
    }
}
