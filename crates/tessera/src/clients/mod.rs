//! Service accounts: OAuth 2.0 clients of one tenant, each with a secret (256 random bits,
//! shown once, stored as SHA-256) and the scopes its tokens may carry.

pub mod routes;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use subtle::ConstantTimeEq as _;
use tessera_token::{Revocation, unix_now};

use crate::audit::{self, Actor};
use crate::bus::changes::{self, Change, Changes};
use crate::db::{Db, Param};
use crate::http::client::RequestMeta;
use crate::rbac::Permission;
use crate::revocations::{self, Feed};

/// Marks Tessera client secrets, so secret scanners and people can recognise one.
const SECRET_PREFIX: &str = "tss_";

/// Most scopes one client may be allowed.
pub const MAX_SCOPES: usize = 64;

/// A client secret. `Debug` never shows it.
pub struct ClientSecret(String);

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

impl ClientSecret {
    /// A new random secret.
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes)?;
        Ok(Self(format!(
            "{SECRET_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// The secret, to show its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Hex SHA-256 of a presented secret.
pub fn hash_secret(secret: &str) -> String {
    crate::digest::sha256_hex(secret.as_bytes())
}

/// A stored client, without its secret hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Client {
    /// The `client_id`.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// What it is.
    pub name: String,
    /// Scopes its tokens may carry.
    pub scopes: Vec<String>,
    /// Whether it may obtain tokens.
    pub active: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last secret rotation.
    pub secret_rotated_at: i64,
}

const COLUMNS: &str = "id, tenant_id, name, scopes, active, created_at, secret_rotated_at";

fn row_to_client(row: &AnyRow) -> Result<Client, sqlx::Error> {
    let scopes: String = row.try_get("scopes")?;
    Ok(Client {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        active: row.try_get::<i32, _>("active")? != 0,
        created_at: row.try_get("created_at")?,
        secret_rotated_at: row.try_get("secret_rotated_at")?,
    })
}

/// Parses scopes (each a `resource:action` permission), sorted and without duplicates.
pub fn parse_scopes(texts: &[String]) -> Result<Vec<Permission>, String> {
    if texts.len() > MAX_SCOPES {
        return Err(format!("a client is allowed at most {MAX_SCOPES} scopes"));
    }
    let mut scopes = texts
        .iter()
        .map(|t| Permission::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    scopes.sort_by_key(ToString::to_string);
    scopes.dedup();
    Ok(scopes)
}

fn audit_event<'a>(
    action: &'static str,
    actor: &'a Actor,
    client: &'a Client,
    origin: &'a RequestMeta,
) -> audit::Event<'a> {
    audit::Event::new(action, actor, origin)
        .in_tenant(client.tenant_id.as_str())
        .on("client", &client.id)
        .details(serde_json::json!({ "name": client.name, "scopes": client.scopes }))
}

/// Creates a client with a new secret on `conn` (a transaction), audited there.
pub async fn create(
    conn: &mut AnyConnection,
    tenant_id: &str,
    name: &str,
    scopes: &[Permission],
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<(Client, ClientSecret), sqlx::Error> {
    let secret = ClientSecret::generate()
        .map_err(|_| sqlx::Error::Protocol("the system random generator failed".into()))?;
    let now = unix_now();
    let client = Client {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant_id.to_owned(),
        name: name.to_owned(),
        scopes: scopes.iter().map(ToString::to_string).collect(),
        active: true,
        created_at: now,
        secret_rotated_at: now,
    };
    sqlx::query(
        "INSERT INTO clients (id, tenant_id, name, secret_hash, scopes, active, created_at, \
         updated_at, secret_rotated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $6)",
    )
    .bind(&client.id)
    .bind(&client.tenant_id)
    .bind(&client.name)
    .bind(hash_secret(secret.expose()))
    .bind(serde_json::to_string(&client.scopes).unwrap_or_else(|_| "[]".into()))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    audit_event("client.created", actor, &client, origin)
        .record(conn)
        .await?;
    Ok((client, secret))
}

/// The client `id`, in `tenant_id` when given.
pub async fn find(
    db: &Db,
    id: &str,
    tenant_id: Option<&str>,
) -> Result<Option<Client>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM clients WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let client = row.as_ref().map(row_to_client).transpose()?;
    Ok(client.filter(|c| tenant_id.is_none_or(|t| t == c.tenant_id)))
}

/// A tenant's clients, newest first, one page, with the total.
pub async fn list(
    db: &Db,
    tenant_id: &str,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Client>, i64), sqlx::Error> {
    db.paginate(
        "SELECT COUNT(*) FROM clients WHERE tenant_id = $1",
        &format!(
            "SELECT {COLUMNS} FROM clients WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC"
        ),
        &[Param::Text(tenant_id)],
        (limit, offset),
        row_to_client,
    )
    .await
}

/// Replaces the client's secret; the old one stops working at once, and so do the tokens it
/// obtained (a subject entry in the revocation feed, returned with the secret): a secret is
/// rotated because it may have leaked, and whoever held it may hold its tokens. Audited.
pub async fn rotate_secret(
    db: &Db,
    client: &Client,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<(ClientSecret, Revocation), sqlx::Error> {
    let secret = ClientSecret::generate()
        .map_err(|_| sqlx::Error::Protocol("the system random generator failed".into()))?;
    let now = unix_now();
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "UPDATE clients SET secret_hash = $1, secret_rotated_at = $2, updated_at = $2 WHERE id = $3",
    )
    .bind(hash_secret(secret.expose()))
    .bind(now)
    .bind(&client.id)
    .execute(&mut *tx)
    .await?;
    audit_event("client.secret_rotated", actor, client, origin)
        .record(&mut tx)
        .await?;
    let revoked = revocations::record_subject(
        &mut tx,
        &client.tenant_id,
        &client.id,
        crate::rbac::ACCESS_CHANGE_MARGIN_SECS,
    )
    .await?;
    client_changed(&mut tx, &client.id, now).await?;
    tx.commit().await?;
    Ok((secret, revoked))
}

/// Changes name, scopes and whether the client is active. Audited.
///
/// Disabling it, or taking a scope away, writes a subject entry in the revocation feed in the
/// same transaction, so services refuse the tokens it was issued before; that entry is
/// returned, for [`Feed::learn_all`] and `Rbac::note_revoked` (tokens issued after it must be
/// issued later, see `Rbac::issue_time`). Enabling the client again lifts nothing: its tokens
/// from before stay revoked, for introspection as for the feed.
pub async fn update(
    db: &Db,
    client: &Client,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<Option<Revocation>, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let stored: Option<String> = sqlx::query_scalar("SELECT scopes FROM clients WHERE id = $1")
        .bind(&client.id)
        .fetch_optional(&mut *tx)
        .await?;
    let before: Vec<String> = stored
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let narrowed =
        crate::rbac::first_uncovered(&parse_stored(&client.scopes), &parse_stored(&before))
            .is_some();
    sqlx::query(
        "UPDATE clients SET name = $1, scopes = $2, active = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(&client.name)
    .bind(serde_json::to_string(&client.scopes).unwrap_or_else(|_| "[]".into()))
    .bind(i32::from(client.active))
    .bind(unix_now())
    .bind(&client.id)
    .execute(&mut *tx)
    .await?;
    let action = if client.active {
        "client.updated"
    } else {
        "client.disabled"
    };
    audit_event(action, actor, client, origin)
        .record(&mut tx)
        .await?;
    let margin = if !client.active {
        // Its tokens stop working here at once (the cache is told); services verifying
        // locally, and other instances' caches, learn it from the feed. The margin covers
        // tokens other instances issue until they have read it.
        Some(revocations::ISSUE_MARGIN_SECS)
    } else if narrowed {
        // Its tokens carry the old scopes: services must stop trusting them, and it
        // obtains tokens with the new ones.
        Some(crate::rbac::ACCESS_CHANGE_MARGIN_SECS)
    } else {
        None
    };
    let revoked = match margin {
        Some(margin) => {
            Some(revocations::record_subject(&mut tx, &client.tenant_id, &client.id, margin).await?)
        }
        None => None,
    };
    client_changed(&mut tx, &client.id, unix_now()).await?;
    tx.commit().await?;
    Ok(revoked)
}

/// Tells every instance's cache, through the change bus, to read the client again once the
/// transaction commits (the route publishes after the commit).
async fn client_changed(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), sqlx::Error> {
    let change = Change::Client { id: id.to_owned() };
    let _ = changes::record(conn, &change, now.saturating_mul(1_000)).await?;
    Ok(())
}

/// Stored scopes, parsed (checked when written; anything unreadable counts as nothing).
fn parse_stored(texts: &[String]) -> Vec<Permission> {
    texts
        .iter()
        .filter_map(|t| Permission::parse(t).ok())
        .collect()
}

/// How long a client read from the database is trusted. Changes made by this instance apply
/// at once. A client or tenant disabled elsewhere (another instance, the CLI) applies here as
/// soon as the revocation feed's poller reads its entry (every 200 ms); a secret rotated,
/// or a client or tenant enabled again, elsewhere applies within this many seconds.
pub const CACHE_TTL_SECS: i64 = 10;

/// Most clients remembered.
const CACHE_CAPACITY: usize = 10_000;

/// A client as cached, with its secret hash and whether its tenant is active.
#[derive(Debug)]
pub struct CachedClient {
    /// The client.
    pub client: Client,
    /// Whether its tenant is active: a disabled tenant's clients are refused everywhere.
    pub tenant_active: bool,
    secret_hash: String,
    loaded_at: i64,
}

impl CachedClient {
    /// Whether it may authenticate and its tokens be honoured: it and its tenant are active.
    pub fn usable(&self) -> bool {
        self.client.active && self.tenant_active
    }

    /// Whether `other` holds the same secret (one authenticated earlier is still current).
    pub fn same_secret(&self, other: &CachedClient) -> bool {
        self.secret_hash
            .as_bytes()
            .ct_eq(other.secret_hash.as_bytes())
            .into()
    }
}

/// Clients by id, so the token and introspection endpoints answer without a query per call.
pub struct ClientCache {
    entries: RwLock<HashMap<String, Arc<CachedClient>>>,
    /// The revocation feed as this instance holds it: an entry revoking a client or its
    /// tenant makes what was read about them before it stale.
    feed: Arc<Feed>,
}

impl ClientCache {
    /// An empty cache that follows `feed`.
    pub fn new(feed: Arc<Feed>) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            feed,
        }
    }

    /// Whether `entry` may still be trusted at `now`: fresh, and not read before (or within
    /// the issuing margin after) an entry of the feed revoked its client or tenant, when the
    /// revoking transaction may not have committed yet.
    fn fresh(&self, entry: &CachedClient, now: i64) -> bool {
        now - entry.loaded_at < CACHE_TTL_SECS
            && self
                .feed
                .last_revoked(&entry.client.tenant_id, &entry.client.id)
                .is_none_or(|at| entry.loaded_at > at + revocations::ISSUE_MARGIN_SECS)
    }

    /// The client `id`, from memory when fresh. Unknown ids are not remembered (they would
    /// let anyone fill the cache), so each costs a query.
    pub async fn get(&self, db: &Db, id: &str) -> Result<Option<Arc<CachedClient>>, sqlx::Error> {
        let now = unix_now();
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if let Some(entry) = cached
            && self.fresh(&entry, now)
        {
            return Ok(Some(entry));
        }
        let sql = format!(
            "SELECT {COLUMNS}, secret_hash, \
             (SELECT t.active FROM tenants t WHERE t.id = clients.tenant_id) AS tenant_active \
             FROM clients WHERE id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
        let Some(row) = row else {
            self.forget(id);
            return Ok(None);
        };
        let entry = Arc::new(CachedClient {
            client: row_to_client(&row)?,
            tenant_active: row.try_get::<i32, _>("tenant_active")? != 0,
            secret_hash: row.try_get("secret_hash")?,
            loaded_at: now,
        });
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(id.to_owned(), Arc::clone(&entry));
        Ok(Some(entry))
    }

    /// Follows the cache invalidations of clients and tenants written by any instance or the
    /// CLI until the cache is dropped; having missed some, it forgets every client.
    pub fn follow(self: &Arc<Self>, changes: &Changes) {
        changes.follow(Arc::downgrade(self), |cache: &Self, change| match change {
            Some(Change::Client { id }) => cache.forget(id),
            Some(Change::Tenant { id }) => cache.forget_tenant(id),
            Some(_) => {}
            None => cache
                .entries
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .clear(),
        });
    }

    /// Drops a client after it changed here.
    pub fn forget(&self, id: &str) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Drops every client of a tenant after the tenant was disabled or enabled here.
    pub fn forget_tenant(&self, tenant_id: &str) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, entry| entry.client.tenant_id != tenant_id);
    }

    /// The active client these credentials belong to, or `None` for an unknown client, a
    /// wrong secret, a disabled client or a client of a disabled tenant alike. The secret is
    /// compared in constant time.
    pub async fn authenticate(
        &self,
        db: &Db,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<Client>, sqlx::Error> {
        let presented = hash_secret(secret);
        let Some(entry) = self.get(db, client_id).await? else {
            return Ok(None);
        };
        let matches: bool = presented
            .as_bytes()
            .ct_eq(entry.secret_hash.as_bytes())
            .into();
        Ok((matches && entry.usable()).then(|| entry.client.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_prefixed_and_never_printed() {
        let secret = ClientSecret::generate().expect("random");
        assert!(secret.expose().starts_with("tss_"));
        assert_eq!(secret.expose().len(), 47);
        assert!(!format!("{secret:?}").contains(&secret.expose()[4..]));
        assert_eq!(hash_secret("abc").len(), 64);
        assert_ne!(hash_secret("abc"), hash_secret("abd"));
    }

    #[test]
    fn scopes_are_permissions() {
        let scopes =
            parse_scopes(&["tokens:introspect".into(), "b:c".into(), "b:c".into()]).expect("valid");
        assert_eq!(scopes.len(), 2);
        assert!(parse_scopes(&["not a scope".into()]).is_err());
    }
}
