//! `Principal`: whoever a request is from, whatever the credential: nobody, a user in a live
//! session (through [`Authenticated`], with its CSRF rule for cookies), or a service account
//! holding a client-credentials token that is valid, unrevoked and whose client is still
//! usable in the token's tenant. Conventions that hold for every caller (idempotency keys,
//! status events) name callers with it.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tessera_token::{AccessClaims, Credential, Permission, extract_token};

use super::{Authenticated, SESSION_CLIENT_ID};
use crate::http::ApiError;
use crate::permissions::Perm;
use crate::state::AppState;

/// The verified caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credential at all.
    Anonymous,
    /// A user in a live session.
    User(Box<Authenticated>),
    /// A service account's client-credentials token.
    Service(Arc<AccessClaims>),
}

impl Principal {
    /// A stable name: `anonymous`, `user:<id>` or `client:<id>`.
    pub fn name(&self) -> String {
        match self {
            Self::Anonymous => "anonymous".to_owned(),
            Self::User(caller) => format!("user:{}", caller.user_id()),
            Self::Service(claims) => format!("client:{}", claims.client_id),
        }
    }

    /// The caller's tenant; `None` for anonymous callers.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::User(caller) => Some(caller.tenant_id()),
            Self::Service(claims) => Some(&claims.tid),
        }
    }

    /// Succeeds when the caller holds `wanted`: a user through its current roles, a service
    /// through its token's scope. 401 for anonymous callers, 403 otherwise.
    pub async fn require(&self, state: &AppState, wanted: Perm) -> Result<(), ApiError> {
        match self {
            Self::Anonymous => Err(ApiError::unauthorized(
                "unauthenticated",
                "this endpoint needs a session or a service account's token (Authorization: Bearer)",
            )),
            Self::User(caller) => caller.require(state, wanted).await,
            Self::Service(claims) => {
                let permission = wanted.permission().map_err(ApiError::internal)?;
                if Permission::allowed_by_scope(&claims.scope, &permission) {
                    Ok(())
                } else {
                    Err(ApiError::forbidden(
                        "insufficient_scope",
                        format!("this service account's token needs the scope `{permission}`"),
                    ))
                }
            }
        }
    }

    /// A service account's token: not a session's, not revoked (itself, by the feed, or its
    /// client or tenant disabled), and its client usable in the token's tenant.
    async fn service(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state.keys().current().verify(token).map_err(|e| {
            ApiError::unauthorized(
                "invalid_token",
                format!("the access token is not valid: {e}"),
            )
        })?;
        let revoked = || ApiError::unauthorized("invalid_token", "the access token was revoked");
        if claims.sid.is_some()
            || state.denylist().is_denied(&claims.jti)
            || state.feed().covers(&claims)
        {
            return Err(revoked());
        }
        let usable = matches!(
            state.clients().get(state.db(), &claims.client_id).await,
            Ok(Some(entry)) if entry.usable() && entry.client.tenant_id == claims.tid
        );
        if usable {
            Ok(Self::Service(claims))
        } else {
            Err(revoked())
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = extract_token(parts, &state.auth().extraction)
            .map_err(|e| ApiError::unauthorized("invalid_token", e.to_string()))?;
        let is_session_token = |token: &str| {
            state
                .keys()
                .current()
                .verify(token)
                .is_ok_and(|claims| claims.client_id == SESSION_CLIENT_ID)
        };
        match credential {
            None => Ok(Self::Anonymous),
            Some(Credential::Bearer(token)) if !is_session_token(&token) => {
                Self::service(state, &token).await
            }
            Some(_) => Ok(Self::User(Box::new(
                Authenticated::from_request_parts(parts, state).await?,
            ))),
        }
    }
}
