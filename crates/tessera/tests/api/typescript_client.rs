//! The TypeScript package `clients/typescript` against a real Tessera: compiled strictly with
//! `tsc` in a fresh folder, then its `node --test` suite runs with this server's address, a
//! service account and the shared request table, and must pass whole (the table through a Node
//! service, a revoked session refused within a second, permissions, the browser fetch wrapper
//! on real cookies).

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::interop::{INTEROP_DIR, available, example_cases, run_with_stdin};
use crate::python_client::table;

const PASSWORD: &str = "correct horse battery";
const PACKAGE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/typescript");

/// Whether Node, TypeScript and `jose` are installed in tests/interop.
fn node_available() -> bool {
    available(
        Command::new("node").current_dir(INTEROP_DIR).args([
            "-e",
            "for (const p of ['typescript', '@types/node/package.json', 'jose', 'eventsource']) require.resolve(p)",
        ]),
        "the TypeScript package's suite",
        "run `npm ci` in crates/tessera/tests/interop",
    )
}

/// Copies `from` into `to`, folders included.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == "node_modules" || name == "dist" {
            continue;
        }
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).expect("copied");
        }
    }
}

/// The package copied into a temporary folder and compiled strictly (`tsc`); its `dist/`
/// is then in `<folder>/package/dist`.
pub(crate) async fn compiled_package() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    let package = dir.path().join("package");
    copy_tree(Path::new(PACKAGE_DIR), &package);
    let node_modules = Path::new(INTEROP_DIR).join("node_modules");
    std::os::unix::fs::symlink(&node_modules, package.join("node_modules")).expect("linked");
    let mut tsc = Command::new("node");
    tsc.current_dir(&package)
        .arg(node_modules.join("typescript/bin/tsc"))
        .args(["-p", "."]);
    run_with_stdin(tsc, String::new()).await;
    dir
}

#[tokio::test]
async fn the_typescript_package_compiles_strictly_and_passes_its_suite_against_a_live_tessera() {
    if !node_available() {
        return;
    }
    let dir = compiled_package().await;
    let package = dir.path().join("package");

    let app = crate::helpers::spawn_app().await;
    let cases = example_cases(&app).await;
    let admin = app
        .token_for("root@example.com", PASSWORD, &["admin"])
        .await;
    app.create_user("vic@example.com", PASSWORD, &["viewer"], None)
        .await;
    let (client_id, client_secret) = app.new_client(&admin, json!(["tokens:introspect"])).await;
    crate::flags::create_beta_banner(&app).await;
    let table_file = dir.path().join("table.json");
    std::fs::write(&table_file, table(&app, &cases).to_string()).expect("table written");

    let config = app.state.config();
    let mut node = Command::new("node");
    node.current_dir(&package)
        .args([
            "--experimental-websocket",
            "--test-timeout=60000",
            "--test",
            "--test-reporter=spec",
            "test/",
        ])
        .env("TESSERA_TEST_ISSUER", config.issuer())
        .env("TESSERA_TEST_AUDIENCE", &config.token.audience)
        .env("TESSERA_TEST_CLIENT_ID", client_id)
        .env("TESSERA_TEST_CLIENT_SECRET", client_secret)
        .env("TESSERA_TEST_PASSWORD", PASSWORD)
        .env("TESSERA_TEST_TABLE", &table_file);
    let output = run_with_stdin(node, String::new()).await;
    println!("{output}");
    assert!(output.contains("ℹ fail 0"), "{output}");
    assert!(output.contains("ℹ skipped 0"), "every test runs: {output}");
}
