//! Tenants and users: validated identifiers, the queries behind accounts, and the bootstrap
//! admin created on the first start.

pub mod bootstrap;
pub mod listing;
pub mod routes;

use std::fmt;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::audit::{self, Actor};
use crate::db::Db;
use crate::http::client::RequestMeta;
use crate::revocations;
use crate::sessions::{self, Revoked, Scope};

/// An email address, checked once; compared by its lowercase form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    raw: String,
    normalized: String,
}

impl Email {
    /// Accepts `local@domain` with no spaces, control, format or bidi characters (see
    /// [`crate::text`]), at most 254 bytes.
    /// Deliverability is not this function's business; shape and length are.
    pub fn parse(input: &str) -> Result<Self, String> {
        let raw = input.trim();
        let valid = raw.len() <= 254
            && !raw
                .chars()
                .any(|c| c.is_whitespace() || crate::text::is_hidden(c))
            && raw.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if !valid {
            return Err(format!("`{}` is not an email address", raw.escape_debug()));
        }
        Ok(Self {
            raw: raw.to_owned(),
            normalized: raw.to_lowercase(),
        })
    }

    /// As given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Lowercase, for lookups and uniqueness.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Longest first or last name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A username: 3 to 64 letters, digits, `.`, `_`, `-`; never an `@`, so a login is
/// unambiguously an email or a username.
pub fn check_username(name: &str) -> Result<(), String> {
    let ok = (3..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("a username has 3 to 64 letters, digits, `.`, `_` or `-`".to_owned())
    }
}

/// A first or last name: at most [`MAX_NAME_CHARS`] characters, none of them hidden (control,
/// format or bidi characters: see [`crate::text`]).
pub fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.chars().count() > MAX_NAME_CHARS || crate::text::has_hidden(value) {
        return Err(format!(
            "`{field}` has at most {MAX_NAME_CHARS} characters and no control, format or \
             bidi characters"
        ));
    }
    Ok(())
}

/// What a new account needs.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Tenant id.
    pub tenant_id: String,
    /// Email.
    pub email: Email,
    /// Optional login name, unique per tenant (case-insensitive).
    pub username: Option<String>,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// PHC or legacy hash; `None` for an account without a password.
    pub password_hash: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
}

/// A stored user, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// UUIDv7.
    pub id: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Email as given.
    pub email: String,
    /// Login name.
    pub username: Option<String>,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Whether the account may log in.
    pub active: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last successful login.
    pub last_login_at: Option<i64>,
}

/// Why an account could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Email or username already taken in the tenant.
    #[error("an account with this email or username already exists in the tenant")]
    Conflict,
    /// No such account.
    #[error("no such account")]
    NotFound,
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

fn unique_violation(e: sqlx::Error) -> UserError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => UserError::Conflict,
        _ => UserError::Database(e),
    }
}

const USER_COLUMNS: &str =
    "id, tenant_id, email, username, first_name, last_name, active, created_at, last_login_at";

fn row_to_user(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        email: row.try_get("email")?,
        username: row.try_get("username")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        active: row.try_get::<i32, _>("active")? != 0,
        created_at: row.try_get("created_at")?,
        last_login_at: row.try_get("last_login_at")?,
    })
}

/// Creates the account, its roles and the `user.created` audit event on `conn` (a
/// transaction: all three or nothing).
pub async fn create(
    conn: &mut AnyConnection,
    new: &NewUser,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<User, UserError> {
    let now = tessera_token::unix_now();
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, email_normalized, username, \
         username_normalized, first_name, last_name, password_hash, active, auth_provider, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, 'password', $10, $10)",
    )
    .bind(&id)
    .bind(&new.tenant_id)
    .bind(new.email.as_str())
    .bind(new.email.normalized())
    .bind(new.username.as_deref())
    .bind(new.username.as_deref().map(str::to_lowercase))
    .bind(&new.first_name)
    .bind(&new.last_name)
    .bind(new.password_hash.as_deref())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unique_violation)?;
    for role in &new.roles {
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(&id)
            .bind(role)
            .execute(&mut *conn)
            .await?;
    }
    audit::record(
        conn,
        &audit::Event {
            action: "user.created",
            actor,
            tenant_id: Some(&new.tenant_id),
            target: Some(("user", &id)),
            success: true,
            reason: None,
            origin,
            details: Some(serde_json::json!({ "roles": new.roles })),
        },
    )
    .await?;
    Ok(User {
        id,
        tenant_id: new.tenant_id.clone(),
        email: new.email.as_str().to_owned(),
        username: new.username.clone(),
        first_name: new.first_name.clone(),
        last_name: new.last_name.clone(),
        active: true,
        created_at: now,
        last_login_at: None,
    })
}

/// The account with this email in the tenant.
pub async fn find_by_email(db: &Db, tenant_id: &str, email: &Email) -> Result<User, UserError> {
    let sql =
        format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND email_normalized = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(email.normalized())
        .fetch_optional(db.pool())
        .await?
        .ok_or(UserError::NotFound)?;
    Ok(row_to_user(&row)?)
}

/// The account's stored password hash.
pub async fn password_hash(db: &Db, user_id: &str) -> Result<Option<String>, UserError> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db.pool())
        .await?
        .ok_or(UserError::NotFound)
}

/// Role names of the account, sorted.
pub async fn roles(db: &Db, user_id: &str) -> Result<Vec<String>, UserError> {
    Ok(
        sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
            .bind(user_id)
            .fetch_all(db.pool())
            .await?,
    )
}

/// How many accounts exist.
pub async fn count(db: &Db) -> Result<i64, UserError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db.pool())
        .await?)
}

/// Replaces the password hash and revokes every session of the account, recording `action`
/// (`user.password_reset`, …) in the audit log in the same transaction. For operators and
/// administrators; a user changing their own password keeps the current session.
pub async fn set_password_hash(
    db: &Db,
    user: &User,
    hash: &str,
    action: &'static str,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<Revoked, UserError> {
    let mut tx = db.begin_write().await?;
    replace_password_hash(&mut tx, user, hash, action, actor, origin).await?;
    let revoked = sessions::revoke(
        &mut tx,
        Scope::AllOf(&user.id),
        "password_reset",
        actor,
        origin,
    )
    .await?;
    tx.commit().await?;
    Ok(revoked)
}

/// Writes a new password hash for `user` with its audit event, on `conn` (a transaction).
async fn replace_password_hash(
    conn: &mut AnyConnection,
    user: &User,
    hash: &str,
    action: &'static str,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash)
        .bind(tessera_token::unix_now())
        .bind(&user.id)
        .execute(&mut *conn)
        .await?;
    end_login_challenges(conn, &user.id).await?;
    record_change(conn, user, action, actor, origin).await
}

/// Ends logins waiting for a second factor: they proved a password that no longer counts,
/// or an account that can no longer log in.
async fn end_login_challenges(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM mfa_challenges WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Disables the account (it can no longer log in) and revokes its sessions, audited in the
/// same transaction.
pub async fn disable(
    db: &Db,
    user: &User,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<Revoked, UserError> {
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE users SET active = 0, updated_at = $1 WHERE id = $2")
        .bind(tessera_token::unix_now())
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
    record_change(&mut tx, user, "user.disabled", actor, origin).await?;
    end_login_challenges(&mut tx, &user.id).await?;
    // Session rows first, the feed's table lock second, as every revoking transaction does.
    let revoked = sessions::revoke(
        &mut tx,
        Scope::AllOf(&user.id),
        "user_disabled",
        actor,
        origin,
    )
    .await?;
    revocations::record_subject(&mut tx, &user.tenant_id, &user.id, 0).await?;
    tx.commit().await?;
    Ok(revoked)
}

/// The account a login names in a tenant (by email when it holds `@`, else by username),
/// with its password hash; `active` is false when the account or its tenant is disabled.
pub async fn find_for_login(
    db: &Db,
    tenant_id: &str,
    login: &str,
) -> Result<Option<(User, Option<String>)>, UserError> {
    let normalized = login.trim().to_lowercase();
    let column = if normalized.contains('@') {
        "email_normalized"
    } else {
        "username_normalized"
    };
    let sql = format!(
        "SELECT {USER_COLUMNS}, password_hash, \
         (SELECT t.active FROM tenants t WHERE t.id = users.tenant_id) AS tenant_active \
         FROM users WHERE tenant_id = $1 AND {column} = $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant_id)
        .bind(&normalized)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(row) => {
            let mut user = row_to_user(&row)?;
            // An account of a disabled tenant cannot log in either.
            user.active = user.active && row.try_get::<i32, _>("tenant_active")? != 0;
            Ok(Some((user, row.try_get("password_hash")?)))
        }
        None => Ok(None),
    }
}

/// The account with this id, for finishing a login; `active` is false when the account or
/// its tenant is disabled.
pub async fn find_for_login_by_id(db: &Db, id: &str) -> Result<User, UserError> {
    let sql = format!(
        "SELECT {USER_COLUMNS}, \
         (SELECT t.active FROM tenants t WHERE t.id = users.tenant_id) AS tenant_active \
         FROM users WHERE id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or(UserError::NotFound)?;
    let mut user = row_to_user(&row)?;
    user.active = user.active && row.try_get::<i32, _>("tenant_active")? != 0;
    Ok(user)
}

/// The account with this id, only when it belongs to `tenant_id` (another tenant's account
/// is as absent as a missing one).
pub async fn find_in_tenant(db: &Db, tenant_id: &str, id: &str) -> Result<User, UserError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND tenant_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(db.pool())
        .await?
        .ok_or(UserError::NotFound)?;
    Ok(row_to_user(&row)?)
}

/// Records a successful login: its time and, when the password was checked against a legacy
/// or weaker hash, the Argon2id replacement. On `conn`, the login's transaction.
///
/// Only if the account still has the hash the password was checked against and is still
/// active: a reset, change or disable that committed while the password was being verified
/// wins, and the login must fail (`Ok(false)`) rather than open a session after it.
pub async fn record_login(
    conn: &mut AnyConnection,
    user_id: &str,
    verified_hash: &str,
    upgraded_hash: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users SET last_login_at = $1, password_hash = $2 \
         WHERE id = $3 AND password_hash = $4 AND active = 1",
    )
    .bind(now)
    .bind(upgraded_hash.unwrap_or(verified_hash))
    .bind(user_id)
    .bind(verified_hash)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the password hash only if it is still `expected` (the one the current password
/// was checked against); `Ok(false)` when it changed meanwhile. Audited as `action`.
pub async fn swap_password_hash(
    conn: &mut AnyConnection,
    user: &User,
    expected: &str,
    hash: &str,
    action: &'static str,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND password_hash = $4",
    )
    .bind(hash)
    .bind(tessera_token::unix_now())
    .bind(&user.id)
    .bind(expected)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    end_login_challenges(conn, &user.id).await?;
    record_change(conn, user, action, actor, origin).await?;
    Ok(true)
}

/// The audit event of a successful change to `user`, on the change's transaction.
async fn record_change(
    conn: &mut AnyConnection,
    user: &User,
    action: &'static str,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<(), sqlx::Error> {
    audit::record(
        conn,
        &audit::Event {
            action,
            actor,
            tenant_id: Some(&user.tenant_id),
            target: Some(("user", &user.id)),
            success: true,
            reason: None,
            origin,
            details: None,
        },
    )
    .await
}

/// Whether a stored hash is in a format this server verifies (for imports).
pub fn is_known_hash_format(hash: &str) -> bool {
    [
        "$argon2id$",
        "$argon2i$",
        "$argon2d$",
        "$pbkdf2-sha256$",
        "pbkdf2_sha256$",
        "$2a$",
        "$2b$",
        "$2y$",
    ]
    .iter()
    .any(|p| hash.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_compared_in_lowercase() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(email.normalized(), "ada.lovelace@example.com");
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a b@x.io",
            "a@b@c",
            "a@.x",
            "a@x.",
            "a\n@x.io",
            "admin\u{200B}@example.com",
            "admin@\u{202E}moc.elpmaxe",
            "\u{FEFF}admin@example.com",
            "ad\u{2066}min@example.com",
            "admin@exam\u{00AD}ple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@x.io", "a".repeat(65))).is_err());
    }

    #[test]
    fn names_refuse_invisible_and_bidi_characters() {
        assert!(check_name("first_name", "Zoë").is_ok());
        for bad in ["Ad\u{200B}a", "\u{202E}ecilA", "Bob\u{2069}", "x\u{E0041}"] {
            assert!(check_name("first_name", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_verifiable_hash_formats_are_importable() {
        assert!(is_known_hash_format("$2b$12$abc"));
        assert!(is_known_hash_format("pbkdf2_sha256$1000$s$h"));
        assert!(!is_known_hash_format("5f4dcc3b5aa765d61d8327deb882cf99"));
        assert!(!is_known_hash_format("$1$md5crypt"));
    }
}
