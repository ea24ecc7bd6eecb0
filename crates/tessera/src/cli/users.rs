//! `tessera users create | disable | reset-password | import`: operator tasks, each audited
//! as done by `system`.

use std::io::BufRead as _;

use serde::Deserialize;

use super::UsersAction;
use crate::audit::Actor;
use crate::config::Config;
use crate::db::{Create, Db};
use crate::http::client::RequestMeta;
use crate::passwords::Passwords;
use crate::tenants::{self, DEFAULT_TENANT_ID};
use crate::users::{self, Email, NewUser, User, bootstrap::random_password};

pub(super) async fn run(config: &Config, action: UsersAction) -> anyhow::Result<()> {
    let db = Db::connect(&config.database, Create::Never).await?;
    let passwords = Passwords::new(&config.passwords)?;
    let outcome = match action {
        UsersAction::Create {
            email,
            tenant,
            username,
            first_name,
            last_name,
            roles,
            password_stdin,
        } => {
            let tenant_id = tenant_id(&db, tenant.as_deref()).await?;
            let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            let (password, generated) = password(password_stdin)?;
            let new = NewUser {
                tenant_id,
                email,
                username,
                first_name: first_name.unwrap_or_default(),
                last_name: last_name.unwrap_or_default(),
                password_hash: Some(hash(&passwords, password.clone()).await?),
                roles: if roles.is_empty() {
                    vec!["user".into()]
                } else {
                    roles
                },
            };
            let mut tx = db.pool().begin().await?;
            let user =
                users::create(&mut tx, &new, &Actor::System, &RequestMeta::default()).await?;
            tx.commit().await?;
            println!("created {} ({})", user.email, user.id);
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        UsersAction::Disable { email, tenant } => {
            let user = find(&db, &email, tenant.as_deref()).await?;
            // A running server learns of the revoked sessions within a second (it polls).
            let mut tx = db.begin_write().await?;
            let revoked = users::set_active(
                &mut tx,
                &user,
                false,
                &Actor::System,
                &RequestMeta::default(),
            )
            .await?;
            tx.commit().await?;
            println!(
                "disabled {} and revoked {} session(s)",
                user.email,
                revoked.0.len()
            );
            Ok(())
        }
        UsersAction::ResetPassword {
            email,
            tenant,
            password_stdin,
        } => {
            let user = find(&db, &email, tenant.as_deref()).await?;
            let (password, generated) = password(password_stdin)?;
            let hash = hash(&passwords, password.clone()).await?;
            let revoked = users::set_password_hash(
                &db,
                &user,
                &hash,
                "user.password_reset",
                &Actor::System,
                &RequestMeta::default(),
            )
            .await?;
            println!(
                "password of {} reset; {} session(s) revoked",
                user.email,
                revoked.0.len()
            );
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        UsersAction::Import { file, tenant } => {
            import(&db, &passwords, &file, tenant.as_deref()).await
        }
    };
    db.close().await;
    outcome
}

pub(super) async fn tenant_id(db: &Db, slug: Option<&str>) -> anyhow::Result<String> {
    match slug {
        None => Ok(DEFAULT_TENANT_ID.to_owned()),
        Some(slug) => tenants::tenant_id(db, slug)
            .await?
            .ok_or_else(|| anyhow::anyhow!("--tenant: no tenant `{slug}`")),
    }
}

async fn find(db: &Db, email: &str, tenant: Option<&str>) -> anyhow::Result<User> {
    let tenant_id = tenant_id(db, tenant).await?;
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("EMAIL: {e}"))?;
    users::find_by_email(db, &tenant_id, &email)
        .await
        .map_err(|e| match e {
            users::UserError::NotFound => anyhow::anyhow!("no account {email} in that tenant"),
            other => other.into(),
        })
}

/// The password from the first line of stdin, or a generated one. Never from an argument,
/// where every user of the machine could read it in the process list.
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((random_password()?, true));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        anyhow::bail!("--password-stdin: no password on standard input");
    }
    Ok((password, false))
}

async fn hash(passwords: &Passwords, password: String) -> anyhow::Result<String> {
    passwords
        .hash(password)
        .await
        .map_err(|e| anyhow::anyhow!("password: {e}"))
}

/// One line of an import file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    email: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// Reads every line first and imports nothing unless all are valid, then writes all
/// accounts in one transaction: an import never stops halfway.
async fn import(
    db: &Db,
    passwords: &Passwords,
    file: &str,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let tenant_id = tenant_id(db, tenant).await?;
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?
    };
    let mut accounts = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ImportLine = match serde_json::from_str(line) {
            Ok(parsed) => parsed,
            Err(e) => {
                problems.push(format!("line {number}: {e}"));
                continue;
            }
        };
        let email = match Email::parse(&parsed.email) {
            Ok(email) => email,
            Err(e) => {
                problems.push(format!("line {number}: email: {e}"));
                continue;
            }
        };
        let hash = match (parsed.password, parsed.password_hash) {
            (Some(password), None) => match passwords.hash(password).await {
                Ok(hash) => hash,
                Err(e) => {
                    problems.push(format!("line {number}: password: {e}"));
                    continue;
                }
            },
            (None, Some(hash)) if users::is_known_hash_format(&hash) => hash,
            (None, Some(_)) => {
                problems.push(format!(
                    "line {number}: password_hash: not Argon2, PBKDF2-SHA256 (PHC or Django) or bcrypt"
                ));
                continue;
            }
            _ => {
                problems.push(format!(
                    "line {number}: give exactly one of password and password_hash"
                ));
                continue;
            }
        };
        accounts.push((
            number,
            NewUser {
                tenant_id: tenant_id.clone(),
                email,
                username: parsed.username,
                first_name: parsed.first_name,
                last_name: parsed.last_name,
                password_hash: Some(hash),
                roles: if parsed.roles.is_empty() {
                    vec!["user".into()]
                } else {
                    parsed.roles
                },
            },
        ));
    }
    if !problems.is_empty() {
        anyhow::bail!("nothing imported:\n  {}", problems.join("\n  "));
    }
    let mut tx = db.pool().begin().await?;
    for (number, account) in &accounts {
        let outcome =
            users::create(&mut tx, account, &Actor::System, &RequestMeta::default()).await;
        if let Err(e) = outcome {
            anyhow::bail!("nothing imported: line {number} ({}): {e}", account.email);
        }
    }
    tx.commit().await?;
    println!("imported {} account(s)", accounts.len());
    Ok(())
}
