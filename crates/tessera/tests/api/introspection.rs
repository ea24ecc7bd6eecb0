//! RFC 7662 introspection: active with full claims for a usable token, one identical
//! `{"active": false}` for everything else, and a revocation visible at once.

use serde_json::json;

use crate::helpers::{TestApp, basic, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

async fn introspect(app: &TestApp, auth: Option<&str>, token: Option<&str>) -> reqwest::Response {
    let mut form = form_urlencoded::Serializer::new(String::new());
    if let Some(token) = token {
        form.append_pair("token", token);
    }
    let mut request = app
        .client
        .post(app.url("/oauth2/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request.send().await.expect("sent")
}

async fn answer_of(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.expect("JSON")
}

on_each_database! {
    async fn introspection_tells_usable_tokens_from_everything_else_and_nothing_more(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("root@example.com", PASSWORD, &["admin"], None).await;
        let admin = app.login("root@example.com", PASSWORD).await["access_token"].as_str().expect("t").to_owned();
        let (gate_id, gate_secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
        let gate = basic(&gate_id, &gate_secret);
        let (etl_id, etl_secret) = app.new_client(&admin, json!(["reports:read"])).await;

        let user = app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let session = app.login("ada@example.com", PASSWORD).await;
        let user_token = session["access_token"].as_str().expect("t").to_owned();
        let service: serde_json::Value = app.client.post(app.url("/oauth2/token"))
            .header("authorization", basic(&etl_id, &etl_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials").send().await.expect("sent").json().await.expect("JSON");
        let service_token = service["access_token"].as_str().expect("t").to_owned();

        let active = answer_of(introspect(&app, Some(&gate), Some(&user_token)).await).await;
        assert_eq!(active["active"], true);
        assert_eq!(active["sub"], user.id);
        assert_eq!(active["sid"], session["session_id"]);
        assert_eq!(active["token_type"], "Bearer");
        assert!(active["exp"].is_i64() && active["jti"].is_string());
        let active = answer_of(introspect(&app, Some(&gate), Some(&service_token)).await).await;
        assert_eq!((active["active"].as_bool(), active["client_id"].as_str()), (Some(true), Some(etl_id.as_str())));
        assert_eq!(active["scope"], "reports:read");

        let inactive = json!({"active": false});
        // One signature character changed, well inside it: the last characters of an Ed25519
        // signature are often `A` already, so overwriting them may change nothing.
        let mut tampered = user_token.clone();
        let at = tampered.len() - 10;
        let swapped = if &tampered[at..=at] == "B" { "C" } else { "B" };
        tampered.replace_range(at..=at, swapped);
        let mut expired = app.state.keys().current().verify(&user_token).expect("valid").as_ref().clone();
        expired.exp = tessera_token::unix_now() - 3600;
        expired.jti = "old".into();
        let expired = app.state.keys().current().signer.sign(&expired).expect("signed");
        for token in ["garbage", "a.b.c", tampered.as_str(), expired.as_str(), "tsr_notanaccesstoken"] {
            assert_eq!(answer_of(introspect(&app, Some(&gate), Some(token)).await).await, inactive, "{token}");
        }

        // Logout: inactive at once, no waiting for expiry.
        assert_eq!(app.post_bearer("/api/v1/auth/logout", &user_token).await.status(), 204);
        assert_eq!(answer_of(introspect(&app, Some(&gate), Some(&user_token)).await).await, inactive);
        // A disabled client's tokens stop being active too.
        app.client.delete(app.url(&format!("/api/v1/admin/clients/{etl_id}"))).bearer_auth(&admin).send().await.expect("sent");
        assert_eq!(answer_of(introspect(&app, Some(&gate), Some(&service_token)).await).await, inactive);

        // Who may ask.
        let refused = introspect(&app, Some(&basic(&etl_id, &etl_secret)), Some(&admin)).await;
        assert_eq!(refused.status(), 401, "a disabled client is no client");
        let (other_id, other_secret) = app.new_client(&admin, json!(["reports:read"])).await;
        let refused = introspect(&app, Some(&basic(&other_id, &other_secret)), Some(&admin)).await;
        assert_eq!(refused.status(), 403);
        let error: serde_json::Value = refused.json().await.expect("JSON");
        assert_eq!(error["error"], "insufficient_scope");
        assert_eq!(introspect(&app, None, Some(&admin)).await.status(), 401);
        let missing = introspect(&app, Some(&gate), None).await;
        assert_eq!(missing.status(), 400);
    }
}

on_each_database! {
    async fn a_tenants_services_see_only_that_tenants_tokens(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("root@example.com", PASSWORD, &["admin"], None).await;
        let admin = app.login("root@example.com", PASSWORD).await["access_token"].as_str().expect("t").to_owned();
        let (id, secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
        sqlx::query("INSERT INTO tenants (id, slug, name, active, created_at) VALUES ('t-other', 'other', 'Other', 1, 0)")
            .execute(app.state.db().pool()).await.expect("tenant");
        sqlx::query("UPDATE clients SET tenant_id = 't-other' WHERE id = $1").bind(&id)
            .execute(app.state.db().pool()).await.expect("moved");
        let answer = answer_of(introspect(&app, Some(&basic(&id, &secret)), Some(&admin)).await).await;
        assert_eq!(answer, json!({"active": false}));
    }
}
