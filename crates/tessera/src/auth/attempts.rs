//! The one gate every check of a secret goes through: the password at login, the current
//! password behind a session (password change, MFA setup and disable), TOTP and recovery
//! codes (MFA verify and disable).
//!
//! The rule holds on every route because no route counts on its own: a [`SecretCheck`] is
//! taken for the resolved account (or, for a login name that resolves to nothing, for that
//! name in its tenant, so unknown names answer exactly like known ones) before the secret is
//! verified, and says afterwards whether it was right.
//!
//! - A locked account is refused before any verification, with the answer login gives:
//!   `429 login_delayed` and `Retry-After`.
//! - Only a wrong secret counts toward the lockout, and it is audited. An overload (`503`
//!   from the hashing pool), a database error or a refusal below is never a failure: the
//!   check is dropped without a verdict.
//! - Few verifications of one account run at once (see [`Limiter::begin_attempt`]); the
//!   others wait, or get `429 too_many_attempts` when too many already wait. So one caller
//!   cannot occupy the hashing pool, parallel guesses cannot outrun the lockout, and a burst
//!   of right passwords never locks anyone out.
//!
//! Passwords and codes are counted apart: knowing the password (and logging in again) must
//! not reset the count of wrong codes.
//!
//! [`Limiter::begin_attempt`]: crate::http::ratelimit::Limiter::begin_attempt

use axum::http::StatusCode;

use crate::audit::{self, Actor};
use crate::http::ApiError;
use crate::http::client::RequestMeta;
use crate::http::ratelimit::{AttemptPlace, AttemptRefused};
use crate::state::AppState;
use crate::users::User;

/// The kind of secret checked; each is counted on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// The account's password.
    Password,
    /// A TOTP or recovery code.
    Code,
}

impl Factor {
    fn prefix(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::Code => "otp",
        }
    }

    /// The audit action of the failure that starts a lockout.
    fn lockout_action(self) -> &'static str {
        match self {
            Self::Password => "login.lockout_started",
            Self::Code => "mfa.lockout_started",
        }
    }
}

/// Whose secret is checked.
pub enum Subject<'a> {
    /// A resolved account: counted per account, whatever name it was reached by.
    Account(&'a User),
    /// A login name that resolves to no account, counted under the name.
    Unknown {
        /// The tenant, when it exists (for the audit log).
        tenant_id: Option<&'a str>,
        /// The tenant (or the slug typed, when none has it) and the name, normalised.
        name: &'a str,
    },
}

/// The lockout key of an account's `factor`.
fn account_key(factor: Factor, user_id: &str) -> String {
    format!("{}:acct:{user_id}", factor.prefix())
}

/// A verification under way; say how it went with [`passed`](Self::passed) or
/// [`failed`](Self::failed). Dropped without either, nothing is counted.
pub struct SecretCheck<'a> {
    state: &'a AppState,
    factor: Factor,
    place: AttemptPlace,
    tenant_id: Option<String>,
    user_id: Option<String>,
}

/// How the audit log records a wrong secret.
pub struct Failure<'a> {
    /// The action (`login.failed`, `password.change_failed`, ...).
    pub action: &'static str,
    /// Who tried: nobody at login, the session's user behind a session.
    pub actor: &'a Actor,
    /// Why, when the action has several reasons.
    pub reason: Option<&'a str>,
    /// Where the request came from.
    pub origin: &'a RequestMeta,
    /// Anything else worth keeping (never the secret).
    pub details: Option<serde_json::Value>,
}

impl<'a> SecretCheck<'a> {
    /// Waits for a place to check `subject`'s `factor`; refuses while it is locked out, or
    /// when too many checks of it already run and wait.
    pub async fn begin(
        state: &'a AppState,
        factor: Factor,
        subject: Subject<'_>,
    ) -> Result<Self, ApiError> {
        let (key, tenant_id, user_id) = match subject {
            Subject::Account(user) => (
                account_key(factor, &user.id),
                Some(user.tenant_id.clone()),
                Some(user.id.clone()),
            ),
            Subject::Unknown { tenant_id, name } => (
                format!("{}:name:{name}", factor.prefix()),
                tenant_id.map(str::to_owned),
                None,
            ),
        };
        match state.limiter().begin_attempt(&key).await {
            Ok(place) => Ok(Self {
                state,
                factor,
                place,
                tenant_id,
                user_id,
            }),
            Err(AttemptRefused::Locked(seconds)) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "login_delayed",
                "too many failed attempts for this account; retry after the time in Retry-After",
            )
            .retry_after(seconds.max(1))),
            Err(AttemptRefused::Busy) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "too many checks of this account are under way; retry after the time in \
                 Retry-After",
            )
            .retry_after(1)),
        }
    }

    /// The secret was right: the failures of this factor are forgotten.
    pub async fn passed(self) {
        self.state.limiter().passed(self.place).await;
    }

    /// The secret was wrong: counted toward the lockout and audited (with the start of a
    /// lockout when this failure reached the threshold).
    pub async fn failed(self, failure: Failure<'_>) -> Result<(), ApiError> {
        let failures = self.state.limiter().failed(self.place).await;
        let after = self.state.config().rate_limits.lockout_after;
        let target = self.user_id.as_deref().map(|id| ("user", id));
        let mut tx = self.state.db().begin_write().await?;
        if after > 0 && failures == after {
            audit::Event::new(self.factor.lockout_action(), failure.actor, failure.origin)
                .tenant(self.tenant_id.as_deref())
                .target(target)
                .failed("too_many_failures")
                .record(&mut tx)
                .await?;
        }
        audit::Event::new(failure.action, failure.actor, failure.origin)
            .tenant(self.tenant_id.as_deref())
            .target(target)
            .failure(failure.reason)
            .details(failure.details)
            .record(&mut tx)
            .await?;
        Ok(tx.commit().await?)
    }
}

/// Lifts every lockout of the account (password and codes), for an administrator's unlock.
pub async fn unlock(state: &AppState, user_id: &str) {
    for factor in [Factor::Password, Factor::Code] {
        state.limiter().reset(&account_key(factor, user_id)).await;
    }
}
