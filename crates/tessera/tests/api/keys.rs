//! Signing keys, the JWKS and the authorization-server metadata.

use tessera::config::{Environment, Secret, SigningAlgorithm};
use tessera::keys::max_token_lifetime;
use tessera::keys::store;
use tessera::master::MasterKey;
use tessera_token::{
    AccessClaims, Algorithm, Audience, Jwks, KeySet, Verifier, VerifyError, unix_now,
};

use crate::helpers::{TestApp, TestDatabase, build_error, spawn_app, spawn_app_with};
use crate::on_each_database;

/// Claims the running server would put in a user token.
pub fn claims_for(app: &TestApp, now: i64) -> AccessClaims {
    let config = app.state.config();
    AccessClaims {
        iss: config.issuer(),
        aud: Audience::one(config.token.audience.clone()),
        sub: "user-1".into(),
        client_id: "console".into(),
        sid: Some("session-1".into()),
        tid: "tenant-1".into(),
        roles: vec!["user".into()],
        scope: String::new(),
        amr: vec!["pwd".into()],
        auth_time: Some(now),
        iat: now,
        nbf: Some(now),
        exp: now + i64::try_from(config.token.access_ttl_secs).expect("small"),
        jti: uuid::Uuid::now_v7().to_string(),
    }
}

async fn fetch_jwks(app: &TestApp) -> Jwks {
    app.get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("JWKS JSON")
}

async fn outside_verifier(app: &TestApp) -> Verifier {
    let config = app.state.config();
    let validation = tessera_token::Validation::new(config.issuer(), config.token.audience.clone());
    Verifier::new(KeySet::from_jwks(&fetch_jwks(app).await), validation)
}

on_each_database! {
    async fn the_first_start_creates_an_eddsa_key_published_in_the_jwks(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let response = app.get("/.well-known/jwks.json").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "public, max-age=150");
        assert!(response.headers().contains_key("etag"));
        let body: serde_json::Value = response.json().await.expect("json");
        let keys = body["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 1);
        let key = &keys[0];
        assert_eq!((key["kty"].as_str(), key["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
        assert_eq!((key["alg"].as_str(), key["use"].as_str()), (Some("EdDSA"), Some("sig")));
        assert!(key.get("d").is_none(), "never the private part");
        let kid = key["kid"].as_str().expect("kid");
        assert_eq!(app.state.keys().current().signer.kid(), Some(kid));
    }
}

#[tokio::test]
async fn the_jwks_answers_304_to_a_matching_if_none_match() {
    let app = spawn_app().await;
    let first = app.get("/.well-known/jwks.json").await;
    let etag = first.headers()["etag"].clone();
    let again = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn server_tokens_verify_against_the_published_jwks_only() {
    let app = spawn_app().await;
    let now = unix_now();
    let token = app
        .state
        .keys()
        .current()
        .signer
        .sign(&claims_for(&app, now))
        .expect("signs");
    let verified = outside_verifier(&app).await.verify(&token).expect("valid");
    assert_eq!(verified.sub, "user-1");
    assert!(
        app.state.keys().current().verifier().verify(&token).is_ok(),
        "server agrees"
    );

    let other = spawn_app().await;
    let foreign = other
        .state
        .keys()
        .current()
        .signer
        .sign(&claims_for(&other, now))
        .expect("signs");
    assert_eq!(
        outside_verifier(&app).await.verify(&foreign).map(|_| ()),
        Err(VerifyError::UnknownKey),
        "another instance's key is not trusted"
    );
}

on_each_database! {
    async fn rotation_publishes_first_then_signs_and_retires_after_tokens_expire(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let state = &app.state;
        let config = state.config();
        let master = MasterKey::load(config, tessera::master::Generate::Never).expect("master");
        let now = unix_now();
        let old = state.keys().current();
        let old_token = old.signer.sign(&claims_for(&app, now)).expect("signs");

        // Rotated with the default delay: published now, not yet signing.
        let new = store::rotate(state.db(), &master, Algorithm::EdDSA, now, 300).await.expect("rotate");
        state.keys().refresh_at(state.db(), now).await.expect("refresh");
        let published = state.keys().current();
        assert_eq!(published.signer.kid(), old.signer.kid(), "old key still signs");
        let kids: Vec<_> = fetch_jwks(&app).await.keys.into_iter().filter_map(|k| k.kid).collect();
        assert!(kids.contains(&new.kid), "new key published before it signs");

        // At activation the new key signs; the old key's tokens still verify.
        let activation = now + 300;
        state.keys().refresh_at(state.db(), activation).await.expect("refresh");
        let current = state.keys().current();
        assert_eq!(current.signer.kid(), Some(new.kid.as_str()));
        assert!(current.verifier().verify_at(&old_token, activation).is_ok(), "overlap");
        let new_token = current.signer.sign(&claims_for(&app, activation)).expect("signs");

        // Once every token the old key signed has expired, it leaves the JWKS.
        let gone = activation + max_token_lifetime(config) + 1;
        state.keys().refresh_at(state.db(), gone).await.expect("refresh");
        let after = state.keys().current();
        assert_eq!(after.verifier().keys().keys().len(), 1);
        assert_eq!(after.verifier().verify_at(&old_token, gone), Err(VerifyError::UnknownKey));
        assert!(after.verifier().verify_at(&new_token, activation + 60).is_ok());
    }
}

on_each_database! {
    async fn an_immediate_rotation_overrides_one_still_waiting(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let state = &app.state;
        let master = MasterKey::load(state.config(), tessera::master::Generate::Never).expect("master");
        let now = unix_now();
        let waiting = store::rotate(state.db(), &master, Algorithm::EdDSA, now, 300).await.expect("rotate");
        // An emergency: the current key must stop now, whatever was planned.
        let urgent = store::rotate(state.db(), &master, Algorithm::EdDSA, now + 10, 0).await.expect("rotate");
        for at in [now + 10, now + 300, now + 1_000] {
            state.keys().refresh_at(state.db(), at).await.expect("refresh");
            assert_eq!(state.keys().current().signer.kid(), Some(urgent.kid.as_str()), "at {at}");
        }
        let rows = store::list(state.db()).await.expect("rows");
        let open_ended: Vec<_> = rows.iter().filter(|r| r.retired_at.is_none()).map(|r| r.kid.clone()).collect();
        assert_eq!(open_ended, std::slice::from_ref(&urgent.kid), "one signer has no end");
        let cancelled = rows.iter().find(|r| r.kid == waiting.kid).expect("waiting key");
        assert_eq!(cancelled.retired_at, Some(cancelled.activated_at), "never signs");
    }
}

#[tokio::test]
async fn es256_configuration_generates_p256_keys() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.token.algorithm = SigningAlgorithm::ES256
    })
    .await;
    let jwks = fetch_jwks(&app).await;
    assert_eq!(jwks.keys[0].kty, "EC");
    assert_eq!(jwks.keys[0].crv.as_deref(), Some("P-256"));
    let token = app
        .state
        .keys()
        .current()
        .signer
        .sign(&claims_for(&app, unix_now()))
        .expect("signs");
    assert!(outside_verifier(&app).await.verify(&token).is_ok());
}

#[tokio::test]
async fn hs256_mode_publishes_no_key_and_never_the_secret() {
    let secret = "correct horse battery staple, long enough";
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.token.algorithm = SigningAlgorithm::HS256;
        c.token.hs256_secret = Some(Secret::new(secret));
    })
    .await;
    let text = app
        .get("/.well-known/jwks.json")
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(text, r#"{"keys":[]}"#);
    let metadata = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .text()
        .await
        .expect("text");
    assert!(metadata.contains("\"HS256\""));
    for body in [&text, &metadata] {
        assert!(!body.contains("horse"));
    }
    let token = app
        .state
        .keys()
        .current()
        .signer
        .sign(&claims_for(&app, unix_now()))
        .expect("signs");
    let config = app.state.config();
    let verifier = Verifier::new(
        KeySet::hmac(None, secret.as_bytes()).expect("secret"),
        tessera_token::Validation::new(config.issuer(), config.token.audience.clone()),
    );
    assert!(verifier.verify(&token).is_ok());
}

#[tokio::test]
async fn a_short_hs256_secret_is_refused_at_start_up() {
    let err = build_error(|c| {
        c.token.algorithm = SigningAlgorithm::HS256;
        c.token.hs256_secret = Some(Secret::new("too short"));
    })
    .await;
    assert!(err.contains("at least 32 bytes"), "{err}");
}

#[tokio::test]
async fn outside_development_a_master_key_is_required() {
    let err = build_error(|c| c.environment = Environment::Staging).await;
    assert!(err.contains("TESSERA_MASTER_KEY"), "{err}");
}

#[tokio::test]
async fn a_wrong_master_key_cannot_open_the_stored_keys() {
    let db = TestDatabase::sqlite();
    let mut config = db.config();
    config.master_key = Some(Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="));
    let app = tessera::Application::build(config.clone())
        .await
        .expect("first start");
    drop(app);
    config.master_key = Some(Secret::new("HxwdHhsZGhgXFRYUExIREA8ODQwLCgkIBgcEBQIDAAE="));
    let err = tessera::Application::build(config)
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("cannot decrypt"), "{err:#}");
}

#[tokio::test]
async fn the_metadata_document_names_the_issuer_and_endpoints() {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| {
        c.public_url = url::Url::parse("https://auth.example.com/").expect("url");
    })
    .await;
    let response = app.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("etag"));
    let doc: serde_json::Value = response.json().await.expect("json");
    assert_eq!(doc["issuer"], "https://auth.example.com");
    assert_eq!(
        doc["jwks_uri"],
        "https://auth.example.com/.well-known/jwks.json"
    );
    assert_eq!(
        doc["token_endpoint"],
        "https://auth.example.com/oauth2/token"
    );
    assert_eq!(
        doc["introspection_endpoint"],
        "https://auth.example.com/oauth2/introspect"
    );
    assert_eq!(
        doc["revocation_endpoint"],
        "https://auth.example.com/oauth2/revoke"
    );
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    assert_eq!(
        doc["access_token_signing_alg_values_supported"],
        serde_json::json!(["EdDSA"])
    );
    let token = app
        .state
        .keys()
        .current()
        .signer
        .sign(&claims_for(&app, unix_now()))
        .expect("signs");
    assert!(
        outside_verifier(&app).await.verify(&token).is_ok(),
        "iss in tokens == issuer"
    );
}

#[tokio::test]
async fn readyz_reports_the_signing_key() {
    let app = spawn_app().await;
    let body: serde_json::Value = app.get("/readyz").await.json().await.expect("json");
    assert_eq!(body["checks"]["keys"], "ok");
}

on_each_database! {
    async fn a_key_row_the_master_key_does_not_vouch_for_is_never_published(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let state = &app.state;
        // Someone with write access to the database but not the master key plants their own
        // public key, to mint tokens every verifier would trust.
        let theirs = tessera_token::Signer::from_pkcs8(
            Algorithm::EdDSA,
            "",
            &tessera_token::generate_pkcs8(Algorithm::EdDSA).expect("key"),
        )
        .expect("signer");
        let mut jwk = theirs.public_jwk().expect("jwk");
        let kid = jwk.thumbprint().expect("kid");
        jwk.kid = Some(kid.clone());
        let now = unix_now();
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, public_jwk, private_key, created_at, activated_at, retired_at) \
             VALUES ($1, 'EdDSA', $2, $3, $4, $5, NULL)",
        )
        .bind(&kid)
        .bind(serde_json::to_string(&jwk).expect("json"))
        .bind(vec![0u8; 64])
        .bind(now)
        .bind(now + 3600)
        .execute(state.db().pool())
        .await
        .expect("planted");
        state.keys().refresh_at(state.db(), now).await.expect("refresh");
        let kids: Vec<_> = fetch_jwks(&app).await.keys.into_iter().filter_map(|k| k.kid).collect();
        assert!(!kids.contains(&kid), "planted key published: {kids:?}");
        assert_eq!(kids.len(), 1, "the real key still is");
    }
}

on_each_database! {
    async fn jwks_caches_expire_before_a_waiting_key_signs(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let state = &app.state;
        let master = MasterKey::load(state.config(), tessera::master::Generate::Never).expect("master");
        let now = unix_now();
        store::rotate(state.db(), &master, Algorithm::EdDSA, now, 60).await.expect("rotate");
        state.keys().refresh_at(state.db(), now).await.expect("refresh");
        let response = app.get("/.well-known/jwks.json").await;
        let cache_control = response.headers()["cache-control"].to_str().expect("ascii").to_owned();
        let max_age: i64 = cache_control
            .strip_prefix("public, max-age=")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // The new key signs in 60 s: every cache must have refetched well before.
        assert!(max_age <= 25, "{cache_control}");
    }
}

#[tokio::test]
async fn the_schedule_advances_while_the_database_cannot_be_read() {
    let app = spawn_app().await;
    let state = &app.state;
    let master = MasterKey::load(state.config(), tessera::master::Generate::Never).expect("master");
    let now = unix_now();
    let new = store::rotate(state.db(), &master, Algorithm::EdDSA, now, 300)
        .await
        .expect("rotate");
    state
        .keys()
        .refresh_at(state.db(), now)
        .await
        .expect("refresh");
    state.db().close().await;
    // The database is gone when the old key retires; the new key must sign all the same.
    let result = state.keys().refresh_at(state.db(), now + 300).await;
    assert!(result.is_err(), "the failure is reported");
    assert_eq!(state.keys().current().signer.kid(), Some(new.kid.as_str()));
}
