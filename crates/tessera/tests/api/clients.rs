//! Service accounts: the client credentials grant with each RFC 6749 error, secrets shown
//! once and rotated, and the admin API's limits.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

pub(crate) async fn token_request(
    app: &TestApp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = app
        .client
        .post(app.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some((id, secret)) = basic {
        request = request.header("authorization", crate::helpers::basic(id, secret));
    }
    request.send().await.expect("sent")
}

async fn oauth_error(
    response: reqwest::Response,
    status: u16,
    error: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(response.status().as_u16(), status);
    let headers = response.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string());
    headers
}

on_each_database! {
    async fn service_accounts_obtain_scoped_tokens_and_every_mistake_gets_its_rfc_error(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let created = app.client.post(app.url("/api/v1/admin/clients")).bearer_auth(&admin)
            .json(&json!({"name": "etl", "scopes": ["reports:read", "tokens:introspect"]}))
            .send().await.expect("sent");
        assert_eq!(created.status(), 201);
        assert_eq!(created.headers()["cache-control"], "no-store");
        let created: serde_json::Value = created.json().await.expect("JSON");
        let id = created["id"].as_str().expect("id").to_owned();
        let secret = created["client_secret"].as_str().expect("secret").to_owned();
        let shown: serde_json::Value = app.get_bearer(&format!("/api/v1/admin/clients/{id}"), &admin).await.json().await.expect("JSON");
        assert!(shown.get("client_secret").is_none() && !shown.to_string().contains("tss_"), "{shown}");

        // client_secret_basic, every allowed scope.
        let response = token_request(&app, Some((&id, &secret)), &[("grant_type", "client_credentials")]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let issued: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(issued["token_type"], "Bearer");
        assert_eq!(issued["scope"], "reports:read tokens:introspect");
        let claims = app.state.keys().current().verify(issued["access_token"].as_str().expect("token")).expect("valid");
        assert_eq!((claims.sub.as_str(), claims.client_id.as_str()), (id.as_str(), id.as_str()));
        assert_eq!(claims.tid, tessera::tenants::DEFAULT_TENANT_ID);
        assert!(claims.sid.is_none());
        // A service token is not a user session.
        problem(app.get_bearer("/api/v1/auth/me", issued["access_token"].as_str().expect("t")).await, 401, "invalid_token").await;

        // client_secret_post, narrowed scope.
        let response = token_request(&app, None, &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret), ("scope", "reports:read")]).await;
        let issued: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(issued["scope"], "reports:read");

        let headers = oauth_error(token_request(&app, Some((&id, "tss_wrong")), &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
        assert!(headers["www-authenticate"].to_str().expect("ascii").starts_with("Basic"));
        oauth_error(token_request(&app, Some(("no-such-client", &secret)), &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
        oauth_error(token_request(&app, None, &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
        oauth_error(token_request(&app, Some((&id, &secret)), &[("grant_type", "client_credentials"), ("scope", "users:delete")]).await, 400, "invalid_scope").await;
        oauth_error(token_request(&app, Some((&id, &secret)), &[("grant_type", "password")]).await, 400, "unsupported_grant_type").await;
        oauth_error(token_request(&app, Some((&id, &secret)), &[]).await, 400, "invalid_request").await;
        oauth_error(token_request(&app, Some((&id, &secret)), &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)]).await, 400, "invalid_request").await;
        oauth_error(token_request(&app, Some((&id, &secret)), &[("grant_type", "client_credentials"), ("grant_type", "client_credentials")]).await, 400, "invalid_request").await;
        let json_body = app.client.post(app.url("/oauth2/token")).json(&json!({"grant_type": "client_credentials"})).send().await.expect("sent");
        oauth_error(json_body, 400, "invalid_request").await;

        // Rotation ends the old secret at once; disabling ends the client.
        let rotated: serde_json::Value = app.client.post(app.url(&format!("/api/v1/admin/clients/{id}/secret"))).bearer_auth(&admin).send().await.expect("sent").json().await.expect("JSON");
        let new_secret = rotated["client_secret"].as_str().expect("secret");
        oauth_error(token_request(&app, Some((&id, &secret)), &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
        assert_eq!(token_request(&app, Some((&id, new_secret)), &[("grant_type", "client_credentials")]).await.status(), 200);
        let deleted = app.client.request(Method::DELETE, app.url(&format!("/api/v1/admin/clients/{id}"))).bearer_auth(&admin).send().await.expect("sent");
        assert_eq!(deleted.status(), 204);
        oauth_error(token_request(&app, Some((&id, new_secret)), &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;

        let actions = app.audit_actions().await;
        for expected in ["client.created", "client.secret_rotated", "client.disabled"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} missing");
        }
        let leaked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE details LIKE '%tss_%'")
            .fetch_one(app.state.db().pool()).await.expect("count");
        assert_eq!(leaked, 0, "no secret in the audit log");
    }
}

on_each_database! {
    async fn nobody_allows_a_client_more_than_they_hold(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        sqlx::query("INSERT INTO roles (tenant_id, name, description, permissions, built_in, created_at, updated_at) \
                     VALUES ($1, 'integrator', '', '[\"clients:*\", \"reports:read\"]', 0, 0, 0)")
            .bind(tessera::tenants::DEFAULT_TENANT_ID)
            .execute(app.state.db().pool()).await.expect("role");
        let integrator = app.token_for("int@example.com", PASSWORD, &["integrator"]).await;
        let create = |scopes: serde_json::Value| {
            app.client.post(app.url("/api/v1/admin/clients")).bearer_auth(&integrator)
                .json(&json!({"name": "svc", "scopes": scopes})).send()
        };
        problem(create(json!(["*:*"])).await.expect("sent"), 403, "forbidden").await;
        problem(create(json!(["users:delete"])).await.expect("sent"), 403, "forbidden").await;
        problem(create(json!(["not a scope"])).await.expect("sent"), 422, "invalid_scope").await;
        assert_eq!(create(json!(["reports:read"])).await.expect("sent").status(), 201);
        let viewer = app.token_for("vic@example.com", PASSWORD, &["viewer"]).await;
        assert_eq!(app.get_bearer("/api/v1/admin/clients", &viewer).await.status(), 200);
        let denied = app.client.post(app.url("/api/v1/admin/clients")).bearer_auth(&viewer)
            .json(&json!({"name": "svc", "scopes": []})).send().await.expect("sent");
        problem(denied, 403, "forbidden").await;
    }
}
