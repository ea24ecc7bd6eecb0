//! Login, `/me`, logout, password change and registration, for API clients (tokens in the
//! body); the browser flow with cookies and CSRF is in `cookies.rs`.

use serde_json::json;

use crate::helpers::{problem, spawn_app, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

on_each_database! {
    async fn the_body_delivery_lifecycle_runs_from_login_to_logout(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;

        let response = app
            .post_json("/api/v1/auth/login", &json!({"login": "ADA@example.com", "password": PASSWORD, "delivery": "body"}))
            .await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("set-cookie").is_none(), "body delivery sets no cookie");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let tokens: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(tokens["token_type"], "Bearer");
        assert!(tokens["expires_in"].as_i64().is_some_and(|s| s > 500 && s <= 600));
        let access = tokens["access_token"].as_str().expect("access token");
        let refresh = tokens["refresh_token"].as_str().expect("refresh token");
        let session_id = tokens["session_id"].as_str().expect("session id");

        let me: serde_json::Value = app.get_bearer("/api/v1/auth/me", access).await.json().await.expect("JSON");
        assert_eq!(me["user"]["email"], "ada@example.com");
        assert_eq!(me["tenant"]["slug"], "default");
        assert_eq!(me["roles"], json!(["user"]));
        assert_eq!(me["session"]["id"], session_id);
        assert_eq!(me["session"]["is_current"], true);
        assert_eq!(me["session"]["amr"], json!(["pwd"]));
        assert!(me["user"].get("password_hash").is_none());

        let refreshed: serde_json::Value = app
            .post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}))
            .await
            .json()
            .await
            .expect("JSON");
        let new_access = refreshed["access_token"].as_str().expect("new access token");
        assert_ne!(refreshed["refresh_token"], refresh, "rotated");
        assert_eq!(refreshed["session_id"], session_id);
        assert_eq!(app.get_bearer("/api/v1/auth/me", new_access).await.status(), 200);

        let response = app.post_bearer("/api/v1/auth/logout", new_access).await;
        assert_eq!(response.status(), 204);
        // Both access tokens are still unexpired, and both are refused at once.
        for token in [access, new_access] {
            let body = problem(app.get_bearer("/api/v1/auth/me", token).await, 401, "session_ended").await;
            assert!(body["request_id"].is_string());
        }
        let response = app
            .post_json("/api/v1/auth/refresh", &json!({"refresh_token": refreshed["refresh_token"]}))
            .await;
        problem(response, 401, "session_ended").await;

        let actions = app.audit_actions().await;
        for expected in ["login.succeeded", "logout", "session.revoked"] {
            assert!(actions.iter().any(|a| a == expected), "{expected} missing from {actions:?}");
        }
    }
}

on_each_database! {
    async fn unknown_users_wrong_passwords_and_wrong_tenants_get_the_same_answer(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let attempts = [
            json!({"login": "nobody@example.com", "password": PASSWORD}),
            json!({"login": "ada@example.com", "password": "wrong password!"}),
            json!({"login": "ada@example.com", "password": PASSWORD, "tenant": "no-such-tenant"}),
            json!({"login": "ada", "password": PASSWORD}),
        ];
        let mut bodies = Vec::new();
        for attempt in &attempts {
            let response = app.post_json("/api/v1/auth/login", attempt).await;
            assert_eq!(response.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
            let mut body = problem(response, 401, "invalid_credentials").await;
            body.as_object_mut().expect("object").remove("request_id");
            bodies.push(body);
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");

        let reasons: Vec<String> = sqlx::query_scalar(
            "SELECT reason FROM audit_events WHERE action = 'login.failed' ORDER BY occurred_at, id",
        )
        .fetch_all(app.state.db().pool())
        .await
        .expect("audit");
        assert_eq!(reasons, ["unknown_account", "wrong_password", "unknown_tenant", "unknown_account"]);
        let leaked: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_events WHERE details LIKE '%horse%' OR details LIKE '%wrong password%'",
        )
        .fetch_one(app.state.db().pool())
        .await
        .expect("audit");
        assert_eq!(leaked, 0, "no password reaches the audit log");
    }
}

on_each_database! {
    async fn a_disabled_account_learns_it_only_with_the_right_password(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let user = app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let tokens = app.login("ada@example.com", PASSWORD).await;
        let mut tx = app.state.db().begin_write().await.expect("transaction");
        let revoked = tessera::users::set_active(
            &mut tx,
            &user,
            false,
            &tessera::audit::Actor::System,
            &tessera::http::client::RequestMeta::default(),
        )
        .await
        .expect("disabled");
        tx.commit().await.expect("committed");
        revoked.apply(app.state.sessions());

        let wrong = app.post_json("/api/v1/auth/login", &json!({"login": "ada@example.com", "password": "not the one!"})).await;
        problem(wrong, 401, "invalid_credentials").await;
        let right = app.post_json("/api/v1/auth/login", &json!({"login": "ada@example.com", "password": PASSWORD})).await;
        problem(right, 403, "account_disabled").await;
        let access = tokens["access_token"].as_str().expect("token");
        problem(app.get_bearer("/api/v1/auth/me", access).await, 401, "session_ended").await;
    }
}

on_each_database! {
    async fn imported_legacy_hashes_log_in_and_are_upgraded_to_argon2id(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let cases = [
            ("pbkdf2@example.com", "passwordPASSWORDpassword",
             "$pbkdf2-sha256$i=4096,l=40$c2FsdFNBTFRzYWx0U0FMVHNhbHRTQUxUc2FsdFNBTFRzYWx0$NIyJ28vTKy8y2BS4EW6EzysXNH68GAAYHE4qH7jdU+HGNVGMfaxH6Q"),
            ("django@example.com", "correct horse",
             "pbkdf2_sha256$1000$saltsalt$qQDPSZa3Ormyy9oK1Pu0ZLLwP2Svzmx3yu8OvDdq/J0="),
            ("bcrypt@example.com", "U*U", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
        ];
        for (email, password, hash) in cases {
            let user = app.create_user(email, password, &["user"], Some(hash)).await;
            app.login(email, password).await;
            let stored = tessera::users::password_hash(app.state.db(), &user.id).await.expect("hash").expect("set");
            assert!(stored.starts_with("$argon2id$"), "{email}: {stored}");
            // The upgraded hash still opens the account.
            app.login(email, password).await;
        }
    }
}

#[tokio::test]
async fn an_oversized_password_is_refused_before_any_hashing() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"login": "a@b.c", "password": "x".repeat(1025)}),
        )
        .await;
    problem(response, 422, "password_too_long").await;
    let hashed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'login.failed'")
            .fetch_one(app.state.db().pool())
            .await
            .expect("audit");
    assert_eq!(hashed, 0, "refused before lookup and verification");
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_problems() {
    let app = spawn_app_with(crate::helpers::TestDatabase::sqlite(), |c| {
        c.http.body_limit_bytes = 4096;
    })
    .await;
    let send = |body: String| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    problem(
        send("{\"login\":".into()).await.expect("sent"),
        400,
        "malformed_json",
    )
    .await;
    problem(
        send("{\"login\":1}".into()).await.expect("sent"),
        422,
        "validation_failed",
    )
    .await;
    problem(
        send("{\"login\":\"a\",\"password\":\"b\",\"admin\":true}".into())
            .await
            .expect("sent"),
        422,
        "validation_failed",
    )
    .await;
    problem(
        send(format!("{{\"login\":\"{}\"}}", "x".repeat(8000)))
            .await
            .expect("sent"),
        413,
        "payload_too_large",
    )
    .await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header("content-type", "application/json")
        .body("[")
        .send()
        .await
        .expect("sent");
    problem(response, 400, "malformed_json").await;
    problem(
        app.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": "tsr_short"}),
        )
        .await,
        401,
        "invalid_refresh_token",
    )
    .await;
    problem(app.get("/api/v1/auth/me").await, 401, "unauthenticated").await;
    problem(
        app.get_bearer("/api/v1/auth/me", "not.a.token").await,
        401,
        "invalid_token",
    )
    .await;
}

on_each_database! {
    async fn changing_the_password_needs_the_old_one_and_ends_every_other_session(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let here = app.login("ada@example.com", PASSWORD).await;
        let elsewhere = app.login("ada@example.com", PASSWORD).await;
        let access = here["access_token"].as_str().expect("token");
        let change = |current: &str, new: &str| {
            app.client
                .post(app.url("/api/v1/auth/password"))
                .bearer_auth(access)
                .json(&json!({"current_password": current, "new_password": new}))
                .send()
        };
        problem(change("wrong password!", "a brand new secret").await.expect("sent"), 403, "invalid_credentials").await;
        problem(change(PASSWORD, "short").await.expect("sent"), 422, "password_too_short").await;
        assert_eq!(change(PASSWORD, "a brand new secret").await.expect("sent").status(), 204);

        assert_eq!(app.get_bearer("/api/v1/auth/me", access).await.status(), 200, "this session stays");
        let other = elsewhere["access_token"].as_str().expect("token");
        problem(app.get_bearer("/api/v1/auth/me", other).await, 401, "session_ended").await;
        let old = app.post_json("/api/v1/auth/login", &json!({"login": "ada@example.com", "password": PASSWORD})).await;
        problem(old, 401, "invalid_credentials").await;
        app.login("ada@example.com", "a brand new secret").await;
        let actions = app.audit_actions().await;
        assert!(actions.contains(&"password.changed".to_owned()), "{actions:?}");
        assert!(actions.contains(&"password.change_failed".to_owned()), "{actions:?}");
    }
}

on_each_database! {
    async fn registration_follows_the_setting(db: TestDatabase) {
        let app = spawn_app_with(db, |c| c.auth.registration = tessera::config::Registration::Open).await;
        let body = json!({"email": "new@example.com", "password": PASSWORD, "first_name": "New"});
        let response = app.post_json("/api/v1/auth/register", &body).await;
        assert_eq!(response.status(), 202);
        let tokens = app.login("new@example.com", PASSWORD).await;
        let me: serde_json::Value = app
            .get_bearer("/api/v1/auth/me", tokens["access_token"].as_str().expect("token"))
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(me["roles"], json!(["user"]));

        problem(app.post_json("/api/v1/auth/register", &json!({"email": "bad", "password": PASSWORD})).await, 422, "invalid_email").await;
        problem(app.post_json("/api/v1/auth/register", &json!({"email": "x@example.com", "password": "short"})).await, 422, "password_too_short").await;
        problem(app.post_json("/api/v1/auth/register", &json!({"email": "x@example.com", "password": PASSWORD, "username": "a@b"})).await, 422, "invalid_username").await;
        for hidden in ["x\u{200B}@example.com", "\u{202E}x@example.com", "x@exa\u{2066}mple.com"] {
            problem(app.post_json("/api/v1/auth/register", &json!({"email": hidden, "password": PASSWORD})).await, 422, "invalid_email").await;
        }
        problem(app.post_json("/api/v1/auth/register", &json!({"email": "y@example.com", "password": PASSWORD, "first_name": "Ad\u{200D}a"})).await, 422, "validation_failed").await;
    }
}

on_each_database! {
    async fn registering_a_taken_email_answers_like_a_new_one(db: TestDatabase) {
        let app = spawn_app_with(db, |c| c.auth.registration = tessera::config::Registration::Open).await;
        app.create_user("taken@example.com", PASSWORD, &["admin"], None).await;
        let fresh = app.post_json("/api/v1/auth/register", &json!({"email": "free@example.com", "password": PASSWORD})).await;
        let taken = app.post_json("/api/v1/auth/register", &json!({"email": "TAKEN@example.com", "password": "another long password"})).await;
        assert_eq!(fresh.status(), taken.status());
        assert_eq!(fresh.status(), 202);
        let fresh: serde_json::Value = fresh.json().await.expect("JSON");
        let taken: serde_json::Value = taken.json().await.expect("JSON");
        assert_eq!(fresh, taken, "the two answers must not differ");
        // The owner of the taken address is untouched; the attempt is audited.
        app.login("taken@example.com", PASSWORD).await;
        let refused = app.post_json("/api/v1/auth/login", &json!({"login": "taken@example.com", "password": "another long password"})).await;
        problem(refused, 401, "invalid_credentials").await;
        assert!(app.audit_actions().await.contains(&"user.registration_refused".to_owned()));
    }
}

on_each_database! {
    async fn only_active_ordinary_tenants_accept_registrations(db: TestDatabase) {
        let app = spawn_app_with(db, |c| c.auth.registration = tessera::config::Registration::Open).await;
        let body = |tenant: &str| json!({"email": "new@example.com", "password": PASSWORD, "tenant": tenant});
        for slug in ["system", "SYSTEM", "no-such-tenant"] {
            problem(app.post_json("/api/v1/auth/register", &body(slug)).await, 422, "unknown_tenant").await;
        }
        sqlx::query("UPDATE tenants SET active = 0 WHERE slug = 'default'")
            .execute(app.state.db().pool())
            .await
            .expect("disable the default tenant");
        problem(app.post_json("/api/v1/auth/register", &body("default")).await, 422, "unknown_tenant").await;
        let implicit = json!({"email": "new@example.com", "password": PASSWORD});
        problem(app.post_json("/api/v1/auth/register", &implicit).await, 422, "unknown_tenant").await;
        let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email_normalized = 'new@example.com'")
            .fetch_one(app.state.db().pool())
            .await
            .expect("count");
        assert_eq!(accounts, 0, "no account was created");
    }
}

#[tokio::test]
async fn registration_is_closed_by_default() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "new@example.com", "password": PASSWORD}),
        )
        .await;
    problem(response, 403, "registration_closed").await;
}

#[tokio::test]
async fn a_login_flood_beyond_the_queue_is_shed_with_503_while_me_keeps_answering() {
    let app = spawn_app_with(crate::helpers::TestDatabase::sqlite(), |c| {
        c.passwords.max_queued_hashes = 1;
        // Slow hashes, so the flood is still running when the checks below happen.
        c.passwords.argon2_memory_kib = 65_536;
        c.passwords.argon2_iterations = 4;
    })
    .await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let tokens = app.login("ada@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("token").to_owned();

    let app = std::sync::Arc::new(app);
    // Many names at once: one account's checks are bounded on their own, many accounts'
    // only by the pool.
    let flood: Vec<_> = (0..24)
        .map(|n| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                app.post_json(
                    "/api/v1/auth/login",
                    &json!({"login": format!("user{n}@example.com"), "password": "wrong password!"}),
                )
                .await
            })
        })
        .collect();
    // While hashing is saturated, token validation is untouched.
    for _ in 0..20 {
        assert_eq!(
            app.get_bearer("/api/v1/auth/me", &access).await.status(),
            200
        );
    }
    let mut shed = 0;
    for task in flood {
        let response = task.await.expect("task");
        match response.status().as_u16() {
            401 => {}
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                problem(response, 503, "overloaded").await;
                shed += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(shed > 0, "a queue of one cannot hold 24 logins");
}

on_each_database! {
    async fn a_login_verified_against_a_hash_replaced_meanwhile_opens_no_session(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let user = app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let old_hash = tessera::users::password_hash(app.state.db(), &user.id).await.expect("hash").expect("set");
        // An operator resets the password while a login is still checking the old one.
        let new_hash = app.state.passwords().hash("an entirely new secret".into()).await.expect("hash");
        let revoked = tessera::users::set_password_hash(
            app.state.db(),
            &user,
            &new_hash,
            "user.password_reset",
            &tessera::audit::Actor::System,
            &tessera::http::client::RequestMeta::default(),
        )
        .await
        .expect("reset");
        revoked.apply(app.state.sessions());
        let mut conn = app.state.db().pool().acquire().await.expect("connection");
        let recorded = tessera::users::record_login(&mut conn, &user.id, &old_hash, None, tessera_token::unix_now())
            .await
            .expect("query");
        assert!(!recorded, "the login that checked the old hash must fail");
        let stored = tessera::users::password_hash(app.state.db(), &user.id).await.expect("hash").expect("set");
        assert_eq!(stored, new_hash, "and must not write the old password back");
    }
}

#[tokio::test]
async fn a_token_of_another_client_does_not_act_for_the_session() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let tokens = app.login("ada@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("token");
    let mut claims = app
        .state
        .keys()
        .current()
        .verify(access)
        .expect("valid")
        .as_ref()
        .clone();
    claims.client_id = "some-oauth-client".into();
    claims.jti = "another".into();
    let foreign = app
        .state
        .keys()
        .current()
        .signer
        .sign(&claims)
        .expect("signed");
    problem(
        app.get_bearer("/api/v1/auth/me", &foreign).await,
        401,
        "invalid_token",
    )
    .await;
    assert_eq!(
        app.get_bearer("/api/v1/auth/me", access).await.status(),
        200
    );
}
