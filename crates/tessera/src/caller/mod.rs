//! `Authenticated`: the extractor every session endpoint takes. It reads the credential in the
//! shared order (`tessera-token`'s [`extract_token`]), verifies the access token (from the
//! verified-token cache when seen before), checks that its session is still live (from the
//! session cache: no database round trip), and, for a state-changing request authenticated by
//! cookie, the CSRF proof. Permission checks use the caller's current roles, and every
//! administrative action on another subject passes the one containment check,
//! [`Authenticated::ensure_may_act_on`].

pub mod cache;
pub mod principal;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tessera_token::{AccessClaims, Credential, extract_token, unix_now};

use crate::audit::{self, Actor};
use crate::caller::cache::{Lookup, SessionInfo};
use crate::clients::Client;
use crate::http::ApiError;
use crate::http::client::RequestMeta;
use crate::permissions::Perm;
use crate::rbac::{self, Permission};
use crate::state::AppState;
use crate::telemetry::signals;
use crate::users::User;

pub use principal::Principal;

/// `client_id` of tokens issued to Tessera's own sessions (RFC 9068 requires one); only those
/// act for a user at the session endpoints.
pub const SESSION_CLIENT_ID: &str = "tessera";

/// A request made within a live session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The verified access-token claims.
    pub claims: Arc<AccessClaims>,
    /// The session, its user and tenant, as cached.
    pub info: Arc<SessionInfo>,
    /// Whether the token came from the cookie (so CSRF rules applied).
    pub via_cookie: bool,
}

impl Authenticated {
    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.info.session.id
    }

    /// The user id.
    pub fn user_id(&self) -> &str {
        &self.info.session.user_id
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.info.session.tenant_id
    }

    /// The caller, for audit events.
    pub fn actor(&self) -> Actor {
        Actor::User(self.user_id().to_owned())
    }

    /// Records a successful change this caller made in its tenant, on `conn` (the change's
    /// transaction).
    pub async fn record(
        &self,
        conn: &mut sqlx::AnyConnection,
        action: &'static str,
        target: (&'static str, &str),
        origin: &RequestMeta,
        details: Option<serde_json::Value>,
    ) -> Result<(), ApiError> {
        audit::Event::new(action, &self.actor(), origin)
            .in_tenant(self.tenant_id())
            .target(Some(target))
            .details(details)
            .record(conn)
            .await
            .map_err(ApiError::internal)
    }

    /// The roles the caller holds now. Not the token's: a role taken away counts at once on
    /// this instance and within a feed poll on the others (see `rbac`).
    pub async fn roles(&self, state: &AppState) -> Result<Arc<[String]>, ApiError> {
        state
            .rbac()
            .roles_of(state.db(), self.user_id())
            .await
            .map_err(ApiError::internal)
    }

    /// Every permission the caller holds now, through its current roles.
    pub async fn permissions(&self, state: &AppState) -> Result<Vec<Permission>, ApiError> {
        let roles = self.roles(state).await?;
        state
            .rbac()
            .permissions_of(state.db(), self.tenant_id(), &roles)
            .await
            .map_err(ApiError::internal)
    }

    /// Succeeds when the caller holds every one of `permissions`: whatever a caller hands out
    /// (a role's permissions, a client's scopes) must be theirs to give. Otherwise 403 naming
    /// the first one missing.
    pub async fn ensure_holds(
        &self,
        state: &AppState,
        permissions: &[Permission],
    ) -> Result<(), ApiError> {
        let held = self.permissions(state).await?;
        match rbac::first_uncovered(&held, permissions) {
            None => Ok(()),
            Some(missing) => Err(ApiError::forbidden(
                "forbidden",
                format!("you cannot grant `{missing}`, which you do not hold"),
            )),
        }
    }

    /// The containment rule, for every administrative action on an existing account or
    /// client: the caller must hold every permission the target holds (an account's roles'
    /// permissions, a client's scopes), so nobody takes over a subject holding more than
    /// they do. Otherwise 403 `target_outranks_caller`. The CLI, run by an operator, does not
    /// pass here.
    pub async fn ensure_may_act_on(
        &self,
        state: &AppState,
        target: Target<'_>,
    ) -> Result<(), ApiError> {
        let rbac = state.rbac();
        let wanted = match target {
            Target::User(user) => rbac
                .held_by(state.db(), &user.tenant_id, &user.id)
                .await
                .map_err(ApiError::internal)?,
            // Stored scopes were checked when written; one that no longer parses grants
            // nothing at the token endpoint either.
            Target::Client(client) => client
                .scopes
                .iter()
                .filter_map(|s| Permission::parse(s).ok())
                .collect(),
            Target::Role(permissions) => permissions
                .iter()
                .filter_map(|s| Permission::parse(s).ok())
                .collect(),
        };
        let held = self.permissions(state).await?;
        match rbac::first_uncovered(&held, &wanted) {
            None => Ok(()),
            Some(missing) => Err(ApiError::forbidden(
                "target_outranks_caller",
                format!("the target holds `{missing}`, which you do not hold"),
            )),
        }
    }

    /// Succeeds when one of the caller's current roles grants `wanted` (`resource:action`) in
    /// the caller's tenant; otherwise 403 naming the permission.
    pub async fn require(&self, state: &AppState, wanted: Perm) -> Result<(), ApiError> {
        let permission = wanted.permission().map_err(ApiError::internal)?;
        let roles = self.roles(state).await?;
        let allowed = state
            .rbac()
            .allows(state.db(), self.tenant_id(), &roles, &permission)
            .await
            .map_err(ApiError::internal)?;
        if allowed {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "forbidden",
                format!("this needs the permission `{permission}`"),
            ))
        }
    }
}

/// Someone an administrator acts on, for [`Authenticated::ensure_may_act_on`].
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// An account: it holds its roles' permissions.
    User(&'a User),
    /// A service account: it holds its scopes.
    Client(&'a Client),
    /// A role: editing or deleting it acts on everyone who holds it, so it needs every
    /// permission it grants (its stored permissions).
    Role(&'a [String]),
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = state.auth();
        let credential = extract_token(parts, &auth.extraction).map_err(|e| {
            signals::verification_failed("malformed_credential");
            ApiError::unauthorized("invalid_token", e.to_string())
        })?;
        let (token, via_cookie) = match credential {
            None => {
                return Err(ApiError::unauthorized(
                    "unauthenticated",
                    "this endpoint needs an access token (Authorization: Bearer, or the access cookie)",
                ));
            }
            Some(Credential::Bearer(token)) => (token, false),
            Some(Credential::Cookie(token)) => (token, true),
            Some(Credential::Ticket(_) | Credential::LegacyQuery(_)) => {
                signals::verification_failed("query_credential");
                return Err(ApiError::unauthorized(
                    "invalid_token",
                    "query-string credentials only open real-time connections",
                ));
            }
        };
        let caller = Self::from_token(state, &token, via_cookie).await?;
        if via_cookie && !parts.method.is_safe() {
            auth.csrf.check(&parts.headers, caller.session_id())?;
        }
        Ok(caller)
    }
}

impl Authenticated {
    /// Authenticates an access token found by the shared extraction order (`via_cookie`:
    /// from the access cookie): a valid, unrevoked token of a live Tessera session. CSRF is
    /// the caller's to check for unsafe requests.
    pub async fn from_token(
        state: &AppState,
        token: &str,
        via_cookie: bool,
    ) -> Result<Self, ApiError> {
        let claims = state.keys().current().verify(token).map_err(|e| {
            signals::verification_failed(e.code());
            ApiError::unauthorized(
                "invalid_token",
                format!("the access token is not valid: {e}"),
            )
        })?;
        if state.denylist().is_denied(&claims.jti) {
            signals::verification_failed("token_revoked");
            return Err(ApiError::unauthorized(
                "invalid_token",
                "the access token was revoked",
            ));
        }
        // Only tokens of Tessera's own sessions: a token issued to another OAuth client, even
        // one naming a session, does not act for the user here.
        let sid = match claims.sid.as_deref() {
            Some(sid) if claims.client_id == SESSION_CLIENT_ID => sid,
            _ => {
                signals::verification_failed("not_a_session_token");
                return Err(ApiError::unauthorized(
                    "invalid_token",
                    "this endpoint needs a user session's token",
                ));
            }
        };
        let now = unix_now();
        let lookup = state
            .session_cache()
            .get(state.db(), sid, now)
            .await
            .map_err(ApiError::internal)?;
        let info = match lookup {
            Lookup::Live(info)
                if info.session.user_id == claims.sub && info.session.tenant_id == claims.tid =>
            {
                info
            }
            _ => {
                signals::verification_failed("session_ended");
                return Err(ApiError::unauthorized(
                    "session_ended",
                    "the session of this token has ended; log in again",
                ));
            }
        };
        Ok(Self {
            claims,
            info,
            via_cookie,
        })
    }
}
