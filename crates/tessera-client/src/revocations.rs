//! Following Tessera's revocation feed: catch up by cursor, then hold the SSE stream open and
//! apply each entry as it arrives, reconnecting with backoff. Checking a token is then a few
//! hash lookups, with no call to Tessera per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tessera_token::{AccessClaims, Revocation, Revoked, unix_now};

use crate::fetch::{self, ClientCredentials};
use crate::sse;

/// Longest silence on the stream before it is taken for dead (Tessera comments every 15 s).
const STREAM_IDLE: Duration = Duration::from_secs(45);

/// First and longest wait before reconnecting.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Entries by what they name. A token is looked up by its `sid`, `sub` and `jti`, and the
/// entries found decide with [`Revocation::covers`], the one rule shared with the server.
#[derive(Debug, Default)]
pub(crate) struct RevocationSet {
    by_key: HashMap<String, Vec<Revocation>>,
    len: usize,
    /// Size after the last pruning; the next one waits until it doubled.
    pruned_at: usize,
}

impl RevocationSet {
    fn key(target: &Revoked) -> String {
        match target {
            Revoked::Session { sid } => format!("s:{sid}"),
            Revoked::Subject { sub, .. } => format!("u:{sub}"),
            Revoked::Token { jti } => format!("t:{jti}"),
        }
    }

    /// Adds an entry (again: a duplicate changes nothing).
    pub fn apply(&mut self, entry: Revocation, now: i64, leeway: i64) {
        if entry.expires_at.saturating_add(leeway) < now {
            return;
        }
        let list = self.by_key.entry(Self::key(&entry.target)).or_default();
        if !list.contains(&entry) {
            list.push(entry);
            self.len += 1;
        }
        if self.len >= 1_024 && self.len >= self.pruned_at * 2 {
            self.prune(now, leeway);
        }
    }

    /// Forgets entries no token can outlive.
    pub fn prune(&mut self, now: i64, leeway: i64) {
        self.by_key.retain(|_, list| {
            list.retain(|e| e.expires_at.saturating_add(leeway) >= now);
            !list.is_empty()
        });
        self.len = self.by_key.values().map(Vec::len).sum();
        self.pruned_at = self.len;
    }

    /// Whether an entry revokes `claims`.
    pub fn covers(&self, claims: &AccessClaims) -> bool {
        if self.len == 0 {
            return false;
        }
        let mut key = String::with_capacity(64);
        let mut hit = |prefix: &str, id: &str| {
            key.clear();
            key.push_str(prefix);
            key.push_str(id);
            self.by_key
                .get(key.as_str())
                .is_some_and(|list| list.iter().any(|e| e.covers(claims)))
        };
        claims.sid.as_deref().is_some_and(|sid| hit("s:", sid))
            || hit("u:", &claims.sub)
            || hit("t:", &claims.jti)
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.len
    }
}

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
            set.apply(entry, now, self.leeway);
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
    use tessera_token::Audience;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://auth.example".into(),
            aud: Audience::one("platform"),
            sub: "u1".into(),
            client_id: "tessera".into(),
            sid: Some("s1".into()),
            tid: "t1".into(),
            roles: vec![],
            scope: String::new(),
            amr: vec![],
            auth_time: None,
            iat: 1_000,
            nbf: None,
            exp: 1_600,
            jti: "j1".into(),
        }
    }

    fn entry(target: Revoked, expires_at: i64) -> Revocation {
        Revocation {
            tid: "t1".into(),
            target,
            revoked_at: 1_100,
            expires_at,
        }
    }

    #[test]
    fn tokens_are_found_by_session_subject_or_id() {
        for target in [
            Revoked::Session { sid: "s1".into() },
            Revoked::Subject {
                sub: "u1".into(),
                issued_before: 1_000,
            },
            Revoked::Token { jti: "j1".into() },
        ] {
            let mut set = RevocationSet::default();
            assert!(!set.covers(&claims()));
            set.apply(entry(target.clone(), 2_000), 1_500, 30);
            assert!(set.covers(&claims()), "{target:?}");
            set.apply(entry(target.clone(), 2_000), 1_500, 30);
            assert_eq!(set.len(), 1, "duplicates are held once");
        }
        let mut set = RevocationSet::default();
        set.apply(
            entry(Revoked::Session { sid: "s2".into() }, 2_000),
            1_500,
            30,
        );
        set.apply(
            entry(
                Revoked::Subject {
                    sub: "u1".into(),
                    issued_before: 999,
                },
                2_000,
            ),
            1_500,
            30,
        );
        assert!(!set.covers(&claims()));
    }

    #[test]
    fn entries_of_unknown_kinds_are_passed_over() {
        let page: RawPage = serde_json::from_value(serde_json::json!({
            "items": [
                {"tid": "t1", "kind": "galaxy", "revoked_at": 1, "expires_at": 2},
                {"tid": "t1", "kind": "token", "jti": "j1", "revoked_at": 1, "expires_at": 2},
            ],
            "cursor": "9",
            "has_more": false,
        }))
        .expect("page");
        let read: Vec<Revocation> = page.items.into_iter().filter_map(readable).collect();
        assert_eq!(
            read,
            [entry(Revoked::Token { jti: "j1".into() }, 2)].map(|mut e| {
                e.revoked_at = 1;
                e
            })
        );
    }

    #[test]
    fn entries_are_kept_through_the_leeway_and_then_forgotten() {
        let mut set = RevocationSet::default();
        set.apply(entry(Revoked::Token { jti: "j1".into() }, 1_600), 1_500, 30);
        set.prune(1_630, 30);
        assert!(set.covers(&claims()));
        set.prune(1_631, 30);
        assert_eq!(set.len(), 0);
        set.apply(entry(Revoked::Token { jti: "j1".into() }, 1_600), 1_700, 30);
        assert_eq!(set.len(), 0, "an entry already past is not added");
    }
}
