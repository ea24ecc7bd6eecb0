//! `POST /api/v1/status/events` (`status:write`, platform operators and their monitors) and
//! the public `GET /api/v1/status`: the overall status, each service's latest event, and a
//! page of recent events. Each new event is also published on the real-time `status`
//! channel, which anyone signed in may subscribe to.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::store::{self, NewEvent};
use super::{Status, StatusEvent, overall, valid_service};
use crate::caller::Principal;
use crate::http::openapi::ApiRouter;
use crate::http::pagination::{Page, PageRequest};
use crate::http::{ApiError, Json};
use crate::permissions::Perm;
use crate::realtime::channel::ChannelName;
use crate::state::AppState;
use crate::tenants::SYSTEM_TENANT_ID;
use utoipa_axum::routes;

/// Longest message, in characters.
const MAX_MESSAGE_CHARS: usize = 2_000;

/// Furthest `ends_at` may lie ahead, in seconds (a year).
const MAX_ENDS_AHEAD_SECS: i64 = 366 * 86_400;

/// The status routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(create))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewStatusEvent {
    service: String,
    status: Status,
    message: String,
    #[serde(default)]
    ends_at: Option<i64>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        detail,
    )
}

/// `POST /api/v1/status/events` → 201 with the stored event.
#[utoipa::path(
    post,
    path = "/api/v1/status/events",
    tag = "status",
    request_body = NewStatusEvent,
    responses((status = 201, description = "Recorded", body = StatusEvent))
)]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(request): Json<NewStatusEvent>,
) -> Result<Response, ApiError> {
    principal.require(&state, Perm::StatusWrite).await?;
    // The status page is the platform's, not a tenant's: a tenant's own administrators
    // (who may hold `*:*` in their tenant) do not speak for it.
    if principal.tenant_id() != Some(SYSTEM_TENANT_ID) {
        return Err(ApiError::forbidden(
            "platform_only",
            "status events are posted by the platform's operators (the `system` tenant)",
        ));
    }
    if !valid_service(&request.service) {
        return Err(invalid("`service` is 1 to 64 of a-z 0-9 - _ ."));
    }
    let chars = request.message.chars().count();
    if request.message.trim().is_empty()
        || chars > MAX_MESSAGE_CHARS
        || crate::text::has_hidden(&request.message)
    {
        return Err(invalid(format!(
            "`message` has 1 to {MAX_MESSAGE_CHARS} characters and no control, format or bidi \
             characters"
        )));
    }
    let now = state.clock().now();
    if let Some(end) = request.ends_at
        && (end <= now || end > now + MAX_ENDS_AHEAD_SECS)
    {
        return Err(invalid(
            "`ends_at` is a Unix time in seconds, in the future and within a year",
        ));
    }
    let event = store::insert(
        state.db(),
        &NewEvent {
            service: &request.service,
            status: request.status,
            message: &request.message,
            ends_at: request.ends_at,
            author: &principal.name(),
        },
        state.clock().now_ms(),
    )
    .await?;
    announce(&state, &event).await;
    Ok((StatusCode::CREATED, Json(event)).into_response())
}

/// Publishes `event`, with the overall status it leaves, on the `status` channel. The event
/// is stored already: a hub that cannot take it is logged, and subscribers catch up from
/// `GET /api/v1/status`.
async fn announce(state: &AppState, event: &StatusEvent) {
    let now = state.clock().now();
    let current = match store::latest_per_service(state.db()).await {
        Ok(latest) => overall(latest.iter().map(|e| e.current_at(now))),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the status for the real-time event");
            return;
        }
    };
    let Ok(channel) = ChannelName::parse("status") else {
        return;
    };
    let data = serde_json::json!({ "event": event, "overall": current });
    if let Err(e) = state
        .realtime()
        .publish(&channel, "status.changed", data)
        .await
    {
        tracing::warn!(error = %e, "could not publish a status event to the hub");
    }
}

/// A service's current status.
#[derive(Serialize, utoipa::ToSchema)]
struct ServiceStatus {
    service: String,
    /// Its latest event's status, or `operational` once that event's `ends_at` passed.
    status: Status,
    /// The latest event.
    latest: StatusEvent,
}

/// The status page: a page of recent events beside the overall and per-service status.
#[derive(Serialize, utoipa::ToSchema)]
struct StatusPage {
    overall: Status,
    services: Vec<ServiceStatus>,
    #[serde(flatten)]
    recent: Page<StatusEvent>,
}

/// `GET /api/v1/status?page=&page_size=`: public.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "status",
    security(()),
    responses((status = 200, description = "Overall status, each service's latest and recent events", body = StatusPage))
)]
async fn page(
    State(state): State<AppState>,
    page: PageRequest,
) -> Result<Json<StatusPage>, ApiError> {
    let now = state.clock().now();
    let services: Vec<ServiceStatus> = store::latest_per_service(state.db())
        .await?
        .into_iter()
        .map(|latest| ServiceStatus {
            service: latest.service.clone(),
            status: latest.current_at(now),
            latest,
        })
        .collect();
    let (items, total) = store::recent(state.db(), &page).await?;
    Ok(Json(StatusPage {
        overall: overall(services.iter().map(|s| s.status)),
        services,
        recent: page.page(items, total),
    }))
}
