//! The audit log: sealed into a chain that verifies and shows the first tampered event,
//! trimmed by retention without breaking, and queried and exported tenant by tenant.

use reqwest::Method;
use serde_json::json;
use tessera::audit::chain::{self, ChainKey, Verdict};
use tessera::master::{Generate, MasterKey};

use crate::helpers::{TestApp, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

fn key(app: &TestApp) -> ChainKey {
    ChainKey::new(&MasterKey::load(app.state.config(), Generate::Never).expect("master key"))
}

/// Seals everything written so far (the background sealer may hold the turn a moment).
async fn seal_all(app: &TestApp) {
    let key = key(app);
    loop {
        match chain::seal_once(app.state.db(), &key).await.expect("seals") {
            Some(0) => return,
            Some(_) => {}
            None => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

async fn verdict(app: &TestApp) -> Verdict {
    chain::verify(app.state.db(), &key(app))
        .await
        .expect("verifies")
}

on_each_database! {
    async fn the_chain_verifies_and_names_the_first_tampered_event(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        for password in [PASSWORD, "wrong password!", PASSWORD] {
            app.post_json("/api/v1/auth/login", &json!({"login": "ada@example.com", "password": password, "delivery": "body"})).await;
        }
        seal_all(&app).await;
        let Verdict::Intact { verified, from_seq, unsealed, .. } = verdict(&app).await else {
            panic!("an untouched chain verifies");
        };
        assert!(verified >= 4, "{verified}");
        assert_eq!((from_seq, unsealed), (1, 0));

        let pool = app.state.db().pool();
        // Cutting off the end still verifies from the start; the tip recorded earlier does not.
        let (tip, tip_hash): (i64, String) = sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_one(pool).await.expect("tip");
        assert!(chain::holds_tip(app.state.db(), tip, &tip_hash).await.expect("tip checked"));
        sqlx::query("DELETE FROM audit_events WHERE seq = $1").bind(tip).execute(pool).await.expect("cut");
        assert!(matches!(verdict(&app).await, Verdict::Intact { .. }));
        assert!(!chain::holds_tip(app.state.db(), tip, &tip_hash).await.expect("tip checked"));
        sqlx::query("UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 3")
            .execute(pool).await.expect("tampered");
        assert!(matches!(verdict(&app).await, Verdict::Broken { seq: 3, .. }));
        sqlx::query("DELETE FROM audit_events WHERE seq = 3").execute(pool).await.expect("deleted");
        let Verdict::Broken { seq, reason } = verdict(&app).await else { panic!("a gap is found") };
        assert_eq!(seq, 3);
        assert!(reason.contains("missing"), "{reason}");
    }
}

on_each_database! {
    async fn retention_trims_the_oldest_events_and_the_rest_still_verifies(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        for n in 0..5 {
            app.create_user(&format!("u{n}@example.com"), PASSWORD, &["user"], None).await;
        }
        seal_all(&app).await;
        let pool = app.state.db().pool();
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(pool).await.expect("count");
        // The first three events become old.
        sqlx::query("UPDATE audit_events SET occurred_at = 1000 WHERE seq <= 3").execute(pool).await.expect("aged");
        // Aging changed what they say, so re-seal the chain from scratch for this test.
        sqlx::query("UPDATE audit_events SET seq = NULL, hash = NULL").execute(pool).await.expect("reset");
        seal_all(&app).await;

        let deleted = chain::expire(app.state.db(), 2_000).await.expect("expires").expect("our turn");
        assert_eq!(deleted, 3);
        let Verdict::Intact { verified, from_seq, .. } = verdict(&app).await else {
            panic!("what remains verifies from the checkpoint");
        };
        assert_eq!(from_seq, 4);
        assert_eq!(i64::try_from(verified).expect("n"), total - 3);
        // New events keep chaining after retention.
        app.create_user("late@example.com", PASSWORD, &["user"], None).await;
        seal_all(&app).await;
        assert!(matches!(verdict(&app).await, Verdict::Intact { .. }));
    }
}

on_each_database! {
    async fn audit_queries_are_filtered_paginated_and_tenant_isolated(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let user = app.token_for("ada@example.com", PASSWORD, &["user"]).await;
        let viewer = app.token_for("vic@example.com", PASSWORD, &["viewer"]).await;
        app.post_json("/api/v1/auth/login", &json!({"login": "ada@example.com", "password": "wrong password!", "delivery": "body"})).await;

        let app = &app;
        let list = |query: &str, token: &str| {
            let path = format!("/api/v1/audit{query}");
            let token = token.to_owned();
            async move { app.send(Method::GET, &path, &token, None).await }
        };
        crate::helpers::problem(list("", &user).await, 403, "forbidden").await;
        let all: serde_json::Value = list("?page_size=100", &viewer).await.json().await.expect("JSON");
        let total = all["total"].as_i64().expect("total");
        assert!(total >= 7, "{all}");
        let newest_first: Vec<i64> = all["items"].as_array().expect("items").iter().map(|e| e["occurred_at"].as_i64().expect("t")).collect();
        assert!(newest_first.windows(2).all(|w| w[0] >= w[1]));

        let failed: serde_json::Value = list("?action=login.failed", &admin).await.json().await.expect("JSON");
        assert_eq!(failed["total"], 1);
        assert_eq!(failed["items"][0]["outcome"], "failure");
        assert_eq!(failed["items"][0]["reason"], "wrong_password");
        let logins: serde_json::Value = list("?action=login.&outcome=success", &admin).await.json().await.expect("JSON");
        assert_eq!(logins["total"], 3, "{logins}");
        // A LIKE wildcard is just a character here.
        let wild: serde_json::Value = list("?action=login%25", &admin).await.json().await.expect("JSON");
        assert_eq!(wild["total"], 0);
        let future: serde_json::Value = list("?from=4102444800", &admin).await.json().await.expect("JSON");
        assert_eq!(future["total"], 0);
        let two: serde_json::Value = list("?page_size=2&page=2", &admin).await.json().await.expect("JSON");
        assert_eq!(two["items"].as_array().expect("items").len(), 2);
        for bad in ["?outcome=maybe", "?from=yesterday", "?actor="] {
            crate::helpers::problem(list(bad, &admin).await, 422, "invalid_filter").await;
        }
        crate::helpers::problem(list("?tenant=other", &admin).await, 403, "forbidden").await;

        let export = app.client.get(app.url("/api/v1/audit/export?action=login.")).bearer_auth(&admin).send().await.expect("sent");
        assert_eq!(export.status(), 200);
        assert_eq!(export.headers()["content-type"], "application/x-ndjson");
        let body = export.text().await.expect("text");
        let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
        assert_eq!(lines.len(), 4);
        assert!(lines.windows(2).all(|w| w[0]["occurred_at"].as_i64() <= w[1]["occurred_at"].as_i64()), "oldest first");

        // Another tenant's administrator sees none of it.
        let pool = app.state.db().pool();
        sqlx::query("INSERT INTO tenants (id, slug, name, active, created_at) VALUES ('t-other', 'other', 'Other', 1, 0)")
            .execute(pool).await.expect("tenant");
        sqlx::query("INSERT INTO roles (tenant_id, name, description, permissions, built_in, created_at, updated_at) SELECT 't-other', name, description, permissions, built_in, created_at, updated_at FROM roles WHERE tenant_id = $1")
            .bind(tessera::tenants::DEFAULT_TENANT_ID)
            .execute(pool).await.expect("roles");
        {
            use tessera::users::{Email, NewUser};
            let hash = app.state.passwords().hash(PASSWORD.to_owned()).await.expect("hash");
            let boss = NewUser {
                tenant_id: "t-other".into(),
                email: Email::parse("boss@example.com").expect("email"),
                username: None,
                first_name: "Other".into(),
                last_name: "Boss".into(),
                password_hash: Some(hash),
                roles: vec!["admin".into()],
            };
            let mut tx = pool.begin().await.expect("tx");
            tessera::users::create(&mut tx, &boss, &tessera::audit::Actor::System, &tessera::http::client::RequestMeta::default()).await.expect("user");
            tx.commit().await.expect("commit");
        }
        let relogin = app.post_json("/api/v1/auth/login", &json!({"login": "boss@example.com", "password": PASSWORD, "tenant": "other", "delivery": "body"})).await;
        let other: serde_json::Value = relogin.json().await.expect("JSON");
        let other = other["access_token"].as_str().expect("token");
        let seen: serde_json::Value = list("?page_size=100", other).await.json().await.expect("JSON");
        assert!(seen["items"].as_array().expect("items").iter().all(|e| e["tenant_id"] == "t-other"), "{seen}");
        assert_eq!(list("?action=login.failed", other).await.json::<serde_json::Value>().await.expect("JSON")["total"], 0);
    }
}
