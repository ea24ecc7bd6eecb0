//! Accounts through the admin API: tenant-scoped, permission-checked, no granting beyond
//! one's own permissions, disable and delete ending sessions at once.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

on_each_database! {
    async fn admins_create_find_change_and_end_accounts_of_their_tenant(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;

        let created = app.send(Method::POST, "/api/v1/admin/users", &admin, Some(json!({"email": "Ada@Example.com", "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace", "roles": ["viewer", "user"]}))).await;
        assert_eq!(created.status(), 201);
        let created: serde_json::Value = created.json().await.expect("JSON");
        assert_eq!(created["roles"], json!(["user", "viewer"]));
        assert!(created.get("password_hash").is_none());
        let id = created["id"].as_str().expect("id").to_owned();
        problem(app.send(Method::POST, "/api/v1/admin/users", &admin, Some(json!({"email": "ada@example.com"}))).await, 409, "account_exists").await;
        problem(app.send(Method::POST, "/api/v1/admin/users", &admin, Some(json!({"email": "x@example.com", "roles": ["nope"]}))).await, 422, "unknown_role").await;

        let found: serde_json::Value = app.get_bearer("/api/v1/admin/users?q=LOVE", &admin).await.json().await.expect("JSON");
        assert_eq!(found["total"], 1);
        assert_eq!(found["items"][0]["email"], "Ada@Example.com");
        let wildcard: serde_json::Value = app.get_bearer("/api/v1/admin/users?q=%25", &admin).await.json().await.expect("JSON");
        assert_eq!(wildcard["total"], 0, "a % in the search is a character, not a wildcard");
        let all: serde_json::Value = app.get_bearer("/api/v1/admin/users?page_size=1", &admin).await.json().await.expect("JSON");
        assert_eq!((all["total"].as_i64(), all["pages"].as_i64()), (Some(3), Some(3)), "bootstrap admin, root, ada");

        let ada = app.login("ada@example.com", PASSWORD).await;
        let ada_token = ada["access_token"].as_str().expect("token");
        let patched = app.send(Method::PATCH, &format!("/api/v1/admin/users/{id}"), &admin, Some(json!({"first_name": "Augusta", "roles": ["user"], "active": false}))).await;
        assert_eq!(patched.status(), 200);
        let patched: serde_json::Value = patched.json().await.expect("JSON");
        assert_eq!((patched["first_name"].as_str(), patched["active"].as_bool()), (Some("Augusta"), Some(false)));
        assert_eq!(patched["roles"], json!(["user"]));
        problem(app.get_bearer("/api/v1/auth/me", ada_token).await, 401, "session_ended").await;
        problem(app.post_json("/api/v1/auth/login", &json!({"login": "ada@example.com", "password": PASSWORD})).await, 403, "account_disabled").await;

        app.send(Method::PATCH, &format!("/api/v1/admin/users/{id}"), &admin, Some(json!({"active": true}))).await;
        let again = app.login("ada@example.com", PASSWORD).await;
        let reset = app.send(Method::POST, &format!("/api/v1/admin/users/{id}/password"), &admin, Some(json!({"new_password": "set by the admin"}))).await;
        assert_eq!(reset.status(), 204);
        problem(app.get_bearer("/api/v1/auth/me", again["access_token"].as_str().expect("t")).await, 401, "session_ended").await;
        app.login("ada@example.com", "set by the admin").await;

        let deleted = app.client.delete(app.url(&format!("/api/v1/admin/users/{id}"))).bearer_auth(&admin).send().await.expect("sent");
        assert_eq!(deleted.status(), 204);
        let shown: serde_json::Value = app.get_bearer(&format!("/api/v1/admin/users/{id}"), &admin).await.json().await.expect("JSON");
        assert_eq!(shown["active"], false, "kept for the audit trail, disabled");

        let actions = app.audit_actions().await;
        for expected in ["user.created", "user.updated", "user.disabled", "user.enabled", "user.roles_changed", "user.password_reset"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} missing");
        }
    }
}

on_each_database! {
    async fn account_management_stays_inside_the_tenant_and_the_callers_permissions(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let pool = app.state.db().pool();
        // `profile:*` too: acting on a `user` needs everything a user holds.
        sqlx::query("INSERT INTO roles (tenant_id, name, description, permissions, built_in, created_at, updated_at) \
                     VALUES ($1, 'user_manager', '', '[\"profile:*\",\"users:*\"]', 0, 0, 0)")
            .bind(tessera::tenants::DEFAULT_TENANT_ID)
            .execute(pool).await.expect("role");
        let manager = app.token_for("mgr@example.com", PASSWORD, &["user_manager"]).await;
        let viewer = app.token_for("vic@example.com", PASSWORD, &["viewer"]).await;
        let ada = app.create_user("ada@example.com", PASSWORD, &["user"], None).await;

        // Handing out admin would give the manager more than they hold.
        let escalation = problem(app.send(Method::PATCH, &format!("/api/v1/admin/users/{}", ada.id), &manager, Some(json!({"roles": ["admin"]}))).await, 403, "forbidden").await;
        assert!(escalation["detail"].as_str().is_some_and(|d| d.contains("*:*")), "{escalation}");
        problem(app.send(Method::POST, "/api/v1/admin/users", &manager, Some(json!({"email": "n@example.com", "roles": ["admin"]}))).await, 403, "forbidden").await;
        assert_eq!(app.send(Method::PATCH, &format!("/api/v1/admin/users/{}", ada.id), &manager, Some(json!({"last_name": "L."}))).await.status(), 200);

        assert_eq!(app.get_bearer("/api/v1/admin/users", &viewer).await.status(), 200);
        problem(app.send(Method::PATCH, &format!("/api/v1/admin/users/{}", ada.id), &viewer, Some(json!({"last_name": "X"}))).await, 403, "forbidden").await;

        sqlx::query("INSERT INTO tenants (id, slug, name, active, created_at) VALUES ('t-other', 'other', 'Other', 1, 0)")
            .execute(pool).await.expect("tenant");
        let eve = app.create_user("eve@example.com", PASSWORD, &["user"], None).await;
        sqlx::query("UPDATE users SET tenant_id = 't-other' WHERE id = $1").bind(&eve.id).execute(pool).await.expect("moved");
        let path = format!("/api/v1/admin/users/{}", eve.id);
        problem(app.get_bearer(&path, &manager).await, 404, "not_found").await;
        problem(app.send(Method::PATCH, &path, &manager, Some(json!({"active": false}))).await, 404, "not_found").await;
        problem(app.send(Method::POST, &format!("{path}/password"), &manager, Some(json!({"new_password": "whatever it is"}))).await, 404, "not_found").await;
        let listed: serde_json::Value = app.get_bearer("/api/v1/admin/users?q=eve", &manager).await.json().await.expect("JSON");
        assert_eq!(listed["total"], 0);
    }
}
