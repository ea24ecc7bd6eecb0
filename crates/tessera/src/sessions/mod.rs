//! Sessions: one per login, extended by refresh-token rotation, ended by logout, password
//! change, account disable, refresh-token reuse or an administrator. Every change is written
//! with its audit event in one transaction; the in-memory session cache
//! ([`crate::caller::cache::SessionCache`], told through [`Watcher`]) learns of revocations at
//! once, so requests never need the database to know a session is over.

pub mod refresh;
mod rotation;
pub mod routes;

pub use rotation::{RefreshError, Rotation};

use std::sync::Arc;

use aws_lc_rs::hmac;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use tessera_token::{Revoked as RevokedTarget, unix_now};

use crate::audit::{self, Actor};
use crate::config::Config;
use crate::db::{Db, Param};
use crate::http::client::RequestMeta;
use crate::master::MasterKey;
use crate::revocations::{self, Feed};
use refresh::RefreshToken;

/// One session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// UUIDv7; the `sid` of its access tokens.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The user's tenant.
    pub tenant_id: String,
    /// Unix seconds, as every time here.
    pub created_at: i64,
    /// Last refresh (or the login).
    pub last_used_at: i64,
    /// Ends if not refreshed by then.
    pub idle_expires_at: i64,
    /// Ends by then whatever happens.
    pub absolute_expires_at: i64,
    /// When the user authenticated.
    pub auth_time: i64,
    /// How (RFC 8176 method names).
    pub amr: Vec<String>,
    /// Client IP at login.
    pub ip: Option<String>,
    /// `User-Agent` at login.
    pub user_agent: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Whether the user may still log in: the user and its tenant are active.
    pub user_active: bool,
}

impl Session {
    /// When it ends unless refreshed.
    pub fn expires_at(&self) -> i64 {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    /// Whether it may be used at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.user_active && now < self.expires_at()
    }

    /// The public view, never with token material.
    pub fn view(&self, current: Option<&str>) -> SessionView {
        SessionView {
            id: self.id.clone(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            expires_at: self.expires_at(),
            auth_time: self.auth_time,
            amr: self.amr.clone(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            is_current: current == Some(self.id.as_str()),
        }
    }
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// Session id.
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last refresh.
    pub last_used_at: i64,
    /// Unix seconds when it ends unless refreshed.
    pub expires_at: i64,
    /// Unix seconds of the login.
    pub auth_time: i64,
    /// Authentication methods.
    pub amr: Vec<String>,
    /// Client IP at login.
    pub ip: Option<String>,
    /// Browser or client at login.
    pub user_agent: Option<String>,
    /// Whether this is the session making the request.
    pub is_current: bool,
}

/// What a login knows about the session it opens.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// The user.
    pub user_id: &'a str,
    /// The user's tenant.
    pub tenant_id: &'a str,
    /// Authentication methods used.
    pub amr: &'a [&'a str],
    /// Request context (IP, user agent).
    pub origin: &'a RequestMeta,
}

/// Sessions that were just revoked in a transaction: once it commits, [`Revoked::apply`]
/// tells the cache.
#[must_use = "the cache must learn of committed revocations"]
#[derive(Debug, Default)]
pub struct Revoked(pub Vec<String>);

impl Revoked {
    /// Marks the sessions revoked in `sessions`' cache and pushes them to the revocation
    /// feed's streams (after the commit).
    pub fn apply(self, sessions: &Sessions) {
        sessions.watcher.revoked(&self.0, unix_now());
        if !self.0.is_empty() {
            sessions.feed.wake();
        }
    }
}

/// Which of a user's sessions to revoke.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// This one session.
    One(&'a str),
    /// Every session of the user.
    AllOf(&'a str),
    /// Every session of the user except one (`revoke-others`, password change).
    AllOfExcept(&'a str, &'a str),
    /// Every session in a tenant (the tenant was disabled).
    Tenant(&'a str),
}

/// Told of the sessions this instance ends or extends, so what caches live sessions (the
/// caller's session cache) stays true without this module knowing it.
pub trait Watcher: Send + Sync {
    /// `ids` were revoked at `now` (committed).
    fn revoked(&self, ids: &[String], now: i64);
    /// `id` was extended by a refresh: read it again next time.
    fn extended(&self, id: &str);
}

/// The session service of one instance.
pub struct Sessions {
    watcher: Arc<dyn Watcher>,
    feed: Arc<Feed>,
    successor_key: hmac::Key,
    idle_ttl: i64,
    absolute_ttl: i64,
    grace: i64,
}

/// The columns of a session (table `s`, its user `u`). `active` is the user's and the tenant's: a session of a disabled tenant is not live, even
/// one a login racing the disable opened after the tenant's sessions were revoked.
pub const SESSION_COLUMNS: &str = "s.id, s.user_id, s.tenant_id, s.created_at, s.last_used_at, \
     s.idle_expires_at, s.absolute_expires_at, s.auth_time, s.amr, s.ip, s.user_agent, \
     s.revoked_at, CASE WHEN u.active = 1 AND EXISTS (SELECT 1 FROM tenants ta \
     WHERE ta.id = s.tenant_id AND ta.active = 1) THEN 1 ELSE 0 END AS active";

/// A session from a row of [`SESSION_COLUMNS`].
pub fn row_to_session(row: &AnyRow) -> Result<Session, sqlx::Error> {
    let amr: String = row.try_get("amr")?;
    Ok(Session {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        tenant_id: row.try_get("tenant_id")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        idle_expires_at: row.try_get("idle_expires_at")?,
        absolute_expires_at: row.try_get("absolute_expires_at")?,
        auth_time: row.try_get("auth_time")?,
        amr: serde_json::from_str(&amr).unwrap_or_default(),
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        revoked_at: row.try_get("revoked_at")?,
        user_active: row.try_get::<i32, _>("active")? != 0,
    })
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Sessions {
    /// The service with the configured lifetimes, its secret derived from `master`.
    pub fn new(
        config: &Config,
        master: &MasterKey,
        feed: Arc<Feed>,
        watcher: Arc<dyn Watcher>,
    ) -> Self {
        Self {
            watcher,
            feed,
            successor_key: hmac::Key::new(
                hmac::HMAC_SHA256,
                &master.derive("tessera refresh-token successor v1"),
            ),
            idle_ttl: secs(config.auth.session_idle_ttl_secs),
            absolute_ttl: secs(config.auth.session_absolute_ttl_secs),
            grace: secs(config.auth.refresh_grace_secs),
        }
    }

    /// Opens a session and issues its first refresh token, on `conn` (the login's
    /// transaction).
    pub async fn create(
        &self,
        conn: &mut AnyConnection,
        new: &NewSession<'_>,
    ) -> Result<(Session, RefreshToken), sqlx::Error> {
        let now = unix_now();
        let token = RefreshToken::generate()
            .map_err(|_| sqlx::Error::Protocol("the system random generator failed".to_owned()))?;
        let absolute = now.saturating_add(self.absolute_ttl);
        let session = Session {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: new.user_id.to_owned(),
            tenant_id: new.tenant_id.to_owned(),
            created_at: now,
            last_used_at: now,
            idle_expires_at: now.saturating_add(self.idle_ttl).min(absolute),
            absolute_expires_at: absolute,
            auth_time: now,
            amr: new.amr.iter().map(|m| (*m).to_owned()).collect(),
            ip: new.origin.ip.clone(),
            user_agent: new.origin.user_agent.clone(),
            revoked_at: None,
            user_active: true,
        };
        sqlx::query(
            "INSERT INTO sessions (id, user_id, tenant_id, created_at, last_used_at, \
             idle_expires_at, absolute_expires_at, auth_time, amr, ip, user_agent, refresh_hash) \
             VALUES ($1, $2, $3, $4, $4, $5, $6, $4, $7, $8, $9, $10)",
        )
        .bind(&session.id)
        .bind(&session.user_id)
        .bind(&session.tenant_id)
        .bind(now)
        .bind(session.idle_expires_at)
        .bind(session.absolute_expires_at)
        .bind(serde_json::to_string(&session.amr).unwrap_or_else(|_| "[]".to_owned()))
        .bind(session.ip.as_deref())
        .bind(session.user_agent.as_deref())
        .bind(token.hash())
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(token.hash())
        .bind(&session.id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok((session, token))
    }

    /// The session a refresh token belongs to, rotated or not.
    pub async fn session_of(
        &self,
        db: &Db,
        token: &RefreshToken,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(token.hash())
            .fetch_optional(db.pool())
            .await
    }
}

/// One session with its user's state.
pub async fn fetch(conn: &mut AnyConnection, id: &str) -> Result<Option<Session>, sqlx::Error> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(row_to_session)
        .transpose()
}

/// The live sessions of a user, newest first, one page of them, with the total count.
pub async fn list_live(
    db: &Db,
    user_id: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Session>, i64), sqlx::Error> {
    let now = unix_now();
    let live = "s.user_id = $1 AND s.revoked_at IS NULL \
                AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2";
    db.paginate(
        &format!("SELECT COUNT(*) FROM sessions s WHERE {live}"),
        &format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE {live} ORDER BY s.created_at DESC, s.id DESC"
        ),
        &[Param::Text(user_id), Param::Int(now)],
        (limit, offset),
        row_to_session,
    )
    .await
}

/// Revokes the sessions in `scope` that are not revoked yet, each with a `session.revoked`
/// audit event, on `conn` (the change's transaction). Apply the result after committing.
pub async fn revoke(
    conn: &mut AnyConnection,
    scope: Scope<'_>,
    reason: &str,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<Revoked, sqlx::Error> {
    let now = unix_now();
    let by = match actor {
        Actor::User(id) => format!("user:{id}"),
        Actor::Client(id) => format!("client:{id}"),
        Actor::System => "system".to_owned(),
        Actor::Anonymous => "anonymous".to_owned(),
    };
    let (filter, key, except) = match scope {
        Scope::One(id) => ("id = $4", id, ""),
        Scope::AllOf(user) => ("user_id = $4 AND id <> $5", user, ""),
        Scope::AllOfExcept(user, keep) => ("user_id = $4 AND id <> $5", user, keep),
        Scope::Tenant(tenant) => ("tenant_id = $4", tenant, ""),
    };
    let sql = format!(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2, revoked_by = $3 \
         WHERE {filter} AND revoked_at IS NULL \
         RETURNING id, user_id, tenant_id, absolute_expires_at"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(reason)
        .bind(&by)
        .bind(key);
    if matches!(scope, Scope::AllOf(_) | Scope::AllOfExcept(..)) {
        query = query.bind(except);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        let user_id: String = row.try_get("user_id")?;
        let tenant_id: String = row.try_get("tenant_id")?;
        let ends: i64 = row.try_get("absolute_expires_at")?;
        let target = RevokedTarget::Session { sid: id.clone() };
        let expires_at = ends.min(now.saturating_add(revocations::MAX_TOKEN_TTL_SECS));
        revocations::record(conn, &tenant_id, &target, expires_at).await?;
        audit::Event::new("session.revoked", actor, origin)
            .in_tenant(&tenant_id)
            .on("session", &id)
            .because(reason)
            .details(serde_json::json!({ "user_id": user_id }))
            .record(conn)
            .await?;
        ids.push(id);
    }
    Ok(Revoked(ids))
}
