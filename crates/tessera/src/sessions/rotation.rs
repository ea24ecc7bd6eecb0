//! Refresh rotation: exactly one of any number of concurrent refreshes with the same token
//! rotates it; the others, within the grace window, get the same successor (derived, see
//! [`refresh`](super::refresh)); the token presented after the window is reuse and revokes the
//! session.

use sqlx::Row as _;
use tessera_token::unix_now;

use super::refresh::RefreshToken;
use super::{SESSION_COLUMNS, Scope, Session, Sessions, revoke, row_to_session};
use crate::audit::{self, Actor};
use crate::db::Db;
use crate::http::client::RequestMeta;

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// No such token.
    #[error("unknown refresh token")]
    Unknown,
    /// A token rotated longer ago than the grace window: the session is now revoked.
    #[error("refresh token reused; the session is revoked")]
    Reused,
    /// The session is revoked or expired, or its user disabled.
    #[error("the session has ended")]
    SessionEnded,
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A successful refresh.
#[derive(Debug)]
pub struct Rotation {
    /// The token to use next time.
    pub token: RefreshToken,
    /// The session, as extended.
    pub session: Session,
}

/// Rotation: replaces the session's current refresh token with its successor and extends the
/// idle expiry (never past the absolute one), if and only if the presented token is the
/// current one and the session is unrevoked, unexpired and its user and tenant active. One
/// statement: the database lets exactly one of any concurrent refreshes with the same token
/// match.
const ROTATE_SESSION: &str = "UPDATE sessions SET refresh_hash = $1, \
     previous_refresh_hash = refresh_hash, refreshed_at = $2, last_used_at = $2, \
     idle_expires_at = CASE WHEN $3 < absolute_expires_at THEN $3 ELSE absolute_expires_at END \
     WHERE refresh_hash = $4 AND revoked_at IS NULL \
     AND idle_expires_at > $2 AND absolute_expires_at > $2 \
     AND EXISTS (SELECT 1 FROM users u WHERE u.id = sessions.user_id AND u.active = 1) \
     AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = sessions.tenant_id AND t.active = 1) \
     RETURNING id, user_id, tenant_id, created_at, last_used_at, idle_expires_at, \
     absolute_expires_at, auth_time, amr, ip, user_agent, revoked_at, 1 AS active";

/// Records a successor in the history of issued tokens before the rotation that makes it
/// current; only while the presented token is current, so made-up tokens write nothing, and
/// a concurrent refresh recording the same successor is not an error.
const RECORD_SUCCESSOR: &str = "INSERT INTO refresh_tokens (token_hash, session_id, created_at) \
     SELECT $1, id, $2 FROM sessions WHERE refresh_hash = $3 \
     ON CONFLICT (token_hash) DO NOTHING";

/// A presented token that did not rotate, and what its session says about it.
struct Unrotated {
    session: Session,
    /// The session's current token hash.
    current: String,
    /// The token hash the last rotation replaced.
    previous: Option<String>,
    refreshed_at: Option<i64>,
}

/// What a token that did not rotate was.
enum Verdict {
    /// The other tab's refresh within the grace window: it gets the same successor.
    Grace,
    /// Current, live, yet not rotated: the session was revoked or expired a moment ago.
    JustEnded,
    /// A rotated token presented again after the window.
    Reuse,
}

impl Unrotated {
    /// The session `session_id` with its token history; `None` when it is gone.
    async fn load(db: &Db, session_id: &str) -> Result<Option<Self>, sqlx::Error> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, s.refresh_hash, s.previous_refresh_hash, s.refreshed_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
        );
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(session_id)
            .fetch_optional(db.pool())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Self {
            session: row_to_session(&row)?,
            current: row.try_get("refresh_hash")?,
            previous: row.try_get("previous_refresh_hash")?,
            refreshed_at: row.try_get("refreshed_at")?,
        }))
    }

    fn verdict(&self, presented: &str, successor: &str, now: i64, grace: i64) -> Verdict {
        let within_grace = self
            .refreshed_at
            .is_some_and(|t| now.saturating_sub(t) <= grace);
        if self.previous.as_deref() == Some(presented) && self.current == successor && within_grace
        {
            Verdict::Grace
        } else if self.current == presented {
            Verdict::JustEnded
        } else {
            Verdict::Reuse
        }
    }
}

impl Sessions {
    /// Rotates `presented`: exactly one of any number of concurrent calls with the same token
    /// rotates it; the others, within the grace window, get the same successor. Presented
    /// after the window, the token is reuse: the session is revoked and audited.
    pub async fn rotate(
        &self,
        db: &Db,
        presented: &RefreshToken,
        origin: &RequestMeta,
    ) -> Result<Rotation, RefreshError> {
        // A token this server never issued is answered from one read, before anything that
        // would queue behind the writers.
        let Some(session_id) = self.session_of(db, presented).await? else {
            return Err(RefreshError::Unknown);
        };
        self.rotate_known(db, &session_id, presented, origin).await
    }

    /// [`rotate`](Self::rotate) for a token whose session [`session_of`](Self::session_of)
    /// already found (the caller needed it first: CSRF, rate limits).
    pub async fn rotate_known(
        &self,
        db: &Db,
        session_id: &str,
        presented: &RefreshToken,
        origin: &RequestMeta,
    ) -> Result<Rotation, RefreshError> {
        let now = unix_now();
        let hash = presented.hash();
        let successor = presented.successor(&self.successor_key);
        if let Some(session) = self.swap(db, &hash, &successor, now).await? {
            self.watcher.extended(&session.id);
            return Ok(Rotation {
                token: successor,
                session,
            });
        }
        // Not rotated: a dead session, the other tab, or reuse.
        let Some(seen) = Unrotated::load(db, session_id).await? else {
            return Err(RefreshError::Unknown);
        };
        if !seen.session.is_live(now) {
            return Err(RefreshError::SessionEnded);
        }
        match seen.verdict(&hash, &successor.hash(), now, self.grace) {
            Verdict::Grace => {
                record_grace(db, &seen.session, origin).await?;
                Ok(Rotation {
                    token: successor,
                    session: seen.session,
                })
            }
            Verdict::JustEnded => Err(RefreshError::SessionEnded),
            Verdict::Reuse => {
                self.revoke_reused(db, &seen, origin).await?;
                Err(RefreshError::Reused)
            }
        }
    }

    /// Makes `successor` current in place of the token hashed `presented`, in the writers'
    /// turn; the session as extended, or `None` when the presented token was not current on a
    /// live session.
    async fn swap(
        &self,
        db: &Db,
        presented: &str,
        successor: &RefreshToken,
        now: i64,
    ) -> Result<Option<Session>, sqlx::Error> {
        let _turn = db.write_turn().await;
        sqlx::query(RECORD_SUCCESSOR)
            .bind(successor.hash())
            .bind(now)
            .bind(presented)
            .execute(db.pool())
            .await?;
        let rotated = sqlx::query(ROTATE_SESSION)
            .bind(successor.hash())
            .bind(now)
            .bind(now.saturating_add(self.idle_ttl))
            .bind(presented)
            .fetch_optional(db.pool())
            .await?;
        rotated.as_ref().map(row_to_session).transpose()
    }

    /// Reuse: audits it and revokes the session.
    async fn revoke_reused(
        &self,
        db: &Db,
        seen: &Unrotated,
        origin: &RequestMeta,
    ) -> Result<(), sqlx::Error> {
        let session = &seen.session;
        crate::telemetry::signals::refresh_reuse();
        let mut tx = db.begin_write().await?;
        audit::Event::new("refresh.reuse_detected", &Actor::Anonymous, origin)
            .in_tenant(&session.tenant_id)
            .on("session", &session.id)
            .failed("refresh_reuse")
            .details(serde_json::json!({
                "user_id": session.user_id,
                "last_refreshed_at": seen.refreshed_at,
            }))
            .record(&mut tx)
            .await?;
        let revoked = revoke(
            &mut tx,
            Scope::One(&session.id),
            "refresh_reuse",
            &Actor::System,
            origin,
        )
        .await?;
        tx.commit().await?;
        revoked.apply(self);
        Ok(())
    }
}

/// The other tab's refresh, on record: a copy of the token in other hands would also get the
/// successor within the window.
async fn record_grace(db: &Db, session: &Session, origin: &RequestMeta) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    audit::Event::new(
        "refresh.grace",
        &Actor::User(session.user_id.clone()),
        origin,
    )
    .in_tenant(&session.tenant_id)
    .on("session", &session.id)
    .record(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
