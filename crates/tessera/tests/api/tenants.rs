//! Tenants through the admin API: platform admins only; disabling a tenant ends its sessions
//! and its logins at once.

use reqwest::Method;
use serde_json::json;
use tessera::tenants::SYSTEM_TENANT_ID;

use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::on_each_database;

pub(crate) const PASSWORD: &str = "correct horse battery";

/// An account moved into `tenant_id`, logged in there.
pub(crate) async fn member_of(
    app: &TestApp,
    tenant_id: &str,
    slug: &str,
    email: &str,
    roles: &[&str],
) -> serde_json::Value {
    let user = app.create_user(email, PASSWORD, roles, None).await;
    sqlx::query("UPDATE users SET tenant_id = $1 WHERE id = $2")
        .bind(tenant_id)
        .bind(&user.id)
        .execute(app.state.db().pool())
        .await
        .expect("moved");
    let response = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"login": email, "password": PASSWORD, "tenant": slug, "delivery": "body"}),
        )
        .await;
    assert_eq!(response.status(), 200, "{email} logs in to {slug}");
    response.json().await.expect("JSON")
}

on_each_database! {
    async fn platform_admins_create_and_disable_tenants(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let platform = member_of(&app, SYSTEM_TENANT_ID, "system", "ops@example.com", &["platform_admin"]).await;
        let platform = platform["access_token"].as_str().expect("token").to_owned();

        let created = app.send(Method::POST, "/api/v1/admin/tenants", &platform, Some(json!({"slug": "acme", "name": "Acme Inc."}))).await;
        assert_eq!(created.status(), 201);
        let acme: serde_json::Value = created.json().await.expect("JSON");
        let acme_id = acme["id"].as_str().expect("id").to_owned();
        problem(app.send(Method::POST, "/api/v1/admin/tenants", &platform, Some(json!({"slug": "acme", "name": "Again"}))).await, 409, "tenant_exists").await;
        problem(app.send(Method::POST, "/api/v1/admin/tenants", &platform, Some(json!({"slug": "-Bad Slug", "name": "x"}))).await, 422, "invalid_slug").await;
        let list: serde_json::Value = app.get_bearer("/api/v1/admin/tenants", &platform).await.json().await.expect("JSON");
        let slugs: Vec<_> = list["items"].as_array().expect("items").iter().map(|t| t["slug"].clone()).collect();
        assert_eq!(slugs, [json!("acme"), json!("default"), json!("system")]);
        let roles: Vec<String> = sqlx::query_scalar("SELECT name FROM roles WHERE tenant_id = $1 ORDER BY name")
            .bind(&acme_id)
            .fetch_all(app.state.db().pool())
            .await
            .expect("roles");
        assert_eq!(roles, ["admin", "user", "viewer"], "a new tenant starts with the built-in roles");
        assert_eq!(acme["mfa_required_roles"], json!([]));
        let policy = app.send(Method::PATCH, &format!("/api/v1/admin/tenants/{acme_id}"), &platform, Some(json!({"mfa_required_roles": ["admin", "admin"]}))).await;
        assert_eq!(policy.status(), 200);
        assert_eq!(policy.json::<serde_json::Value>().await.expect("JSON")["mfa_required_roles"], json!(["admin"]));

        let member = member_of(&app, &acme_id, "acme", "wile@acme.example", &["user"]).await;
        let member_token = member["access_token"].as_str().expect("token");
        assert_eq!(app.get_bearer("/api/v1/auth/me", member_token).await.status(), 200);

        let disabled = app.send(Method::PATCH, &format!("/api/v1/admin/tenants/{acme_id}"), &platform, Some(json!({"active": false}))).await;
        assert_eq!(disabled.status(), 200);
        problem(app.get_bearer("/api/v1/auth/me", member_token).await, 401, "session_ended").await;
        let wrong = app.post_json("/api/v1/auth/login", &json!({"login": "wile@acme.example", "password": "not it at all", "tenant": "acme"})).await;
        problem(wrong, 401, "invalid_credentials").await;
        let right = app.post_json("/api/v1/auth/login", &json!({"login": "wile@acme.example", "password": PASSWORD, "tenant": "acme"})).await;
        problem(right, 403, "account_disabled").await;

        problem(app.send(Method::PATCH, &format!("/api/v1/admin/tenants/{SYSTEM_TENANT_ID}"), &platform, Some(json!({"active": false}))).await, 409, "system_tenant").await;
        let actions = app.audit_actions().await;
        for expected in ["tenant.created", "tenant.disabled"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} missing");
        }
    }
}

on_each_database! {
    async fn tenant_admins_cannot_manage_tenants(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("root@example.com", PASSWORD, &["admin"], None).await;
        let admin = app.login("root@example.com", PASSWORD).await;
        let admin = admin["access_token"].as_str().expect("token");
        problem(app.get_bearer("/api/v1/admin/tenants", admin).await, 403, "forbidden").await;
        problem(app.send(Method::POST, "/api/v1/admin/tenants", admin, Some(json!({"slug": "mine", "name": "Mine"}))).await, 403, "forbidden").await;
        problem(app.send(Method::PATCH, &format!("/api/v1/admin/tenants/{SYSTEM_TENANT_ID}"), admin, Some(json!({"name": "Mine"}))).await, 403, "forbidden").await;
    }
}
