//! The first admin: created on the first start of an installation with no accounts, in the
//! default tenant, from `TESSERA_BOOTSTRAP_ADMIN_EMAIL` / `TESSERA_BOOTSTRAP_ADMIN_PASSWORD` or
//! with a random password shown once.

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Email, NewUser, UserError};
use crate::audit::Actor;
use crate::db::Db;
use crate::http::client::RequestMeta;
use crate::passwords::Passwords;
use crate::tenants::DEFAULT_TENANT_ID;

/// Environment variable naming the bootstrap admin's email.
pub const EMAIL_VAR: &str = "TESSERA_BOOTSTRAP_ADMIN_EMAIL";
/// Environment variable holding the bootstrap admin's password.
pub const PASSWORD_VAR: &str = "TESSERA_BOOTSTRAP_ADMIN_PASSWORD";
/// Email used when none is given.
pub const DEFAULT_EMAIL: &str = "admin@localhost";

/// What the operator must be told once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The admin's email.
    pub email: String,
    /// The generated password, when none was given.
    pub generated_password: Option<String>,
}

/// A random password: 144 bits, base64url.
pub fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 18];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates the admin when no account exists; `None` when there was nothing to do.
pub async fn ensure_admin(
    db: &Db,
    passwords: &Passwords,
    email: Option<String>,
    password: Option<String>,
) -> anyhow::Result<Option<Created>> {
    if super::count(db).await? > 0 {
        return Ok(None);
    }
    let email = Email::parse(email.as_deref().unwrap_or(DEFAULT_EMAIL))
        .map_err(|e| anyhow::anyhow!("{EMAIL_VAR}: {e}"))?;
    let (password, generated) = match password {
        Some(p) => (p, false),
        None => (random_password()?, true),
    };
    let hash = passwords
        .hash(password.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{PASSWORD_VAR}: {e}"))?;
    let new = NewUser {
        tenant_id: DEFAULT_TENANT_ID.to_owned(),
        email,
        username: Some("admin".to_owned()),
        first_name: "Admin".to_owned(),
        last_name: String::new(),
        password_hash: Some(hash),
        roles: vec!["admin".to_owned()],
    };
    let mut tx = db.pool().begin().await?;
    match super::create(&mut tx, &new, &Actor::System, &RequestMeta::default()).await {
        Ok(_) => tx.commit().await?,
        // Another instance bootstrapped at the same moment.
        Err(UserError::Conflict) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(email = %new.email, "created the bootstrap admin");
    Ok(Some(Created {
        email: new.email.to_string(),
        generated_password: generated.then_some(password),
    }))
}
