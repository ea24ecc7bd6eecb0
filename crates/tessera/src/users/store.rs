//! The queries behind accounts: every SQL statement on `users` and `user_roles` lives here,
//! below the handlers, so two routes doing the same thing cannot drift.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::{Email, NewUser, User, UserError};
use crate::audit::{self, Actor};
use crate::db::Db;
use crate::http::client::RequestMeta;
use crate::revocations;
use crate::sessions::{self, Revoked, Scope};

fn unique_violation(e: sqlx::Error) -> UserError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => UserError::Conflict,
        _ => UserError::Database(e),
    }
}

/// The columns [`row_to_user`] reads.
pub const USER_COLUMNS: &str =
    "id, tenant_id, email, username, first_name, last_name, active, created_at, last_login_at";

/// An account from a row of [`USER_COLUMNS`].
pub fn row_to_user(row: &AnyRow) -> Result<User, sqlx::Error> {
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
    audit::Event::new("user.created", actor, origin)
        .in_tenant(&new.tenant_id)
        .on("user", &id)
        .details(serde_json::json!({ "roles": new.roles }))
        .record(conn)
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

/// Enables or disables the account, audited as `user.enabled` / `user.disabled`, on `conn`
/// (the change's transaction). Disabling also ends what the account had open: logins waiting
/// for a second factor, every session (returned, for the cache once committed) and, through
/// the revocation feed, every token issued to it so far. Every path that disables an account
/// (the admin API's update and delete, the CLI) comes here.
pub async fn set_active(
    conn: &mut AnyConnection,
    user: &User,
    active: bool,
    actor: &Actor,
    origin: &RequestMeta,
) -> Result<Revoked, sqlx::Error> {
    sqlx::query("UPDATE users SET active = $1, updated_at = $2 WHERE id = $3")
        .bind(i32::from(active))
        .bind(tessera_token::unix_now())
        .bind(&user.id)
        .execute(&mut *conn)
        .await?;
    let action = if active {
        "user.enabled"
    } else {
        "user.disabled"
    };
    record_change(conn, user, action, actor, origin).await?;
    if active {
        return Ok(Revoked::default());
    }
    end_login_challenges(conn, &user.id).await?;
    // Session rows first, the feed's table lock second, as every revoking transaction does.
    let revoked =
        sessions::revoke(conn, Scope::AllOf(&user.id), "user_disabled", actor, origin).await?;
    revocations::record_subject(conn, &user.tenant_id, &user.id, 0).await?;
    Ok(revoked)
}

/// Replaces the account's given and family names.
pub async fn set_names(
    conn: &mut AnyConnection,
    user_id: &str,
    first_name: &str,
    last_name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET first_name = $1, last_name = $2, updated_at = $3 WHERE id = $4")
        .bind(first_name)
        .bind(last_name)
        .bind(tessera_token::unix_now())
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces the account's roles with `roles`.
pub async fn set_roles(
    conn: &mut AnyConnection,
    user_id: &str,
    roles: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    for role in roles {
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(user_id)
            .bind(role)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The role names of each of `users`, sorted, in their order: one query for a page.
pub async fn roles_of_each(db: &Db, users: &[User]) -> Result<Vec<Vec<String>>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=users.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT user_id, role FROM user_roles WHERE user_id IN ({}) ORDER BY role",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
    for user in users {
        query = query.bind(&user.id);
    }
    let rows = query.fetch_all(db.pool()).await?;
    Ok(users
        .iter()
        .map(|u| {
            rows.iter()
                .filter(|(id, _)| id == &u.id)
                .map(|(_, role)| role.clone())
                .collect()
        })
        .collect())
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
    audit::Event::new(action, actor, origin)
        .in_tenant(&user.tenant_id)
        .on("user", &user.id)
        .record(conn)
        .await
}
