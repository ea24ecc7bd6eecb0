//! The flag tables: definitions and overrides written through the admin API, tenant
//! overrides, and the change table every instance follows through the change bus. Handlers never write SQL; they call
//! these, and every write happens in the caller's transaction together with its change row
//! and audit event.

use serde_json::Value;
use sqlx::{AnyConnection, Row as _};
use tessera_token::unix_now_ms;

use crate::db::Db;

/// Where a stored row's definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Created through the admin API: the row is the whole definition.
    Api,
    /// Declared in the config file: the row holds the API's override of its values.
    Config,
}

impl Origin {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Config => "config",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "api" => Some(Self::Api),
            "config" => Some(Self::Config),
            _ => None,
        }
    }
}

/// A stored definition or override.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlag {
    /// The flag key.
    pub key: String,
    /// Whose definition it is.
    pub origin: Origin,
    /// The definition (`Api`) or the overridden fields (`Config`).
    pub definition: Value,
    /// Unix milliseconds of the last change.
    pub updated_at: i64,
}

/// A stored tenant override.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOverride {
    /// The tenant.
    pub tenant_id: String,
    /// The flag.
    pub flag_key: String,
    /// Its value there.
    pub value: Value,
}

/// A change as the change table records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its place in commit order.
    pub seq: i64,
    /// The flag.
    pub flag_key: String,
    /// The tenant whose override changed; `None` when every tenant is concerned.
    pub tenant_id: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Everything stored, read at one moment.
#[derive(Debug, Default)]
pub struct Stored {
    /// Definitions and overrides of definitions.
    pub flags: Vec<StoredFlag>,
    /// Tenant overrides.
    pub overrides: Vec<StoredOverride>,
    /// The newest change's `seq` (0 when none).
    pub seq: i64,
}

/// Reads every stored flag and override, and the newest change number. The number is read
/// first: a change committed meanwhile is read again at the next poll, never missed.
pub async fn load(db: &Db) -> Result<Stored, sqlx::Error> {
    let seq = newest_change(db).await?;
    let rows = sqlx::query("SELECT key, origin, definition, updated_at FROM flags ORDER BY key")
        .fetch_all(db.pool())
        .await?;
    let mut flags = Vec::with_capacity(rows.len());
    for row in rows {
        let key: String = row.try_get("key")?;
        let origin: String = row.try_get("origin")?;
        let text: String = row.try_get("definition")?;
        let (Some(origin), Ok(definition)) = (Origin::parse(&origin), serde_json::from_str(&text))
        else {
            tracing::warn!(flag = %key, "skipping a stored flag that cannot be read");
            continue;
        };
        flags.push(StoredFlag {
            key,
            origin,
            definition,
            updated_at: row.try_get("updated_at")?,
        });
    }
    let rows = sqlx::query("SELECT tenant_id, flag_key, value FROM flag_tenant_overrides")
        .fetch_all(db.pool())
        .await?;
    let mut overrides = Vec::with_capacity(rows.len());
    for row in rows {
        let text: String = row.try_get("value")?;
        let Ok(value) = serde_json::from_str(&text) else {
            continue;
        };
        overrides.push(StoredOverride {
            tenant_id: row.try_get("tenant_id")?,
            flag_key: row.try_get("flag_key")?,
            value,
        });
    }
    Ok(Stored {
        flags,
        overrides,
        seq,
    })
}

/// The newest change's number, 0 when there is none.
pub async fn newest_change(db: &Db) -> Result<i64, sqlx::Error> {
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM flag_changes")
        .fetch_one(db.pool())
        .await?;
    Ok(newest.unwrap_or(0))
}

/// The changes after `after`, oldest first, at most `limit`.
pub async fn changes_after(db: &Db, after: i64, limit: i64) -> Result<Vec<Change>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, flag_key, tenant_id, created_at FROM flag_changes WHERE seq > $1 \
         ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Change {
                seq: row.try_get("seq")?,
                flag_key: row.try_get("flag_key")?,
                tenant_id: row.try_get("tenant_id")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
}

/// Records a change on `conn`, the changing transaction, and announces its number on the
/// change bus. On PostgreSQL the change table is locked against other writers to the commit,
/// so numbers become visible in order and a reader that read N has seen every change before N.
pub async fn record_change(
    conn: &mut AnyConnection,
    flag_key: &str,
    tenant_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("LOCK TABLE flag_changes IN EXCLUSIVE MODE")
            .execute(&mut *conn)
            .await?;
    }
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO flag_changes (flag_key, tenant_id, created_at) VALUES ($1, $2, $3) \
         RETURNING seq",
    )
    .bind(flag_key)
    .bind(tenant_id)
    .bind(unix_now_ms())
    .fetch_one(&mut *conn)
    .await?;
    crate::bus::announce(conn, crate::bus::Topic::Flags, seq).await
}

/// Reads one stored row on `conn`.
pub async fn find(conn: &mut AnyConnection, key: &str) -> Result<Option<StoredFlag>, sqlx::Error> {
    let row = sqlx::query("SELECT key, origin, definition, updated_at FROM flags WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let origin: String = row.try_get("origin")?;
    let text: String = row.try_get("definition")?;
    Ok(Some(StoredFlag {
        key: row.try_get("key")?,
        origin: Origin::parse(&origin).unwrap_or(Origin::Api),
        definition: serde_json::from_str(&text).unwrap_or(Value::Null),
        updated_at: row.try_get("updated_at")?,
    }))
}

/// Writes (inserts or replaces) a definition or override on `conn`.
pub async fn save(
    conn: &mut AnyConnection,
    key: &str,
    origin: Origin,
    definition: &Value,
) -> Result<(), sqlx::Error> {
    let now = unix_now_ms();
    sqlx::query(
        "INSERT INTO flags (key, origin, definition, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (key) DO UPDATE SET origin = $2, definition = $3, updated_at = $4",
    )
    .bind(key)
    .bind(origin.as_str())
    .bind(definition.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    record_change(conn, key, None).await
}

/// Deletes a flag's row and every tenant's override of it, on `conn`.
pub async fn delete(conn: &mut AnyConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM flag_tenant_overrides WHERE flag_key = $1")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM flags WHERE key = $1")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    record_change(conn, key, None).await
}

/// The tenant's override of `key`, on `conn`.
pub async fn find_override(
    conn: &mut AnyConnection,
    tenant_id: &str,
    key: &str,
) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT value FROM flag_tenant_overrides WHERE tenant_id = $1 AND flag_key = $2",
    )
    .bind(tenant_id)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// Sets the tenant's override of `key` on `conn`.
pub async fn set_override(
    conn: &mut AnyConnection,
    tenant_id: &str,
    key: &str,
    value: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flag_tenant_overrides (tenant_id, flag_key, value, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, flag_key) DO UPDATE SET value = $3, updated_at = $4",
    )
    .bind(tenant_id)
    .bind(key)
    .bind(value.to_string())
    .bind(unix_now_ms())
    .execute(&mut *conn)
    .await?;
    record_change(conn, key, Some(tenant_id)).await
}

/// Clears the tenant's override of `key` on `conn`; whether there was one.
pub async fn clear_override(
    conn: &mut AnyConnection,
    tenant_id: &str,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM flag_tenant_overrides WHERE tenant_id = $1 AND flag_key = $2")
            .bind(tenant_id)
            .bind(key)
            .execute(&mut *conn)
            .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    record_change(conn, key, Some(tenant_id)).await?;
    Ok(true)
}

/// Deletes changes older than `before_ms`, always keeping the newest so the sequence an
/// instance reloads by never goes back.
pub async fn prune_changes(db: &Db, before_ms: i64) -> Result<u64, sqlx::Error> {
    let _turn = db.write_turn().await;
    let done = sqlx::query(
        "DELETE FROM flag_changes WHERE created_at < $1 \
         AND seq < (SELECT MAX(seq) FROM flag_changes)",
    )
    .bind(before_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}
