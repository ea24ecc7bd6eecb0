//! Privilege containment and prompt permission changes: nobody acts on an account or client
//! holding more than they do, on any admin route; a role taken away (from an account, or a
//! permission from a role) stops counting at Tessera at once and at services within a
//! second, and the refreshed token is one services accept.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tessera_client::{AuthError, Verifier};

use crate::helpers::{TestApp, problem, spawn_app, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

/// Stored for accounts that are acted on but never log in (no hashing per account).
const UNUSED_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAA";

/// Creates role `name` granting `permissions` through the API, as `admin`.
async fn create_role(app: &TestApp, admin: &str, name: &str, permissions: Value) {
    let created = app
        .send(
            Method::POST,
            "/api/v1/admin/roles",
            admin,
            Some(json!({ "name": name, "permissions": permissions })),
        )
        .await;
    assert_eq!(created.status(), 201, "role {name}");
}

/// Every admin route that acts on an existing account: method, path after
/// `/api/v1/admin/users/{id}`, body, and the status when the caller may act.
fn user_actions() -> Vec<(Method, &'static str, Option<Value>, u16)> {
    vec![
        (
            Method::PATCH,
            "",
            Some(json!({"last_name": "Changed"})),
            200,
        ),
        (Method::PATCH, "", Some(json!({"roles": []})), 200),
        (Method::PATCH, "", Some(json!({"active": false})), 200),
        (Method::DELETE, "", None, 204),
        (
            Method::POST,
            "/password",
            Some(json!({"new_password": "chosen by someone else"})),
            204,
        ),
        (Method::POST, "/unlock", None, 204),
        (Method::GET, "/sessions", None, 200),
        (Method::POST, "/sessions/revoke-all", None, 200),
    ]
}

/// Every admin route that acts on an existing client, as [`user_actions`] after
/// `/api/v1/admin/clients/{id}`.
fn client_actions() -> Vec<(Method, &'static str, Option<Value>, u16)> {
    vec![
        (Method::PATCH, "", Some(json!({"name": "renamed"})), 200),
        (Method::POST, "/secret", None, 200),
        (Method::PATCH, "", Some(json!({"active": false})), 200),
        (Method::DELETE, "", None, 204),
    ]
}

on_each_database! {
    async fn nobody_acts_on_an_account_or_client_holding_more_than_they_do(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        create_role(&app, &admin, "helpdesk", json!(["users:*", "clients:*", "sessions:*", "profile:*"])).await;
        // Everything a helpdesk does to accounts, but not what a plain `user` holds.
        create_role(&app, &admin, "user_manager", json!(["users:*", "sessions:*"])).await;
        let helpdesk = app.token_for("help@example.com", PASSWORD, &["helpdesk"]).await;
        let manager = app.token_for("mgr@example.com", PASSWORD, &["user_manager"]).await;
        let caller_token = |caller: &str| match caller {
            "admin" => admin.clone(),
            "helpdesk" => helpdesk.clone(),
            _ => manager.clone(),
        };

        // Caller role × target role → whether the caller may act.
        let accounts = [
            ("admin", "admin", true),
            ("admin", "helpdesk", true),
            ("admin", "user", true),
            ("helpdesk", "admin", false),
            ("helpdesk", "helpdesk", true),
            ("helpdesk", "user", true),
            ("user_manager", "user", false),
            ("user_manager", "user_manager", true),
        ];
        let mut n = 0;
        for (caller, target_role, allowed) in accounts {
            for (method, suffix, body, status) in user_actions() {
                n += 1;
                let target = app.create_user(&format!("target{n}@example.com"), "", &[target_role], Some(UNUSED_HASH)).await;
                let path = format!("/api/v1/admin/users/{}{suffix}", target.id);
                let response = app.send(method.clone(), &path, &caller_token(caller), body).await;
                let case = format!("{caller} → {method} {suffix:?} on {target_role}");
                if allowed {
                    assert_eq!(response.status(), status, "{case}");
                    continue;
                }
                problem(response, 403, "target_outranks_caller").await;
                let shown: Value = app.get_bearer(&format!("/api/v1/admin/users/{}", target.id), &admin).await.json().await.expect("JSON");
                assert_eq!((shown["active"].as_bool(), &shown["roles"], &shown["last_name"]), (Some(true), &json!([target_role]), &json!("User")), "{case} changed the account");
            }
        }

        // A client holds its scopes: rotating its secret would hand them over.
        let clients = [
            ("admin", json!(["*:*"]), true),
            ("admin", json!(["tokens:introspect"]), true),
            ("helpdesk", json!(["*:*"]), false),
            ("helpdesk", json!(["tokens:introspect"]), false),
            ("helpdesk", json!(["users:read", "clients:read"]), true),
        ];
        for (caller, scopes, allowed) in clients {
            for (method, suffix, body, status) in client_actions() {
                let (id, _) = app.new_client(&admin, scopes.clone()).await;
                let path = format!("/api/v1/admin/clients/{id}{suffix}");
                let response = app.send(method.clone(), &path, &caller_token(caller), body).await;
                let case = format!("{caller} → {method} {suffix:?} on a client with {scopes}");
                if allowed {
                    assert_eq!(response.status(), status, "{case}");
                    continue;
                }
                let refused = response.status();
                assert_eq!(refused, 403, "{case}");
                let shown: Value = app.get_bearer(&format!("/api/v1/admin/clients/{id}"), &admin).await.json().await.expect("JSON");
                assert_eq!((shown["active"].as_bool(), shown["name"].as_str()), (Some(true), Some("svc")), "{case} changed the client");
            }
        }

        // Reading is not acting: the helpdesk still sees the admin's account.
        let root = app.get_bearer("/api/v1/admin/users?q=root", &helpdesk).await;
        assert_eq!(root.status(), 200);
    }
}

on_each_database! {
    async fn nobody_disables_or_deletes_their_own_account_through_the_admin_api(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let me: Value = app.get_bearer("/api/v1/auth/me", &admin).await.json().await.expect("JSON");
        let path = format!("/api/v1/admin/users/{}", me["user"]["id"].as_str().expect("id"));
        problem(app.send(Method::PATCH, &path, &admin, Some(json!({"active": false}))).await, 409, "cannot_disable_self").await;
        problem(app.send(Method::DELETE, &path, &admin, None).await, 409, "cannot_disable_self").await;
        assert_eq!(app.send(Method::PATCH, &path, &admin, Some(json!({"last_name": "Root"}))).await.status(), 200);
        assert_eq!(app.get_bearer("/api/v1/admin/users", &admin).await.status(), 200, "still an admin");
    }
}

/// A verifier following `app`'s feed (as a client allowed `tokens:introspect`, created by
/// `admin`), once the feed is caught up.
async fn live_verifier(app: &TestApp, admin: &str) -> Verifier {
    let (id, secret) = app.new_client(admin, json!(["tokens:introspect"])).await;
    let config = app.state.config();
    let verifier = Verifier::builder(config.issuer(), config.token.audience.clone())
        .client_credentials(id, secret)
        .build()
        .await
        .expect("verifier builds");
    let deadline = Instant::now() + Duration::from_secs(5);
    while verifier.revocations_live() != Some(true) {
        assert!(Instant::now() < deadline, "the feed never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    verifier
}

/// Waits until `verifier` refuses `token` as revoked; fails past a second.
async fn refused_within_a_second(verifier: &Verifier, token: &str) {
    let changed_at = Instant::now();
    loop {
        match verifier.verify(token).await {
            Err(AuthError::Revoked) => break,
            Ok(_) => {}
            Err(other) => panic!("refused for another reason: {other:?}"),
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(1),
            "still accepted after a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Refreshes `login`'s session; returns the new access token.
async fn refreshed(app: &TestApp, login: &Value) -> String {
    let response = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": login["refresh_token"], "delivery": "body"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn a_role_taken_away_ends_the_old_token_at_tessera_at_once_and_at_services_within_a_second() {
    let app = spawn_app().await;
    let root = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let verifier = live_verifier(&app, &root).await;
    let ada = app
        .create_user("ada@example.com", PASSWORD, &["admin"], None)
        .await;
    let login = app.login("ada@example.com", PASSWORD).await;
    let old = login["access_token"].as_str().expect("token");
    assert_eq!(
        app.get_bearer("/api/v1/admin/users", old).await.status(),
        200
    );
    verifier
        .verify(old)
        .await
        .expect("accepted before the change");

    let path = format!("/api/v1/admin/users/{}", ada.id);
    let patched = app
        .send(Method::PATCH, &path, &root, Some(json!({"roles": []})))
        .await;
    assert_eq!(patched.status(), 200);

    // Tessera itself decides with the current roles, at once.
    problem(
        app.get_bearer("/api/v1/admin/users", old).await,
        403,
        "forbidden",
    )
    .await;
    let me: Value = app
        .get_bearer("/api/v1/auth/me", old)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(me["roles"], json!([]));
    refused_within_a_second(&verifier, old).await;

    // Refreshing right away yields a token with the new scope that services accept.
    let new = refreshed(&app, &login).await;
    let claims = verifier
        .verify(&new)
        .await
        .expect("the new token is accepted");
    assert!(
        claims.roles.is_empty() && claims.scope.is_empty(),
        "{claims:?}"
    );
}

#[tokio::test]
async fn a_permission_taken_from_a_role_ends_its_holders_old_tokens() {
    let app = spawn_app().await;
    let root = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let verifier = live_verifier(&app, &root).await;
    create_role(
        &app,
        &root,
        "auditor",
        json!(["audit:read", "reports:read"]),
    )
    .await;
    app.create_user("ada@example.com", PASSWORD, &["auditor"], None)
        .await;
    let bystander = app
        .create_user("bob@example.com", PASSWORD, &["user"], None)
        .await;
    let login = app.login("ada@example.com", PASSWORD).await;
    let old = login["access_token"].as_str().expect("token");
    let bob = app.login("bob@example.com", PASSWORD).await;
    assert_eq!(app.get_bearer("/api/v1/audit", old).await.status(), 200);

    let narrowed = app
        .send(
            Method::PATCH,
            "/api/v1/admin/roles/auditor",
            &root,
            Some(json!({"permissions": ["reports:read"]})),
        )
        .await;
    assert_eq!(narrowed.status(), 200);

    problem(app.get_bearer("/api/v1/audit", old).await, 403, "forbidden").await;
    refused_within_a_second(&verifier, old).await;
    let new = refreshed(&app, &login).await;
    let claims = verifier
        .verify(&new)
        .await
        .expect("the new token is accepted");
    assert_eq!(claims.scope, "reports:read");
    verifier
        .verify(bob["access_token"].as_str().expect("token"))
        .await
        .unwrap_or_else(|e| panic!("{} holds no such role: {e:?}", bystander.email));

    // Giving a role more ends nobody's token.
    let widened = app
        .send(
            Method::PATCH,
            "/api/v1/admin/roles/auditor",
            &root,
            Some(json!({"permissions": ["reports:read", "reports:export"]})),
        )
        .await;
    assert_eq!(widened.status(), 200);
    let entries: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM revocations WHERE kind = 'subject'")
            .fetch_one(app.state.db().pool())
            .await
            .expect("count");
    assert_eq!(entries, 1, "one entry for the one holder, when narrowed");
}

/// A client-credentials token for `id`.
async fn client_token(app: &TestApp, id: &str, secret: &str) -> String {
    let response = app
        .client
        .post(app.url("/oauth2/token"))
        .header("authorization", crate::helpers::basic(id, secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn a_scope_taken_from_a_client_ends_its_old_tokens_and_the_next_one_is_accepted() {
    let app = spawn_app().await;
    let root = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let verifier = live_verifier(&app, &root).await;
    let (id, secret) = app
        .new_client(&root, json!(["reports:read", "reports:export"]))
        .await;
    let old = client_token(&app, &id, &secret).await;
    verifier
        .verify(&old)
        .await
        .expect("accepted before the change");

    let narrowed = app
        .send(
            Method::PATCH,
            &format!("/api/v1/admin/clients/{id}"),
            &root,
            Some(json!({"scopes": ["reports:read"]})),
        )
        .await;
    assert_eq!(narrowed.status(), 200);
    refused_within_a_second(&verifier, &old).await;
    let new = client_token(&app, &id, &secret).await;
    let claims = verifier
        .verify(&new)
        .await
        .expect("the new token is accepted");
    assert_eq!(claims.scope, "reports:read");
}

on_each_database! {
    async fn nobody_edits_or_deletes_a_role_granting_more_than_they_hold(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        create_role(&app, &admin, "role_keeper", json!(["roles:*", "etl:*"])).await;
        create_role(&app, &admin, "finance", json!(["billing:*", "etl:read"])).await;
        create_role(&app, &admin, "etl_reader", json!(["etl:read"])).await;
        let keeper = app.token_for("keeper@example.com", PASSWORD, &["role_keeper"]).await;

        // Stripping `billing:*` from finance's holders, or deleting the role, is acting on
        // permissions the caller never held.
        let narrowed = app
            .send(Method::PATCH, "/api/v1/admin/roles/finance", &keeper, Some(json!({"permissions": ["etl:read"]})))
            .await;
        problem(narrowed, 403, "target_outranks_caller").await;
        let renamed = app
            .send(Method::PATCH, "/api/v1/admin/roles/finance", &keeper, Some(json!({"description": "mine now"})))
            .await;
        problem(renamed, 403, "target_outranks_caller").await;
        problem(app.send(Method::DELETE, "/api/v1/admin/roles/finance", &keeper, None).await, 403, "target_outranks_caller").await;
        let role: Value = app.send(Method::GET, "/api/v1/admin/roles/finance", &admin, None).await.json().await.expect("JSON");
        assert_eq!(role["permissions"], json!(["billing:*", "etl:read"]), "nothing changed");

        // A role within what the caller holds stays theirs to edit and delete.
        let edited = app
            .send(Method::PATCH, "/api/v1/admin/roles/etl_reader", &keeper, Some(json!({"permissions": ["etl:read", "etl:list"]})))
            .await;
        assert_eq!(edited.status(), 200);
        assert_eq!(app.send(Method::DELETE, "/api/v1/admin/roles/etl_reader", &keeper, None).await.status(), 204);
    }
}

#[tokio::test]
async fn a_rotated_secret_takes_the_tokens_it_obtained_with_it() {
    let app = spawn_app().await;
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let (gate_id, gate_secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
    let (id, secret) = app.new_client(&admin, json!(["reports:read"])).await;
    let leaked = client_token(&app, &id, &secret).await;
    let introspect = |token: String| {
        let app = &app;
        let gate = crate::helpers::basic(&gate_id, &gate_secret);
        async move {
            let answer: Value = app
                .client
                .post(app.url("/oauth2/introspect"))
                .header("authorization", gate)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={token}"))
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("JSON");
            answer["active"].as_bool()
        }
    };
    assert_eq!(introspect(leaked.clone()).await, Some(true));
    let rotated: Value = app
        .send(
            Method::POST,
            &format!("/api/v1/admin/clients/{id}/secret"),
            &admin,
            None,
        )
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        introspect(leaked).await,
        Some(false),
        "a token of the old secret"
    );
    let fresh = client_token(
        &app,
        &id,
        rotated["client_secret"].as_str().expect("secret"),
    )
    .await;
    assert_eq!(
        introspect(fresh).await,
        Some(true),
        "a token of the new secret"
    );
}
