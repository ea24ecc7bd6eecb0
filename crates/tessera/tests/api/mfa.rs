//! TOTP second factor: enrollment with a QR code, codes computed independently (PyOTP when
//! installed, which CI requires), one use per time step, one step of skew, single-use
//! recovery codes, bounded attempts, and the switch that turns it all off.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

/// The code for base32 `secret` at `unix`, from PyOTP (an independent implementation).
fn code(secret: &str, unix: i64) -> String {
    let script = format!("import pyotp; print(pyotp.TOTP('{secret}').at({unix}))");
    match Command::new("python3").args(["-c", &script]).output() {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_owned(),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "pyotp must be installed in CI (.ci/run installs it)"
            );
            eprintln!("pyotp missing (pip install pyotp); using Tessera's own TOTP");
            let bytes = decode_base32(secret);
            let step = u64::try_from(tessera::auth::mfa::totp::step_at(unix)).expect("step");
            tessera::auth::mfa::totp::format_code(tessera::auth::mfa::totp::hotp(&bytes, step))
        }
    }
}

fn decode_base32(text: &str) -> Vec<u8> {
    let (mut buffer, mut bits, mut out) = (0_u32, 0, Vec::new());
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32"),
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).expect("byte"));
        }
    }
    out
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("sent")
}

async fn login(app: &TestApp) -> Value {
    post(
        app,
        "/api/v1/auth/login",
        None,
        json!({"login": "ada@example.com", "password": PASSWORD, "delivery": "body"}),
    )
    .await
    .json()
    .await
    .expect("JSON")
}

/// Enrolls ada; returns her base32 secret, recovery codes and the time step used.
async fn enroll(app: &TestApp) -> (String, Vec<String>, i64) {
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let token = login(app).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    problem(
        post(
            app,
            "/api/v1/auth/mfa/totp/setup",
            Some(&token),
            json!({"password": "wrong password!"}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    let setup = post(
        app,
        "/api/v1/auth/mfa/totp/setup",
        Some(&token),
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(setup.status(), 200);
    assert_eq!(setup.headers()["cache-control"], "no-store");
    let setup: Value = setup.json().await.expect("JSON");
    let secret = setup["secret"].as_str().expect("secret").to_owned();
    let uri = setup["otpauth_uri"].as_str().expect("uri");
    assert!(
        uri.starts_with("otpauth://totp/Tessera%3Aada%40example.com?secret="),
        "{uri}"
    );
    assert!(uri.contains("&issuer=Tessera&algorithm=SHA1&digits=6&period=30"));
    assert!(
        setup["qr_svg"]
            .as_str()
            .expect("qr")
            .starts_with("data:image/svg+xml;base64,")
    );

    problem(
        post(
            app,
            "/api/v1/auth/mfa/totp/confirm",
            Some(&token),
            json!({"code": "000000"}),
        )
        .await,
        401,
        "invalid_code",
    )
    .await;
    assert!(
        app.audit_actions()
            .await
            .iter()
            .any(|a| a == "mfa.confirm_failed")
    );
    let now = app.clock.now();
    let confirmed = post(
        app,
        "/api/v1/auth/mfa/totp/confirm",
        Some(&token),
        json!({"code": code(&secret, now)}),
    )
    .await;
    assert_eq!(confirmed.status(), 200);
    let confirmed: Value = confirmed.json().await.expect("JSON");
    let recovery: Vec<String> =
        serde_json::from_value(confirmed["recovery_codes"].clone()).expect("codes");
    assert_eq!(recovery.len(), 10);
    (secret, recovery, tessera::auth::mfa::totp::step_at(now))
}

#[tokio::test]
async fn enrolled_logins_need_a_code_once_per_step_with_one_step_of_skew() {
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    let (secret, _, confirmed_step) = enroll(&app).await;

    let challenge = login(&app).await;
    assert_eq!(challenge["mfa_required"], true);
    assert!(
        challenge.get("access_token").is_none(),
        "no token before the code"
    );
    let mfa_token = challenge["mfa_token"].as_str().expect("mfa token");
    // The code of the step that confirmed enrollment was used: refused.
    let used = code(&secret, confirmed_step * 30);
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": mfa_token, "code": used}),
        )
        .await,
        401,
        "invalid_code",
    )
    .await;
    // The next step's code is within the skew and new.
    let next = code(&secret, (confirmed_step + 1) * 30);
    let done = post(
        &app,
        "/api/v1/auth/mfa/verify",
        None,
        json!({"mfa_token": mfa_token, "code": next}),
    )
    .await;
    assert_eq!(done.status(), 200);
    let tokens: Value = done.json().await.expect("JSON");
    let claims = app
        .state
        .keys()
        .current()
        .verify(tokens["access_token"].as_str().expect("token"))
        .expect("valid");
    assert_eq!(claims.amr, ["pwd", "otp"]);
    // The challenge is spent, and the same code does not open a second login.
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": mfa_token, "code": next}),
        )
        .await,
        401,
        "invalid_mfa_token",
    )
    .await;
    let again = login(&app).await["mfa_token"]
        .as_str()
        .expect("token")
        .to_owned();
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": again, "code": next}),
        )
        .await,
        401,
        "invalid_code",
    )
    .await;
    // Two steps away is outside the skew.
    let far = code(&secret, app.clock.now() + 90);
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": again, "code": far}),
        )
        .await,
        401,
        "invalid_code",
    )
    .await;
    let actions = app.audit_actions().await;
    for action in ["mfa.enabled", "login.mfa_required", "login.mfa_failed"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

#[tokio::test]
async fn recovery_codes_work_once_and_challenges_allow_five_attempts() {
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    let (secret, recovery, _) = enroll(&app).await;
    let token = login(&app).await["mfa_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let done = post(
        &app,
        "/api/v1/auth/mfa/verify",
        None,
        json!({"mfa_token": token, "recovery_code": recovery[0].to_uppercase()}),
    )
    .await;
    assert_eq!(done.status(), 200, "recovery codes ignore case");
    let token = login(&app).await["mfa_token"]
        .as_str()
        .expect("token")
        .to_owned();
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": token, "recovery_code": recovery[0]}),
        )
        .await,
        401,
        "invalid_code",
    )
    .await;

    for remaining in ["3", "2", "1", "0"] {
        let wrong = post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": token, "code": "123456"}),
        )
        .await;
        assert_eq!(wrong.headers()["x-ratelimit-limit"], "5");
        assert_eq!(wrong.headers()["x-ratelimit-remaining"], remaining);
        assert!(wrong.headers().contains_key("x-ratelimit-reset"));
        problem(wrong, 401, "invalid_code").await;
    }
    // Five attempts spent: even the right code is refused now.
    let right = code(&secret, app.clock.now() + 30);
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": token, "code": right}),
        )
        .await,
        401,
        "invalid_mfa_token",
    )
    .await;
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": "tsm_forged", "code": right}),
        )
        .await,
        401,
        "invalid_mfa_token",
    )
    .await;
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": token}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn disabling_needs_the_password_and_a_code() {
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    let (secret, recovery, _) = enroll(&app).await;
    let challenge = login(&app).await["mfa_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let tokens: Value = post(
        &app,
        "/api/v1/auth/mfa/verify",
        None,
        json!({"mfa_token": challenge, "recovery_code": recovery[1]}),
    )
    .await
    .json()
    .await
    .expect("JSON");
    let access = tokens["access_token"].as_str().expect("token");
    let code_now = code(&secret, app.clock.now() + 30);
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/totp/disable",
            Some(access),
            json!({"password": "wrong password!", "code": code_now}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/totp/setup",
            Some(access),
            json!({"password": PASSWORD}),
        )
        .await,
        409,
        "mfa_already_enabled",
    )
    .await;
    let later = code(&secret, app.clock.now() + 30);
    assert_eq!(
        post(
            &app,
            "/api/v1/auth/mfa/totp/disable",
            Some(access),
            json!({"password": PASSWORD, "code": later})
        )
        .await
        .status(),
        204
    );
    assert!(
        login(&app).await.get("access_token").is_some(),
        "a password is enough again"
    );
}

#[tokio::test]
async fn with_the_feature_off_there_is_no_mfa_at_all() {
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    let (_, _, _) = enroll(&app).await;
    drop(app);
    let app = spawn_app_with(TestDatabase::sqlite(), |c| c.features.mfa_enabled = false).await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let token = login(&app).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/totp/setup",
            Some(&token),
            json!({"password": PASSWORD}),
        )
        .await,
        404,
        "mfa_disabled",
    )
    .await;
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": "tsm_x", "code": "123456"}),
        )
        .await,
        404,
        "mfa_disabled",
    )
    .await;
}

/// Completes the enrollment a login's challenge `token` asks for: the secret, and the
/// confirmation's answer.
async fn enroll_with_challenge(app: &TestApp, token: &str) -> (String, Value) {
    let setup: Value = post(
        app,
        "/api/v1/auth/mfa/enroll/setup",
        None,
        json!({"mfa_token": token}),
    )
    .await
    .json()
    .await
    .expect("JSON");
    let secret = setup["secret"].as_str().expect("secret").to_owned();
    let confirmed = post(
        app,
        "/api/v1/auth/mfa/enroll/confirm",
        None,
        json!({"mfa_token": token, "code": code(&secret, app.clock.now())}),
    )
    .await;
    assert_eq!(confirmed.status(), 200);
    (secret, confirmed.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_tenant_requiring_mfa_for_a_role_makes_its_holders_enroll_first() {
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    app.create_user("ada@example.com", PASSWORD, &["admin"], None)
        .await;
    app.create_user("bob@example.com", PASSWORD, &["user"], None)
        .await;
    sqlx::query("UPDATE tenants SET mfa_required_roles = '[\"admin\"]' WHERE id = $1")
        .bind(tessera::tenants::DEFAULT_TENANT_ID)
        .execute(app.state.db().pool())
        .await
        .expect("policy");
    let bob: Value = post(
        &app,
        "/api/v1/auth/login",
        None,
        json!({"login": "bob@example.com", "password": PASSWORD, "delivery": "body"}),
    )
    .await
    .json()
    .await
    .expect("JSON");
    assert!(
        bob.get("access_token").is_some(),
        "other roles are not asked"
    );

    let first = login(&app).await;
    assert_eq!(first["mfa_enrollment_required"], true);
    assert!(first.get("access_token").is_none());
    let token = first["mfa_token"].as_str().expect("token");
    // An enrollment challenge does not complete a login.
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": token, "code": "123456"}),
        )
        .await,
        401,
        "invalid_mfa_token",
    )
    .await;
    let (secret, confirmed) = enroll_with_challenge(&app, token).await;
    let secret = secret.as_str();
    assert_eq!(
        confirmed["recovery_codes"].as_array().expect("codes").len(),
        10
    );
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/enroll/setup",
            None,
            json!({"mfa_token": token}),
        )
        .await,
        401,
        "invalid_mfa_token",
    )
    .await;

    let second = login(&app).await;
    assert_eq!(second["mfa_required"], true);
    let done = post(
        &app,
        "/api/v1/auth/mfa/verify",
        None,
        json!({"mfa_token": second["mfa_token"], "code": code(secret, app.clock.now() + 30)}),
    )
    .await;
    assert_eq!(done.status(), 200);
}

#[tokio::test]
async fn a_password_reset_ends_logins_waiting_for_a_code() {
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    let (secret, _, _) = enroll(&app).await;
    let token = login(&app).await["mfa_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let user = tessera::users::find_by_email(
        app.state.db(),
        tessera::tenants::DEFAULT_TENANT_ID,
        &tessera::users::Email::parse("ada@example.com").expect("email"),
    )
    .await
    .expect("user");
    let hash = app
        .state
        .passwords()
        .hash("a brand new passphrase".to_owned())
        .await
        .expect("hash");
    let revoked = tessera::users::set_password_hash(
        app.state.db(),
        &user,
        &hash,
        "user.password_reset",
        &tessera::audit::Actor::System,
        &tessera::http::client::RequestMeta::default(),
    )
    .await
    .expect("reset");
    revoked.apply(app.state.sessions());
    let code_now = code(&secret, app.clock.now() + 30);
    problem(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": token, "code": code_now}),
        )
        .await,
        401,
        "invalid_mfa_token",
    )
    .await;
}

on_each_database! {
    async fn an_admin_disabling_an_account_ends_its_logins_waiting_for_a_code(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let (secret, _, _) = enroll(&app).await;
        let pending = login(&app).await["mfa_token"].as_str().expect("mfa token").to_owned();
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        let user = tessera::users::find_by_email(
            app.state.db(),
            tessera::tenants::DEFAULT_TENANT_ID,
            &tessera::users::Email::parse("ada@example.com").expect("email"),
        )
        .await
        .expect("user");

        let disabled = app
            .send(
                reqwest::Method::PATCH,
                &format!("/api/v1/admin/users/{}", user.id),
                &admin,
                Some(json!({"active": false})),
            )
            .await;
        assert_eq!(disabled.status(), 200);

        // The challenge itself is gone, not merely refused for a disabled account.
        let verify = json!({"mfa_token": pending, "code": code(&secret, app.clock.now() + 30)});
        let answer = post(&app, "/api/v1/auth/mfa/verify", None, verify).await;
        problem(answer, 401, "invalid_mfa_token").await;
    }
}

#[tokio::test]
async fn wrong_codes_count_per_account_across_fresh_challenges() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| c.rate_limits.lockout_after = 3).await;
    let (_, _, _) = enroll(&app).await;
    for _ in 0..3 {
        let token = login(&app).await["mfa_token"]
            .as_str()
            .expect("token")
            .to_owned();
        problem(
            post(
                &app,
                "/api/v1/auth/mfa/verify",
                None,
                json!({"mfa_token": token, "code": "000000"}),
            )
            .await,
            401,
            "invalid_code",
        )
        .await;
    }
    // A new challenge does not buy new guesses.
    let token = login(&app).await["mfa_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let delayed = post(
        &app,
        "/api/v1/auth/mfa/verify",
        None,
        json!({"mfa_token": token, "code": "000000"}),
    )
    .await;
    assert!(delayed.headers().contains_key("retry-after"));
    problem(delayed, 429, "login_delayed").await;
}

/// Ada enrolled, signed in with a recovery code; her secret and access token.
async fn enrolled_session(app: &TestApp) -> (String, String) {
    let (secret, recovery, _) = enroll(app).await;
    let challenge = login(app).await["mfa_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let tokens: Value = post(
        app,
        "/api/v1/auth/mfa/verify",
        None,
        json!({"mfa_token": challenge, "recovery_code": recovery[0]}),
    )
    .await
    .json()
    .await
    .expect("JSON");
    let access = tokens["access_token"].as_str().expect("token").to_owned();
    (secret, access)
}

async fn assert_locked(response: reqwest::Response) {
    assert!(response.headers().contains_key("retry-after"));
    problem(response, 429, "login_delayed").await;
}

#[tokio::test]
async fn wrong_codes_at_disable_count_under_the_accounts_code_lockout() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| c.rate_limits.lockout_after = 3).await;
    let (secret, access) = enrolled_session(&app).await;
    for _ in 0..3 {
        problem(
            post(
                &app,
                "/api/v1/auth/mfa/totp/disable",
                Some(&access),
                json!({"password": PASSWORD, "code": "000000"}),
            )
            .await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    let right = code(&secret, app.clock.now() + 30);
    assert_locked(
        post(
            &app,
            "/api/v1/auth/mfa/totp/disable",
            Some(&access),
            json!({"password": PASSWORD, "code": right}),
        )
        .await,
    )
    .await;
    // The same count guards the login's second step.
    let challenge = login(&app).await["mfa_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_locked(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": challenge, "code": right}),
        )
        .await,
    )
    .await;
    let actions = app.audit_actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "mfa.disable_failed")
            .count(),
        3
    );
    assert!(actions.iter().any(|a| a == "mfa.lockout_started"));
}

#[tokio::test]
async fn wrong_passwords_at_disable_lock_the_password_like_a_login() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| c.rate_limits.lockout_after = 3).await;
    let (secret, access) = enrolled_session(&app).await;
    for _ in 0..3 {
        problem(
            post(
                &app,
                "/api/v1/auth/mfa/totp/disable",
                Some(&access),
                json!({"password": "wrong password!", "code": "000000"}),
            )
            .await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    let right = code(&secret, app.clock.now() + 30);
    assert_locked(
        post(
            &app,
            "/api/v1/auth/mfa/totp/disable",
            Some(&access),
            json!({"password": PASSWORD, "code": right}),
        )
        .await,
    )
    .await;
    assert_locked(
        post(
            &app,
            "/api/v1/auth/login",
            None,
            json!({"login": "ada@example.com", "password": PASSWORD}),
        )
        .await,
    )
    .await;
}

#[tokio::test]
async fn an_unlock_clears_the_wrong_code_count_too() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| c.rate_limits.lockout_after = 3).await;
    let (secret, _, _) = enroll(&app).await;
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let challenge = || async {
        login(&app).await["mfa_token"]
            .as_str()
            .expect("token")
            .to_owned()
    };
    for _ in 0..3 {
        let token = challenge().await;
        let wrong = post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": token, "code": "000000"}),
        )
        .await;
        problem(wrong, 401, "invalid_code").await;
    }
    let token = challenge().await;
    let right = code(&secret, app.clock.now() + 30);
    assert_locked(
        post(
            &app,
            "/api/v1/auth/mfa/verify",
            None,
            json!({"mfa_token": token, "code": right}),
        )
        .await,
    )
    .await;
    let found: Value = app
        .get_bearer("/api/v1/admin/users?q=ada", &admin)
        .await
        .json()
        .await
        .expect("JSON");
    let id = found["items"][0]["id"].as_str().expect("id");
    assert_eq!(
        app.post_bearer(&format!("/api/v1/admin/users/{id}/unlock"), &admin)
            .await
            .status(),
        204
    );
    let token = challenge().await;
    let verified = post(
        &app,
        "/api/v1/auth/mfa/verify",
        None,
        json!({"mfa_token": token, "code": right}),
    )
    .await;
    assert_eq!(verified.status(), 200);
}

#[tokio::test]
async fn an_older_enrollment_challenge_after_mfa_was_confirmed_is_a_conflict_not_a_500() {
    let app = spawn_app_with(TestDatabase::sqlite(), |_| {}).await;
    app.create_user("ada@example.com", PASSWORD, &["admin"], None)
        .await;
    sqlx::query("UPDATE tenants SET mfa_required_roles = '[\"admin\"]' WHERE id = $1")
        .bind(tessera::tenants::DEFAULT_TENANT_ID)
        .execute(app.state.db().pool())
        .await
        .expect("policy");
    let older = login(&app).await;
    let newer = login(&app).await;
    let older = older["mfa_token"].as_str().expect("older challenge");
    let newer = newer["mfa_token"].as_str().expect("newer challenge");
    enroll_with_challenge(&app, newer).await;
    let again = post(
        &app,
        "/api/v1/auth/mfa/enroll/setup",
        None,
        json!({"mfa_token": older}),
    )
    .await;
    problem(again, 409, "mfa_already_enabled").await;
}
