//! The OpenAPI 3.1 contract, generated from the code and served at `GET /api/v1/openapi.json`.
//!
//! Every route is registered through utoipa-axum's `routes!` ([`ApiRouter`]), so a route and
//! its operation come from the same `#[utoipa::path]` annotation beside the handler. What the
//! shared layers do to every route (problem+json errors, idempotency keys, ETags and
//! preconditions, `Link` headers, rate limits) is added here, by the same rules the layers
//! follow, rather than repeated on each handler.

use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::state::AppState;

/// A capability's routes together with their operations.
pub type ApiRouter = OpenApiRouter<AppState>;

/// Tag of the console's HTML pages and assets.
pub const CONSOLE: &str = "console";

/// Every problem `code` an answer of Tessera can carry. The `codes_used_in_the_source_are_listed`
/// test fails when a code used anywhere in the source is missing here.
pub const PROBLEM_CODES: &[&str] = &[
    "account_disabled",
    "account_exists",
    "bad_request",
    "built_in_role",
    "cannot_disable_self",
    "conflict",
    "csrf_failed",
    "database_unavailable",
    "declared_in_config",
    "error",
    "flag_exists",
    "flag_not_found",
    "forbidden",
    "forbidden_channel",
    "idempotency_in_flight",
    "idempotency_key_reused",
    "idempotency_not_supported",
    "insufficient_scope",
    "internal_error",
    "invalid_body",
    "invalid_channel",
    "invalid_client",
    "invalid_code",
    "invalid_context",
    "invalid_credentials",
    "invalid_cursor",
    "invalid_email",
    "invalid_event",
    "invalid_filter",
    "invalid_flag",
    "invalid_idempotency_key",
    "invalid_input",
    "invalid_key",
    "invalid_limit",
    "invalid_mfa_token",
    "invalid_pagination",
    "invalid_permission",
    "invalid_refresh_token",
    "invalid_report",
    "invalid_role_name",
    "invalid_since",
    "invalid_slug",
    "invalid_ticket",
    "invalid_token",
    "invalid_username",
    "login_delayed",
    "malformed_json",
    "method_not_allowed",
    "mfa_already_enabled",
    "mfa_disabled",
    "not_a_websocket",
    "not_acceptable",
    "not_found",
    "not_ready",
    "origin_not_allowed",
    "other_tenant",
    "overloaded",
    "override_not_found",
    "parse_error",
    "password_changed_meanwhile",
    "password_too_long",
    "password_too_short",
    "payload_too_large",
    "platform_admin_only",
    "platform_only",
    "precondition_failed",
    "query_token_refused",
    "rate_limited",
    "refresh_token_reused",
    "registration_closed",
    "request_timeout",
    "reserved_channel",
    "resource_busy",
    "role_exists",
    "role_in_use",
    "session_ended",
    "system_tenant",
    "target_outranks_caller",
    "targeting_key_missing",
    "tenant_exists",
    "tenant_not_found",
    "too_many_attempts",
    "too_many_channels",
    "too_many_streams",
    "too_many_tickets",
    "type_mismatch",
    "unauthenticated",
    "unauthorized",
    "unavailable",
    "unknown_audience",
    "unknown_role",
    "unknown_tenant",
    "unsupported_media_type",
    "validation_failed",
];

/// Every RFC 6749 error code of the `/oauth2` endpoints; outside them, the same codes come as
/// problems.
pub const OAUTH_ERROR_CODES: &[&str] = &[
    "insufficient_scope",
    "invalid_client",
    "invalid_request",
    "invalid_scope",
    "server_error",
    "unsupported_grant_type",
];

/// Request bodies that name a thing by exactly one of several optional members, a rule serde's
/// types cannot carry: the schema and the member names.
const EXACTLY_ONE_OF: &[(&str, &[&str])] = &[
    ("LoginRequest", &["login", "username", "email"]),
    ("VerifyRequest", &["code", "recovery_code"]),
];

/// Members checked by [`super::check_display_name`]: the schema and the member.
/// Fields that set a new password: at least `passwords.min_length` characters.
const NEW_PASSWORDS: &[(&str, &str)] = &[
    ("ChangePassword", "new_password"),
    ("NewAccount", "password"),
    ("PasswordReset", "new_password"),
    ("RegisterRequest", "password"),
];

/// Operations whose body may be left out (an empty context, a ticket with no options).
const OPTIONAL_BODIES: &[(&str, &str)] = &[
    ("/api/v1/realtime/ticket", "post"),
    ("/ofrep/v1/evaluate/flags", "post"),
];

/// Lists of permissions (role grants, client scopes): each item as [`Permission::parse`]
/// accepts it.
///
/// [`Permission::parse`]: tessera_token::Permission::parse
const PERMISSION_LISTS: &[(&str, &str)] = &[
    ("NewClient", "scopes"),
    ("ClientChange", "scopes"),
    ("NewRole", "permissions"),
    ("RoleChange", "permissions"),
];

const DISPLAY_NAMES: &[(&str, &str)] = &[
    ("NewClient", "name"),
    ("ClientChange", "name"),
    ("NewTenant", "name"),
    ("TenantChange", "name"),
];

/// What [`super::check_display_name`] accepts: 1 to 200 characters, not all white space, no
/// hidden character.
fn display_name_schema() -> Map<String, Value> {
    let hidden = crate::text::hidden_class();
    let visible = hidden.replacen('[', "[^", 1);
    let shown = hidden.replacen('[', "[^\\s", 1);
    let mut schema = Map::new();
    schema.insert("maxLength".into(), json!(200));
    schema.insert(
        "pattern".into(),
        json!(format!("^{visible}*{shown}{visible}*$")),
    );
    schema
}

/// One alternative per member: that member present as a string (the others absent or null,
/// which `oneOf` enforces by letting only one alternative match).
fn exactly_one_of(members: &[&str]) -> Value {
    members
        .iter()
        .map(|m| json!({ "required": [m], "properties": { *m: { "type": "string" } } }))
        .collect()
}

#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Tessera",
    description = "Identity, sessions, tokens, permissions, feature flags and real-time events \
                   for a platform. Errors are RFC 9457 problems (`application/problem+json`) \
                   with a stable `code`."
))]
struct Base;

/// The document `routes` start from: info, security schemes and the shared components.
pub fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// The served document, built once at start.
#[derive(Clone)]
pub struct Document(pub Arc<Value>);

/// What the document needs to know of the capabilities' own rules. The app hands it in, so
/// this shared module imports no capability.
pub struct Rules {
    /// Whether a path refuses `Idempotency-Key` (the idempotency layer's rule).
    pub refuses_keys: fn(&str) -> bool,
    /// What a real-time channel name may be.
    pub channel_pattern: &'static str,
    /// The longest channel name.
    pub channel_max_bytes: usize,
}

/// Completes the document the routes produced with what the shared layers add.
pub fn complete(openapi: utoipa::openapi::OpenApi, config: &Config, rules: &Rules) -> Value {
    let mut doc = serde_json::to_value(openapi).unwrap_or_else(|_| json!({}));
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    doc["security"] = json!([{ "bearer": [] }, { "session": [], "csrf": [] }]);
    let components = doc["components"].as_object_mut().map(std::mem::take);
    doc["components"] = Value::Object(merge(components.unwrap_or_default(), components_json()));
    doc["components"]["schemas"]["OAuthError"]["properties"]["error"]["enum"] =
        json!(OAUTH_ERROR_CODES);
    let display_name = display_name_schema();
    for (schema, member) in DISPLAY_NAMES {
        let property = doc["components"]["schemas"]
            .get_mut(*schema)
            .and_then(|s| s.pointer_mut(&format!("/properties/{member}")))
            .and_then(Value::as_object_mut);
        if let Some(property) = property {
            property.extend(display_name.clone());
        }
    }
    for (schema, member) in NEW_PASSWORDS {
        let property = doc["components"]["schemas"]
            .get_mut(*schema)
            .and_then(|s| s.pointer_mut(&format!("/properties/{member}")))
            .and_then(Value::as_object_mut);
        if let Some(property) = property {
            property.insert("minLength".into(), json!(config.passwords.min_length));
        }
    }
    // A channel, wherever it is named: the publish body and every `channel` query parameter.
    let channel_rule = |schema: &mut Map<String, Value>| {
        schema.insert("pattern".into(), json!(rules.channel_pattern));
        schema.insert("maxLength".into(), json!(rules.channel_max_bytes));
    };
    if let Some(channel) = doc["components"]["schemas"]["PublishRequest"]["properties"]
        .get_mut("channel")
        .and_then(Value::as_object_mut)
    {
        channel_rule(channel);
    }
    if let Some(paths) = doc["paths"].as_object_mut() {
        let parameters = paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
            .filter_map(|operation| operation.get_mut("parameters"))
            .filter_map(Value::as_array_mut)
            .flatten();
        for parameter in parameters {
            if parameter["in"] == "query"
                && parameter["name"] == "channel"
                && let Some(schema) = parameter.get_mut("schema").and_then(Value::as_object_mut)
            {
                channel_rule(schema);
            }
        }
    }
    for (path, method) in OPTIONAL_BODIES {
        if let Some(body) = doc["paths"][*path][*method].get_mut("requestBody") {
            body["required"] = json!(false);
        }
    }
    for (schema, member) in PERMISSION_LISTS {
        let items = doc["components"]["schemas"]
            .get_mut(*schema)
            .and_then(|s| s.pointer_mut(&format!("/properties/{member}/items")))
            .and_then(Value::as_object_mut);
        if let Some(items) = items {
            items.insert("pattern".into(), json!(tessera_token::PERMISSION_PATTERN));
        }
    }
    for (schema, members) in EXACTLY_ONE_OF {
        if let Some(schema) = doc["components"]["schemas"].get_mut(*schema) {
            schema["oneOf"] = exactly_one_of(members);
        }
    }
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                conventions(path, method, operation, rules);
            }
        }
    }
    doc
}

fn merge(mut into: Map<String, Value>, from: Value) -> Map<String, Value> {
    if let Value::Object(from) = from {
        for (key, value) in from {
            match (into.get_mut(&key), value) {
                (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
                (_, value) => {
                    into.insert(key, value);
                }
            }
        }
    }
    into
}

/// Security schemes, the problem schema with every code, and the shared responses and
/// headers the conventions refer to.
fn components_json() -> Value {
    let problem = |description: &str| {
        json!({
            "description": description,
            "headers": { "Retry-After": { "$ref": "#/components/headers/Retry-After" } },
            "content": { super::PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } } },
        })
    };
    json!({
        "securitySchemes": {
            "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An access token from `/api/v1/auth/login`, a refresh, or `/oauth2/token`." },
            "session": { "type": "apiKey", "in": "cookie", "name": "tessera_access",
                "description": "The browser session's access cookie (its name follows `auth.cookie_prefix`); \
                                state-changing requests also need the CSRF header." },
            "csrf": { "type": "apiKey", "in": "header", "name": super::csrf::HEADER,
                "description": "The CSRF token from the session's CSRF cookie, echoed on every \
                                state-changing request made with the session cookie." },
            "client_basic": { "type": "http", "scheme": "basic",
                "description": "An OAuth client's id and secret (`client_secret_basic`)." },
            "metrics_token": { "type": "http", "scheme": "bearer",
                "description": "The scraper's token, `metrics.token`." },
        },
        "schemas": {
            "ServerSentEvent": {
                "type": "object",
                "description": "One event of a `text/event-stream`; `data` is JSON text.",
                "properties": {
                    "event": { "type": "string" },
                    "data": { "type": "string" },
                    "id": { "type": "string" },
                    "retry": { "type": "integer" },
                },
            },
            "Problem": {
                "type": "object",
                "description": "An RFC 9457 problem. Extra members carry details (per-field errors, OFREP's `errorCode`).",
                "required": ["type", "title", "status", "code"],
                "properties": {
                    "type": { "type": "string", "description": "`urn:tessera:problem:<code>`" },
                    "title": { "type": "string" },
                    "status": { "type": "integer", "minimum": 400, "maximum": 599 },
                    "code": { "type": "string", "enum": PROBLEM_CODES.iter().chain(OAUTH_ERROR_CODES).collect::<std::collections::BTreeSet<_>>() },
                    "detail": { "type": "string" },
                    "request_id": { "type": "string" },
                },
            },
        },
        "headers": {
            "Retry-After": { "description": "Seconds to wait before retrying (429, 503, some 409).",
                "schema": { "type": "integer", "minimum": 0 } },
            "ETag": { "description": "A strong tag over the exact body; send it back in \
                                      `If-None-Match` (304) or, on admin resources, `If-Match`.",
                "schema": { "type": "string" } },
            "Link": { "description": "RFC 8288 `first`, `prev`, `next` and `last` links of a list.",
                "schema": { "type": "string" } },
            "Idempotent-Replayed": { "description": "`true` on an answer replayed for a repeated `Idempotency-Key`.",
                "schema": { "type": "string", "enum": ["true"] } },
        },
        "parameters": {
            "Idempotency-Key": { "name": "Idempotency-Key", "in": "header", "required": false,
                "description": "Makes the request safe to retry: a repeat with the same key and body \
                                replays the first answer (`Idempotent-Replayed: true`); the same key \
                                with another body is 422 `idempotency_key_reused`; while the first is \
                                in flight, 409 `idempotency_in_flight`. Scoped to the caller.",
                "schema": { "type": "string", "pattern": "^[!-~]{1,255}$" } },
            "If-None-Match": { "name": "If-None-Match", "in": "header", "required": false,
                "description": "An ETag from an earlier answer: 304 when it is still current.",
                "schema": { "type": "string" } },
            "If-Match": { "name": "If-Match", "in": "header", "required": false,
                "description": "The ETag the change is based on: 412 `precondition_failed` when the \
                                resource changed since (optimistic concurrency).",
                "schema": { "type": "string" } },
            "page": { "name": "page", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 1, "maximum": u32::MAX } },
            "page_size": { "name": "page_size", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 1, "maximum": super::pagination::MAX_PAGE_SIZE } },
        },
        "responses": {
            "BadRequest": problem("The request is malformed (`bad_request`, `malformed_json`, …)."),
            "Unauthorized": problem("No valid credentials (`unauthenticated`, `invalid_token`, …)."),
            "Forbidden": problem("The caller may not do this (`forbidden`, `insufficient_scope`, `csrf_failed`, …)."),
            "NotFound": problem("No such resource, or one the caller may not know about."),
            "Conflict": problem("The change conflicts with the current state, or another change is in progress."),
            "PreconditionFailed": problem("`If-Match` names an older ETag (`precondition_failed`)."),
            "PayloadTooLarge": problem("The body is over `http.body_limit_bytes`."),
            "UnsupportedMediaType": problem("The body is not of the expected media type."),
            "Unprocessable": problem("The body is well formed but invalid (`validation_failed`, …)."),
            "TooManyRequests": problem("A rate limit refused the request (`rate_limited`); see `Retry-After`."),
            "InternalError": problem("An unexpected failure (`internal_error`); details are logged, never shown."),
            "Unavailable": problem("A dependency is down or the request timed out; see `Retry-After`."),
            "NotModified": { "description": "`If-None-Match` names the current ETag." },
        },
    })
}

/// The rules the shared layers apply, written onto one operation.
fn conventions(path: &str, method: &str, operation: &mut Value, rules: &Rules) {
    let Some(op) = operation.as_object_mut() else {
        return;
    };
    let console = op["tags"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t == CONSOLE));
    let anonymous = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(Map::is_empty)));
    let has_body = op.contains_key("requestBody");
    // Handler names repeat across capabilities (`list`, `create`): the route is the id.
    let id: String = format!("{method}{path}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    op.insert("operationId".into(), json!(id));
    let mut params: Vec<Value> = Vec::new();
    for name in path_parameters(path) {
        params.push(
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }),
        );
    }
    let mut responses = vec![
        ("400", "BadRequest"),
        ("429", "TooManyRequests"),
        ("500", "InternalError"),
        ("503", "Unavailable"),
    ];
    if !anonymous {
        responses.extend([("401", "Unauthorized"), ("403", "Forbidden")]);
    }
    if path.contains('{') {
        responses.push(("404", "NotFound"));
    }
    if has_body {
        responses.extend([
            ("413", "PayloadTooLarge"),
            ("415", "UnsupportedMediaType"),
            ("422", "Unprocessable"),
        ]);
    }
    let stream = op
        .get_mut("responses")
        .and_then(|r| r.pointer_mut("/200/content/text~1event-stream"));
    if let Some(stream) = stream {
        stream["schema"] = json!({ "$ref": "#/components/schemas/ServerSentEvent" });
    }
    let json_ok = op["responses"]["200"]["content"]
        .get("application/json")
        .cloned();
    if method == "get" && !console && json_ok.is_some() {
        params.push(json!({ "$ref": "#/components/parameters/If-None-Match" }));
        responses.push(("304", "NotModified"));
        add_header(op, "200", "ETag");
        let page = json_ok
            .as_ref()
            .and_then(|c| c["schema"]["$ref"].as_str())
            .is_some_and(|r| r.starts_with("#/components/schemas/Page"));
        if page {
            params.push(json!({ "$ref": "#/components/parameters/page" }));
            params.push(json!({ "$ref": "#/components/parameters/page_size" }));
            add_header(op, "200", "Link");
        }
    }
    if matches!(method, "post" | "patch") && !(rules.refuses_keys)(path) {
        params.push(json!({ "$ref": "#/components/parameters/Idempotency-Key" }));
        responses.extend([("409", "Conflict"), ("422", "Unprocessable")]);
        let successes: Vec<String> = op["responses"]
            .as_object()
            .map(|r| r.keys().filter(|s| s.starts_with('2')).cloned().collect())
            .unwrap_or_default();
        for status in successes {
            add_header(op, &status, "Idempotent-Replayed");
        }
    }
    if matches!(method, "post" | "patch" | "put" | "delete")
        && super::conditional::admin_resource(path).is_some()
    {
        if method != "post" {
            params.push(json!({ "$ref": "#/components/parameters/If-Match" }));
        }
        responses.extend([("409", "Conflict"), ("412", "PreconditionFailed")]);
    }
    let list = op
        .entry("parameters")
        .or_insert_with(|| json!([]))
        .as_array_mut();
    if let Some(list) = list {
        for param in params {
            let name = param["name"].clone();
            if name.is_null() || !list.iter().any(|p| p["name"] == name) {
                list.push(param);
            }
        }
        // A query value of the right type can still name nothing (`invalid_pagination`, …).
        let query = list.iter().any(|p| {
            p["in"] == "query"
                || p["$ref"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("/page") || r.ends_with("/page_size"))
        });
        if query {
            responses.push(("422", "Unprocessable"));
        }
    }
    if let Some(map) = op["responses"].as_object_mut() {
        if !console {
            problem_content(map);
        }
        for (status, name) in responses {
            map.entry(status)
                .or_insert_with(|| json!({ "$ref": format!("#/components/responses/{name}") }));
        }
    }
}

/// An error answer a handler declares with only a description is a problem.
fn problem_content(responses: &mut Map<String, Value>) {
    let errors = responses
        .iter_mut()
        .filter(|(status, _)| status.starts_with(['4', '5']));
    for (_, response) in errors {
        if let Some(response) = response.as_object_mut()
            && !response.contains_key("$ref")
        {
            response.entry("content").or_insert_with(|| {
                json!({ super::PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } } })
            });
        }
    }
}

fn add_header(op: &mut Map<String, Value>, status: &str, name: &str) {
    if let Some(response) = op["responses"][status].as_object_mut() {
        let headers = response.entry("headers").or_insert_with(|| json!({}));
        headers[name] = json!({ "$ref": format!("#/components/headers/{name}") });
    }
}

/// The `{name}` segments of a path template.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
}

/// The document, as JSON.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn serve(Extension(doc): Extension<Document>) -> Response {
    let mut response = axum::Json(doc.0.as_ref()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// A console page's route and its operation: an HTML `GET` that redirects to `/login` without
/// a session.
pub fn html_page(
    path: &str,
    title: &str,
    method_router: axum::routing::MethodRouter<AppState>,
) -> utoipa_axum::router::UtoipaMethodRouter<AppState> {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, Paths};
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    let html = ContentBuilder::new().build();
    let operation = OperationBuilder::new()
        .tag(CONSOLE)
        .summary(Some(title))
        .security(utoipa::openapi::security::SecurityRequirement::default())
        .response(
            "200",
            ResponseBuilder::new()
                .description("The page")
                .content("text/html", html),
        )
        .response(
            "303",
            ResponseBuilder::new().description("To `/login` without a session"),
        )
        .response(
            "403",
            ResponseBuilder::new()
                .description("The frame and a message: the caller lacks the page's permission"),
        )
        .build();
    let mut paths = Paths::new();
    paths.add_path_operation(path, vec![HttpMethod::Get], operation);
    (Vec::new(), paths, method_router)
}
