//! The official OpenFeature SDKs evaluate Tessera's flags through OFREP, unchanged: Python's
//! `openfeature-sdk` with `openfeature-provider-ofrep`, and JavaScript's
//! `@openfeature/server-sdk` with `@openfeature/ofrep-provider`. Bool, string, number and
//! object flags, `FLAG_NOT_FOUND`, and targeting by tenant. Also: rollout buckets equal the
//! Python `mmh3` package's for flagd's formula.

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::flags::{TEST_FLAGS, apply_flags, member_token, new_tenant, platform_admin};
use crate::helpers::{TestApp, spawn_app_with};
use crate::interop::{INTEROP_DIR, available, run_with_stdin};
use crate::{flags::PASSWORD, helpers::TestDatabase};

const PYTHON_CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/openfeature_check.py"
);
const MMH3_BUCKETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/mmh3_buckets.py");

/// A server with the test flags, a tenant `acme`, and a rule serving `tenant` of
/// `banner_text` to Acme's callers; the tokens of a user at home and one at Acme.
async fn targeted_app() -> (TestApp, Value) {
    let app = spawn_app_with(TestDatabase::sqlite(), |c| apply_flags(c, TEST_FLAGS, &[])).await;
    let platform = platform_admin(&app).await;
    let acme = new_tenant(&app, &platform, "acme").await;
    let rule = json!({"rules": [{"when": [{"attribute": "tenantId", "op": "eq", "value": acme}], "variant": "tenant"}]});
    let patched = app
        .send(
            Method::PATCH,
            "/api/v1/admin/flags/banner_text",
            &platform,
            Some(rule),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let home = app.token_for("ann@example.com", PASSWORD, &["user"]).await;
    let away = member_token(&app, &acme, "acme", "wile@acme.example", &["user"]).await;
    let input = json!({"base_url": app.address, "tokens": {"home": home, "acme": away}});
    (app, input)
}

/// What both SDKs must report.
fn assert_sdk_results(results: &Value) {
    let home = &results["home"];
    assert_eq!(
        home["bool"],
        json!({"value": false, "reason": "STATIC", "variant": "off", "error_code": null})
    );
    assert_eq!(home["string"]["value"], "config");
    assert_eq!(home["string"]["reason"], "DEFAULT");
    assert_eq!(home["number"]["value"], 2.5);
    assert_eq!(
        home["object"]["value"],
        json!({"color": "blue", "dense": false})
    );
    assert_eq!(home["missing"]["value"], true, "the code default");
    assert_eq!(home["missing"]["error_code"], "FLAG_NOT_FOUND");
    assert_eq!(home["missing"]["reason"], "ERROR");
    let acme = &results["acme"];
    assert_eq!(acme["string"]["value"], "tenant", "targeted by tenant");
    assert_eq!(acme["string"]["reason"], "TARGETING_MATCH");
    assert_eq!(acme["string"]["variant"], "tenant");
    assert_eq!(acme["bool"]["value"], false);
}

#[tokio::test]
async fn the_python_openfeature_sdk_evaluates_tessera_flags_through_ofrep() {
    let probe = "import openfeature, openfeature.contrib.provider.ofrep";
    if !available(
        Command::new("python3").args(["-c", probe]),
        "Python OpenFeature SDK",
        "pip install openfeature-sdk openfeature-provider-ofrep",
    ) {
        return;
    }
    let (_app, input) = targeted_app().await;
    let mut command = Command::new("python3");
    command.arg(PYTHON_CHECK);
    let output = run_with_stdin(command, input.to_string()).await;
    let results: Value = serde_json::from_str(&output).expect("JSON");
    assert_sdk_results(&results);
}

#[tokio::test]
async fn the_javascript_openfeature_sdk_evaluates_tessera_flags_through_ofrep() {
    let probe = "for (const p of ['@openfeature/server-sdk', '@openfeature/ofrep-provider']) require.resolve(p)";
    if !available(
        Command::new("node")
            .current_dir(INTEROP_DIR)
            .args(["-e", probe]),
        "JavaScript OpenFeature SDK",
        "npm ci in crates/tessera/tests/interop",
    ) {
        return;
    }
    let (_app, input) = targeted_app().await;
    let mut command = Command::new("node");
    command
        .current_dir(INTEROP_DIR)
        .arg("openfeature_check.mjs");
    let output = run_with_stdin(command, input.to_string()).await;
    let results: Value = serde_json::from_str(&output).expect("JSON");
    assert_sdk_results(&results);
}

#[tokio::test]
async fn rollout_buckets_equal_flagds_formula_over_pythons_mmh3() {
    if !available(
        Command::new("python3").args(["-c", "import mmh3"]),
        "mmh3",
        "pip install mmh3",
    ) {
        return;
    }
    let pairs = [
        ("new_checkout", "user-1"),
        ("new_checkout", "user-42"),
        ("headerColor", "john@example.com"),
        ("dark_mode", ""),
        ("a", "é-unicode-ключ"),
        ("promo.banner", "0123456789abcdef0123456789abcdef"),
    ];
    let mut command = Command::new("python3");
    command.arg(MMH3_BUCKETS);
    let output = run_with_stdin(command, serde_json::to_string(&pairs).expect("JSON")).await;
    let expected: Vec<u32> = serde_json::from_str(&output).expect("JSON");
    let ours: Vec<u32> = pairs
        .iter()
        .map(|(flag, key)| tessera::flags::eval::bucket(flag, key))
        .collect();
    assert_eq!(ours, expected);
}

#[tokio::test]
async fn the_typescript_platform_config_loader_revalidates_with_etags() {
    if !crate::interop::typescript_available() {
        return;
    }
    let compiled = crate::typescript_client::compiled_package().await;
    let catalogue = std::fs::read_to_string(crate::flags::CATALOGUE).expect("catalogue");
    let app = spawn_app_with(TestDatabase::sqlite(), |c| apply_flags(c, &catalogue, &[])).await;
    let token = app.token_for("ann@example.com", PASSWORD, &["user"]).await;
    let mut driver = Command::new("node");
    driver
        .current_dir(INTEROP_DIR)
        .arg("platform_config_driver.mjs")
        .arg(compiled.path().join("package/dist"));
    let input = json!({"base_url": app.address, "token": token});
    let output: Value =
        serde_json::from_str(&run_with_stdin(driver, input.to_string()).await).expect("JSON");
    assert_eq!(output["statuses"], json!([200, 304, 200]));
    assert_eq!(output["same_object"], true, "a 304 reuses the last answer");
    assert_eq!(
        output["banking"], false,
        "the frontend's name for banking_enabled"
    );
    assert_eq!(output["app"]["name"], "ISP Operations Platform");
    assert!(output["anonymous_features"].get("db_sqlite").is_none());
    assert_eq!(output["signed_in_features"]["db_sqlite"], true);
}
