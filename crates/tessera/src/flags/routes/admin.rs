//! `/api/v1/admin/flags`: list (paginated, `tag` and `owner` filters), get, create, update,
//! delete, and each tenant's override. Reading needs `flags:read`. Global changes (create,
//! update, delete) need `flags:write` held by a platform administrator (the `system`
//! tenant); a tenant's administrators with `flags:write` set and clear their own tenant's
//! overrides only.
//!
//! Flags declared in the config file cannot be deleted here, and only their values and rules
//! (`default`, `variants`, `enabled`, `rules`, `rollout`) can be overridden; the rest stays
//! as declared. Every change is audited with the old and new definition, written in the same
//! transaction as a change row, and reaches every instance within a poll (200 ms).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::caller::Authenticated;
use crate::flags::model::{Flag, FlagKey, FlagSpec};
use crate::flags::set::{Defined, Entry, ValuePatch, ValueSource};
use crate::flags::store::{self, Origin};
use crate::http::client::RequestMeta;
use crate::http::error::db_error;
use crate::http::openapi::ApiRouter;
use crate::http::pagination::{Page, PageRequest};
use crate::http::{ApiError, Json};
use crate::permissions::Perm;
use crate::realtime::channel::{ChannelName, FLAG_CHANGED};
use crate::tenants::SYSTEM_TENANT_ID;
use utoipa_axum::routes;

/// The admin routes.
pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(set_override, clear_override))
}

/// Fields the admin API may override on a config-declared flag.
const VALUE_FIELDS: [&str; 5] = ["default", "variants", "enabled", "rules", "rollout"];

/// Fields only an API-created flag may change.
const META_FIELDS: [&str; 5] = ["description", "public", "owner", "tags", "aliases"];

/// A flag as administrators see it.
#[derive(Serialize)]
struct FlagView<'a> {
    key: &'a str,
    #[serde(flatten)]
    spec: &'a FlagSpec,
    /// `config` or `api`.
    defined: Defined,
    /// Where the default value comes from.
    value_source: &'a ValueSource,
    /// Whether the API overrides values of a config-declared flag.
    api_override: bool,
    /// The caller's tenant's override, if any.
    tenant_override: Option<&'a Value>,
}

fn view<'a>(entry: &'a Entry, tenant_override: Option<&'a Value>) -> FlagView<'a> {
    FlagView {
        key: entry.flag.key.as_str(),
        spec: &entry.flag.spec,
        defined: entry.defined,
        value_source: &entry.value_source,
        api_override: entry.api_override,
        tenant_override,
    }
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

fn flag_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "flag_not_found",
        "no flag has this key",
    )
}

/// Global changes: `flags:write` held by a platform administrator.
async fn platform_admin(state: &AppState, caller: &Authenticated) -> Result<(), ApiError> {
    caller.require(state, Perm::FlagsWrite).await?;
    if caller.tenant_id() != SYSTEM_TENANT_ID {
        return Err(ApiError::forbidden(
            "platform_admin_only",
            "global flag definitions and values are changed by platform administrators; set \
             your tenant's override instead",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFilter {
    tag: Option<String>,
    owner: Option<String>,
    // Read by the page extractor.
    #[allow(dead_code)]
    page: Option<String>,
    #[allow(dead_code)]
    page_size: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/flags",
    tag = "flags",
    responses((status = 200, description = "A page of flags", body = Object))
)]
async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    page: PageRequest,
    Query(filter): Query<ListFilter>,
) -> Result<Response, ApiError> {
    caller.require(&state, Perm::FlagsRead).await?;
    let set = state.flags().snapshot();
    let tenant = Some(caller.tenant_id());
    let matching: Vec<_> = set
        .iter()
        .filter(|e| {
            filter
                .tag
                .as_ref()
                .is_none_or(|t| e.flag.spec.tags.contains(t))
        })
        .filter(|e| {
            filter
                .owner
                .as_ref()
                .is_none_or(|o| e.flag.spec.owner.as_ref() == Some(o))
        })
        .collect();
    let total = i64::try_from(matching.len()).unwrap_or(i64::MAX);
    let offset = usize::try_from(page.offset()).unwrap_or(usize::MAX);
    let items: Vec<FlagView<'_>> = matching
        .into_iter()
        .skip(offset)
        .take(page.page_size as usize)
        .map(|e| {
            let found = set.override_of(tenant, e.flag.key.as_str());
            view(e, found.map(|o| &o.value))
        })
        .collect();
    let body: Page<FlagView<'_>> = page.page(items, total);
    Ok(Json(body).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/flags/{key}",
    tag = "flags",
    responses((status = 200, description = "The flag", body = Object))
)]
async fn show(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&state, Perm::FlagsRead).await?;
    let set = state.flags().snapshot();
    let entry = set.get(&key).ok_or_else(flag_not_found)?;
    let found = set.override_of(Some(caller.tenant_id()), &key);
    Ok(Json(view(entry, found.map(|o| &o.value))).into_response())
}

/// Splits a JSON object body into the flag key and the rest.
fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(invalid(
            "validation_failed",
            "the body must be a JSON object",
        )),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/flags",
    tag = "flags",
    request_body = Object,
    responses((status = 201, description = "Created", body = Object))
)]
async fn create(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    platform_admin(&state, &caller).await?;
    let mut fields = object(body)?;
    let key = match fields.remove("key") {
        Some(Value::String(key)) => FlagKey::parse(&key).map_err(|e| invalid("invalid_key", e))?,
        _ => {
            return Err(invalid(
                "invalid_key",
                "`key` is required: the new flag's key",
            ));
        }
    };
    let spec: FlagSpec = serde_json::from_value(Value::Object(fields))
        .map_err(|e| invalid("invalid_flag", e.to_string()))?;
    let flag = Flag::build(key.clone(), spec).map_err(|e| invalid("invalid_flag", e))?;
    if state.flags().declared().flags.contains_key(&key) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "declared_in_config",
            "the config file declares this flag; override its values with PATCH",
        ));
    }
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    if store::find(&mut tx, key.as_str())
        .await
        .map_err(db_error)?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "flag_exists",
            "a flag with this key exists",
        ));
    }
    let definition = serde_json::to_value(&flag.spec).map_err(ApiError::internal)?;
    store::save(&mut tx, key.as_str(), Origin::Api, &definition)
        .await
        .map_err(db_error)?;
    let details = json!({ "old": Value::Null, "new": definition });
    record(
        &caller,
        &mut tx,
        "flag.created",
        key.as_str(),
        &origin,
        details,
    )
    .await?;
    tx.commit().await.map_err(db_error)?;
    changed(&state, key.as_str()).await;
    let set = state.flags().snapshot();
    let entry = set.get(key.as_str()).ok_or_else(flag_not_found)?;
    Ok((StatusCode::CREATED, Json(view(entry, None))).into_response())
}

#[utoipa::path(
    patch,
    path = "/api/v1/admin/flags/{key}",
    tag = "flags",
    request_body = Object,
    responses((status = 200, description = "Changed", body = Object))
)]
async fn update(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(key): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    platform_admin(&state, &caller).await?;
    let fields = object(body)?;
    if let Some(name) = fields
        .keys()
        .find(|k| !VALUE_FIELDS.contains(&k.as_str()) && !META_FIELDS.contains(&k.as_str()))
    {
        let detail = if name == "type" || name == "key" {
            format!("a flag's `{name}` cannot change; create another flag")
        } else {
            format!("unknown field `{}`", name.escape_debug())
        };
        return Err(invalid("invalid_flag", detail));
    }
    let set = state.flags().snapshot();
    let entry = set.get(&key).ok_or_else(flag_not_found)?;
    let flag_key = entry.flag.key.clone();
    let old = serde_json::to_value(&entry.flag.spec).map_err(ApiError::internal)?;
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    let (origin_kind, definition, new_spec) = match entry.defined {
        Defined::Config => {
            if let Some(name) = fields.keys().find(|k| META_FIELDS.contains(&k.as_str())) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "declared_in_config",
                    format!("`{name}` of a flag declared in the config file is changed there"),
                ));
            }
            let stored = store::find(&mut tx, &key).await.map_err(db_error)?;
            let mut patch = stored
                .filter(|s| s.origin == Origin::Config)
                .map(|s| s.definition)
                .and_then(|d| d.as_object().cloned())
                .unwrap_or_default();
            patch.extend(fields);
            let patch: ValuePatch = serde_json::from_value(Value::Object(patch))
                .map_err(|e| invalid("invalid_flag", e.to_string()))?;
            let (declared, _) = state
                .flags()
                .declared()
                .flags
                .get(&flag_key)
                .ok_or_else(flag_not_found)?;
            let spec = patch.apply(declared.clone());
            let definition = serde_json::to_value(&patch).map_err(ApiError::internal)?;
            (Origin::Config, definition, spec)
        }
        Defined::Api => {
            let mut merged = old.as_object().cloned().unwrap_or_default();
            merged.extend(fields);
            let spec: FlagSpec = serde_json::from_value(Value::Object(merged))
                .map_err(|e| invalid("invalid_flag", e.to_string()))?;
            let definition = serde_json::to_value(&spec).map_err(ApiError::internal)?;
            (Origin::Api, definition, spec)
        }
    };
    let built = Flag::build(flag_key, new_spec).map_err(|e| invalid("invalid_flag", e))?;
    store::save(&mut tx, &key, origin_kind, &definition)
        .await
        .map_err(db_error)?;
    let new = serde_json::to_value(&built.spec).map_err(ApiError::internal)?;
    let details = json!({ "old": old, "new": new });
    record(&caller, &mut tx, "flag.updated", &key, &origin, details).await?;
    tx.commit().await.map_err(db_error)?;
    changed(&state, &key).await;
    let set = state.flags().snapshot();
    let entry = set.get(&key).ok_or_else(flag_not_found)?;
    let found = set.override_of(Some(caller.tenant_id()), &key);
    Ok(Json(view(entry, found.map(|o| &o.value))).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/flags/{key}",
    tag = "flags",
    responses((status = 204, description = "Deleted"))
)]
async fn remove(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    platform_admin(&state, &caller).await?;
    let set = state.flags().snapshot();
    let entry = set.get(&key).ok_or_else(flag_not_found)?;
    if entry.defined == Defined::Config {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "declared_in_config",
            "a flag declared in the config file is removed from the file, not through the API",
        ));
    }
    let old = serde_json::to_value(&entry.flag.spec).map_err(ApiError::internal)?;
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    store::delete(&mut tx, &key).await.map_err(db_error)?;
    let details = json!({ "old": old, "new": Value::Null });
    record(&caller, &mut tx, "flag.deleted", &key, &origin, details).await?;
    tx.commit().await.map_err(db_error)?;
    changed(&state, &key).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    value: Value,
}

/// `flags:write`, and the tenant is the caller's own unless the caller is a platform
/// administrator (who may name any existing tenant).
async fn tenant_admin(
    state: &AppState,
    caller: &Authenticated,
    tenant_id: &str,
) -> Result<(), ApiError> {
    caller.require(state, Perm::FlagsWrite).await?;
    if caller.tenant_id() == tenant_id {
        return Ok(());
    }
    if caller.tenant_id() != SYSTEM_TENANT_ID {
        return Err(ApiError::forbidden(
            "other_tenant",
            "tenant overrides are set within your own tenant",
        ));
    }
    crate::tenants::store::find(state.db(), tenant_id)
        .await
        .map_err(db_error)?
        .map(|_| ())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "tenant_not_found", "no such tenant"))
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/flags/{key}/tenants/{tenant_id}",
    tag = "flags",
    request_body = OverrideBody,
    responses((status = 200, description = "The tenant's override", body = Object))
)]
async fn set_override(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path((key, tenant_id)): Path<(String, String)>,
    Json(body): Json<OverrideBody>,
) -> Result<Response, ApiError> {
    tenant_admin(&state, &caller, &tenant_id).await?;
    let set = state.flags().snapshot();
    let entry = set.get(&key).ok_or_else(flag_not_found)?;
    let kind = entry.flag.spec.kind;
    if !kind.admits(&body.value) {
        return Err(invalid(
            "type_mismatch",
            format!("this flag's values are of type {}", kind.as_str()),
        ));
    }
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    let old = store::find_override(&mut tx, &tenant_id, &key)
        .await
        .map_err(db_error)?;
    store::set_override(&mut tx, &tenant_id, &key, &body.value)
        .await
        .map_err(db_error)?;
    let details = json!({ "tenant_id": tenant_id, "old": old, "new": body.value });
    record(
        &caller,
        &mut tx,
        "flag.override_set",
        &key,
        &origin,
        details,
    )
    .await?;
    tx.commit().await.map_err(db_error)?;
    changed(&state, &key).await;
    Ok(Json(json!({ "key": key, "tenant_id": tenant_id, "value": body.value })).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/flags/{key}/tenants/{tenant_id}",
    tag = "flags",
    responses((status = 204, description = "Removed"))
)]
async fn clear_override(
    State(state): State<AppState>,
    origin: RequestMeta,
    caller: Authenticated,
    Path((key, tenant_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    tenant_admin(&state, &caller, &tenant_id).await?;
    let mut tx = state.db().begin_write().await.map_err(db_error)?;
    let old = store::find_override(&mut tx, &tenant_id, &key)
        .await
        .map_err(db_error)?;
    if !store::clear_override(&mut tx, &tenant_id, &key)
        .await
        .map_err(db_error)?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "override_not_found",
            "this tenant has no override of this flag",
        ));
    }
    let details = json!({ "tenant_id": tenant_id, "old": old, "new": Value::Null });
    record(
        &caller,
        &mut tx,
        "flag.override_cleared",
        &key,
        &origin,
        details,
    )
    .await?;
    tx.commit().await.map_err(db_error)?;
    changed(&state, &key).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn record(
    caller: &Authenticated,
    conn: &mut sqlx::AnyConnection,
    action: &'static str,
    key: &str,
    origin: &RequestMeta,
    details: Value,
) -> Result<(), ApiError> {
    caller
        .record(conn, action, ("flag", key), origin, Some(details))
        .await
}

/// After a commit here: this instance answers with the change at once, the bus tells the
/// other instances (a failed read here is retried by this instance's follower, which the
/// announcement wakes too), and the real-time hub's `flags` channel announces it once, from
/// here, to every instance's subscribers (`flag.changed` with the key only: which tenant's
/// override changed is not every signed-in user's business; a client reloads its
/// configuration, which is a 304 when nothing changed for it).
async fn changed(state: &AppState, key: &str) {
    if let Err(e) = state.flags().reload(state.db()).await {
        tracing::warn!(error = %e, "reloading the flags after a change failed");
    }
    state.flags().wake();
    let channel = ChannelName::flags();
    if let Err(e) = state
        .realtime()
        .publish(&channel, FLAG_CHANGED, json!({ "key": key }))
        .await
    {
        tracing::warn!(error = %e, flag = key, "announcing a flag change on the hub failed");
    }
}
