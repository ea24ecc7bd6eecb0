//! Issuing what a login or refresh returns: an access token for the session, delivered in
//! the body (API clients) or as cookies (browsers).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tessera_token::unix_now;

use super::cookies::Issue;
use crate::caller::SESSION_CLIENT_ID;
use crate::http::ApiError;
use crate::keys::{Grant, access_claims};
use crate::sessions::Session;
use crate::sessions::refresh::RefreshToken;
use crate::state::AppState;
use crate::users::User;

/// Where tokens go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// `Set-Cookie`, nothing in the body: browsers.
    #[default]
    Cookie,
    /// In the JSON body, no cookies: API clients and apps.
    Body,
}

/// Signs an access token for `session` carrying `roles` and, as its `scope`, every
/// permission they grant, so services can check permissions without asking. Its `iat` is
/// past every subject revocation of the user (see `Rbac::issue_time`), so a token issued
/// right after a role change is one services accept.
pub async fn access_token(
    state: &AppState,
    session: &Session,
    roles: Vec<String>,
) -> Result<(String, i64), ApiError> {
    let now = state.rbac().issue_time(&session.user_id).await;
    let scope = state
        .rbac()
        .scope(state.db(), &session.tenant_id, &roles)
        .await?;
    let grant = Grant {
        sub: session.user_id.clone(),
        client_id: SESSION_CLIENT_ID.to_owned(),
        sid: Some(session.id.clone()),
        tid: session.tenant_id.clone(),
        roles,
        scope,
        amr: session.amr.clone(),
        auth_time: Some(session.auth_time),
        // A token must not outlive the session it stands for.
        expires_by: Some(session.absolute_expires_at),
    };
    let claims = access_claims(state.config(), grant, now);
    let token = state
        .keys()
        .current()
        .signer
        .sign(&claims)
        .map_err(ApiError::internal)?;
    Ok((token, claims.exp - now))
}

#[derive(Serialize)]
struct BodyTokens<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: &'a str,
    session_id: &'a str,
}

#[derive(Serialize)]
struct CookieTokens<'a> {
    session_id: &'a str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a User>,
}

/// The answer to a login (with `user`) or a refresh: tokens in the body, or cookies and a
/// body with no token in it. Never cached by anything on the way.
pub async fn deliver(
    state: &AppState,
    delivery: Delivery,
    session: &Session,
    refresh: &RefreshToken,
    roles: Vec<String>,
    user: Option<&User>,
) -> Result<Response, ApiError> {
    let (access, expires_in) = access_token(state, session, roles).await?;
    let mut response = match delivery {
        Delivery::Body => axum::Json(BodyTokens {
            access_token: &access,
            token_type: "Bearer",
            expires_in,
            refresh_token: refresh.as_str(),
            session_id: &session.id,
        })
        .into_response(),
        Delivery::Cookie => {
            let mut response = axum::Json(CookieTokens {
                session_id: &session.id,
                expires_in,
                user,
            })
            .into_response();
            let csrf = state.auth().csrf.token_for(&session.id);
            state.auth().cookies.set(
                response.headers_mut(),
                &Issue {
                    access: (&access, expires_in),
                    refresh: (refresh.as_str(), session.expires_at() - unix_now()),
                    csrf: &csrf,
                },
            );
            response
        }
    };
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
