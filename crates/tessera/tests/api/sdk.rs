//! `tessera-client` against a real Tessera: the example axum service refuses a revoked
//! session within a second, picks up a key rotation without a restart, checks permissions
//! from the token, and introspection mode fails closed.

use std::time::{Duration, Instant};

use serde_json::json;
use tessera::keys::store;
use tessera::master::{Generate, MasterKey};
use tessera_client::{AuthError, Verifier};
use tessera_token::{Algorithm, unix_now};

use crate::helpers::{TestApp, spawn_app};

const PASSWORD: &str = "correct horse battery";

/// A verifier for `app`'s tokens, following its feed as a client allowed
/// `tokens:introspect`; and an admin's token.
async fn verifier(
    app: &TestApp,
    configure: impl FnOnce(tessera_client::Builder) -> tessera_client::Builder,
) -> (Verifier, String) {
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    let (id, secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
    let config = app.state.config();
    let builder = Verifier::builder(config.issuer(), config.token.audience.clone())
        .client_credentials(id, secret);
    let verifier = configure(builder).build().await.expect("verifier builds");
    (verifier, admin)
}

/// Serves the example service; returns its base URL.
async fn serve_example(verifier: Verifier) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        axum::serve(listener, tessera_example_axum_service::router(verifier))
            .await
            .expect("serves");
    });
    address
}

async fn call(method: reqwest::Method, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn the_example_service_refuses_a_revoked_session_within_a_second() {
    let app = spawn_app().await;
    let (verifier, _) = verifier(&app, |b| b).await;
    let service = serve_example(verifier.clone()).await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let login = app.login("ada@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().expect("token");
    let whoami = format!("{service}/whoami");
    let answer: serde_json::Value = call(reqwest::Method::GET, &whoami, Some(token))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["sid"], login["session_id"]);

    // Wait for the stream to be caught up, as a readiness check would.
    let deadline = Instant::now() + Duration::from_secs(5);
    while verifier.revocations_live() != Some(true) {
        assert!(Instant::now() < deadline, "the feed never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Logging out in Tessera: the token is unexpired, but the service must refuse it.
    let revoked_at = Instant::now();
    assert_eq!(
        app.post_bearer("/api/v1/auth/logout", token).await.status(),
        204
    );
    loop {
        let response = call(reqwest::Method::GET, &whoami, Some(token)).await;
        if response.status() == 401 {
            let body: serde_json::Value = response.json().await.expect("problem");
            assert_eq!(body["code"], "token_revoked");
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted after a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "refused only after {:?}",
        revoked_at.elapsed()
    );
    let health: serde_json::Value = call(reqwest::Method::GET, &format!("{service}/healthz"), None)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(health["revocations_live"], true);
}

#[tokio::test]
async fn a_verifier_started_after_a_revocation_refuses_it_from_the_first_request() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", PASSWORD, &["user"], None)
        .await;
    let login = app.login("ada@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().expect("token");
    app.post_bearer("/api/v1/auth/logout", token).await;
    let (verifier, _) = verifier(&app, |b| b).await;
    assert_eq!(
        verifier.verify(token).await.map(|_| ()),
        Err(AuthError::Revoked)
    );
    assert_eq!(verifier.revocation_count(), 1);
}

#[tokio::test]
async fn permissions_come_from_the_token_and_refusals_are_problems() {
    let app = spawn_app().await;
    let (verifier, admin) = verifier(&app, |b| b).await;
    let service = serve_example(verifier).await;
    let user = app.token_for("ada@example.com", PASSWORD, &["user"]).await;
    let viewer = app
        .token_for("vic@example.com", PASSWORD, &["viewer"])
        .await;

    // The server puts what the roles grant in `scope`.
    let claims = app.state.keys().current().verify(&user).expect("valid");
    assert_eq!(claims.scope, "profile:*");
    assert_eq!(
        app.state
            .keys()
            .current()
            .verify(&admin)
            .expect("valid")
            .scope,
        "*:*"
    );

    let reports = format!("{service}/reports");
    let stats = format!("{service}/admin/stats");
    assert_eq!(
        call(reqwest::Method::POST, &reports, Some(&admin))
            .await
            .status(),
        201
    );
    assert_eq!(
        call(reqwest::Method::GET, &stats, Some(&admin))
            .await
            .status(),
        200
    );
    // `*:read` covers `stats:read`.
    assert_eq!(
        call(reqwest::Method::GET, &stats, Some(&viewer))
            .await
            .status(),
        200
    );
    let (post, get) = (reqwest::Method::POST, reqwest::Method::GET);
    for (method, url, token, status, code) in [
        (&post, &reports, Some(user.as_str()), 403, "forbidden"),
        (&post, &reports, Some(viewer.as_str()), 403, "forbidden"),
        (&post, &reports, None, 401, "unauthenticated"),
        (&post, &reports, Some("not.a.token"), 401, "token_malformed"),
        (&get, &stats, Some(user.as_str()), 403, "forbidden"),
        (&get, &stats, None, 401, "unauthenticated"),
    ] {
        let response = call(method.clone(), url, token).await;
        assert_eq!(response.status(), status, "{url} {token:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(response.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = response.json().await.expect("problem");
        assert_eq!(body["code"], code, "{url}");
    }
}

#[tokio::test]
async fn a_key_rotation_is_picked_up_without_a_restart() {
    let app = spawn_app().await;
    let min_refetch = Duration::from_secs(3);
    let (verifier, _) = verifier(&app, |b| b.jwks_min_refetch(min_refetch)).await;
    let old = app.token_for("ada@example.com", PASSWORD, &["user"]).await;
    verifier
        .verify(&old)
        .await
        .expect("the first key is trusted");
    assert!(!verifier.refresh_keys().await, "nothing new yet");
    let fetched = Instant::now();

    let state = &app.state;
    let master = MasterKey::load(state.config(), Generate::Never).expect("master");
    let now = unix_now();
    let new = store::rotate(state.db(), &master, Algorithm::EdDSA, now, 0)
        .await
        .expect("rotate");
    state
        .keys()
        .refresh_at(state.db(), now)
        .await
        .expect("refresh");
    let fresh = app.login("ada@example.com", PASSWORD).await["access_token"]
        .as_str()
        .expect("t")
        .to_owned();
    let header = fresh.split('.').next().expect("header");
    assert!(
        String::from_utf8(base64_url(header))
            .expect("utf8")
            .contains(&new.kid),
        "signed by the new key"
    );

    // Within the minimum refetch interval an unknown key is refused without asking again…
    assert!(
        fetched.elapsed() < min_refetch,
        "the setup took too long to tell"
    );
    assert_eq!(
        verifier.verify(&fresh).await.map(|_| ()),
        Err(AuthError::Invalid(tessera_token::VerifyError::UnknownKey))
    );
    // …after it, the first token naming the new key makes the verifier fetch it.
    tokio::time::sleep(min_refetch.saturating_sub(fetched.elapsed()) + Duration::from_millis(50))
        .await;
    let claims = verifier
        .verify(&fresh)
        .await
        .expect("the new key is fetched");
    assert_eq!(
        claims.sub,
        app.state
            .keys()
            .current()
            .verify(&fresh)
            .expect("valid")
            .sub
    );
    verifier
        .verify(&old)
        .await
        .expect("the old key is still published");
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

#[tokio::test]
async fn introspection_mode_sees_revocations_at_once_and_fails_closed() {
    let app = spawn_app().await;
    let (verifier, _) = verifier(&app, |b| {
        b.introspection().introspection_cache(Duration::ZERO)
    })
    .await;
    let login = app.login("root@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().expect("token").to_owned();
    let claims = verifier.verify(&token).await.expect("active");
    assert_eq!(
        claims.sid.as_ref(),
        login["session_id"].as_str().map(str::to_owned).as_ref()
    );
    assert_eq!(
        verifier.verify("garbage").await.map(|_| ()),
        Err(AuthError::Inactive)
    );
    assert_eq!(verifier.revocations_live(), None);

    app.post_bearer("/api/v1/auth/logout", &token).await;
    assert_eq!(
        verifier.verify(&token).await.map(|_| ()),
        Err(AuthError::Inactive)
    );

    // Tessera gone: every token is refused, never waved through.
    let other = app.login("root@example.com", PASSWORD).await["access_token"]
        .as_str()
        .expect("t")
        .to_owned();
    app.stop().await;
    for _ in 0..7 {
        assert_eq!(
            verifier.verify(&other).await.map(|_| ()),
            Err(AuthError::Unavailable)
        );
    }
}
