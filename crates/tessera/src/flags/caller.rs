//! Who is asking for flags: nobody (public flags only), a user in a live session (Bearer or
//! cookie, through the one [`Authenticated`] extractor), or a service account whose token
//! carries `flags:read`. The identity decides the context attributes a caller cannot choose
//! (`tenantId`, `userId`, `roles`, `email`), so nobody reads another tenant's overrides.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::{Map, Value};
use tessera_token::{Credential, Permission, extract_token};

use super::eval::{Context, attr};
use crate::AppState;
use crate::caller::{Authenticated, SESSION_CLIENT_ID};
use crate::http::ApiError;
use crate::permissions::Perm;
use crate::tenants::SYSTEM_TENANT_ID;

/// A caller of the flag endpoints.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credential at all.
    Anonymous,
    /// A user in a live session.
    User {
        /// The session, as the extractor checked it.
        session: Box<Authenticated>,
        /// The user's current roles.
        roles: Arc<[String]>,
    },
    /// A service account holding `flags:read`.
    Service {
        /// Its client id.
        client_id: String,
        /// Its tenant.
        tenant_id: String,
    },
}

impl Caller {
    /// A stable key naming the caller, for ETags and stream slots.
    pub fn subject(&self) -> String {
        match self {
            Self::Anonymous => "anonymous".to_owned(),
            Self::User { session, .. } => format!("user:{}", session.user_id()),
            Self::Service { client_id, .. } => format!("client:{client_id}"),
        }
    }

    /// The caller's tenant; `None` for anonymous callers.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::User { session, .. } => Some(session.tenant_id()),
            Self::Service { tenant_id, .. } => Some(tenant_id),
        }
    }

    /// Whether the caller may evaluate for any tenant (a `system` tenant service account).
    pub fn spans_tenants(&self) -> bool {
        matches!(self, Self::Service { tenant_id, .. } if tenant_id == SYSTEM_TENANT_ID)
    }

    /// The evaluation context: the attributes sent, with the identity's own overwriting any
    /// the caller sent under the same names. A `system` tenant service may name the tenant
    /// it evaluates for; any other caller evaluates in its own.
    pub fn context(
        &self,
        targeting_key: Option<String>,
        mut attributes: Map<String, Value>,
    ) -> Context {
        match self {
            Self::Anonymous => {
                attributes.remove(attr::TENANT_ID);
            }
            Self::User { session, roles } => {
                let user = &session.info.user;
                attributes.insert(attr::TENANT_ID.into(), session.tenant_id().into());
                attributes.insert(attr::USER_ID.into(), user.id.clone().into());
                attributes.insert(attr::EMAIL.into(), user.email.clone().into());
                attributes.remove(attr::EMAIL_DOMAIN);
                attributes.insert(
                    attr::ROLES.into(),
                    Value::Array(roles.iter().cloned().map(Value::String).collect()),
                );
                return Context {
                    targeting_key: targeting_key.or_else(|| Some(user.id.clone())),
                    attributes,
                };
            }
            Self::Service { tenant_id, .. } => {
                if !self.spans_tenants() {
                    attributes.insert(attr::TENANT_ID.into(), tenant_id.clone().into());
                }
            }
        }
        Context {
            targeting_key,
            attributes,
        }
    }

    /// Refuses anonymous callers.
    pub fn required(self) -> Result<Self, ApiError> {
        match self {
            Self::Anonymous => Err(ApiError::unauthorized(
                "unauthenticated",
                "flags are evaluated for a user (Bearer token or cookie) or a service account \
                 holding `flags:read`",
            )),
            caller => Ok(caller),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = extract_token(parts, &state.auth().extraction)
            .map_err(|e| ApiError::unauthorized("invalid_token", e.to_string()))?;
        let token = match credential {
            None => return Ok(Self::Anonymous),
            Some(Credential::Bearer(token)) => token,
            // A cookie is a browser's session: the extractor checks it (and CSRF).
            Some(_) => return user(parts, state).await,
        };
        let claims = state.keys().current().verify(&token).map_err(|e| {
            ApiError::unauthorized(
                "invalid_token",
                format!("the access token is not valid: {e}"),
            )
        })?;
        if claims.client_id == SESSION_CLIENT_ID {
            return user(parts, state).await;
        }
        service(state, &claims).await
    }
}

async fn user(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
    let session = Authenticated::from_request_parts(parts, state).await?;
    let roles = session.roles(state).await?;
    Ok(Caller::User {
        session: Box::new(session),
        roles,
    })
}

/// A service account's token: unrevoked, its client usable in the token's tenant, and
/// `flags:read` among its scopes.
async fn service(
    state: &AppState,
    claims: &tessera_token::AccessClaims,
) -> Result<Caller, ApiError> {
    let revoked = || ApiError::unauthorized("invalid_token", "the access token was revoked");
    if claims.sid.is_some()
        || state.denylist().is_denied(&claims.jti)
        || state.feed().covers(claims)
    {
        return Err(revoked());
    }
    let usable = matches!(
        state.clients().get(state.db(), &claims.client_id).await,
        Ok(Some(entry)) if entry.usable() && entry.client.tenant_id == claims.tid
    );
    if !usable {
        return Err(revoked());
    }
    let wanted = Perm::FlagsRead.permission().map_err(ApiError::internal)?;
    if !Permission::allowed_by_scope(&claims.scope, &wanted) {
        return Err(ApiError::forbidden(
            "insufficient_scope",
            "this service account's token needs the scope `flags:read`",
        ));
    }
    Ok(Caller::Service {
        client_id: claims.client_id.clone(),
        tenant_id: claims.tid.clone(),
    })
}
