//! Disabling a tenant stops everything in it: its service accounts get no tokens and are
//! refused at every OAuth endpoint and the revocation feed (open streams end), every token it
//! issued is inactive at introspection and refused by `tessera-client`, and enabling it (or a
//! client) again brings none of the old tokens back, with introspection and the feed agreeing.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tessera::tenants::SYSTEM_TENANT_ID;
use tessera_client::{AuthError, Verifier};
use tessera_token::{AccessClaims, Revocation};

use crate::helpers::{TestApp, basic, problem, spawn_app, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

/// An account moved into `tenant_id` and logged in there.
async fn member_of(
    app: &TestApp,
    tenant_id: &str,
    slug: &str,
    email: &str,
    roles: &[&str],
) -> Value {
    let user = app.create_user(email, PASSWORD, roles, None).await;
    sqlx::query("UPDATE users SET tenant_id = $1 WHERE id = $2")
        .bind(tenant_id)
        .bind(&user.id)
        .execute(app.state.db().pool())
        .await
        .expect("moved");
    login(app, email, slug).await
}

async fn login(app: &TestApp, email: &str, slug: &str) -> Value {
    let body = json!({"login": email, "password": PASSWORD, "tenant": slug, "delivery": "body"});
    let response = app.post_json("/api/v1/auth/login", &body).await;
    assert_eq!(response.status(), 200, "{email} logs in to {slug}");
    response.json().await.expect("JSON")
}

fn access(login: &Value) -> String {
    login["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// A platform admin's token and a new tenant `acme`'s id.
async fn platform_and_acme(app: &TestApp) -> (String, String) {
    let platform = access(
        &member_of(
            app,
            SYSTEM_TENANT_ID,
            "system",
            "ops@example.com",
            &["platform_admin"],
        )
        .await,
    );
    let created = app
        .send(
            Method::POST,
            "/api/v1/admin/tenants",
            &platform,
            Some(json!({"slug": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let acme: Value = created.json().await.expect("JSON");
    (platform, acme["id"].as_str().expect("id").to_owned())
}

async fn set_tenant_active(app: &TestApp, platform: &str, tenant_id: &str, active: bool) {
    let path = format!("/api/v1/admin/tenants/{tenant_id}");
    let changed = app
        .send(
            Method::PATCH,
            &path,
            platform,
            Some(json!({"active": active})),
        )
        .await;
    assert_eq!(changed.status(), 200);
}

async fn form(app: &TestApp, path: &str, auth: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("authorization", auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .expect("sent")
}

async fn client_token(app: &TestApp, auth: &str) -> reqwest::Response {
    form(app, "/oauth2/token", auth, "grant_type=client_credentials").await
}

async fn new_token(app: &TestApp, auth: &str) -> String {
    let response = client_token(app, auth).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["access_token"].as_str().expect("token").to_owned()
}

/// A token issued once the client may have one again: a client or tenant enabled moments
/// after its disable waits out the issuing margin, refused meanwhile (never given a token
/// that is born revoked).
async fn token_once_allowed(app: &TestApp, auth: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = client_token(app, auth).await;
        if response.status() == 200 {
            let body: Value = response.json().await.expect("JSON");
            return body["access_token"].as_str().expect("token").to_owned();
        }
        assert_eq!(
            response.status(),
            401,
            "refused as invalid_client meanwhile"
        );
        assert!(
            Instant::now() < deadline,
            "the client never got a token again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn active(app: &TestApp, gate: &str, token: &str) -> bool {
    let response = form(app, "/oauth2/introspect", gate, &format!("token={token}")).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON");
    answer["active"].as_bool().expect("active")
}

/// Whether an entry of the feed, as `gate` reads it, revokes `token`.
async fn feed_covers(app: &TestApp, gate: &str, token: &str) -> bool {
    let page: Value = app
        .client
        .get(app.url("/api/v1/auth/revocations"))
        .header("authorization", gate)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let claims: AccessClaims = app
        .state
        .keys()
        .current()
        .verify(token)
        .expect("valid")
        .as_ref()
        .clone();
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| serde_json::from_value::<Revocation>(item.clone()).ok())
        .any(|entry| entry.covers(&claims))
}

/// Reads an SSE stream until it ends, with what it sent; fails if it stays open.
async fn read_to_end(mut stream: reqwest::Response) -> String {
    let mut text = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.expect("chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream stayed open: {text}");
    text
}

on_each_database! {
    async fn a_disabled_tenant_stops_its_service_accounts_and_every_token_it_issued(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let (platform, acme_id) = platform_and_acme(&app).await;
        let (gate_id, gate_secret) = app.new_client(&platform, json!(["tokens:introspect"])).await;
        let gate = basic(&gate_id, &gate_secret);
        let acme_admin = access(&member_of(&app, &acme_id, "acme", "root@acme.example", &["admin"]).await);
        let (svc_id, svc_secret) = app.new_client(&acme_admin, json!(["tokens:introspect", "tokens:revoke"])).await;
        let svc = basic(&svc_id, &svc_secret);
        let old = new_token(&app, &svc).await;
        let member = access(&member_of(&app, &acme_id, "acme", "wile@acme.example", &["user"]).await);
        assert!(active(&app, &gate, &old).await && active(&app, &gate, &member).await);
        let stream = app.client.get(app.url("/api/v1/auth/revocations/stream"))
            .header("authorization", &svc).send().await.expect("sent");
        assert_eq!(stream.status(), 200);

        set_tenant_active(&app, &platform, &acme_id, false).await;

        // Its clients are refused everywhere, at once.
        let refused = client_token(&app, &svc).await;
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.json::<Value>().await.expect("JSON")["error"], "invalid_client");
        for path in ["/oauth2/introspect", "/oauth2/revoke"] {
            let response = form(&app, path, &svc, &format!("token={old}")).await;
            assert_eq!(response.status(), 401, "{path}");
        }
        let page = app.client.get(app.url("/api/v1/auth/revocations")).header("authorization", &svc).send().await.expect("sent");
        problem(page, 401, "invalid_client").await;
        let streamed = read_to_end(stream).await;
        assert!(streamed.contains("\"kind\":\"tenant\""), "the stream carried the tenant's entry first: {streamed}");

        // Every token of the tenant is inactive, and the feed says so with a `tenant` entry.
        assert!(!active(&app, &gate, &old).await);
        assert!(!active(&app, &gate, &member).await);
        assert!(feed_covers(&app, &gate, &old).await && feed_covers(&app, &gate, &member).await);
        let entries: Value = app.client.get(app.url("/api/v1/auth/revocations")).header("authorization", &gate)
            .send().await.expect("sent").json().await.expect("JSON");
        let tenant_entry = entries["items"].as_array().expect("items").iter()
            .find(|e| e["kind"] == "tenant").expect("a tenant entry").clone();
        let mut fields: Vec<_> = tenant_entry.as_object().expect("object").keys().cloned().collect();
        fields.sort();
        assert_eq!(fields, ["expires_at", "issued_before", "kind", "revoked_at", "tid"]);
        assert_eq!(tenant_entry["tid"], acme_id.as_str());

        // Enabled again: new tokens work, none of the old ones come back, and the feed agrees.
        set_tenant_active(&app, &platform, &acme_id, true).await;
        let new = token_once_allowed(&app, &svc).await;
        assert!(active(&app, &gate, &new).await);
        assert!(!feed_covers(&app, &gate, &new).await);
        assert!(!active(&app, &gate, &old).await && feed_covers(&app, &gate, &old).await);
        assert!(!active(&app, &gate, &member).await);
        let again = access(&login(&app, "wile@acme.example", "acme").await);
        assert_eq!(app.get_bearer("/api/v1/auth/me", &again).await.status(), 200);
        problem(app.get_bearer("/api/v1/auth/me", &member).await, 401, "session_ended").await;
    }
}

on_each_database! {
    async fn a_reenabled_client_gets_none_of_its_old_tokens_back(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let (gate_id, gate_secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
        let gate = basic(&gate_id, &gate_secret);
        let (svc_id, svc_secret) = app.new_client(&admin, json!(["reports:read"])).await;
        let svc = basic(&svc_id, &svc_secret);
        let old = new_token(&app, &svc).await;
        let path = format!("/api/v1/admin/clients/{svc_id}");

        assert_eq!(app.send(Method::PATCH, &path, &admin, Some(json!({"active": false}))).await.status(), 200);
        assert!(!active(&app, &gate, &old).await && feed_covers(&app, &gate, &old).await);
        assert_eq!(app.send(Method::PATCH, &path, &admin, Some(json!({"active": true}))).await.status(), 200);

        let new = token_once_allowed(&app, &svc).await;
        assert!(active(&app, &gate, &new).await && !feed_covers(&app, &gate, &new).await);
        assert!(!active(&app, &gate, &old).await, "introspection agrees with the feed");
    }
}

on_each_database! {
    async fn a_session_of_a_disabled_tenant_is_neither_live_nor_refreshed(db: TestDatabase) {
        // What a login racing the disable leaves behind: a session the disable did not see,
        // in a tenant now disabled.
        let app = spawn_app_with(db, |_| {}).await;
        let (_, acme_id) = platform_and_acme(&app).await;
        let member = member_of(&app, &acme_id, "acme", "wile@acme.example", &["user"]).await;
        sqlx::query("UPDATE tenants SET active = 0 WHERE id = $1")
            .bind(&acme_id)
            .execute(app.state.db().pool())
            .await
            .expect("disabled");
        let refresh = app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": member["refresh_token"]})).await;
        assert_eq!(refresh.status(), 401);
        problem(app.get_bearer("/api/v1/auth/me", &access(&member)).await, 401, "session_ended").await;
    }
}

#[tokio::test]
async fn a_verifier_refuses_a_disabled_tenants_tokens_and_accepts_those_issued_after_it_is_enabled()
{
    let app = spawn_app().await;
    let (platform, acme_id) = platform_and_acme(&app).await;
    let (gate_id, gate_secret) = app
        .new_client(&platform, json!(["tokens:introspect"]))
        .await;
    let config = app.state.config();
    let verifier = Verifier::builder(config.issuer(), config.token.audience.clone())
        .client_credentials(gate_id, gate_secret)
        .build()
        .await
        .expect("verifier builds");
    let acme_admin =
        access(&member_of(&app, &acme_id, "acme", "root@acme.example", &["admin"]).await);
    let (svc_id, svc_secret) = app.new_client(&acme_admin, json!(["reports:read"])).await;
    let svc = basic(&svc_id, &svc_secret);
    let old = new_token(&app, &svc).await;
    verifier
        .verify(&old)
        .await
        .expect("valid before the disable");

    set_tenant_active(&app, &platform, &acme_id, false).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while verifier.verify(&old).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the verifier never learnt of the disable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        verifier.verify(&old).await,
        Err(AuthError::Revoked)
    ));

    set_tenant_active(&app, &platform, &acme_id, true).await;
    let new = token_once_allowed(&app, &svc).await;
    verifier
        .verify(&new)
        .await
        .expect("a token issued after the enable is valid");
    assert!(matches!(
        verifier.verify(&old).await,
        Err(AuthError::Revoked)
    ));
}
