//! Sign and verify costs per algorithm, next to the raw signature check they are built on.
//!
//! `cargo bench -p tessera-token --bench token`. The target: a full EdDSA verification (split,
//! decode, header and claim checks, signature) costs at most 1.3× `ed25519/raw_verify`.

#![allow(missing_docs)]

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, ParsedPublicKey};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tessera_token::{
    AccessClaims, Algorithm, Audience, KeySet, Signer, Validation, Verifier, generate_pkcs8,
    unix_now,
};

fn claims() -> AccessClaims {
    let now = unix_now();
    AccessClaims {
        iss: "https://auth.example.com".into(),
        aud: Audience::one("platform"),
        sub: "0190f1c4-7e3b-7cc1-9a51-3c1f7f5f8e21".into(),
        client_id: "console".into(),
        sid: Some("0190f1c4-7e3b-7cc1-9a51-3c1f7f5f8e22".into()),
        tid: "0190f1c4-7e3b-7cc1-9a51-3c1f7f5f8e23".into(),
        roles: vec!["admin".into(), "user".into()],
        scope: "openid profile".into(),
        amr: vec!["pwd".into()],
        auth_time: Some(now),
        iat: now,
        nbf: Some(now),
        exp: now + 600,
        jti: "0190f1c4-7e3b-7cc1-9a51-3c1f7f5f8e24".into(),
    }
}

fn signer(alg: Algorithm) -> Signer {
    match alg {
        Algorithm::HS256 => Signer::hs256(Some("hs".into()), &[7u8; 32]).expect("secret"),
        _ => Signer::from_pkcs8(alg, "k1", &generate_pkcs8(alg).expect("key")).expect("signer"),
    }
}

fn bench(c: &mut Criterion) {
    let claims = claims();
    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::HS256] {
        let signer = signer(alg);
        let verifier = Verifier::new(
            KeySet::new(vec![signer.verifying_key()]),
            Validation::new("https://auth.example.com", "platform"),
        );
        let token = signer.sign(&claims).expect("signs");
        let name = alg.as_str().to_ascii_lowercase();
        c.bench_function(&format!("{name}/sign"), |b| {
            b.iter(|| signer.sign(black_box(&claims)))
        });
        c.bench_function(&format!("{name}/verify"), |b| {
            b.iter(|| verifier.verify(black_box(&token)).expect("valid"))
        });
    }

    // The floor for EdDSA: one Ed25519 signature check over a token-sized message.
    let pkcs8 = generate_pkcs8(Algorithm::EdDSA).expect("key");
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("pair");
    let public = ParsedPublicKey::new(&ED25519, pair.public_key().as_ref()).expect("public");
    let token = signer(Algorithm::EdDSA).sign(&claims).expect("signs");
    let message = token
        .rsplit_once('.')
        .expect("three parts")
        .0
        .as_bytes()
        .to_vec();
    let signature = pair.sign(&message);
    c.bench_function("ed25519/raw_verify", |b| {
        b.iter(|| {
            public
                .verify_sig(black_box(&message), black_box(signature.as_ref()))
                .expect("ok")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
