//! Feature flags through the real server: the ISP catalogue, precedence of the layers,
//! OFREP answers and errors, the change stream, tenant isolation, the admin API with its
//! audit trail, and propagation to another instance.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tessera::config::{Config, load_from};
use tessera::tenants::SYSTEM_TENANT_ID;

use crate::clients::token_request;
use crate::feed::next_event;
use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::on_each_database;

pub(crate) use crate::tenants::PASSWORD;

/// The catalogue shipped in `examples/flags/`.
pub(crate) const CATALOGUE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/flags/isp-platform.toml"
);

/// Flags used by most tests: one of each type, a rollout, a targeting rule, a private one.
pub(crate) const TEST_FLAGS: &str = r#"
[flags.dark_mode]
type = "bool"
default = false
public = true
tags = ["ui"]
owner = "web"

[flags.banner_text]
type = "string"
default = "config"
public = true
variants = { config = "config", tenant = "tenant" }

[flags.max_upload_mb]
type = "number"
default = 2.5

[flags.theme]
type = "object"
default = { color = "blue", dense = false }

[flags.new_checkout]
type = "bool"
default = false
rollout = [{ variant = "on", percent = 50 }, { variant = "off", percent = 50 }]

[flags.beta_reports]
type = "bool"
default = false
rules = [{ when = [{ attribute = "roles", op = "in", value = ["admin"] }], variant = "on" }]

[flags.internal_only]
type = "string"
default = "secret-plan"
"#;

/// Loads `toml` with `env` through the real loader and puts its flags and platform section
/// into `config`.
pub(crate) fn apply_flags(config: &mut Config, toml: &str, env: &[(&str, &str)]) {
    let loaded = load_from(
        Some((PathBuf::from("flags.toml"), toml.to_owned())),
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .unwrap_or_else(|e| panic!("flags load: {e}"));
    config.flags = loaded.flags;
    config.flag_env = loaded.flag_env;
    config.platform = loaded.platform;
}

/// An account with `roles` in `tenant_id` (slug `slug`), logged in; its access token.
pub(crate) async fn member_token(
    app: &TestApp,
    tenant_id: &str,
    slug: &str,
    email: &str,
    roles: &[&str],
) -> String {
    let login = crate::tenants::member_of(app, tenant_id, slug, email, roles).await;
    login["access_token"].as_str().expect("token").to_owned()
}

/// A platform administrator's token.
pub(crate) async fn platform_admin(app: &TestApp) -> String {
    member_token(
        app,
        SYSTEM_TENANT_ID,
        "system",
        "ops@example.com",
        &["platform_admin"],
    )
    .await
}

/// A new tenant created by `platform`; its id.
pub(crate) async fn new_tenant(app: &TestApp, platform: &str, slug: &str) -> String {
    let created = app
        .send(
            Method::POST,
            "/api/v1/admin/tenants",
            platform,
            Some(json!({"slug": slug, "name": slug})),
        )
        .await;
    assert_eq!(created.status(), 201);
    created.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// One flag through OFREP.
pub(crate) async fn ofrep(
    app: &TestApp,
    token: &str,
    key: &str,
    context: Value,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/ofrep/v1/evaluate/flags/{key}")))
        .bearer_auth(token)
        .json(&json!({ "context": context }))
        .send()
        .await
        .expect("sent")
}

async fn ofrep_value(app: &TestApp, token: &str, key: &str, context: Value) -> Value {
    let response = ofrep(app, token, key, context).await;
    assert_eq!(response.status(), 200, "{key}");
    response.json().await.expect("JSON")
}

async fn bulk(app: &TestApp, token: &str, context: Value, etag: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(token)
        .json(&json!({ "context": context }));
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    request.send().await.expect("sent")
}

fn flag_in<'a>(bulk: &'a Value, key: &str) -> &'a Value {
    bulk["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .find(|f| f["key"] == key)
        .unwrap_or_else(|| panic!("{key} missing from {bulk}"))
}

/// Reads the change stream until a message of `kind` (`data.type`) arrives.
pub(crate) async fn next_message(
    stream: &mut reqwest::Response,
    buffer: &mut String,
    kind: &str,
) -> (String, Value) {
    loop {
        let (id, data) = next_event(stream, buffer, "message").await;
        if data["type"] == kind {
            return (id, data);
        }
    }
}

on_each_database! {
    async fn the_isp_catalogue_loads_and_anonymous_callers_see_only_its_public_flags(db: TestDatabase) {
        let catalogue = std::fs::read_to_string(CATALOGUE).expect("catalogue");
        let app = spawn_app_with(db, |c| apply_flags(c, &catalogue, &[("TESSERA_FLAG_PAYMENTS_ENABLED", "true")])).await;
        let set = app.state.flags().snapshot();
        assert_eq!(set.len(), 32, "22 backend + 10 domain flags");

        let response = app.get("/api/v1/platform/config").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "public, no-cache");
        let etag = response.headers()["etag"].to_str().expect("etag").to_owned();
        let config: Value = response.json().await.expect("JSON");
        let features = config["features"].as_object().expect("features");
        assert_eq!(features["mfa_enabled"], false);
        assert_eq!(features["sms_enabled"], false);
        assert_eq!(features["search_enabled"], true);
        // The frontend's names map onto the same flags.
        assert_eq!(features["enableGraphQL"], false);
        assert_eq!(features["graphql_enabled"], false);
        assert_eq!(features["enableRadius"], true);
        assert_eq!(features["enablePayments"], true, "TESSERA_FLAG_PAYMENTS_ENABLED");
        for private in ["db_sqlite", "db_postgresql", "db_migrations", "celery_enabled", "celery_redis", "encryption_fernet", "secrets_vault"] {
            assert!(!features.contains_key(private), "{private} shown to an anonymous caller");
        }
        assert_eq!(config["app"]["name"], "ISP Operations Platform");
        assert_eq!(config["app"]["environment"], "development");
        assert_eq!(config["api"]["graphql_url"], "/api/v1/graphql");
        assert_eq!(config["api"]["realtime"]["sse_url"], "/api/v1/realtime/sse");
        assert_eq!(config["auth"]["cookie_names"]["csrf_token"], "csrf_token");
        assert_eq!(config["auth"]["csrf_header"], "X-CSRF-Token");
        assert_eq!(config["branding"]["primary_color"], "#0b5fff");

        let again = app.client.get(app.url("/api/v1/platform/config")).header("if-none-match", &etag).send().await.expect("sent");
        assert_eq!(again.status(), 304);

        let user = app.token_for("ann@example.com", PASSWORD, &["user"]).await;
        let signed_in: Value = app.get_bearer("/api/v1/platform/config", &user).await.json().await.expect("JSON");
        assert_eq!(signed_in["features"]["db_sqlite"], true, "signed-in callers see every flag");
        // An expired or forged credential still gets the public configuration.
        let forged: Value = app.get_bearer("/api/v1/platform/config", "not-a-token").await.json().await.expect("JSON");
        assert!(forged["features"].get("db_sqlite").is_none());
    }
}

on_each_database! {
    async fn precedence_is_config_then_env_then_api_then_tenant(db: TestDatabase) {
        let app = spawn_app_with(db, |c| apply_flags(c, TEST_FLAGS, &[("TESSERA_FLAG_BANNER_TEXT", "env")])).await;
        let platform = platform_admin(&app).await;
        let acme = new_tenant(&app, &platform, "acme").await;
        let admin = app.token_for("admin@example.com", PASSWORD, &["admin"]).await;
        let outsider = member_token(&app, &acme, "acme", "wile@acme.example", &["user"]).await;

        let value = |v: Value| v["value"].clone();
        assert_eq!(value(ofrep_value(&app, &admin, "banner_text", json!({})).await), "env");
        let shown: Value = app.get_bearer("/api/v1/admin/flags/banner_text", &admin).await.json().await.expect("JSON");
        assert_eq!(shown["value_source"], json!({"kind": "env", "var": "TESSERA_FLAG_BANNER_TEXT"}));

        let patched = app.send(Method::PATCH, "/api/v1/admin/flags/banner_text", &platform, Some(json!({"default": "api"}))).await;
        assert_eq!(patched.status(), 200);
        let patched: Value = patched.json().await.expect("JSON");
        assert_eq!(patched["value_source"], json!({"kind": "api"}));
        assert_eq!(patched["defined"], "config");
        assert_eq!(value(ofrep_value(&app, &admin, "banner_text", json!({})).await), "api");

        let set = app.send(Method::PUT, &format!("/api/v1/admin/flags/banner_text/tenants/{}", tenant_of(&app, &admin).await), &admin, Some(json!({"value": "tenant"}))).await;
        assert_eq!(set.status(), 200);
        let mine = ofrep_value(&app, &admin, "banner_text", json!({})).await;
        assert_eq!((mine["value"].clone(), mine["reason"].clone(), mine["variant"].clone()), (json!("tenant"), json!("TARGETING_MATCH"), json!("tenant")));
        assert_eq!(value(ofrep_value(&app, &outsider, "banner_text", json!({})).await), "api", "another tenant keeps the global value");
    }
}

/// Creates `beta_banner` (bool, off) as a platform administrator: the flag the client
/// packages' live suites turn on for their tenant and watch arrive.
pub(crate) async fn create_beta_banner(app: &TestApp) {
    let platform = platform_admin(app).await;
    let flag = json!({"key": "beta_banner", "type": "bool", "default": false});
    let created = app
        .send(Method::POST, "/api/v1/admin/flags", &platform, Some(flag))
        .await;
    assert_eq!(created.status(), 201);
}

/// The tenant id of a token's account.
pub(crate) async fn tenant_of(app: &TestApp, token: &str) -> String {
    let me: Value = app
        .get_bearer("/api/v1/auth/me", token)
        .await
        .json()
        .await
        .expect("JSON");
    me["tenant_id"]
        .as_str()
        .or_else(|| me["user"]["tenant_id"].as_str())
        .expect("tenant id")
        .to_owned()
}

on_each_database! {
    async fn tenant_overrides_stay_within_their_tenant(db: TestDatabase) {
        let app = spawn_app_with(db, |c| apply_flags(c, TEST_FLAGS, &[])).await;
        let platform = platform_admin(&app).await;
        let acme = new_tenant(&app, &platform, "acme").await;
        let admin = app.token_for("admin@example.com", PASSWORD, &["admin"]).await;
        let home = tenant_of(&app, &admin).await;
        let acme_admin = member_token(&app, &acme, "acme", "boss@acme.example", &["admin"]).await;
        let acme_user = member_token(&app, &acme, "acme", "wile@acme.example", &["user"]).await;

        // Acme's administrator sets Acme's override, and only Acme's.
        let path = |tenant: &str| format!("/api/v1/admin/flags/dark_mode/tenants/{tenant}");
        assert_eq!(app.send(Method::PUT, &path(&acme), &acme_admin, Some(json!({"value": true}))).await.status(), 200);
        problem(app.send(Method::PUT, &path(&home), &acme_admin, Some(json!({"value": true}))).await, 403, "other_tenant").await;
        problem(app.send(Method::DELETE, &path(&home), &acme_admin, None).await, 403, "other_tenant").await;
        problem(app.send(Method::PUT, &path(&acme), &acme_admin, Some(json!({"value": "yes"}))).await, 422, "type_mismatch").await;
        problem(app.send(Method::PUT, "/api/v1/admin/flags/nope/tenants/x", &admin, Some(json!({"value": true}))).await, 403, "other_tenant").await;
        problem(app.send(Method::PUT, &format!("/api/v1/admin/flags/nope/tenants/{home}"), &admin, Some(json!({"value": true}))).await, 404, "flag_not_found").await;
        // A tenant administrator cannot change the global value.
        problem(app.send(Method::PATCH, "/api/v1/admin/flags/dark_mode", &acme_admin, Some(json!({"default": true}))).await, 403, "platform_admin_only").await;
        // A user cannot set overrides at all.
        problem(app.send(Method::PUT, &path(&acme), &acme_user, Some(json!({"value": false}))).await, 403, "forbidden").await;

        assert_eq!(ofrep_value(&app, &acme_user, "dark_mode", json!({})).await["value"], true);
        // Claiming another tenant in the context changes nothing: the identity decides.
        let home_user = app.token_for("ann@example.com", PASSWORD, &["user"]).await;
        let spoofed = ofrep_value(&app, &home_user, "dark_mode", json!({"tenantId": acme})).await;
        assert_eq!(spoofed["value"], false);
        let listed: Value = app.get_bearer("/api/v1/admin/flags?tag=ui", &admin).await.json().await.expect("JSON");
        assert_eq!(listed["items"][0]["tenant_override"], Value::Null, "another tenant's override is not shown");
        let acme_view: Value = app.get_bearer("/api/v1/admin/flags/dark_mode", &acme_admin).await.json().await.expect("JSON");
        assert_eq!(acme_view["tenant_override"], true);

        // A platform administrator may set any existing tenant's override.
        assert_eq!(app.send(Method::PUT, &path(&home), &platform, Some(json!({"value": true}))).await.status(), 200);
        problem(app.send(Method::PUT, &path("no-such-tenant"), &platform, Some(json!({"value": true}))).await, 404, "tenant_not_found").await;
        assert_eq!(ofrep_value(&app, &home_user, "dark_mode", json!({})).await["value"], true);
        assert_eq!(app.send(Method::DELETE, &path(&acme), &acme_admin, None).await.status(), 204);
        problem(app.send(Method::DELETE, &path(&acme), &acme_admin, None).await, 404, "override_not_found").await;
        assert_eq!(ofrep_value(&app, &acme_user, "dark_mode", json!({})).await["value"], false);
    }
}

on_each_database! {
    async fn ofrep_answers_every_type_reason_and_error(db: TestDatabase) {
        let app = spawn_app_with(db, |c| apply_flags(c, TEST_FLAGS, &[])).await;
        let admin = app.token_for("admin@example.com", PASSWORD, &["admin"]).await;
        let user = app.token_for("ann@example.com", PASSWORD, &["user"]).await;

        let cases = [
            ("dark_mode", json!(false), "STATIC", "off"),
            ("banner_text", json!("config"), "STATIC", "config"),
            ("max_upload_mb", json!(2.5), "STATIC", "default"),
            ("theme", json!({"color": "blue", "dense": false}), "STATIC", "default"),
            ("beta_reports", json!(false), "DEFAULT", "off"),
        ];
        for (key, value, reason, variant) in cases {
            let answer = ofrep_value(&app, &user, key, json!({})).await;
            assert_eq!(answer, json!({"key": key, "value": value, "reason": reason, "variant": variant}));
        }
        let targeted = ofrep_value(&app, &admin, "beta_reports", json!({"roles": []})).await;
        assert_eq!((targeted["value"].clone(), targeted["reason"].clone()), (json!(true), json!("TARGETING_MATCH")), "roles come from the identity");
        let split = ofrep_value(&app, &user, "new_checkout", json!({"targetingKey": "user-7"})).await;
        assert_eq!(split["reason"], "SPLIT");

        let missing = problem(ofrep(&app, &user, "nope", json!({})).await, 404, "flag_not_found").await;
        assert_eq!((missing["key"].clone(), missing["errorCode"].clone()), (json!("nope"), json!("FLAG_NOT_FOUND")));
        let parse = app.client.post(app.url("/ofrep/v1/evaluate/flags/dark_mode")).bearer_auth(&user).header("content-type", "application/json").body("{oops").send().await.expect("sent");
        assert_eq!(problem(parse, 400, "parse_error").await["errorCode"], "PARSE_ERROR");
        let bad_context = app.client.post(app.url("/ofrep/v1/evaluate/flags/dark_mode")).bearer_auth(&user).json(&json!({"context": "x"})).send().await.expect("sent");
        assert_eq!(problem(bad_context, 400, "invalid_context").await["errorCode"], "INVALID_CONTEXT");
        assert_eq!(problem(ofrep(&app, &user, "dark_mode", json!({"targetingKey": 7})).await, 400, "invalid_context").await["errorCode"], "INVALID_CONTEXT");

        // A service has no user id to bucket on: without a targeting key a rollout cannot decide.
        let (client_id, secret) = app.new_client(&admin, json!(["flags:read"])).await;
        let service = client_token(&app, &client_id, &secret, "flags:read").await;
        let keyless = problem(ofrep(&app, &service, "new_checkout", json!({})).await, 400, "targeting_key_missing").await;
        assert_eq!((keyless["key"].clone(), keyless["errorCode"].clone()), (json!("new_checkout"), json!("TARGETING_KEY_MISSING")));
        let bulk_answer: Value = bulk(&app, &service, json!({}), None).await.json().await.expect("JSON");
        assert_eq!(flag_in(&bulk_answer, "new_checkout")["errorCode"], "TARGETING_KEY_MISSING");
        assert_eq!(flag_in(&bulk_answer, "dark_mode")["value"], false);

        // Nobody, and a service without `flags:read`, are refused.
        let anonymous = app.client.post(app.url("/ofrep/v1/evaluate/flags/dark_mode")).json(&json!({})).send().await.expect("sent");
        problem(anonymous, 401, "unauthenticated").await;
        let (other_id, other_secret) = app.new_client(&admin, json!(["users:read"])).await;
        let unscoped = client_token(&app, &other_id, &other_secret, "users:read").await;
        problem(ofrep(&app, &unscoped, "dark_mode", json!({})).await, 403, "insufficient_scope").await;
    }
}

/// A client-credentials token for `scope`.
pub(crate) async fn client_token(app: &TestApp, id: &str, secret: &str, scope: &str) -> String {
    let form = [("grant_type", "client_credentials"), ("scope", scope)];
    let response = token_request(app, Some((id, secret)), &form).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.expect("JSON")["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

on_each_database! {
    async fn bulk_answers_304_until_a_change_reaches_the_stream_and_a_refetch_sees_it(db: TestDatabase) {
        let app = spawn_app_with(db, |c| apply_flags(c, TEST_FLAGS, &[])).await;
        let platform = platform_admin(&app).await;
        let user = app.token_for("ann@example.com", PASSWORD, &["user"]).await;

        let mut stream = app.client.get(app.url("/ofrep/v1/events")).bearer_auth(&user).send().await.expect("stream");
        assert_eq!(stream.status(), 200);
        let mut buffer = String::new();
        let (ready_id, ready) = next_message(&mut stream, &mut buffer, "ready").await;

        let first = bulk(&app, &user, json!({"targetingKey": "ann"}), None).await;
        assert_eq!(first.status(), 200);
        let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
        let answer: Value = first.json().await.expect("JSON");
        assert_eq!(flag_in(&answer, "dark_mode")["value"], false);
        assert_eq!(answer["eventStreams"][0]["type"], "sse");
        assert!(answer["eventStreams"][0]["url"].as_str().expect("url").ends_with("/ofrep/v1/events"));
        let unchanged = bulk(&app, &user, json!({"targetingKey": "ann"}), Some(&etag)).await;
        assert_eq!(unchanged.status(), 304);
        assert_eq!(unchanged.headers()["etag"], etag.as_str());
        assert_eq!(bulk(&app, &user, json!({"targetingKey": "bob"}), Some(&etag)).await.status(), 200, "another context, another ETag");

        let patched = app.send(Method::PATCH, "/api/v1/admin/flags/dark_mode", &platform, Some(json!({"default": true}))).await;
        assert_eq!(patched.status(), 200);
        let (id, refetch) = next_message(&mut stream, &mut buffer, "refetchEvaluation").await;
        assert!(id.parse::<i64>().expect("id") > ready_id.parse::<i64>().expect("id"));
        assert_ne!(refetch["etag"], ready["etag"]);
        let refetched = bulk(&app, &user, json!({"targetingKey": "ann"}), Some(&etag)).await;
        assert_eq!(refetched.status(), 200);
        let answer: Value = refetched.json().await.expect("JSON");
        assert_eq!(flag_in(&answer, "dark_mode")["value"], true);

        // A reader resuming from before the change is told to refetch at once.
        let resumed = app.client.get(app.url("/ofrep/v1/events")).bearer_auth(&user).header("last-event-id", &ready_id).send().await.expect("stream");
        let mut resumed = resumed;
        let mut buffer = String::new();
        let (first_event, _) = next_event(&mut resumed, &mut buffer, "message").await;
        assert_eq!(first_event, id);

        problem(app.client.get(app.url("/ofrep/v1/events")).send().await.expect("sent"), 401, "unauthenticated").await;
    }
}

on_each_database! {
    async fn admin_api_creates_lists_updates_and_deletes_with_an_audit_trail(db: TestDatabase) {
        let app = spawn_app_with(db, |c| apply_flags(c, TEST_FLAGS, &[])).await;
        let platform = platform_admin(&app).await;
        let admin = app.token_for("admin@example.com", PASSWORD, &["admin"]).await;
        let viewer = app.token_for("vic@example.com", PASSWORD, &["viewer"]).await;
        let user = app.token_for("ann@example.com", PASSWORD, &["user"]).await;

        let new = json!({"key": "promo.banner", "type": "string", "default": "none", "public": true, "tags": ["marketing"], "owner": "growth", "variants": {"none": "none", "xmas": "xmas"}});
        problem(app.send(Method::POST, "/api/v1/admin/flags", &admin, Some(new.clone())).await, 403, "platform_admin_only").await;
        let created = app.send(Method::POST, "/api/v1/admin/flags", &platform, Some(new.clone())).await;
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.expect("JSON");
        assert_eq!((created["defined"].clone(), created["default"].clone()), (json!("api"), json!("none")));
        problem(app.send(Method::POST, "/api/v1/admin/flags", &platform, Some(new.clone())).await, 409, "flag_exists").await;
        let mut declared = new.clone();
        declared["key"] = json!("dark_mode");
        problem(app.send(Method::POST, "/api/v1/admin/flags", &platform, Some(declared)).await, 409, "declared_in_config").await;
        for (body, code) in [
            (json!({"key": "Bad Key", "type": "bool", "default": true}), "invalid_key"),
            (json!({"type": "bool", "default": true}), "invalid_key"),
            (json!({"key": "x", "type": "bool", "default": "yes"}), "invalid_flag"),
            (json!({"key": "x", "type": "bool", "default": true, "surprise": 1}), "invalid_flag"),
            (json!({"key": "x", "type": "bool", "default": true, "rollout": [{"variant": "on", "percent": 70}]}), "invalid_flag"),
        ] {
            problem(app.send(Method::POST, "/api/v1/admin/flags", &platform, Some(body)).await, 422, code).await;
        }

        let page: Value = app.get_bearer("/api/v1/admin/flags?page_size=3", &viewer).await.json().await.expect("JSON");
        assert_eq!((page["total"].clone(), page["pages"].clone(), page["items"].as_array().expect("items").len()), (json!(8), json!(3), 3));
        let by_tag: Value = app.get_bearer("/api/v1/admin/flags?tag=marketing", &viewer).await.json().await.expect("JSON");
        assert_eq!(by_tag["items"][0]["key"], "promo.banner");
        let by_owner: Value = app.get_bearer("/api/v1/admin/flags?owner=web", &viewer).await.json().await.expect("JSON");
        assert_eq!(by_owner["items"][0]["key"], "dark_mode");
        problem(app.get_bearer("/api/v1/admin/flags", &user).await, 403, "forbidden").await;
        problem(app.get_bearer("/api/v1/admin/flags/nope", &viewer).await, 404, "flag_not_found").await;

        let updated = app.send(Method::PATCH, "/api/v1/admin/flags/promo.banner", &platform, Some(json!({"default": "xmas", "description": "Seasonal banner"}))).await;
        assert_eq!(updated.status(), 200);
        problem(app.send(Method::PATCH, "/api/v1/admin/flags/promo.banner", &platform, Some(json!({"type": "bool"}))).await, 422, "invalid_flag").await;
        problem(app.send(Method::PATCH, "/api/v1/admin/flags/promo.banner", &platform, Some(json!({"default": 3}))).await, 422, "invalid_flag").await;
        problem(app.send(Method::PATCH, "/api/v1/admin/flags/dark_mode", &platform, Some(json!({"public": false}))).await, 409, "declared_in_config").await;
        let rules = json!({"rules": [{"when": [{"attribute": "emailDomain", "op": "eq", "value": "example.com"}], "variant": "on"}]});
        assert_eq!(app.send(Method::PATCH, "/api/v1/admin/flags/dark_mode", &platform, Some(rules)).await.status(), 200);
        let ruled = ofrep_value(&app, &user, "dark_mode", json!({})).await;
        assert_eq!((ruled["value"].clone(), ruled["reason"].clone()), (json!(true), json!("TARGETING_MATCH")));

        problem(app.send(Method::DELETE, "/api/v1/admin/flags/dark_mode", &platform, None).await, 409, "declared_in_config").await;
        assert_eq!(app.send(Method::DELETE, "/api/v1/admin/flags/promo.banner", &platform, None).await.status(), 204);
        problem(ofrep(&app, &user, "promo.banner", json!({})).await, 404, "flag_not_found").await;

        let rows: Vec<(String, Option<String>)> = sqlx::query_as("SELECT action, details FROM audit_events WHERE action LIKE 'flag.%' ORDER BY occurred_at, id")
            .fetch_all(app.state.db().pool()).await.expect("audit");
        let actions: Vec<&str> = rows.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(actions, ["flag.created", "flag.updated", "flag.updated", "flag.deleted"]);
        let update: Value = serde_json::from_str(rows[1].1.as_deref().expect("details")).expect("JSON");
        assert_eq!((update["old"]["default"].clone(), update["new"]["default"].clone()), (json!("none"), json!("xmas")));
        assert_eq!(update["new"]["description"], "Seasonal banner");
    }
}

on_each_database! {
    async fn a_change_made_on_one_instance_reaches_another(db: TestDatabase) {
        let first = spawn_app_with(db, |c| apply_flags(c, TEST_FLAGS, &[])).await;
        // A second instance on the same database.
        let mut config = first.state.config().clone();
        config.http.bind = "127.0.0.1:0".parse().expect("address");
        let second = tessera::Application::build(config).await.expect("second instance");
        let other = second.state().clone();
        let platform = platform_admin(&first).await;
        let patched = first.send(Method::PATCH, "/api/v1/admin/flags/banner_text", &platform, Some(json!({"default": "tenant"}))).await;
        assert_eq!(patched.status(), 200);
        let mut sets = other.flags().subscribe();
        let seen = tokio::time::timeout(Duration::from_secs(5), sets.wait_for(|set| {
            set.get("banner_text").is_some_and(|e| e.flag.spec.default == "tenant")
        }))
        .await;
        assert!(seen.is_ok(), "the other instance never saw the change");
        let set = other.flags().snapshot();
        assert_eq!(set.changes.last().map(|c| c.flag_key.as_str()), Some("banner_text"));
    }
}

on_each_database! {
    async fn ofrep_answers_429_with_retry_after_past_the_callers_rate(db: TestDatabase) {
        let app = spawn_app_with(db, |c| {
            apply_flags(c, TEST_FLAGS, &[]);
            "3/min".clone_into(&mut c.rate_limits.flags_per_caller);
        })
        .await;
        let ann = app.token_for("ann@example.com", PASSWORD, &["user"]).await;
        let bob = app.token_for("bob@example.com", PASSWORD, &["user"]).await;
        for _ in 0..3 {
            assert_eq!(ofrep(&app, &ann, "dark_mode", json!({})).await.status(), 200);
        }
        let refused = bulk(&app, &ann, json!({}), None).await;
        assert!(refused.headers().contains_key("retry-after"));
        problem(refused, 429, "rate_limited").await;
        assert_eq!(ofrep(&app, &bob, "dark_mode", json!({})).await.status(), 200, "each caller has its own allowance");
    }
}
