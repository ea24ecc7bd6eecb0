//! Every known way to get a forged or misused token accepted, each rejected with its own error.

use serde_json::{Value, json};
use tessera_token::{
    Algorithm, Jwks, KeySet, MAX_TOKEN_BYTES, Signer, Validation, Verifier, VerifyError, unix_now,
};

use crate::support::{
    AUDIENCE, ISSUER, b64, claims, claims_json, ed_signer, es_signer, forge, header, unb64,
    verifier,
};

fn with(mut value: Value, key: &str, new: Value) -> Value {
    value[key] = new;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().expect("object").remove(key);
    value
}

/// Replaces part `index` (0 header, 1 payload, 2 signature) of a compact token.
fn replace_part(token: &str, index: usize, new: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = new;
    parts.join(".")
}

#[test]
fn attack_table() {
    let ed = ed_signer("ed");
    let es = es_signer("es");
    let attacker = ed_signer("ed");
    let verifier = verifier(&[&ed, &es]);
    let now = unix_now();
    let good = ed.sign(&claims()).expect("signs");
    assert!(
        verifier.verify(&good).is_ok(),
        "the baseline token is valid"
    );

    let ed_public = unb64(ed.public_jwk().expect("jwk").x.as_deref().expect("x"));
    let ed_jwk_text = serde_json::to_string(&ed.public_jwk()).expect("json");
    let hs_with_public_key = Signer::hs256(Some("ed".into()), &ed_public).expect("32 bytes");
    let hs_with_jwk_text = Signer::hs256(Some("ed".into()), ed_jwk_text.as_bytes()).expect("long");

    let payload = b64(claims_json().to_string().as_bytes());
    let mut flipped_signature = unb64(good.rsplit('.').next().expect("signature"));
    flipped_signature[10] ^= 0x01;
    let other_payload = b64(with(claims_json(), "sub", json!("admin"))
        .to_string()
        .as_bytes());

    let cases: Vec<(&str, String, VerifyError)> = vec![
        (
            "alg none",
            format!(
                "{}.{payload}.",
                b64(header("none", "ed").to_string().as_bytes())
            ),
            VerifyError::UnsupportedAlgorithm,
        ),
        (
            "alg none, no signature part at all",
            format!(
                "{}.{payload}",
                b64(header("none", "ed").to_string().as_bytes())
            ),
            VerifyError::Malformed("not three dot-separated parts"),
        ),
        (
            "alg RS256 (never supported)",
            forge(&ed, &header("RS256", "ed"), &claims_json()),
            VerifyError::UnsupportedAlgorithm,
        ),
        (
            "HS256 signed with the EdDSA public key",
            forge(&hs_with_public_key, &header("HS256", "ed"), &claims_json()),
            VerifyError::AlgorithmMismatch,
        ),
        (
            "HS256 signed with the published JWK text",
            forge(&hs_with_jwk_text, &header("HS256", "ed"), &claims_json()),
            VerifyError::AlgorithmMismatch,
        ),
        (
            "ES256 token claiming EdDSA",
            forge(&es, &header("EdDSA", "es"), &claims_json()),
            VerifyError::AlgorithmMismatch,
        ),
        (
            "EdDSA token claiming ES256",
            forge(&ed, &header("ES256", "ed"), &claims_json()),
            VerifyError::AlgorithmMismatch,
        ),
        (
            "unknown kid",
            forge(&ed, &header("EdDSA", "nope"), &claims_json()),
            VerifyError::UnknownKey,
        ),
        (
            "no kid",
            forge(
                &ed,
                &json!({"alg": "EdDSA", "typ": "at+jwt"}),
                &claims_json(),
            ),
            VerifyError::UnknownKey,
        ),
        (
            "wrong iss",
            forge(
                &ed,
                &header("EdDSA", "ed"),
                &with(claims_json(), "iss", json!("https://evil.example")),
            ),
            VerifyError::WrongIssuer,
        ),
        (
            "missing iss",
            forge(&ed, &header("EdDSA", "ed"), &without(claims_json(), "iss")),
            VerifyError::MissingClaim("iss"),
        ),
        (
            "wrong aud",
            forge(
                &ed,
                &header("EdDSA", "ed"),
                &with(claims_json(), "aud", json!("billing")),
            ),
            VerifyError::WrongAudience,
        ),
        (
            "wrong aud among several",
            forge(
                &ed,
                &header("EdDSA", "ed"),
                &with(claims_json(), "aud", json!(["a", "b"])),
            ),
            VerifyError::WrongAudience,
        ),
        (
            "missing aud",
            forge(&ed, &header("EdDSA", "ed"), &without(claims_json(), "aud")),
            VerifyError::MissingClaim("aud"),
        ),
        (
            "empty aud list",
            forge(
                &ed,
                &header("EdDSA", "ed"),
                &with(claims_json(), "aud", json!([])),
            ),
            VerifyError::MissingClaim("aud"),
        ),
        (
            "expired beyond the leeway",
            forge(
                &ed,
                &header("EdDSA", "ed"),
                &with(claims_json(), "exp", json!(now - 31)),
            ),
            VerifyError::Expired,
        ),
        (
            "missing exp",
            forge(&ed, &header("EdDSA", "ed"), &without(claims_json(), "exp")),
            VerifyError::MissingClaim("exp"),
        ),
        (
            "nbf in the future",
            forge(
                &ed,
                &header("EdDSA", "ed"),
                &with(claims_json(), "nbf", json!(now + 120)),
            ),
            VerifyError::NotYetValid,
        ),
        (
            "iat in the future",
            forge(
                &ed,
                &header("EdDSA", "ed"),
                &with(claims_json(), "iat", json!(now + 120)),
            ),
            VerifyError::NotYetValid,
        ),
        (
            "tampered payload",
            replace_part(&good, 1, &other_payload),
            VerifyError::BadSignature,
        ),
        (
            "tampered signature",
            replace_part(&good, 2, &b64(&flipped_signature)),
            VerifyError::BadSignature,
        ),
        (
            "signature from another key with the same kid",
            forge(&attacker, &header("EdDSA", "ed"), &claims_json()),
            VerifyError::BadSignature,
        ),
        (
            "truncated signature bytes",
            replace_part(
                &good,
                2,
                &b64(&unb64(good.rsplit('.').next().expect("sig"))[..48]),
            ),
            VerifyError::BadSignature,
        ),
        (
            "truncated token text",
            // 86 base64url characters less 5 leaves 81: one character too many for whole
            // bytes, which no canonical encoding has, whatever the signature's bytes are.
            // (Cutting 8 left a final character whose unused bits are zero one time in 16.)
            good[..good.len() - 5].to_owned(),
            VerifyError::Malformed("signature is not base64url"),
        ),
        (
            "truncated to two parts",
            good.rsplit_once('.').expect("parts").0.to_owned(),
            VerifyError::Malformed("not three dot-separated parts"),
        ),
        (
            "four parts",
            format!("{good}.x"),
            VerifyError::Malformed("not three dot-separated parts"),
        ),
        (
            "padding in base64url",
            replace_part(
                &good,
                2,
                &format!("{}=", good.rsplit('.').next().expect("sig")),
            ),
            VerifyError::Malformed("signature is not base64url"),
        ),
        (
            "oversized token",
            format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES)),
            VerifyError::TooLarge,
        ),
        (
            "unknown crit",
            forge(
                &ed,
                &with(header("EdDSA", "ed"), "crit", json!(["exp-ext"])),
                &claims_json(),
            ),
            VerifyError::UnsupportedCritical,
        ),
        (
            "crit present but null",
            forge(
                &ed,
                &with(header("EdDSA", "ed"), "crit", json!(null)),
                &claims_json(),
            ),
            VerifyError::UnsupportedCritical,
        ),
        (
            "crit present but empty",
            forge(
                &ed,
                &with(header("EdDSA", "ed"), "crit", json!([])),
                &claims_json(),
            ),
            VerifyError::UnsupportedCritical,
        ),
        (
            "jku pointing elsewhere, signed by the attacker",
            forge(
                &attacker,
                &with(
                    header("EdDSA", "ed"),
                    "jku",
                    json!("https://evil.example/jwks.json"),
                ),
                &claims_json(),
            ),
            VerifyError::BadSignature,
        ),
        (
            "embedded jwk of the attacker",
            forge(
                &attacker,
                &with(
                    header("EdDSA", "ed"),
                    "jwk",
                    serde_json::to_value(attacker.public_jwk()).expect("jwk"),
                ),
                &claims_json(),
            ),
            VerifyError::BadSignature,
        ),
        (
            "x5u pointing elsewhere, attacker kid",
            forge(
                &ed_signer("evil"),
                &with(
                    header("EdDSA", "evil"),
                    "x5u",
                    json!("https://evil.example/cert"),
                ),
                &claims_json(),
            ),
            VerifyError::UnknownKey,
        ),
        (
            "wrong typ",
            forge(
                &ed,
                &with(header("EdDSA", "ed"), "typ", json!("JWT")),
                &claims_json(),
            ),
            VerifyError::WrongType,
        ),
        (
            "missing typ",
            forge(&ed, &without(header("EdDSA", "ed"), "typ"), &claims_json()),
            VerifyError::WrongType,
        ),
        (
            "duplicate alg in the header",
            {
                let header = br#"{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"ed"}"#;
                ed.sign_raw(header, claims_json().to_string().as_bytes())
                    .expect("signs")
            },
            VerifyError::Malformed("header is not a valid JSON object"),
        ),
        (
            "duplicate sub in the claims, validly signed",
            {
                let body = claims_json().to_string();
                let body = body.replacen('{', r#"{"sub":"admin","#, 1);
                ed.sign_raw(
                    header("EdDSA", "ed").to_string().as_bytes(),
                    body.as_bytes(),
                )
                .expect("signs")
            },
            VerifyError::Malformed("claims are not a valid JSON object"),
        ),
        (
            "header is not JSON",
            replace_part(&good, 0, &b64(b"not json")),
            VerifyError::Malformed("header is not a valid JSON object"),
        ),
        (
            "empty string",
            String::new(),
            VerifyError::Malformed("not three dot-separated parts"),
        ),
    ];

    let mut failures = Vec::new();
    for (name, token, expected) in &cases {
        let got = verifier.verify(token);
        if got.as_ref().err() != Some(expected) {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn leeway_tolerates_small_clock_skew_only() {
    let ed = ed_signer("ed");
    let verifier = verifier(&[&ed]);
    let now = unix_now();
    let mut claims = claims();
    claims.exp = now - 20;
    claims.nbf = Some(now + 20);
    claims.iat = now - 100;
    let token = ed.sign(&claims).expect("signs");
    assert!(
        verifier.verify_at(&token, now).is_ok(),
        "within 30 s either way"
    );
    assert_eq!(
        verifier.verify_at(&token, now + 11),
        Err(VerifyError::Expired)
    );
    assert_eq!(
        verifier.verify_at(&token, now - 11),
        Err(VerifyError::NotYetValid)
    );
}

#[test]
fn hs256_mode_rejects_asymmetric_tokens_and_the_reverse() {
    let secret = [9u8; 32];
    let hs = Signer::hs256(None, &secret).expect("secret");
    let ed = ed_signer("ed");
    let hs_verifier = Verifier::new(
        KeySet::hmac(None, &secret).expect("secret"),
        Validation::new(ISSUER, AUDIENCE),
    );
    assert!(
        hs_verifier
            .verify(&hs.sign(&claims()).expect("signs"))
            .is_ok()
    );
    assert_eq!(
        hs_verifier.verify(&ed.sign(&claims()).expect("signs")),
        Err(VerifyError::UnknownKey)
    );
    let token = forge(
        &ed,
        &json!({"alg": "EdDSA", "typ": "at+jwt"}),
        &claims_json(),
    );
    assert_eq!(
        hs_verifier.verify(&token),
        Err(VerifyError::AlgorithmMismatch)
    );
    assert!(
        Signer::hs256(None, &[1u8; 31]).is_err(),
        "short secrets are refused"
    );
    assert!(KeySet::hmac(None, &[1u8; 31]).is_err());
}

#[test]
fn jwks_never_yields_symmetric_or_mismatched_keys() {
    let ed = ed_signer("ed");
    let es = es_signer("es");
    let mut mislabelled = ed.public_jwk().expect("jwk");
    mislabelled.kid = Some("mislabelled".into());
    mislabelled.alg = Some("ES256".into());
    let document = json!({
        "keys": [
            ed.public_jwk(),
            es.public_jwk(),
            mislabelled,
            {"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "hs", "alg": "HS256"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short"},
            {"kty": "OKP", "crv": "Ed25519", "x": ed.public_jwk().expect("jwk").x, "kid": "enc", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": ed.public_jwk().expect("jwk").x}
        ]
    });
    let jwks: Jwks = serde_json::from_value(document).expect("parses");
    let keys = KeySet::from_jwks(&jwks);
    let kids: Vec<_> = keys.keys().iter().filter_map(|k| k.kid()).collect();
    assert_eq!(kids, ["ed", "es"]);
    assert_eq!(
        keys.find(Some("es")).map(|k| k.algorithm()),
        Some(Algorithm::ES256)
    );

    let verifier = Verifier::new(keys.clone(), Validation::new(ISSUER, AUDIENCE));
    let token = ed.sign(&claims()).expect("signs");
    assert!(
        verifier.verify(&token).is_ok(),
        "a JWKS round trip keeps keys usable"
    );
    assert_eq!(keys.to_jwks().keys.len(), 2);
}

#[test]
fn the_published_jwk_never_holds_a_secret() {
    let hs = Signer::hs256(Some("hs".into()), &[3u8; 48]).expect("secret");
    assert!(hs.public_jwk().is_none());
    assert!(
        KeySet::new(vec![hs.verifying_key()])
            .to_jwks()
            .keys
            .is_empty()
    );
}

#[test]
fn es256_signatures_must_be_in_the_fixed_jose_form() {
    let es = es_signer("es");
    let verifier = verifier(&[&es]);
    let token = es.sign(&claims()).expect("signs");
    let (signed, signature) = token.rsplit_once('.').expect("parts");
    assert_eq!(unb64(signature).len(), 64, "r || s, 32 bytes each");
    let der_like = format!("{signed}.{}", b64(&[0x30; 70]));
    assert_eq!(verifier.verify(&der_like), Err(VerifyError::BadSignature));
}
