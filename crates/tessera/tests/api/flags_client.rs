//! `tessera_client::Flags` against the real server: typed getters from one bulk fetch, a change
//! on the admin API arriving through the change stream, and last known values served without
//! waiting once the server is gone.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::flags::{TEST_FLAGS, apply_flags, platform_admin};
use crate::helpers::spawn_app_with;
use crate::on_each_database;

on_each_database! {
    async fn the_flags_client_follows_changes_and_keeps_last_values(db: TestDatabase) {
        let app = spawn_app_with(db, |c| apply_flags(c, TEST_FLAGS, &[])).await;
        let platform = platform_admin(&app).await;
        let admin = app.token_for("admin@example.com", "correct horse battery", &["admin"]).await;
        let (id, secret) = app.new_client(&admin, json!(["flags:read"])).await;
        let mut context = serde_json::Map::new();
        context.insert("targetingKey".into(), json!("svc-1"));
        let flags = tessera_client::Flags::builder(&app.address)
            .client_credentials(&id, &secret)
            .context(context)
            .build()
            .await
            .expect("client");
        assert!(!flags.bool("dark_mode", true));
        assert_eq!(flags.string("banner_text", "code"), "config");
        assert!((flags.number("max_upload_mb", 0.0) - 2.5).abs() < f64::EPSILON);
        assert_eq!(flags.object("theme").expect("object")["color"], "blue");
        assert_eq!(flags.string("no_such_flag", "code"), "code", "unknown flags answer the default");
        assert!(!flags.is_stale());
        assert!(!flags.refresh().await.expect("refresh"), "nothing changed: 304");

        let mut changes = flags.changes();
        let patched = app.send(Method::PATCH, "/api/v1/admin/flags/dark_mode", &platform, Some(json!({"default": true}))).await;
        assert_eq!(patched.status(), 200);
        let seen = tokio::time::timeout(Duration::from_secs(10), changes.changed()).await;
        assert!(seen.is_ok(), "the change stream did not bring the change");
        assert!(flags.bool("dark_mode", false));

        app.stop().await;
        // The server is gone: getters answer at once from memory.
        assert!(flags.bool("dark_mode", false));
        assert!(flags.refresh().await.is_err());
    }
}
