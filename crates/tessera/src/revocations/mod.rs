//! The revocation feed: every revocation that services verifying tokens locally must honour,
//! written in the same transaction as the revocation itself, in order, with a cursor.
//!
//! Services read it by cursor (`GET /api/v1/auth/revocations?after=`) and then follow the
//! stream (`…/stream`, SSE), so a logout is honoured everywhere within a second without a
//! call per request.
//!
//! The cursor is the entry's sequence number, and entries become visible in that order: on
//! PostgreSQL a revoking transaction locks the table against other writers (readers are not
//! blocked) before it takes its number, so a lower number can never commit after a higher one
//! was read. SQLite has one writer at a time anyway. A reader that saw entry N has therefore
//! seen every entry before N that will ever exist.
//!
//! Each instance also holds every unexpired entry in memory (a [`RevocationSet`], the index
//! `tessera-client` uses), loaded at start and kept current by following the change bus
//! ([`crate::bus`]: each entry's number is announced at its commit), so its own
//! introspection and the OAuth endpoints apply exactly the rule the feed's followers apply.
//! The session cache, the deny list, role floors and real-time connections follow the feed
//! in turn ([`Feed::subscribe`]), so one revocation reaches every cache of every instance.

pub mod routes;

use sqlx::{AnyConnection, Row as _};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use tessera_token::{AccessClaims, Revocation, RevocationSet, Revoked, unix_now, unix_now_ms};
use tokio::sync::{broadcast, watch};

use crate::bus::{self, Bus, Followed, Topic};
use crate::db::Db;
use crate::jobs::Jobs;

/// Longest lifetime an access token can be configured with (`token.access_ttl_secs`, whose
/// range the configuration enforces): the bound written with each entry. Fixed when written,
/// so an entry outlives every token it covers even if the lifetime is changed later.
pub const MAX_TOKEN_TTL_SECS: i64 = 86_400;

/// Largest clock leeway a verifier may allow (`token.leeway_secs`' range): entries are served
/// and kept this long past `expires_at`, because a token is accepted that long after `exp`.
pub const MAX_LEEWAY_SECS: i64 = 300;

/// How far past the revoking commit a `subject` entry of a client, or a `tenant` entry,
/// reaches (`issued_before`): another instance may still issue the client a token until it
/// has read the entry (announced on the bus at once; at worst at its reconciliation read),
/// and a token's `iat` is in whole seconds.
pub const ISSUE_MARGIN_SECS: i64 = 2;

/// Most entries read at once.
pub const MAX_PAGE: i64 = 1_000;

/// Entries waiting for slow stream readers; one that falls further behind reads the database.
const BACKLOG: usize = 4_096;

/// Most streams one client may hold open on one instance (a service needs one per process).
pub const MAX_STREAMS_PER_CLIENT: usize = 8;

/// Records that `target` in `tenant_id` was revoked, on `conn` (the revoking transaction),
/// and returns the entry, which [`Feed::learn_all`] can apply here once the transaction commits.
/// `expires_at` bounds every token it covers.
pub async fn record(
    conn: &mut AnyConnection,
    tenant_id: &str,
    target: &Revoked,
    expires_at: i64,
) -> Result<Revocation, sqlx::Error> {
    let (kind, subject, issued_before) = match target {
        Revoked::Session { sid } => ("session", sid.as_str(), None),
        Revoked::Subject { sub, issued_before } => ("subject", sub.as_str(), Some(*issued_before)),
        Revoked::Token { jti } => ("token", jti.as_str(), None),
        // The tenant is the subject: the column is required, and it reads back the same.
        Revoked::Tenant { issued_before } => ("tenant", tenant_id, Some(*issued_before)),
    };
    if conn.backend_name() == "PostgreSQL" {
        // Numbers in commit order (see the module documentation). Held to the commit.
        sqlx::query("LOCK TABLE revocations IN EXCLUSIVE MODE")
            .execute(&mut *conn)
            .await?;
    }
    let created_ms = unix_now_ms();
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO revocations (tenant_id, kind, subject, issued_before, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
    )
    .bind(tenant_id)
    .bind(kind)
    .bind(subject)
    .bind(issued_before)
    .bind(expires_at)
    .bind(created_ms)
    .fetch_one(&mut *conn)
    .await?;
    bus::announce(conn, Topic::Revocations, seq).await?;
    Ok(Revocation {
        tid: tenant_id.to_owned(),
        target: target.clone(),
        revoked_at: created_ms / 1_000,
        expires_at,
    })
}

/// Records that every token of `subject` (a user or client) issued until `margin` seconds
/// from now is revoked (a margin covers tokens other instances may still issue). Returns the
/// entry written (its `issued_before` is that second).
pub async fn record_subject(
    conn: &mut AnyConnection,
    tenant_id: &str,
    subject: &str,
    margin: i64,
) -> Result<Revocation, sqlx::Error> {
    let issued_before = unix_now() + margin;
    let target = Revoked::Subject {
        sub: subject.to_owned(),
        issued_before,
    };
    record(conn, tenant_id, &target, issued_before + MAX_TOKEN_TTL_SECS).await
}

/// A subject entry as followers see it: tenant, subject, `issued_before`.
pub type SubjectRevoked<'a> = (&'a str, &'a str, i64);

/// Calls `apply` with every subject entry the feed reads (written by any instance or the
/// CLI) for as long as `target` lives, and with `None` when entries were missed (the
/// follower fell behind), so caches keyed by subject can drop what changed. Subscribe
/// before the feed's first read so no entry passes by.
pub fn follow_subjects<T: Send + Sync + 'static>(
    feed: &Feed,
    target: Weak<T>,
    apply: fn(&T, Option<SubjectRevoked<'_>>),
) {
    let mut batches = feed.subscribe();
    tokio::spawn(async move {
        loop {
            let received = batches.recv().await;
            let Some(target) = target.upgrade() else {
                return;
            };
            match received {
                Ok(batch) => {
                    for entry in &batch.entries {
                        if let Revoked::Subject { sub, issued_before } = &entry.revocation.target {
                            apply(&target, Some((&entry.revocation.tid, sub, *issued_before)));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => apply(&target, None),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// Records that every token of the tenant (its users' and its service accounts') issued
/// until [`ISSUE_MARGIN_SECS`] from now is revoked: the tenant was disabled. Enabling it again
/// does not lift this: only tokens issued later are valid.
pub async fn record_tenant(
    conn: &mut AnyConnection,
    tenant_id: &str,
) -> Result<Revocation, sqlx::Error> {
    let issued_before = unix_now() + ISSUE_MARGIN_SECS;
    let target = Revoked::Tenant { issued_before };
    record(conn, tenant_id, &target, issued_before + MAX_TOKEN_TTL_SECS).await
}

/// An entry and its place in the feed.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Sequence number.
    pub seq: i64,
    /// Unix milliseconds when written.
    pub created_ms: i64,
    /// The revocation.
    pub revocation: Revocation,
}

/// Entries read after a cursor.
#[derive(Debug)]
pub struct Page {
    /// In sequence order, expired ones left out.
    pub entries: Vec<Entry>,
    /// Where the next read starts: the last entry read, expired or not.
    pub cursor: i64,
    /// Whether the limit cut the page short.
    pub has_more: bool,
}

/// Reads up to `limit` entries after `after`. A cursor beyond every entry (the database was
/// replaced) reads from the start instead of skipping what comes next.
pub async fn read_after(db: &Db, after: i64, limit: i64) -> Result<Page, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, tenant_id, kind, subject, issued_before, expires_at, created_at \
         FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit + 1)
    .fetch_all(db.pool())
    .await?;
    if rows.is_empty() && after > 0 {
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM revocations")
            .fetch_one(db.pool())
            .await?;
        if newest.unwrap_or(0) < after {
            return Box::pin(read_after(db, 0, limit)).await;
        }
    }
    let has_more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    let now = unix_now();
    let mut cursor = after;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows.iter().take(usize::try_from(limit).unwrap_or(0)) {
        let seq: i64 = row.try_get("seq")?;
        let created_ms: i64 = row.try_get("created_at")?;
        cursor = seq;
        let kind: String = row.try_get("kind")?;
        let subject: String = row.try_get("subject")?;
        let target = match kind.as_str() {
            "session" => Revoked::Session { sid: subject },
            "subject" => Revoked::Subject {
                sub: subject,
                issued_before: row.try_get::<Option<i64>, _>("issued_before")?.unwrap_or(0),
            },
            "token" => Revoked::Token { jti: subject },
            "tenant" => Revoked::Tenant {
                issued_before: row.try_get::<Option<i64>, _>("issued_before")?.unwrap_or(0),
            },
            other => {
                tracing::warn!(kind = other, seq, "skipping a revocation of unknown kind");
                continue;
            }
        };
        let revoked_at = created_ms / 1_000;
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at.saturating_add(MAX_LEEWAY_SECS) < now {
            continue;
        }
        entries.push(Entry {
            seq,
            created_ms,
            revocation: Revocation {
                tid: row.try_get("tenant_id")?,
                target,
                revoked_at,
                expires_at,
            },
        });
    }
    Ok(Page {
        entries,
        cursor,
        has_more,
    })
}

/// Parses a cursor as handed out (`0` or absent: from the start).
pub fn parse_cursor(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|c| *c >= 0)
}

/// One open stream, counted against its client while it lives.
pub struct StreamSlot {
    feed: Arc<Feed>,
    client_id: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.feed.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = streams.get_mut(&self.client_id) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.client_id);
            }
        }
    }
}

/// Entries read by this instance's poller: everything after `after` up to `cursor`.
#[derive(Debug)]
pub struct Batch {
    /// The cursor the read started from. A stream behind it has missed entries and reads the
    /// database instead.
    pub after: i64,
    /// The entries read, unexpired, every tenant's.
    pub entries: Vec<Entry>,
    /// The cursor after them.
    pub cursor: i64,
}

/// This instance's view of the feed: follows every instance's entries on the bus, holds
/// every unexpired entry in memory and pushes new entries to the streams and the caches.
pub struct Feed {
    bus: Arc<Bus>,
    pushed: broadcast::Sender<Arc<Batch>>,
    /// Every unexpired entry, for this instance's own checks.
    index: RwLock<RevocationSet>,
    /// Where the poller starts: the end of what [`Feed::load`] read.
    loaded_to: AtomicI64,
    /// Open streams per client id.
    streams: Mutex<HashMap<String, usize>>,
    closing: watch::Sender<bool>,
}

impl Feed {
    /// A feed with no stream open yet and no entry known, announcing on `bus`.
    pub fn new(bus: Arc<Bus>) -> Arc<Self> {
        let (pushed, _) = broadcast::channel(BACKLOG);
        Arc::new(Self {
            bus,
            pushed,
            index: RwLock::new(RevocationSet::default()),
            loaded_to: AtomicI64::new(0),
            streams: Mutex::new(HashMap::new()),
            closing: watch::Sender::new(false),
        })
    }

    /// A feed holding every unexpired entry in the database, so nothing revoked before this
    /// instance started is honoured late.
    pub async fn load(db: &Db, bus: Arc<Bus>) -> Result<Arc<Self>, sqlx::Error> {
        let feed = Self::new(bus);
        let mut cursor = 0;
        loop {
            let page = read_after(db, cursor, MAX_PAGE).await?;
            feed.index_all(page.entries.iter().map(|e| e.revocation.clone()));
            cursor = page.cursor;
            if !page.has_more {
                break;
            }
        }
        feed.loaded_to.store(cursor, Ordering::Relaxed);
        Ok(feed)
    }

    fn index_all(&self, entries: impl IntoIterator<Item = Revocation>) {
        let now = unix_now();
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        for entry in entries {
            index.insert(entry, now, MAX_LEEWAY_SECS);
        }
    }

    /// Applies entries this instance just committed at once, and announces them (the
    /// follower then pushes them to the streams and caches here, and other instances read
    /// them).
    pub fn learn_all(&self, entries: impl IntoIterator<Item = Revocation>) {
        self.index_all(entries);
        self.wake();
    }

    /// Whether an entry of the feed revokes `claims`: the very rule every follower of the
    /// feed applies ([`Revocation::covers`]).
    pub fn covers(&self, claims: &AccessClaims) -> bool {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .covers(claims)
    }

    /// When tenant `tid`, or subject `sub` in it, was last revoked as a whole (Unix seconds),
    /// so caches holding either know they must read it again.
    pub fn last_revoked(&self, tid: &str, sub: &str) -> Option<i64> {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_revoked(tid, sub)
    }

    /// Announces entries committed here: this instance reads them at once, and so do the
    /// others when the transport needs telling (on PostgreSQL the commit already told them).
    pub fn wake(&self) {
        self.bus.publish(Topic::Revocations, 0);
    }

    /// Counts a stream opened by `client_id` until the slot is dropped; `None` when the
    /// client already holds [`MAX_STREAMS_PER_CLIENT`].
    pub fn open_stream(self: &Arc<Self>, client_id: &str) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let open = streams.entry(client_id.to_owned()).or_default();
        if *open >= MAX_STREAMS_PER_CLIENT {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            feed: Arc::clone(self),
            client_id: client_id.to_owned(),
        })
    }

    /// Receives every batch pushed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.pushed.subscribe()
    }

    /// Resolves when the server shuts down, so open streams end and let it.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every open stream.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Indexes and pushes every entry written after what [`Feed::load`] read, by any
    /// instance, whenever the bus announces one (and at its reconciliation reads), until
    /// `db` closes or the feed is dropped. Each batch starts where the previous one ended:
    /// a stream that sees a batch starting beyond its own position knows it missed entries
    /// and reads them from the database.
    pub fn follow(self: &Arc<Self>, jobs: &Jobs, db: Db) {
        let feed = Arc::downgrade(self);
        let start = self.loaded_to.load(Ordering::Relaxed);
        self.bus
            .follow(jobs, Topic::Revocations, start, move |mut cursor| {
                let feed = feed.clone();
                let db = db.clone();
                async move {
                    let Some(feed) = feed.upgrade() else {
                        return Followed::Gone;
                    };
                    if db.pool().is_closed() {
                        return Followed::Gone;
                    }
                    match feed.poll(&db, &mut cursor).await {
                        Ok(()) => Followed::At(cursor),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the revocation feed failed");
                            Followed::Failed
                        }
                    }
                }
            });
    }

    async fn poll(&self, db: &Db, cursor: &mut i64) -> Result<(), sqlx::Error> {
        loop {
            let page = read_after(db, *cursor, MAX_PAGE).await?;
            self.index_all(page.entries.iter().map(|e| e.revocation.clone()));
            if page.cursor > *cursor {
                let _ = self.pushed.send(Arc::new(Batch {
                    after: *cursor,
                    entries: page.entries,
                    cursor: page.cursor,
                }));
            }
            *cursor = page.cursor;
            if !page.has_more {
                return Ok(());
            }
        }
    }
}
