//! Keys and tokens shared by the test modules.

use serde_json::{Value, json};
use tessera_token::{
    AccessClaims, Algorithm, Audience, KeySet, Signer, Validation, Verifier, generate_pkcs8,
    unix_now,
};

pub const ISSUER: &str = "https://auth.example.com";
pub const AUDIENCE: &str = "platform";

pub fn ed_signer(kid: &str) -> Signer {
    let key = generate_pkcs8(Algorithm::EdDSA).expect("key");
    Signer::from_pkcs8(Algorithm::EdDSA, kid, &key).expect("signer")
}

pub fn es_signer(kid: &str) -> Signer {
    let key = generate_pkcs8(Algorithm::ES256).expect("key");
    Signer::from_pkcs8(Algorithm::ES256, kid, &key).expect("signer")
}

pub fn verifier(signers: &[&Signer]) -> Verifier {
    let keys = KeySet::new(signers.iter().map(|s| s.verifying_key()).collect());
    Verifier::new(keys, Validation::new(ISSUER, AUDIENCE))
}

pub fn claims() -> AccessClaims {
    let now = unix_now();
    AccessClaims {
        iss: ISSUER.into(),
        aud: Audience::one(AUDIENCE),
        sub: "user-1".into(),
        client_id: "console".into(),
        sid: Some("session-1".into()),
        tid: "tenant-1".into(),
        roles: vec!["user".into()],
        scope: "profile".into(),
        amr: vec!["pwd".into()],
        auth_time: Some(now),
        iat: now,
        nbf: Some(now),
        exp: now + 600,
        jti: "jti-1".into(),
    }
}

pub fn claims_json() -> Value {
    serde_json::to_value(claims()).expect("claims serialize")
}

pub fn header(alg: &str, kid: &str) -> Value {
    json!({ "alg": alg, "typ": "at+jwt", "kid": kid })
}

/// Signs arbitrary header and claims JSON with `signer`.
pub fn forge(signer: &Signer, header: &Value, claims: &Value) -> String {
    signer
        .sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
        .expect("signs")
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}
