//! RFC 7009 revocation: access tokens join the deny list at once (and for every instance),
//! refresh tokens end their session, and the answer never tells which tokens exist.

use serde_json::json;

use crate::helpers::{TestApp, basic, problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

async fn form(
    app: &TestApp,
    path: &str,
    auth: Option<&str>,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request.send().await.expect("sent")
}

async fn active(app: &TestApp, gate: &str, token: &str) -> bool {
    let answer: serde_json::Value =
        form(app, "/oauth2/introspect", Some(gate), &[("token", token)])
            .await
            .json()
            .await
            .expect("JSON");
    answer["active"].as_bool().expect("active")
}

on_each_database! {
    async fn revoked_tokens_stop_working_at_once_and_refresh_tokens_end_their_session(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("root@example.com", PASSWORD, &["admin"], None).await;
        let admin = app.login("root@example.com", PASSWORD).await["access_token"].as_str().expect("t").to_owned();
        let gate = app.new_client(&admin, json!(["tokens:introspect", "tokens:revoke"])).await;
        let gate = basic(&gate.0, &gate.1);
        let etl = app.new_client(&admin, json!(["reports:read"])).await;
        let etl = basic(&etl.0, &etl.1);

        // A client revokes its own token.
        let issued: serde_json::Value = form(&app, "/oauth2/token", Some(&etl), &[("grant_type", "client_credentials")]).await.json().await.expect("JSON");
        let service_token = issued["access_token"].as_str().expect("t");
        assert!(active(&app, &gate, service_token).await);
        let response = form(&app, "/oauth2/revoke", Some(&etl), &[("token", service_token)]).await;
        assert_eq!(response.status(), 200);
        assert!(!active(&app, &gate, service_token).await);

        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let session = app.login("ada@example.com", PASSWORD).await;
        let access = session["access_token"].as_str().expect("t");
        let refresh = session["refresh_token"].as_str().expect("t");

        // Without tokens:revoke, another's token is answered 200 and left alone.
        assert_eq!(form(&app, "/oauth2/revoke", Some(&etl), &[("token", access)]).await.status(), 200);
        assert_eq!(app.get_bearer("/api/v1/auth/me", access).await.status(), 200);
        assert_eq!(form(&app, "/oauth2/revoke", Some(&etl), &[("token", refresh)]).await.status(), 200);
        assert_eq!(app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh})).await.status(), 200);

        // With it, the access token is refused at once, here and by any other instance.
        let second = app.login("ada@example.com", PASSWORD).await;
        let access = second["access_token"].as_str().expect("t");
        assert_eq!(form(&app, "/oauth2/revoke", Some(&gate), &[("token", access), ("token_type_hint", "access_token")]).await.status(), 200);
        problem(app.get_bearer("/api/v1/auth/me", access).await, 401, "invalid_token").await;
        let jti = app.state.keys().current().verify(access).expect("still well-formed").jti.clone();
        let elsewhere = tessera::oauth::denylist::DenyList::load(app.state.db()).await.expect("load");
        assert!(elsewhere.is_denied(&jti), "a starting instance loads it");

        // A refresh token ends its whole session.
        let refresh = second["refresh_token"].as_str().expect("t");
        assert_eq!(form(&app, "/oauth2/revoke", Some(&gate), &[("token", refresh)]).await.status(), 200);
        problem(app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh})).await, 401, "session_ended").await;

        // Garbage is fine; missing pieces are not.
        assert_eq!(form(&app, "/oauth2/revoke", Some(&gate), &[("token", "garbage")]).await.status(), 200);
        assert_eq!(form(&app, "/oauth2/revoke", Some(&gate), &[]).await.status(), 400);
        assert_eq!(form(&app, "/oauth2/revoke", None, &[("token", "x")]).await.status(), 401);
        let actions = app.audit_actions().await;
        assert!(actions.iter().any(|a| a == "token.revoked"), "{actions:?}");
    }
}
