//! The API reference page: every operation of the served OpenAPI document has its entry,
//! under the strict policy, with nothing inline.

use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_reference_lists_every_operation_of_the_document() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let doc: Value = client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let response = client
        .get(app.url("/reference"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let kind = response.headers()[CONTENT_TYPE].to_str().expect("ascii");
    assert!(kind.starts_with("text/html"), "{kind}");
    let policy = response.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let page = response.text().await.expect("body");

    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                page.contains(&format!("id=\"{id}\"")),
                "{method} {path} ({id}) is not in the reference"
            );
            operations += 1;
        }
    }
    assert!(operations > 50, "only {operations} operations");
    for name in doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
    {
        assert!(
            page.contains(&format!("id=\"schema-{name}\"")),
            "schema {name}"
        );
    }
    for banned in ["<script", "style=", "<style"] {
        assert!(!page.contains(banned), "{banned}");
    }
    app.stop().await;
}
