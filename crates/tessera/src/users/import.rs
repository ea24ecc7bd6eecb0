//! Importing accounts from another system: JSON lines with a password or a legacy hash.
//!
//! Every line is checked before anything is written, and a legacy hash is parsed the way login
//! will parse it ([`StoredHash`]): a hash that could never verify (an unknown scheme, malformed
//! text, a cost Tessera refuses to pay) is refused here, naming its line, instead of becoming an
//! account nobody can sign in to. Then all accounts are written in one transaction, so an
//! import never stops halfway.

use serde::Deserialize;

use super::{Email, NewUser};
use crate::audit::Actor;
use crate::db::Db;
use crate::http::client::RequestMeta;
use crate::passwords::Passwords;
use crate::passwords::stored_hash::StoredHash;

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

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Lines that are not acceptable, each message starting `line N:`.
    #[error("nothing imported:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    /// A line that was valid but could not be written (an email already taken, say).
    #[error("nothing imported: line {line} ({email}): {cause}")]
    Refused {
        /// Its line number.
        line: usize,
        /// The account's email.
        email: String,
        /// What the database said.
        cause: super::UserError,
    },
    /// The database failed.
    #[error("nothing imported: {0}")]
    Database(#[from] sqlx::Error),
}

/// Imports the JSON lines of `text` into `tenant_id`, all or nothing; returns how many
/// accounts were created. Accounts without roles get `user`.
pub async fn import(
    db: &Db,
    passwords: &Passwords,
    text: &str,
    tenant_id: &str,
) -> Result<usize, ImportError> {
    let accounts = parse(passwords, text, tenant_id).await?;
    let mut tx = db.pool().begin().await?;
    for (line, account) in &accounts {
        let outcome =
            super::create(&mut tx, account, &Actor::System, &RequestMeta::default()).await;
        if let Err(cause) = outcome {
            return Err(ImportError::Refused {
                line: *line,
                email: account.email.as_str().to_owned(),
                cause,
            });
        }
    }
    tx.commit().await?;
    Ok(accounts.len())
}

/// Every line checked; the accounts with their line numbers, or every problem found.
async fn parse(
    passwords: &Passwords,
    text: &str,
    tenant_id: &str,
) -> Result<Vec<(usize, NewUser)>, ImportError> {
    let mut accounts = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        match account(passwords, line, tenant_id).await {
            Ok(account) => accounts.push((number, account)),
            Err(problem) => problems.push(format!("line {number}: {problem}")),
        }
    }
    if problems.is_empty() {
        Ok(accounts)
    } else {
        Err(ImportError::Invalid(problems))
    }
}

/// One line as a new account, or what is wrong with it.
async fn account(passwords: &Passwords, line: &str, tenant_id: &str) -> Result<NewUser, String> {
    let parsed: ImportLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let email = Email::parse(&parsed.email).map_err(|e| format!("email: {e}"))?;
    let hash = match (parsed.password, parsed.password_hash) {
        (Some(password), None) => passwords
            .hash(password)
            .await
            .map_err(|e| format!("password: {e}"))?,
        (None, Some(hash)) => {
            StoredHash::parse(&hash).map_err(|e| format!("password_hash: {e}"))?;
            hash
        }
        _ => return Err("give exactly one of password and password_hash".into()),
    };
    Ok(NewUser {
        tenant_id: tenant_id.to_owned(),
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
    })
}
