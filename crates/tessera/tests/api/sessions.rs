//! Refresh rotation (grace, reuse, races), listing and revoking sessions, and the admin view.

use serde_json::json;

use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/refresh", &json!({ "refresh_token": token }))
        .await
}

/// Moves the rotation time of every rotated token back, as if `secs` had passed.
async fn age_rotations(app: &TestApp, secs: i64) {
    sqlx::query(
        "UPDATE sessions SET refreshed_at = refreshed_at - $1 WHERE refreshed_at IS NOT NULL",
    )
    .bind(secs)
    .execute(app.state.db().pool())
    .await
    .expect("aged");
}

on_each_database! {
    async fn a_rotated_token_within_the_grace_window_returns_the_same_successor(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let first = app.login("ada@example.com", PASSWORD).await;
        let token = first["refresh_token"].as_str().expect("token");

        let a: serde_json::Value = refresh(&app, token).await.json().await.expect("JSON");
        let b: serde_json::Value = refresh(&app, token).await.json().await.expect("JSON");
        assert_eq!(a["refresh_token"], b["refresh_token"], "the second tab gets the same successor");
        assert_ne!(a["refresh_token"], first["refresh_token"]);
        assert!(b["access_token"].is_string());

        // The successor works and rotates in turn.
        let next = a["refresh_token"].as_str().expect("successor");
        assert_eq!(refresh(&app, next).await.status(), 200);
    }
}

on_each_database! {
    async fn reuse_after_the_grace_window_revokes_the_session(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let first = app.login("ada@example.com", PASSWORD).await;
        let token = first["refresh_token"].as_str().expect("token");
        let rotated: serde_json::Value = refresh(&app, token).await.json().await.expect("JSON");
        let access = rotated["access_token"].as_str().expect("access");
        assert_eq!(app.get_bearer("/api/v1/auth/me", access).await.status(), 200);

        age_rotations(&app, 11).await;
        problem(refresh(&app, token).await, 401, "refresh_token_reused").await;
        // The thief's replay ended the session for everyone holding its tokens.
        problem(app.get_bearer("/api/v1/auth/me", access).await, 401, "session_ended").await;
        let successor = rotated["refresh_token"].as_str().expect("successor");
        problem(refresh(&app, successor).await, 401, "session_ended").await;

        let reason: String = sqlx::query_scalar("SELECT revoked_reason FROM sessions WHERE id = $1")
            .bind(first["session_id"].as_str().expect("sid"))
            .fetch_one(app.state.db().pool())
            .await
            .expect("session");
        assert_eq!(reason, "refresh_reuse");
        assert!(app.audit_actions().await.contains(&"refresh.reuse_detected".to_owned()));
    }
}

on_each_database! {
    async fn parallel_refreshes_of_one_token_rotate_it_exactly_once(db: TestDatabase) {
        let app = std::sync::Arc::new(spawn_app_with(db, |_| {}).await);
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let first = app.login("ada@example.com", PASSWORD).await;
        let token = first["refresh_token"].as_str().expect("token").to_owned();

        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let app = std::sync::Arc::clone(&app);
                let token = token.clone();
                tokio::spawn(async move {
                    let response = refresh(&app, &token).await;
                    assert_eq!(response.status(), 200);
                    let body: serde_json::Value = response.json().await.expect("JSON");
                    body["refresh_token"].as_str().expect("successor").to_owned()
                })
            })
            .collect();
        let mut successors = Vec::new();
        for task in tasks {
            successors.push(task.await.expect("task"));
        }
        successors.dedup();
        assert_eq!(successors.len(), 1, "every caller got the one successor");

        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens WHERE session_id = $1")
            .bind(first["session_id"].as_str().expect("sid"))
            .fetch_one(app.state.db().pool())
            .await
            .expect("count");
        assert_eq!(rows, 2, "the login's token and exactly one successor");
    }
}

on_each_database! {
    async fn users_list_and_revoke_their_own_sessions_only(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        app.create_user("bob@example.com", PASSWORD, &["user"], None).await;
        let logins: Vec<serde_json::Value> = {
            let mut all = Vec::new();
            for _ in 0..3 {
                all.push(app.login("ada@example.com", PASSWORD).await);
            }
            all
        };
        let current = logins[2]["access_token"].as_str().expect("token");
        let bob = app.login("bob@example.com", PASSWORD).await;

        let list: serde_json::Value = app
            .get_bearer("/api/v1/auth/sessions?page=1&page_size=2", current)
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!((list["total"].as_i64(), list["pages"].as_i64(), list["page_size"].as_i64()), (Some(3), Some(2), Some(2)));
        let items = list["items"].as_array().expect("items");
        assert_eq!(items[0]["id"], logins[2]["session_id"], "newest first");
        assert_eq!(items[0]["is_current"], true);
        assert_eq!(items[1]["is_current"], false);
        let text = list.to_string();
        assert!(!text.contains("tsr_") && !text.contains("token"), "no token material: {text}");
        problem(app.get_bearer("/api/v1/auth/sessions?page=0", current).await, 422, "invalid_pagination").await;

        // Bob's session id is not Ada's to revoke, and looks exactly like a missing one.
        let bob_sid = bob["session_id"].as_str().expect("sid");
        let foreign = problem(app.post_bearer(&format!("/api/v1/auth/sessions/{bob_sid}/revoke"), current).await, 404, "not_found").await;
        let missing = problem(app.post_bearer("/api/v1/auth/sessions/00000000-0000-7000-8000-00000000dead/revoke", current).await, 404, "not_found").await;
        assert_eq!(foreign["detail"], missing["detail"]);
        assert_eq!(app.get_bearer("/api/v1/auth/me", bob["access_token"].as_str().expect("t")).await.status(), 200);

        // Revoking one session rejects its unexpired access token at once.
        let first_sid = logins[0]["session_id"].as_str().expect("sid");
        let response = app.post_bearer(&format!("/api/v1/auth/sessions/{first_sid}/revoke"), current).await;
        assert_eq!(response.status(), 204);
        problem(app.get_bearer("/api/v1/auth/me", logins[0]["access_token"].as_str().expect("t")).await, 401, "session_ended").await;

        let response = app.post_bearer("/api/v1/auth/sessions/revoke-others", current).await;
        let revoked: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(revoked["revoked"], 1);
        let list: serde_json::Value = app.get_bearer("/api/v1/auth/sessions", current).await.json().await.expect("JSON");
        assert_eq!(list["total"], 1);
        assert_eq!(list["items"][0]["is_current"], true);
        let current_view: serde_json::Value = app.get_bearer("/api/v1/auth/sessions/current", current).await.json().await.expect("JSON");
        assert_eq!(current_view["id"], logins[2]["session_id"]);
        problem(app.get_bearer("/api/v1/auth/me", logins[1]["access_token"].as_str().expect("t")).await, 401, "session_ended").await;
    }
}

on_each_database! {
    async fn admins_manage_sessions_of_their_own_tenant_only(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let root = app.create_user("root@example.com", PASSWORD, &["admin"], None).await;
        let ada = app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let admin = app.login("root@example.com", PASSWORD).await;
        let admin_token = admin["access_token"].as_str().expect("token");
        let ada_login = app.login("ada@example.com", PASSWORD).await;
        app.login("ada@example.com", PASSWORD).await;
        let ada_token = ada_login["access_token"].as_str().expect("token");

        let list: serde_json::Value = app
            .get_bearer(&format!("/api/v1/admin/users/{}/sessions", ada.id), admin_token)
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(list["total"], 2);

        // A user of another tenant is invisible, whatever the id.
        let pool = app.state.db().pool();
        sqlx::query("INSERT INTO tenants (id, slug, name, active, created_at) VALUES ('t-other', 'other', 'Other', 1, 0)")
            .execute(pool)
            .await
            .expect("tenant");
        let stranger = app.create_user("eve@example.com", PASSWORD, &["user"], None).await;
        sqlx::query("UPDATE users SET tenant_id = 't-other' WHERE id = $1").bind(&stranger.id).execute(pool).await.expect("moved");
        problem(app.get_bearer(&format!("/api/v1/admin/users/{}/sessions", stranger.id), admin_token).await, 404, "not_found").await;
        problem(app.post_bearer(&format!("/api/v1/admin/users/{}/sessions/revoke-all", stranger.id), admin_token).await, 404, "not_found").await;

        let denied = problem(app.get_bearer(&format!("/api/v1/admin/users/{}/sessions", ada.id), ada_token).await, 403, "forbidden").await;
        assert!(denied["detail"].as_str().is_some_and(|d| d.contains("sessions:read")), "{denied}");

        let response = app.post_bearer(&format!("/api/v1/admin/users/{}/sessions/revoke-all", ada.id), admin_token).await;
        let revoked: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(revoked["revoked"], 2);
        problem(app.get_bearer("/api/v1/auth/me", ada_token).await, 401, "session_ended").await;
        let by: Vec<String> = sqlx::query_scalar("SELECT actor_id FROM audit_events WHERE action = 'session.revoked'")
            .fetch_all(pool)
            .await
            .expect("audit");
        assert_eq!(by, [root.id.clone(), root.id.clone()], "revoked by the admin, on record");
    }
}

on_each_database! {
    async fn a_revocation_written_elsewhere_reaches_the_cache_within_the_reconciliation_bound(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let tokens = app.login("ada@example.com", PASSWORD).await;
        let access = tokens["access_token"].as_str().expect("token");
        assert_eq!(app.get_bearer("/api/v1/auth/me", access).await.status(), 200, "now cached");
        // Written as the CLI in another process would: the revoking transaction, and nothing
        // told to this instance or its bus (on PostgreSQL the commit itself announces it;
        // on SQLite the reconciliation read finds it).
        let mut tx = app.state.db().begin_write().await.expect("tx");
        let revoked = tessera::sessions::revoke(
            &mut tx,
            tessera::sessions::Scope::One(tokens["session_id"].as_str().expect("sid")),
            "test",
            &tessera::audit::Actor::System,
            &tessera::http::client::RequestMeta::default(),
        )
        .await
        .expect("revoked");
        tx.commit().await.expect("commit");
        assert_eq!(revoked.0.len(), 1);
        let bound = tessera::bus::RECONCILE_EVERY + std::time::Duration::from_secs(3);
        crate::helpers::eventually(bound, "the cache refuses the revoked session", || async {
            app.get_bearer("/api/v1/auth/me", access).await.status() == 401
        })
        .await;
    }
}

on_each_database! {
    async fn a_token_two_rotations_old_is_reuse_even_within_seconds(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let first = app.login("ada@example.com", PASSWORD).await;
        let t0 = first["refresh_token"].as_str().expect("token");
        let t1: serde_json::Value = refresh(&app, t0).await.json().await.expect("JSON");
        let t1 = t1["refresh_token"].as_str().expect("t1").to_owned();
        assert_eq!(refresh(&app, &t1).await.status(), 200);
        // t0 is neither the current token nor the one just replaced: a stolen copy.
        problem(refresh(&app, t0).await, 401, "refresh_token_reused").await;
        let unknown = format!("tsr_{}", "A".repeat(43));
        problem(refresh(&app, &unknown).await, 401, "invalid_refresh_token").await;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens")
            .fetch_one(app.state.db().pool())
            .await
            .expect("count");
        assert_eq!(rows, 3, "t0, t1, t2: a made-up token writes nothing");
    }
}

on_each_database! {
    async fn what_a_role_may_do_follows_its_permissions(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        sqlx::query(
            "INSERT INTO roles (tenant_id, name, description, permissions, built_in, created_at, updated_at) \
             VALUES ($1, 'support', 'Looks at sessions', '[\"sessions:read\"]', 0, 0, 0)",
        )
        .bind(tessera::tenants::DEFAULT_TENANT_ID)
        .execute(app.state.db().pool())
        .await
        .expect("custom role");
        // Ada holds no role: listing her sessions needs nothing beyond `sessions:read`.
        let ada = app.create_user("ada@example.com", PASSWORD, &[], None).await;
        app.create_user("vic@example.com", PASSWORD, &["viewer"], None).await;
        app.create_user("sam@example.com", PASSWORD, &["support"], None).await;
        app.login("ada@example.com", PASSWORD).await;
        let list = format!("/api/v1/admin/users/{}/sessions", ada.id);
        let revoke_all = format!("/api/v1/admin/users/{}/sessions/revoke-all", ada.id);
        for (who, can_list) in [("vic@example.com", true), ("sam@example.com", true)] {
            let token = app.login(who, PASSWORD).await["access_token"].as_str().expect("t").to_owned();
            assert_eq!(app.get_bearer(&list, &token).await.status() == 200, can_list, "{who} lists");
            // Reading everything is not changing anything.
            problem(app.post_bearer(&revoke_all, &token).await, 403, "forbidden").await;
        }
        let roles: Vec<String> = sqlx::query_scalar("SELECT name FROM roles WHERE tenant_id = $1 ORDER BY name")
            .bind(tessera::tenants::SYSTEM_TENANT_ID)
            .fetch_all(app.state.db().pool())
            .await
            .expect("system roles");
        assert_eq!(roles, ["admin", "platform_admin"]);
    }
}

on_each_database! {
    async fn cleanup_drops_long_ended_sessions_and_expired_revocations_only(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let old = app.login("ada@example.com", PASSWORD).await;
        let live = app.login("ada@example.com", PASSWORD).await;
        let recent = app.login("ada@example.com", PASSWORD).await;
        let pool = app.state.db().pool();
        let now = tessera_token::unix_now();
        let keep = tessera::cleanup::KEEP_ENDED_SESSIONS_SECS;
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2")
            .bind(now - keep - 10)
            .bind(old["session_id"].as_str().expect("sid"))
            .execute(pool).await.expect("ended long ago");
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2")
            .bind(now - 60)
            .bind(recent["session_id"].as_str().expect("sid"))
            .execute(pool).await.expect("ended just now");
        sqlx::query("INSERT INTO revoked_tokens (jti, tenant_id, expires_at, revoked_at) VALUES ('gone', 't', $1, $1), ('kept', 't', $2, $1)")
            .bind(now - 10)
            .bind(now + 600)
            .execute(pool).await.expect("revocations");
        // Feed entries are kept through the largest verifier leeway after they expire.
        sqlx::query("INSERT INTO revocations (tenant_id, kind, subject, expires_at, created_at) VALUES ('t', 'token', 'gone', $1, 0), ('t', 'token', 'kept', $2, 0)")
            .bind(now - tessera::revocations::MAX_LEEWAY_SECS - 1)
            .bind(now - 10)
            .execute(pool).await.expect("feed entries");

        // The application's own hourly run may hold the turn for a moment.
        let removed = loop {
            match tessera::cleanup::run_once(app.state.db(), now, 86_400).await.expect("ran") {
                Some(removed) => break removed,
                None => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        assert_eq!((removed.sessions, removed.revoked_tokens), (1, 1));
        assert_eq!(removed.revocations, 1);
        let sessions: Vec<String> = sqlx::query_scalar("SELECT id FROM sessions ORDER BY id").fetch_all(pool).await.expect("ids");
        let mut expected = vec![live["session_id"].as_str().expect("sid").to_owned(), recent["session_id"].as_str().expect("sid").to_owned()];
        expected.sort();
        assert_eq!(sessions, expected);
        let orphans: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens WHERE session_id = $1")
            .bind(old["session_id"].as_str().expect("sid"))
            .fetch_one(pool).await.expect("count");
        assert_eq!(orphans, 0, "the history went with its session");
        let jtis: Vec<String> = sqlx::query_scalar("SELECT jti FROM revoked_tokens").fetch_all(pool).await.expect("jtis");
        assert_eq!(jtis, ["kept"]);
        let feed: Vec<String> = sqlx::query_scalar("SELECT subject FROM revocations WHERE kind = 'token'").fetch_all(pool).await.expect("feed");
        assert_eq!(feed, ["kept"]);
        assert_eq!(app.get_bearer("/api/v1/auth/me", live["access_token"].as_str().expect("t")).await.status(), 200);
    }
}
