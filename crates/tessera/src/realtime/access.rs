//! Who may subscribe to and publish on which channel (the rules are in [`super::channel`]).
//!
//! Tenant isolation: a caller's tenant topics are its own tenant's; only callers of the
//! `system` tenant (platform scope) reach another tenant's, and still only through the
//! permission. The `flags` channel is Tessera's own: anyone signed in reads it, nobody
//! publishes to it through the API.

use std::sync::Arc;

use axum::http::StatusCode;
use tessera_token::AccessClaims;

use super::channel::{Action, ChannelKind, ChannelName, topic_permissions};
use super::hub::Owner;
use crate::caller::Authenticated;
use crate::caller::SESSION_CLIENT_ID;
use crate::http::ApiError;
use crate::rbac::Permission;
use crate::sessions;
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;
use crate::users::{self, UserError};

/// Someone allowed to call the publish endpoint, with what they hold.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// `client:<id>` or `user:<id>`: whose idempotency keys these are.
    pub name: String,
    /// The publisher's tenant.
    pub tenant_id: String,
    held: Held,
}

#[derive(Debug, Clone)]
enum Held {
    /// A user's current permissions, through its roles.
    Roles(Vec<Permission>),
    /// A service token's scope.
    Scope(String),
}

impl Held {
    fn allows_any(&self, wanted: &[Permission]) -> bool {
        wanted.iter().any(|w| match self {
            Self::Roles(held) => held.iter().any(|h| h.allows(w)),
            Self::Scope(scope) => Permission::allowed_by_scope(scope, w),
        })
    }
}

fn forbidden_channel(channel: &ChannelName) -> ApiError {
    ApiError::forbidden(
        "forbidden_channel",
        format!("you may not use the channel `{channel}`"),
    )
}

/// The permissions a user holds now, through its current roles.
async fn user_permissions(
    state: &AppState,
    user_id: &str,
    tenant_id: &str,
) -> Result<Vec<Permission>, ApiError> {
    let roles = state
        .rbac()
        .roles_of(state.db(), user_id)
        .await
        .map_err(ApiError::internal)?;
    state
        .rbac()
        .permissions_of(state.db(), tenant_id, &roles)
        .await
        .map_err(ApiError::internal)
}

fn tenant_reachable(own: &str, wanted: &str) -> bool {
    own == wanted || own == SYSTEM_TENANT_ID
}

/// Succeeds when `owner` may subscribe to `channel`; otherwise 403 `forbidden_channel`.
pub async fn may_subscribe(
    state: &AppState,
    owner: &Owner,
    channel: &ChannelName,
) -> Result<(), ApiError> {
    let allowed = match channel.kind() {
        ChannelKind::Flags | ChannelKind::Status => true,
        ChannelKind::User(id) => *id == owner.user_id,
        ChannelKind::Session(id) => *id == owner.session_id,
        ChannelKind::Tenant { tenant_id, topic } => {
            tenant_reachable(&owner.tenant_id, tenant_id) && {
                let held = user_permissions(state, &owner.user_id, &owner.tenant_id).await?;
                Held::Roles(held).allows_any(&topic_permissions(topic, Action::Subscribe))
            }
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(forbidden_channel(channel))
    }
}

impl Publisher {
    /// A signed-in user publishing with its session's token.
    pub async fn user(state: &AppState, caller: &Authenticated) -> Result<Self, ApiError> {
        Ok(Self {
            name: format!("user:{}", caller.user_id()),
            tenant_id: caller.tenant_id().to_owned(),
            held: Held::Roles(caller.permissions(state).await?),
        })
    }

    /// A service publishing with a client-credentials token: valid, not revoked (the client
    /// or its tenant disabled), and the client still usable.
    pub async fn service(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims: Arc<AccessClaims> = state.keys().current().verify(token).map_err(|e| {
            ApiError::unauthorized(
                "invalid_token",
                format!("the access token is not valid: {e}"),
            )
        })?;
        let revoked = || ApiError::unauthorized("invalid_token", "the access token was revoked");
        if claims.client_id == SESSION_CLIENT_ID || claims.sid.is_some() {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "expected a service's client-credentials token",
            ));
        }
        if state.denylist().is_denied(&claims.jti) || state.feed().covers(&claims) {
            return Err(revoked());
        }
        let client = state
            .clients()
            .get(state.db(), &claims.client_id)
            .await
            .map_err(ApiError::internal)?;
        match client {
            Some(c) if c.usable() && c.client.tenant_id == claims.tid => Ok(Self {
                name: format!("client:{}", claims.client_id),
                tenant_id: claims.tid.clone(),
                held: Held::Scope(claims.scope.clone()),
            }),
            _ => Err(revoked()),
        }
    }

    /// Succeeds when this publisher may publish to `channel`: `events:publish` (for a tenant
    /// topic, one of the topic's candidates) and the channel's tenant its own unless it
    /// has platform scope. `flags` is reserved.
    pub async fn may_publish(
        &self,
        state: &AppState,
        channel: &ChannelName,
    ) -> Result<(), ApiError> {
        let wanted = match channel.kind() {
            ChannelKind::Flags | ChannelKind::Status => {
                return Err(ApiError::forbidden(
                    "reserved_channel",
                    format!("only Tessera publishes to `{channel}`"),
                ));
            }
            ChannelKind::Tenant { topic, .. } => topic_permissions(topic, Action::Publish),
            ChannelKind::User(_) | ChannelKind::Session(_) => vec![Action::Publish.permission()],
        };
        if !self.held.allows_any(&wanted) {
            return Err(ApiError::forbidden(
                "forbidden",
                format!("publishing to `{channel}` needs the permission `events:publish`"),
            ));
        }
        if self.reaches(state, channel).await? {
            Ok(())
        } else {
            Err(forbidden_channel(channel))
        }
    }

    /// Whether `channel` belongs to this publisher's tenant (any tenant's, with platform
    /// scope). A user or session of another tenant is as unknown as a missing one.
    async fn reaches(&self, state: &AppState, channel: &ChannelName) -> Result<bool, ApiError> {
        let platform = self.tenant_id == SYSTEM_TENANT_ID;
        Ok(match channel.kind() {
            ChannelKind::Tenant { tenant_id, .. } => tenant_reachable(&self.tenant_id, tenant_id),
            ChannelKind::User(_) | ChannelKind::Session(_) if platform => true,
            ChannelKind::User(id) => {
                match users::find_in_tenant(state.db(), &self.tenant_id, id).await {
                    Ok(_) => true,
                    Err(UserError::NotFound | UserError::Conflict) => false,
                    Err(UserError::Database(e)) => return Err(ApiError::internal(e)),
                }
            }
            ChannelKind::Session(id) => {
                let mut conn = state
                    .db()
                    .pool()
                    .acquire()
                    .await
                    .map_err(ApiError::internal)?;
                sessions::fetch(&mut conn, id)
                    .await
                    .map_err(ApiError::internal)?
                    .is_some_and(|s| s.tenant_id == self.tenant_id)
            }
            ChannelKind::Flags | ChannelKind::Status => false,
        })
    }
}

/// 422 for a channel parameter that does not parse.
pub fn invalid_channel(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_channel",
        error.to_string(),
    )
}
