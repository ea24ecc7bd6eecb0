//! Property tests: any claims survive sign → verify, and any one-byte change breaks a token.

use proptest::prelude::*;
use tessera_token::{AccessClaims, Audience, Signer, unix_now};

use crate::support::{AUDIENCE, ISSUER, ed_signer, es_signer, verifier};

fn arbitrary_claims() -> impl Strategy<Value = AccessClaims> {
    let text = || ".{0,40}";
    (
        (text(), text(), proptest::option::of(text()), text(), text()),
        proptest::collection::vec(text(), 0..5),
        proptest::collection::vec("[a-z]{1,8}", 0..4),
        proptest::collection::vec(text(), 0..3),
        (
            0i64..100_000,
            31i64..100_000,
            proptest::option::of(0i64..1000),
        ),
    )
        .prop_map(
            |((sub, client_id, sid, tid, jti), roles, scopes, extra_aud, (age, ttl, nbf_back))| {
                let now = unix_now();
                let mut aud = vec![AUDIENCE.to_owned()];
                aud.extend(extra_aud);
                AccessClaims {
                    iss: ISSUER.into(),
                    aud: Audience(aud),
                    sub,
                    client_id,
                    sid,
                    tid,
                    roles,
                    scope: scopes.join(" "),
                    amr: vec!["pwd".into()],
                    auth_time: Some(now - age),
                    iat: now - age,
                    nbf: nbf_back.map(|b| now - age - b),
                    exp: now + ttl,
                    jti,
                }
            },
        )
}

fn signers() -> [Signer; 3] {
    [
        ed_signer("ed"),
        es_signer("es"),
        Signer::hs256(Some("hs".into()), &[5u8; 32]).expect("secret"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sign_then_verify_round_trips_any_claims(claims in arbitrary_claims(), which in 0usize..3) {
        let signers = signers();
        let signer = &signers[which];
        let verifier = verifier(&[signer]);
        let token = signer.sign(&claims).expect("signs");
        let verified = verifier.verify(&token).expect("verifies");
        prop_assert_eq!(verified, claims);
    }

    #[test]
    fn any_single_byte_change_fails_verification(
        index in any::<prop::sample::Index>(),
        replacement in 0x21u8..0x7f,
        which in 0usize..3,
    ) {
        let signers = signers();
        let signer = &signers[which];
        let verifier = verifier(&[signer]);
        let token = signer.sign(&crate::support::claims()).expect("signs");
        let mut bytes = token.into_bytes();
        let at = index.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        let changed = String::from_utf8(bytes).expect("ASCII stays UTF-8");
        prop_assert!(verifier.verify(&changed).is_err(), "accepted: {}", changed);
    }
}
