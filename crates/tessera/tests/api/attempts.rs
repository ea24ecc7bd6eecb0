//! Every password check counts under one per-account lockout: logins by email or username,
//! the current password behind a session, MFA re-authentication. Only wrong passwords count:
//! never an overload, never a burst of right ones; and one session cannot occupy the
//! hashing pool.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, problem, spawn_app_with};

const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "wrong password!";

async fn login(app: &TestApp, login: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/login",
        &json!({ "login": login, "password": password, "delivery": "body" }),
    )
    .await
}

/// Asserts the lockout's answer: the one a locked login gets, with `Retry-After`.
async fn assert_locked(response: reqwest::Response) {
    let status = response.status();
    assert!(
        response.headers().contains_key("retry-after"),
        "{status} {:?}",
        response.text().await
    );
    problem(response, 429, "login_delayed").await;
}

/// Ada (email `ada@example.com`, username `ada`) on an app locking after three failures.
async fn locking_app() -> TestApp {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| c.rate_limits.lockout_after = 3).await;
    create_ada(&app).await;
    app
}

/// Creates ada with her username and `PASSWORD`.
pub async fn create_ada(app: &TestApp) {
    use tessera::audit::Actor;
    use tessera::http::client::RequestMeta;
    use tessera::tenants::DEFAULT_TENANT_ID;
    use tessera::users::{self, Email, NewUser};
    let hash = app
        .state
        .passwords()
        .hash(PASSWORD.to_owned())
        .await
        .expect("hash");
    let new = NewUser {
        tenant_id: DEFAULT_TENANT_ID.into(),
        email: Email::parse("ada@example.com").expect("email"),
        username: Some("ada".into()),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        password_hash: Some(hash),
        roles: vec!["user".into()],
    };
    let mut tx = app.state.db().pool().begin().await.expect("tx");
    users::create(&mut tx, &new, &Actor::System, &RequestMeta::default())
        .await
        .expect("user created");
    tx.commit().await.expect("commit");
}

async fn access_token(app: &TestApp) -> String {
    let response = login(app, "ada@example.com", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn a_lockout_by_email_holds_for_the_username_and_the_reverse() {
    let app = locking_app().await;
    for _ in 0..3 {
        assert_eq!(login(&app, "ada@example.com", WRONG).await.status(), 401);
    }
    assert_locked(login(&app, "ada", PASSWORD).await).await;
    assert_locked(login(&app, " ADA@example.com", PASSWORD).await).await;

    let app = locking_app().await;
    for name in ["ada", "ADA", "ada@example.com"] {
        assert_eq!(login(&app, name, WRONG).await.status(), 401);
    }
    assert_locked(login(&app, "ada@example.com", PASSWORD).await).await;
}

#[tokio::test]
async fn unknown_names_lock_per_normalized_name_like_accounts() {
    let app = locking_app().await;
    for name in [
        "ghost@example.com",
        "Ghost@Example.com",
        " ghost@example.com ",
    ] {
        assert_eq!(login(&app, name, WRONG).await.status(), 401);
    }
    let ghost = login(&app, "GHOST@example.com", WRONG).await;
    let ada_app = locking_app().await;
    for _ in 0..3 {
        assert_eq!(login(&ada_app, "ada", WRONG).await.status(), 401);
    }
    let ada = login(&ada_app, "ada", WRONG).await;
    assert_eq!(
        ghost.headers().get("retry-after"),
        ada.headers().get("retry-after")
    );
    let ghost = problem(ghost, 429, "login_delayed").await;
    let ada = problem(ada, 429, "login_delayed").await;
    assert_eq!(
        ghost["detail"], ada["detail"],
        "known and unknown look alike"
    );
    // Another unknown name is not locked by the first.
    assert_eq!(login(&app, "casper@example.com", WRONG).await.status(), 401);
}

#[tokio::test]
async fn wrong_current_passwords_lock_the_password_change_like_a_login() {
    let app = locking_app().await;
    let access = access_token(&app).await;
    let change = |current: &str| {
        app.send(
            reqwest::Method::POST,
            "/api/v1/auth/password",
            &access,
            Some(json!({ "current_password": current, "new_password": "a brand new password" })),
        )
    };
    for _ in 0..3 {
        problem(change(WRONG).await, 403, "invalid_credentials").await;
    }
    assert_locked(change(PASSWORD).await).await;
    assert_locked(login(&app, "ada", PASSWORD).await).await;
    let actions = app.audit_actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "password.change_failed")
            .count(),
        3
    );
    assert!(actions.iter().any(|a| a == "login.lockout_started"));
}

#[tokio::test]
async fn wrong_passwords_at_mfa_setup_lock_the_account() {
    let app = locking_app().await;
    let access = access_token(&app).await;
    let setup = |password: &str| {
        app.send(
            reqwest::Method::POST,
            "/api/v1/auth/mfa/totp/setup",
            &access,
            Some(json!({ "password": password })),
        )
    };
    for _ in 0..3 {
        problem(setup(WRONG).await, 401, "invalid_credentials").await;
    }
    assert_locked(setup(PASSWORD).await).await;
    assert_locked(login(&app, "ada@example.com", PASSWORD).await).await;
    let actions = app.audit_actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "mfa.setup_failed").count(),
        3
    );
}

#[tokio::test]
async fn a_burst_of_right_passwords_never_locks_the_account() {
    let app = Arc::new(locking_app().await);
    let logins = (0..16).map(|_| {
        let app = Arc::clone(&app);
        tokio::spawn(async move { login(&app, "ada", PASSWORD).await.status().as_u16() })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(logins)
        .await
        .into_iter()
        .map(|status| status.expect("task"))
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Nothing was counted: two wrong passwords stay below the threshold of three.
    for _ in 0..2 {
        assert_eq!(login(&app, "ada", WRONG).await.status(), 401);
    }
    assert_eq!(login(&app, "ada", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn one_session_cannot_occupy_the_hashing_pool() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.passwords.max_queued_hashes = 2;
        c.rate_limits.lockout_after = 1_000;
    })
    .await;
    create_ada(&app).await;
    app.create_user("bob@example.com", PASSWORD, &["user"], None)
        .await;
    let access = access_token(&app).await;
    let app = Arc::new(app);
    let flood: Vec<_> = (0..60)
        .map(|_| {
            let (app, access) = (Arc::clone(&app), access.clone());
            tokio::spawn(async move {
                app.send(
                    reqwest::Method::POST,
                    "/api/v1/auth/password",
                    &access,
                    Some(json!({ "current_password": WRONG, "new_password": "a brand new one" })),
                )
                .await
            })
        })
        .collect();
    tokio::task::yield_now().await;
    for _ in 0..5 {
        assert_eq!(
            login(&app, "bob@example.com", PASSWORD).await.status(),
            200,
            "another account's login is never shed for one session's flood"
        );
    }
    let mut busy = 0;
    for task in flood {
        let response = task.await.expect("task");
        match response.status().as_u16() {
            403 => {}
            429 => {
                problem(response, 429, "too_many_attempts").await;
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(busy > 0, "sixty at once are more than may wait");
}

#[tokio::test]
async fn an_overloaded_hashing_pool_never_counts_as_a_failure() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.passwords.max_queued_hashes = 1;
        // Slow hashes, so the pool is still full while ada tries.
        c.passwords.argon2_memory_kib = 65_536;
        c.passwords.argon2_iterations = 4;
        c.rate_limits.lockout_after = 2;
    })
    .await;
    create_ada(&app).await;
    // Every hashing place taken, straight on the service.
    let places = std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    let fill: Vec<_> = (0..places)
        .map(|_| {
            let passwords = Arc::clone(app.state.passwords());
            tokio::spawn(async move { passwords.hash("a long enough password".into()).await })
        })
        .collect();
    tokio::task::yield_now().await;
    for _ in 0..3 {
        let shed = login(&app, "ada", WRONG).await;
        assert_eq!(shed.headers()["retry-after"], "1");
        problem(shed, 503, "overloaded").await;
    }
    for task in fill {
        task.await.expect("task").expect("hashed");
    }
    assert_eq!(
        login(&app, "ada", PASSWORD).await.status(),
        200,
        "three sheds are no failures"
    );
}
