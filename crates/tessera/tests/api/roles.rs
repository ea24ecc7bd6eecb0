//! Roles through the admin API: permissions checked on the server, no granting beyond what
//! one holds, built-ins fixed, tenants isolated, changes effective at once.

use serde_json::json;

use crate::helpers::{problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

on_each_database! {
    async fn admins_manage_roles_within_what_they_hold(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let post = reqwest::Method::POST;

        let list: serde_json::Value = app.get_bearer("/api/v1/admin/roles", &admin).await.json().await.expect("JSON");
        let names: Vec<_> = list["items"].as_array().expect("items").iter().map(|r| r["name"].clone()).collect();
        assert_eq!(names, [json!("admin"), json!("user"), json!("viewer")]);
        assert_eq!(list["items"][0]["built_in"], true);

        let created = app.send(post.clone(), "/api/v1/admin/roles", &admin, Some(json!({"name": "support", "description": "Looks at sessions", "permissions": ["sessions:read", "sessions:read"]}))).await;
        assert_eq!(created.status(), 201);
        let created: serde_json::Value = created.json().await.expect("JSON");
        assert_eq!(created["permissions"], json!(["sessions:read"]));
        let shown: serde_json::Value = app.get_bearer("/api/v1/admin/roles/support", &admin).await.json().await.expect("JSON");
        assert_eq!(shown["description"], "Looks at sessions");

        problem(app.send(post.clone(), "/api/v1/admin/roles", &admin, Some(json!({"name": "support", "permissions": []}))).await, 409, "role_exists").await;
        problem(app.send(post.clone(), "/api/v1/admin/roles", &admin, Some(json!({"name": "Bad Name", "permissions": []}))).await, 422, "invalid_role_name").await;
        problem(app.send(post.clone(), "/api/v1/admin/roles", &admin, Some(json!({"name": "x", "permissions": ["nocolon"]}))).await, 422, "invalid_permission").await;
        problem(app.send(reqwest::Method::PATCH, "/api/v1/admin/roles/admin", &admin, Some(json!({"permissions": []}))).await, 409, "built_in_role").await;
        problem(app.send(reqwest::Method::DELETE, "/api/v1/admin/roles/viewer", &admin, None).await, 409, "built_in_role").await;

        // A role manager cannot mint a role more powerful than their own.
        app.send(post.clone(), "/api/v1/admin/roles", &admin, Some(json!({"name": "role_admin", "permissions": ["roles:*"]}))).await;
        let manager = app.token_for("rm@example.com", PASSWORD, &["role_admin"]).await;
        let escalation = problem(app.send(post.clone(), "/api/v1/admin/roles", &manager, Some(json!({"name": "god", "permissions": ["*:*"]}))).await, 403, "forbidden").await;
        assert!(escalation["detail"].as_str().is_some_and(|d| d.contains("*:*")), "{escalation}");
        assert_eq!(app.send(post.clone(), "/api/v1/admin/roles", &manager, Some(json!({"name": "reader", "permissions": ["roles:read"]}))).await.status(), 201);

        // Viewers read, never write.
        let viewer = app.token_for("vic@example.com", PASSWORD, &["viewer"]).await;
        assert_eq!(app.get_bearer("/api/v1/admin/roles", &viewer).await.status(), 200);
        problem(app.send(post.clone(), "/api/v1/admin/roles", &viewer, Some(json!({"name": "y", "permissions": []}))).await, 403, "forbidden").await;

        // A change applies to the next request of everyone holding the role.
        // Ada holds no role, so nothing she holds is beyond the support role.
        let ada = app.create_user("ada@example.com", PASSWORD, &[], None).await;
        let support = app.token_for("sam@example.com", PASSWORD, &["support"]).await;
        let sessions = format!("/api/v1/admin/users/{}/sessions", ada.id);
        assert_eq!(app.get_bearer(&sessions, &support).await.status(), 200);
        let changed = app.send(reqwest::Method::PATCH, "/api/v1/admin/roles/support", &admin, Some(json!({"permissions": []}))).await;
        assert_eq!(changed.status(), 200);
        problem(app.get_bearer(&sessions, &support).await, 403, "forbidden").await;

        problem(app.send(reqwest::Method::DELETE, "/api/v1/admin/roles/support", &admin, None).await, 409, "role_in_use").await;
        assert_eq!(app.send(reqwest::Method::DELETE, "/api/v1/admin/roles/reader", &admin, None).await.status(), 204);
        problem(app.get_bearer("/api/v1/admin/roles/reader", &admin).await, 404, "not_found").await;

        let actions = app.audit_actions().await;
        for expected in ["role.created", "role.updated", "role.deleted"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} missing");
        }
    }
}

on_each_database! {
    async fn another_tenants_roles_do_not_exist_here(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let pool = app.state.db().pool();
        sqlx::query("INSERT INTO tenants (id, slug, name, active, created_at) VALUES ('t-other', 'other', 'Other', 1, 0)")
            .execute(pool).await.expect("tenant");
        sqlx::query("INSERT INTO roles (tenant_id, name, description, permissions, built_in, created_at, updated_at) \
                     VALUES ('t-other', 'secret_ops', '', '[\"*:*\"]', 0, 0, 0)")
            .execute(pool).await.expect("role");
        problem(app.get_bearer("/api/v1/admin/roles/secret_ops", &admin).await, 404, "not_found").await;
        problem(app.send(reqwest::Method::DELETE, "/api/v1/admin/roles/secret_ops", &admin, None).await, 404, "not_found").await;
        let list: serde_json::Value = app.get_bearer("/api/v1/admin/roles", &admin).await.json().await.expect("JSON");
        assert_eq!(list["total"], 3);
        // Holding a role name that exists only in another tenant grants nothing here.
        let stranger = app.token_for("eve@example.com", PASSWORD, &["secret_ops"]).await;
        problem(app.get_bearer("/api/v1/admin/roles", &stranger).await, 403, "forbidden").await;
    }
}
