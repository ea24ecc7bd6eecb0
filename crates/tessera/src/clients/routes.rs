//! `/api/v1/admin/clients`: a tenant's service accounts, for callers holding `clients:*`
//! permissions in it. A secret is shown once, at creation or rotation. Nobody allows a client
//! a scope they do not hold themselves, and nobody changes, rotates, disables or deletes a
//! client holding a scope they do not hold (the containment rule): its secret would hand
//! them that scope.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use tessera_token::Revocation;

use super::Client;
use crate::bus::Topic;
use crate::caller::{Authenticated, Target};
use crate::http::client::RequestMeta;
use crate::http::openapi::ApiRouter;
use crate::http::pagination::{Page, PageRequest};
use crate::http::{ApiError, Json};
use crate::permissions::Perm;
use crate::state::AppState;
use utoipa_axum::routes;

/// The client routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(rotate))
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

/// Parses scopes and checks the caller holds each.
async fn grantable(
    state: &AppState,
    caller: &Authenticated,
    texts: &[String],
) -> Result<Vec<String>, ApiError> {
    let scopes = super::parse_scopes(texts).map_err(|e| invalid("invalid_scope", e))?;
    caller.ensure_holds(state, &scopes).await?;
    Ok(scopes.iter().map(ToString::to_string).collect())
}

async fn administered(
    state: &AppState,
    caller: &Authenticated,
    id: &str,
    permission: Perm,
) -> Result<Client, ApiError> {
    caller.require(state, permission).await?;
    super::find(state.db(), id, Some(caller.tenant_id()))
        .await?
        .ok_or_else(ApiError::not_found)
}

/// The client `id` the caller is about to act on: `permission`, the tenant, and the
/// containment rule checked in that order (403, 404, 403).
async fn acted_on(
    state: &AppState,
    caller: &Authenticated,
    id: &str,
    permission: Perm,
) -> Result<Client, ApiError> {
    let client = administered(state, caller, id, permission).await?;
    caller
        .ensure_may_act_on(state, Target::Client(&client))
        .await?;
    Ok(client)
}

/// After a committed change: this instance reads the client again, and when its old tokens
/// were revoked (`issued_before`), issues its next one after that second; the feed reads the
/// entry now, for the other instances and services.
fn changed(state: &AppState, client: &Client, revoked: Option<Revocation>) {
    state.clients().forget(&client.id);
    if let Some(cutoff) = revoked.as_ref().and_then(Revocation::issued_before) {
        state
            .rbac()
            .note_revoked(&client.tenant_id, &client.id, cutoff);
    }
    state.feed().learn_all(revoked);
    state.bus().publish(Topic::Changes, 0);
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/clients",
    tag = "clients",
    responses((status = 200, description = "A page of clients", body = Page<Client>))
)]
async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    page: PageRequest,
) -> Result<Json<Page<Client>>, ApiError> {
    caller.require(&state, Perm::ClientsRead).await?;
    let (clients, total) =
        super::list(state.db(), caller.tenant_id(), page.limit(), page.offset()).await?;
    Ok(Json(page.page(clients, total)))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/clients/{id}",
    tag = "clients",
    responses((status = 200, description = "The client", body = Client))
)]
async fn show(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Client>, ApiError> {
    Ok(Json(
        administered(&state, &caller, &id, Perm::ClientsRead).await?,
    ))
}

/// A client and, once, its secret.
#[derive(Serialize, utoipa::ToSchema)]
struct WithSecret {
    #[serde(flatten)]
    client: Client,
    client_secret: String,
}

/// The one answer that shows a secret; nothing on the way may keep it.
fn with_secret(status: StatusCode, client: Client, secret: &super::ClientSecret) -> Response {
    let body = WithSecret {
        client,
        client_secret: secret.expose().to_owned(),
    };
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A new client.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewClient {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/clients",
    tag = "clients",
    request_body = NewClient,
    responses((status = 201, description = "Created; the secret is shown this once", body = WithSecret))
)]
async fn create(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(new): Json<NewClient>,
) -> Result<Response, ApiError> {
    caller.require(&state, Perm::ClientsCreate).await?;
    crate::http::check_display_name(&new.name)?;
    let scopes = grantable(&state, &caller, &new.scopes).await?;
    let parsed = super::parse_scopes(&scopes).map_err(|e| invalid("invalid_scope", e))?;
    let mut tx = state.db().begin_write().await?;
    let (client, secret) = super::create(
        &mut tx,
        caller.tenant_id(),
        new.name.trim(),
        &parsed,
        &caller.actor(),
        &origin,
    )
    .await?;
    tx.commit().await?;
    Ok(with_secret(StatusCode::CREATED, client, &secret))
}

/// Changes to a client; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ClientChange {
    name: Option<String>,
    scopes: Option<Vec<String>>,
    active: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/admin/clients/{id}",
    tag = "clients",
    request_body = ClientChange,
    responses((status = 200, description = "Changed", body = Client))
)]
async fn update(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
    Json(change): Json<ClientChange>,
) -> Result<Json<Client>, ApiError> {
    let mut client = acted_on(&state, &caller, &id, Perm::ClientsUpdate).await?;
    if let Some(name) = change.name {
        crate::http::check_display_name(&name)?;
        client.name = name.trim().to_owned();
    }
    if let Some(scopes) = change.scopes {
        client.scopes = grantable(&state, &caller, &scopes).await?;
    }
    if let Some(active) = change.active {
        client.active = active;
    }
    let revoked = super::update(state.db(), &client, &caller.actor(), &origin).await?;
    changed(&state, &client, revoked);
    Ok(Json(client))
}

/// Deleting disables the client: it obtains no more tokens; the row stays for the audit log.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/clients/{id}",
    tag = "clients",
    responses((status = 204, description = "Deleted"))
)]
async fn remove(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut client = acted_on(&state, &caller, &id, Perm::ClientsDelete).await?;
    client.active = false;
    let revoked = super::update(state.db(), &client, &caller.actor(), &origin).await?;
    changed(&state, &client, revoked);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/clients/{id}/secret",
    tag = "clients",
    responses((status = 200, description = "A new secret, shown this once", body = WithSecret))
)]
async fn rotate(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = acted_on(&state, &caller, &id, Perm::ClientsUpdate).await?;
    let (secret, revoked) =
        super::rotate_secret(state.db(), &client, &caller.actor(), &origin).await?;
    changed(&state, &client, Some(revoked));
    Ok(with_secret(StatusCode::OK, client, &secret))
}
