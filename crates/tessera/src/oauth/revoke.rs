//! `POST /oauth2/revoke` (RFC 7009). A refresh token ends its whole session; an access token
//! joins the deny list (by `jti`) until it would have expired. Any client may revoke the
//! access tokens issued to itself; revoking other tokens of its tenant needs `tokens:revoke`.
//! As the RFC asks, the answer is 200 whether or not the token was valid or revocable by this
//! client, so the endpoint never tells which tokens exist.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tessera_token::Revoked;

use super::client_auth::{self, OAuthError, no_store};
use super::denylist;
use crate::audit::{self, Actor};
use crate::clients::Client;
use crate::http::client::RequestMeta;
use crate::http::client::meta_of;
use crate::permissions::Perm;
use crate::rbac::Permission;
use crate::revocations;
use crate::sessions::refresh::RefreshToken;
use crate::sessions::{self, Scope};
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;

/// The revocation endpoint.
#[utoipa::path(
    post,
    path = "/oauth2/revoke",
    tag = "oauth",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses((status = 200, description = "Revoked, or nothing to revoke (RFC 7009)"), (status = 400, description = "RFC 6749 error", body = client_auth::ErrorBody), (status = 401, description = "Client authentication failed", body = client_auth::ErrorBody), (status = 403, description = "Not the client's token", body = client_auth::ErrorBody))
)]
pub async fn revoke(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let origin = meta_of(&parts);
    let body = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(body) => body,
        Err(_) => return OAuthError::invalid_request("the body could not be read").into_response(),
    };
    match handle(&state, &parts.headers, &body, &origin).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

fn server_error(error: impl std::fmt::Display) -> OAuthError {
    tracing::error!(error = %error, "revocation failed");
    OAuthError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the token could not be revoked",
    )
}

/// Whether `client` may revoke tokens of `tenant_id` it was not issued.
fn may_revoke_for(client: &Client, tenant_id: &str) -> bool {
    let Ok(wanted) = Perm::TokensRevoke.permission() else {
        return false;
    };
    let scoped = client
        .scopes
        .iter()
        .filter_map(|s| Permission::parse(s).ok())
        .any(|s| s.allows(&wanted));
    scoped && (client.tenant_id == tenant_id || client.tenant_id == SYSTEM_TENANT_ID)
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    origin: &RequestMeta,
) -> Result<(), OAuthError> {
    let (client, fields) = client_auth::authenticate(state, headers, body).await?;
    let token = fields
        .get("token")
        .ok_or(OAuthError::invalid_request("token is required"))?;
    let actor = Actor::Client(client.id.clone());
    let db = state.db();

    if let Some(refresh) = RefreshToken::parse(token) {
        let Some(session_id) = state
            .sessions()
            .session_of(db, &refresh)
            .await
            .map_err(server_error)?
        else {
            return Ok(());
        };
        let mut conn = db.pool().acquire().await.map_err(server_error)?;
        let session = sessions::fetch(&mut conn, &session_id)
            .await
            .map_err(server_error)?;
        drop(conn);
        let Some(session) = session.filter(|s| may_revoke_for(&client, &s.tenant_id)) else {
            return Ok(());
        };
        let mut tx = db.begin_write().await.map_err(server_error)?;
        let revoked = sessions::revoke(
            &mut tx,
            Scope::One(&session.id),
            "revoked_by_client",
            &actor,
            origin,
        )
        .await
        .map_err(server_error)?;
        tx.commit().await.map_err(server_error)?;
        revoked.apply(state.sessions());
        return Ok(());
    }

    // An invalid or expired token needs no revoking.
    let Ok(claims) = state.keys().current().verify(token) else {
        return Ok(());
    };
    if claims.client_id != client.id && !may_revoke_for(&client, &claims.tid) {
        return Ok(());
    }
    let mut tx = db.begin_write().await.map_err(server_error)?;
    denylist::insert(&mut tx, &claims.jti, &claims.tid, claims.exp)
        .await
        .map_err(server_error)?;
    let target = Revoked::Token {
        jti: claims.jti.clone(),
    };
    revocations::record(&mut tx, &claims.tid, &target, claims.exp)
        .await
        .map_err(server_error)?;
    audit::Event::new("token.revoked", &actor, origin)
        .in_tenant(&claims.tid)
        .on("token", &claims.jti)
        .details(serde_json::json!({ "sub": claims.sub, "client_id": claims.client_id }))
        .record(&mut tx)
        .await
        .map_err(server_error)?;
    tx.commit().await.map_err(server_error)?;
    state.denylist().add([(claims.jti.clone(), claims.exp)]);
    state.feed().wake();
    Ok(())
}
