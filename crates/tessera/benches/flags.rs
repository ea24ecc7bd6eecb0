//! One flag evaluation, in nanoseconds: a static flag, a flag whose targeting rules are tried
//! and miss before a percentage rollout decides (the longest path), and a tenant override.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tessera::flags::eval::{Context, TenantOverride, evaluate};
use tessera::flags::model::{Flag, FlagKey, FlagSpec};

fn flag(spec: serde_json::Value) -> Flag {
    let spec: FlagSpec = serde_json::from_value(spec).expect("spec");
    Flag::build(FlagKey::parse("checkout.new_flow").expect("key"), spec).expect("flag")
}

fn evaluation(c: &mut Criterion) {
    let static_flag = flag(json!({"type": "bool", "default": true}));
    let rolled_out = flag(json!({
        "type": "string", "default": "control",
        "variants": {"control": "control", "a": "a", "b": "b", "vip": "vip"},
        "rules": [
            {"when": [{"attribute": "roles", "op": "in", "value": ["vip", "staff"]}], "variant": "vip"},
            {"when": [{"attribute": "emailDomain", "op": "eq", "value": "example.org"},
                      {"attribute": "appVersion", "op": "semver_gte", "value": "2.4.0"}], "variant": "a"}
        ],
        "rollout": [{"variant": "a", "percent": 25}, {"variant": "b", "percent": 25}, {"variant": "control", "percent": 50}]
    }));
    let context = Context {
        targeting_key: Some("018f3c9e-7b7a-7c1e-9a55-3f1a2b3c4d5e".to_owned()),
        attributes: json!({
            "tenantId": "00000000-0000-7000-8000-000000000001",
            "roles": ["user", "editor"],
            "email": "ann@example.com",
            "appVersion": "2.5.1"
        })
        .as_object()
        .cloned()
        .expect("object"),
    };
    let tenant = TenantOverride {
        value: json!("b"),
        variant: "b".to_owned(),
    };
    c.bench_function("evaluate static flag", |b| {
        b.iter(|| evaluate(black_box(&static_flag), black_box(&context), None).reason)
    });
    c.bench_function("evaluate rules then rollout", |b| {
        b.iter(|| evaluate(black_box(&rolled_out), black_box(&context), None).reason)
    });
    c.bench_function("evaluate tenant override", |b| {
        b.iter(|| evaluate(black_box(&rolled_out), black_box(&context), Some(&tenant)).reason)
    });
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
