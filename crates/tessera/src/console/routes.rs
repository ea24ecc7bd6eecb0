//! The console's routes: `/` (to the account or the sign-in page), `/login`, every page of
//! [`PAGES`](super::PAGES) and the compiled-in `/assets/…`. A page asked for without a live
//! session redirects to `/login?next=<its path>`; a page whose permission the caller lacks
//! answers 403 with the frame and a plain message, and its link is not in the navigation. A
//! page's gated parts (the status page's form to post an event) are rendered only for the
//! callers their access admits, by the same rule.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{ASSETS, Access, Frame, PAGES, Page, assemble, document, fill, login_document};
use crate::caller::Authenticated;
use crate::http::ApiError;
use crate::http::openapi;
use crate::http::openapi::ApiRouter;
use crate::rbac::{self, Permission};
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;
use utoipa_axum::routes;

/// The console's routes.
pub fn router() -> ApiRouter {
    let mut router = ApiRouter::new()
        .routes(routes!(home))
        .routes(routes!(login))
        .routes(routes!(asset));
    for page in &PAGES {
        let show = get(
            move |State(state): State<AppState>, caller: Result<Authenticated, ApiError>| async move {
                show(&state, caller, page).await
            },
        );
        router = router.routes(openapi::html_page(page.path, page.title, show));
    }
    router
}

/// An HTML answer nobody may cache (it names the person signed in).
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[utoipa::path(
    get,
    path = "/",
    tag = "console",
    security(()),
    responses((status = 303, description = "To the account page, or the sign-in page"))
)]
async fn home(caller: Result<Authenticated, ApiError>) -> Redirect {
    match caller {
        Ok(_) => Redirect::to("/account"),
        Err(_) => Redirect::to("/login"),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    reason: Option<String>,
}

/// The sign-in page. `reason` picks one of the fixed notices; nothing from the query string
/// is ever written into the page.
#[utoipa::path(
    get,
    path = "/login",
    tag = "console",
    security(()),
    responses((status = 200, description = "The sign-in page", body = String, content_type = "text/html"))
)]
async fn login(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let notice = match query.reason.as_deref() {
        Some("revoked") => Some("This session was ended elsewhere. Sign in again."),
        Some("signed_out") => Some("You signed out."),
        Some("expired") => Some("Your session expired. Sign in again."),
        _ => None,
    };
    html(
        StatusCode::OK,
        login_document(state.auth().csrf.cookie_name(), notice),
    )
}

#[utoipa::path(
    get,
    path = "/assets/{name}",
    tag = "console",
    security(()),
    responses((status = 200, description = "A script, style sheet or image compiled into the binary", body = String, content_type = "application/octet-stream"))
)]
async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => {
            let mut response = asset.body.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            // Revalidated each time: assets change with the binary and carry no version.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        None => ApiError::not_found().into_response(),
    }
}

/// Whether a caller of `tenant_id` holding `held` passes `access`.
fn admits(tenant_id: &str, held: &[Permission], access: Access) -> bool {
    if access.platform_only && tenant_id != SYSTEM_TENANT_ID {
        return false;
    }
    match access.needs.map(|p| p.permission()) {
        None => true,
        Some(Ok(wanted)) => rbac::first_uncovered(held, std::slice::from_ref(&wanted)).is_none(),
        Some(Err(_)) => false,
    }
}

async fn show(
    state: &AppState,
    caller: Result<Authenticated, ApiError>,
    page: &'static Page,
) -> Result<Response, ApiError> {
    let Ok(caller) = caller else {
        return Ok(Redirect::to(&format!("/login?next={}", page.path)).into_response());
    };
    let held = caller.permissions(state).await?;
    let visible: Vec<&Page> = PAGES
        .iter()
        .filter(|p| admits(caller.tenant_id(), &held, p.access))
        .collect();
    let info = &caller.info;
    let user = &info.user;
    let name = format!("{} {}", user.first_name, user.last_name);
    let name = name.trim();
    let who = if name.is_empty() {
        user.email.as_str()
    } else {
        name
    };
    let allowed = admits(caller.tenant_id(), &held, page.access);
    let content = if !allowed {
        "<p class=\"notice\" role=\"alert\">You do not have the permission this page needs. \
         Ask an administrator for it.</p>"
            .to_owned()
    } else {
        let roles = caller.roles(state).await?.join(", ");
        let mfa = {
            let mut conn = state.db().pool().acquire().await?;
            state.mfa().enabled(&mut conn, &user.id).await?
        };
        let last_login = user
            .last_login_at
            .map_or_else(String::new, |t| t.to_string());
        fill(
            &assemble(page, |access| admits(caller.tenant_id(), &held, access)),
            &[
                ("email", user.email.as_str()),
                ("username", user.username.as_deref().unwrap_or("—")),
                ("first_name", &user.first_name),
                ("last_name", &user.last_name),
                ("tenant_name", &info.tenant.name),
                ("tenant_slug", &info.tenant.slug),
                ("tenant_id", &info.tenant.id),
                ("user_id", &user.id),
                ("roles", if roles.is_empty() { "none" } else { &roles }),
                ("mfa", if mfa { "on" } else { "off" }),
                ("created_at", &user.created_at.to_string()),
                ("last_login_at", &last_login),
            ],
        )
    };
    // A refused page keeps its place in the navigation but runs none of the page's script.
    let denied = Page {
        id: "forbidden",
        body: "",
        parts: &[],
        ..*page
    };
    let frame = Frame {
        page: if allowed { page } else { &denied },
        visible,
        who,
        tenant: &info.tenant.name,
        csrf_cookie: state.auth().csrf.cookie_name(),
        content,
    };
    let status = if allowed {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    Ok(html(status, document(&frame)))
}
