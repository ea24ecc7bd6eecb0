//! Evaluation: pure, no I/O, no allocation. The order is fixed: a disabled flag serves its
//! default (`DISABLED`); then the caller's tenant override (`TARGETING_MATCH`); then the
//! first targeting rule whose conditions all hold (`TARGETING_MATCH`); then the percentage
//! rollout (`SPLIT`), bucketed on the targeting key; then the default (`STATIC` for a flag
//! with neither rules nor rollout, `DEFAULT` for one whose rules and rollout did not apply).
//! A rollout without a targeting key, or a stored value of the wrong type, serves the default
//! with reason `ERROR` and an error code.
//!
//! Bucketing is flagd's `fractional`: MurmurHash3 (x86, 32-bit, seed 0) of the flag key
//! followed by the targeting key, scaled into 0..100 000 by `(hash × 100 000) >> 32`. The same
//! inputs land in the same bucket on every instance, after every restart, and in flagd.

use serde_json::{Map, Value};

use super::model::{Flag, ROLLOUT_TOTAL};
use super::rules::{Attr, Attributes};

/// Why a value was served (OpenFeature resolution reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The flag has no rules or rollout: its default is the value.
    Static,
    /// A tenant override or a targeting rule decided.
    TargetingMatch,
    /// The percentage rollout decided.
    Split,
    /// The flag is switched off: its default.
    Disabled,
    /// Rules or a rollout exist but none applied: the default.
    Default,
    /// Evaluation failed; the default is served and [`Evaluation::error`] says why.
    Error,
}

impl Reason {
    /// The OpenFeature name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "STATIC",
            Self::TargetingMatch => "TARGETING_MATCH",
            Self::Split => "SPLIT",
            Self::Disabled => "DISABLED",
            Self::Default => "DEFAULT",
            Self::Error => "ERROR",
        }
    }
}

/// Why an evaluation failed (OpenFeature error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalError {
    /// A rollout needs a targeting key and the context has none.
    TargetingKeyMissing,
    /// A stored value does not have the flag's type.
    TypeMismatch,
}

impl EvalError {
    /// The OpenFeature name.
    pub fn code(self) -> &'static str {
        match self {
            Self::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            Self::TypeMismatch => "TYPE_MISMATCH",
        }
    }

    /// A sentence for `errorDetails`.
    pub fn details(self) -> &'static str {
        match self {
            Self::TargetingKeyMissing => {
                "this flag is rolled out by percentage and needs a `targetingKey` in the context"
            }
            Self::TypeMismatch => "a stored value of this flag does not have the flag's type",
        }
    }
}

/// The outcome of evaluating one flag, borrowing from the flag set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation<'a> {
    /// The value served.
    pub value: &'a Value,
    /// The variant's name.
    pub variant: &'a str,
    /// Why.
    pub reason: Reason,
    /// Set when `reason` is [`Reason::Error`].
    pub error: Option<EvalError>,
}

/// A tenant's override of a flag's value.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantOverride {
    /// The value the tenant's callers get.
    pub value: Value,
    /// The variant holding that value, or `tenant_override`.
    pub variant: String,
}

/// Variant name of an override whose value no variant holds.
pub const OVERRIDE_VARIANT: &str = "tenant_override";

/// The evaluation context: the targeting key and attributes. The server fills `tenantId`,
/// `userId`, `roles` and `email` from the caller's identity, so a caller cannot claim
/// another tenant's overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// What rollouts bucket on (normally a user id).
    pub targeting_key: Option<String>,
    /// Every other attribute.
    pub attributes: Map<String, Value>,
}

/// Attribute names the server sets from the caller's identity.
pub mod attr {
    /// The tenant id.
    pub const TENANT_ID: &str = "tenantId";
    /// The user id.
    pub const USER_ID: &str = "userId";
    /// The caller's current roles (a list).
    pub const ROLES: &str = "roles";
    /// The user's email address.
    pub const EMAIL: &str = "email";
    /// The part of `email` after `@`, derived.
    pub const EMAIL_DOMAIN: &str = "emailDomain";
    /// The targeting key.
    pub const TARGETING_KEY: &str = "targetingKey";
}

impl Context {
    /// The tenant the context is evaluated for.
    pub fn tenant_id(&self) -> Option<&str> {
        self.attributes.get(attr::TENANT_ID).and_then(Value::as_str)
    }
}

impl Attributes for Context {
    fn attribute(&self, name: &str) -> Option<Attr<'_>> {
        match name {
            attr::TARGETING_KEY => self.targeting_key.as_deref().map(Attr::Text),
            attr::EMAIL_DOMAIN if !self.attributes.contains_key(name) => self
                .attributes
                .get(attr::EMAIL)
                .and_then(Value::as_str)
                .and_then(|email| email.rsplit_once('@'))
                .map(|(_, domain)| Attr::Text(domain)),
            _ => self.attributes.get(name).map(Attr::Json),
        }
    }
}

/// Evaluates `flag` for `context`, with the tenant's override if it has one.
pub fn evaluate<'a>(
    flag: &'a Flag,
    context: &Context,
    tenant_override: Option<&'a TenantOverride>,
) -> Evaluation<'a> {
    let default = |reason| Evaluation {
        value: &flag.spec.default,
        variant: &flag.default_variant,
        reason,
        error: None,
    };
    if !flag.spec.enabled {
        return default(Reason::Disabled);
    }
    if let Some(found) = tenant_override {
        if !flag.spec.kind.admits(&found.value) {
            return failed(flag, EvalError::TypeMismatch);
        }
        return Evaluation {
            value: &found.value,
            variant: &found.variant,
            reason: Reason::TargetingMatch,
            error: None,
        };
    }
    if let Some(rule) = flag
        .rules
        .iter()
        .find(|rule| rule.when.iter().all(|m| m.matches(context)))
    {
        return Evaluation {
            value: &rule.value,
            variant: &rule.variant,
            reason: Reason::TargetingMatch,
            error: None,
        };
    }
    if !flag.rollout.is_empty() {
        let Some(key) = context.targeting_key.as_deref() else {
            return failed(flag, EvalError::TargetingKeyMissing);
        };
        let at = bucket(flag.key.as_str(), key);
        if let Some(split) = flag.rollout.iter().find(|s| at < s.below) {
            return Evaluation {
                value: &split.value,
                variant: &split.variant,
                reason: Reason::Split,
                error: None,
            };
        }
    }
    if flag.rules.is_empty() && flag.rollout.is_empty() {
        default(Reason::Static)
    } else {
        default(Reason::Default)
    }
}

fn failed(flag: &Flag, error: EvalError) -> Evaluation<'_> {
    Evaluation {
        value: &flag.spec.default,
        variant: &flag.default_variant,
        reason: Reason::Error,
        error: Some(error),
    }
}

/// The rollout bucket of `targeting_key` for `flag_key`, in 0..100 000 (flagd's
/// `fractional` with a total weight of 100 000).
pub fn bucket(flag_key: &str, targeting_key: &str) -> u32 {
    let hash = murmur3_32_parts(flag_key.as_bytes(), targeting_key.as_bytes(), 0);
    let scaled = (u64::from(hash) * u64::from(ROLLOUT_TOTAL)) >> 32;
    // Below ROLLOUT_TOTAL by construction.
    u32::try_from(scaled).unwrap_or(ROLLOUT_TOTAL - 1)
}

/// MurmurHash3 x86 32-bit of `a` followed by `b`, without joining them in a buffer.
pub fn murmur3_32_parts(a: &[u8], b: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut block = [0_u8; 4];
    let mut filled = 0;
    for &byte in a.iter().chain(b) {
        block[filled] = byte;
        filled += 1;
        if filled == 4 {
            let k = u32::from_le_bytes(block)
                .wrapping_mul(C1)
                .rotate_left(15)
                .wrapping_mul(C2);
            h = (h ^ k)
                .rotate_left(13)
                .wrapping_mul(5)
                .wrapping_add(0xe654_6b64);
            filled = 0;
        }
    }
    if filled > 0 {
        let mut k = 0_u32;
        for (i, byte) in block.iter().take(filled).enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    // Lengths past 4 GiB wrap, as in the reference implementation.
    #[allow(clippy::cast_possible_truncation)]
    let len = (a.len() + b.len()) as u32;
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::model::{FlagKey, FlagSpec};
    use serde_json::json;

    fn flag(spec: Value) -> Flag {
        let spec: FlagSpec = serde_json::from_value(spec).expect("spec");
        Flag::build(FlagKey::parse("checkout.new").expect("key"), spec).expect("flag")
    }

    fn context(targeting_key: Option<&str>, attributes: Value) -> Context {
        Context {
            targeting_key: targeting_key.map(str::to_owned),
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        // Published test vectors of MurmurHash3_x86_32.
        let vectors: [(&[u8], u32, u32); 6] = [
            (b"", 0, 0),
            (b"", 1, 0x514e_28b7),
            (b"\xff\xff\xff\xff", 0, 0x7629_3b50),
            (b"!Ce\x87", 0, 0xf55b_516b),
            (b"Hello, world!", 1234, 0xfaf6_cdb3),
            (
                b"The quick brown fox jumps over the lazy dog",
                0,
                0x2e4f_f723,
            ),
        ];
        for (input, seed, expected) in vectors {
            assert_eq!(murmur3_32_parts(input, b"", seed), expected, "{input:?}");
            let (a, b) = input.split_at(input.len() / 2);
            assert_eq!(murmur3_32_parts(a, b, seed), expected, "split {input:?}");
        }
    }

    #[test]
    fn each_reason_in_order_of_precedence() {
        let rich = json!({
            "type": "string", "default": "control",
            "variants": {"control": "control", "a": "a", "b": "b", "vip": "vip"},
            "rules": [{"when": [{"attribute": "roles", "op": "in", "value": ["vip"]}], "variant": "vip"}],
            "rollout": [{"variant": "a", "percent": 50}, {"variant": "b", "percent": 50}]
        });
        let f = flag(rich.clone());
        let vip = context(Some("u1"), json!({"roles": ["user", "vip"]}));
        let plain = context(Some("u1"), json!({"roles": ["user"]}));
        let keyless = context(None, json!({}));
        let override_ = TenantOverride {
            value: json!("b"),
            variant: "b".into(),
        };

        let e = evaluate(&f, &vip, Some(&override_));
        assert_eq!((e.reason, e.variant), (Reason::TargetingMatch, "b"));
        let e = evaluate(&f, &vip, None);
        assert_eq!((e.reason, e.value), (Reason::TargetingMatch, &json!("vip")));
        let e = evaluate(&f, &plain, None);
        assert_eq!(e.reason, Reason::Split);
        assert!(e.variant == "a" || e.variant == "b");
        let e = evaluate(&f, &keyless, None);
        assert_eq!(
            (e.reason, e.error, e.value),
            (
                Reason::Error,
                Some(EvalError::TargetingKeyMissing),
                &json!("control")
            )
        );

        let mut off = rich.clone();
        off["enabled"] = json!(false);
        let off = flag(off);
        let e = evaluate(&off, &vip, Some(&override_));
        assert_eq!((e.reason, e.value), (Reason::Disabled, &json!("control")));

        let mut rules_only = rich.clone();
        rules_only["rollout"] = json!([]);
        let rules_only = flag(rules_only);
        let e = evaluate(&rules_only, &plain, None);
        assert_eq!((e.reason, e.variant), (Reason::Default, "control"));

        let plain_bool = flag(json!({"type": "bool", "default": true}));
        let e = evaluate(&plain_bool, &keyless, None);
        assert_eq!(
            (e.reason, e.variant, e.value),
            (Reason::Static, "on", &json!(true))
        );

        let wrong = TenantOverride {
            value: json!(3),
            variant: OVERRIDE_VARIANT.into(),
        };
        let e = evaluate(&f, &plain, Some(&wrong));
        assert_eq!(e.error, Some(EvalError::TypeMismatch));
    }

    #[test]
    fn email_domain_is_derived_from_email() {
        let f = flag(json!({
            "type": "bool", "default": false,
            "rules": [{"when": [{"attribute": "emailDomain", "op": "eq", "value": "example.com"}], "variant": "on"}]
        }));
        let inside = context(Some("u"), json!({"email": "ann@example.com"}));
        let outside = context(Some("u"), json!({"email": "ann@example.org"}));
        assert_eq!(evaluate(&f, &inside, None).value, &json!(true));
        assert_eq!(evaluate(&f, &outside, None).value, &json!(false));
    }

    #[test]
    fn a_rollout_serves_each_share_within_one_percent_over_100k_keys() {
        let f = flag(json!({
            "type": "bool", "default": false,
            "rollout": [{"variant": "on", "percent": 25}, {"variant": "off", "percent": 75}]
        }));
        let mut on = 0_u32;
        let mut ctx = context(None, json!({}));
        for i in 0..100_000 {
            ctx.targeting_key = Some(format!("user-{i}"));
            if evaluate(&f, &ctx, None).variant == "on" {
                on += 1;
            }
        }
        assert!((24_000..=26_000).contains(&on), "{on} of 100000 on");
    }

    #[test]
    fn buckets_are_stable_and_within_range() {
        let first = bucket("checkout.new", "user-42");
        for _ in 0..3 {
            assert_eq!(bucket("checkout.new", "user-42"), first);
        }
        for i in 0..1_000 {
            assert!(bucket("k", &format!("{i}")) < ROLLOUT_TOTAL);
        }
    }
}
