//! What a service pays per request to trust a token: a full EdDSA verification against the
//! cached key set (the first time a token is seen), and the verified-token cache (every time
//! after), both including the revocation check.
//!
//! `cargo bench -p tessera-client --bench verify`. Targets: uncached ≥ 15,000 verifications/s
//! per core (≤ 66 µs each); cached far below that.

#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tessera_client::Verifier;
use tessera_client::tessera_token::{
    AccessClaims, Algorithm, Audience, KeySet, Signer, Validation, generate_pkcs8, unix_now,
};

fn claims(n: usize) -> AccessClaims {
    let now = unix_now();
    AccessClaims {
        iss: "https://auth.example.com".into(),
        aud: Audience::one("platform"),
        sub: "0190f1c4-7e3b-7cc1-9a51-3c1f7f5f8e21".into(),
        client_id: "tessera".into(),
        sid: Some(format!("0190f1c4-7e3b-7cc1-9a51-{n:012}")),
        tid: "0190f1c4-7e3b-7cc1-9a51-3c1f7f5f8e23".into(),
        roles: vec!["admin".into(), "user".into()],
        scope: "*:*".into(),
        amr: vec!["pwd".into()],
        auth_time: Some(now),
        iat: now,
        nbf: Some(now),
        exp: now + 600,
        jti: format!("{n:032x}"),
    }
}

fn bench(c: &mut Criterion) {
    let signer = Signer::from_pkcs8(
        Algorithm::EdDSA,
        "k1",
        &generate_pkcs8(Algorithm::EdDSA).expect("key"),
    )
    .expect("signer");
    let keys = || KeySet::new(vec![signer.verifying_key()]);
    let validation = || Validation::new("https://auth.example.com", "platform");
    let tokens: Vec<String> = (0..1_024)
        .map(|n| signer.sign(&claims(n)).expect("signs"))
        .collect();

    let mut group = c.benchmark_group("sdk");
    group.throughput(Throughput::Elements(1));

    // A cache of one: every token is new to it, so each call checks the signature.
    let uncached = Verifier::with_keys(keys(), validation(), 1);
    let mut next = 0;
    group.bench_function("eddsa_verify_uncached", |b| {
        b.iter(|| {
            next = (next + 1) % tokens.len();
            uncached
                .verify_cached(black_box(&tokens[next]))
                .expect("valid")
        })
    });

    let cached = Verifier::with_keys(keys(), validation(), 100_000);
    group.bench_function("eddsa_verify_cached", |b| {
        b.iter(|| cached.verify_cached(black_box(&tokens[0])).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
