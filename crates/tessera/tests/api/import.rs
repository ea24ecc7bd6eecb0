//! Importing users from other systems: hashes made by the real libraries platforms use
//! (passlib, Django's hashers, bcrypt) import and log in, are upgraded to Argon2id on the way,
//! and a line whose hash could never verify is refused at import, naming the line.

use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};
use tessera::tenants::DEFAULT_TENANT_ID;
use tessera::users::import::{ImportError, import};

use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::interop::{INTEROP_DIR, available, run_with_stdin};
use crate::on_each_database;

/// Whether passlib, Django, bcrypt and argon2-cffi are importable.
fn hash_libraries_available() -> bool {
    available(
        Command::new("python3").args(["-c", "import passlib, django, bcrypt, argon2"]),
        "passlib, Django and bcrypt",
        "pip install passlib django bcrypt argon2-cffi",
    )
}

/// The accounts `legacy_hashes.py` made, computed once for every test that needs them
/// (hashing at real costs takes seconds).
async fn library_accounts() -> Vec<Value> {
    static MADE: OnceLock<String> = OnceLock::new();
    let made = match MADE.get() {
        Some(made) => made.clone(),
        None => {
            let mut script = Command::new("python3");
            script.current_dir(INTEROP_DIR).arg("legacy_hashes.py");
            let output = run_with_stdin(script, String::new()).await;
            MADE.get_or_init(|| output).clone()
        }
    };
    let parsed: Value = serde_json::from_str(&made).expect("legacy_hashes.py output");
    parsed["accounts"].as_array().expect("accounts").clone()
}

/// `accounts` as import lines: email and hash only.
fn import_lines(accounts: &[Value]) -> String {
    accounts
        .iter()
        .map(|a| json!({ "email": a["email"], "password_hash": a["password_hash"] }).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn stored_hash(app: &TestApp, email: &str) -> String {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(app.state.db().pool())
        .await
        .expect("the account exists")
}

on_each_database! {
    async fn hashes_made_by_passlib_django_and_bcrypt_import_and_log_in(db: TestDatabase) {
        if !hash_libraries_available() {
            return;
        }
        let accounts = library_accounts().await;
        assert!(accounts.len() >= 8, "{accounts:?}");
        let app = spawn_app_with(db, |_| {}).await;
        let imported = import(app.state.db(), app.state.passwords(), &import_lines(&accounts), DEFAULT_TENANT_ID)
            .await
            .expect("every library's hash is accepted");
        assert_eq!(imported, accounts.len());

        for account in &accounts {
            let library = account["library"].as_str().expect("library");
            let email = account["email"].as_str().expect("email");
            let password = account["password"].as_str().expect("password");
            let imported_hash = account["password_hash"].as_str().expect("hash");
            assert_eq!(stored_hash(&app, email).await, imported_hash, "{library}: kept as given");

            let wrong = app
                .post_json("/api/v1/auth/login", &json!({"login": email, "password": format!("{password}!")}))
                .await;
            problem(wrong, 401, "invalid_credentials").await;
            let tokens = app.login(email, password).await;
            assert!(tokens["access_token"].is_string(), "{library}");

            let upgraded = stored_hash(&app, email).await;
            assert!(upgraded.starts_with("$argon2id$"), "{library}: upgraded, got {upgraded}");
            app.login(email, password).await;
        }
    }
}

on_each_database! {
    async fn an_import_line_whose_hash_can_never_verify_is_refused_naming_it(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let good = json!({"email": "ok@example.com", "password_hash": "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"});
        let refused = [
            ("5f4dcc3b5aa765d61d8327deb882cf99", "not a known format"),
            ("scrypt$16384$c2FsdA$8$1$AAAA", "not a known format"),
            ("$pbkdf2-sha256$100000$5xzjvBeidE6J8f6fUwohRA", "malformed passlib PBKDF2-SHA256"),
            ("$pbkdf2-sha256$100000$5xz+vBeidE6J8f6fUwohRA$ELG86PicM1OqrcUFUy3zx6DF1NoL", "adapted base64"),
            ("$pbkdf2-sha256$900000000$5xzjvBeidE6J8f6fUwohRA$ELG86PicM1OqrcUFUy3zx6DF1NoL", "rounds 900000000"),
            ("pbkdf2_sha256$1000$salt$%%%", "not base64"),
            ("$2b$20$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "cost 20"),
            ("$2b$12$tooshort", "malformed bcrypt"),
            ("$argon2id$v=19$m=65536,t=1000,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA", "iterations 1000"),
            ("argon2$argon2id$garbage", "malformed Argon2"),
        ];
        let mut lines = vec![good.to_string()];
        for (n, (hash, _)) in refused.iter().enumerate() {
            lines.push(json!({"email": format!("bad{n}@example.com"), "password_hash": hash}).to_string());
        }
        let error = import(app.state.db(), app.state.passwords(), &lines.join("\n"), DEFAULT_TENANT_ID)
            .await
            .expect_err("refused");
        let ImportError::Invalid(problems) = error else {
            panic!("every bad line is listed, got {error}");
        };
        assert_eq!(problems.len(), refused.len(), "{problems:#?}");
        for (n, (problem, (_, reason))) in problems.iter().zip(&refused).enumerate() {
            let line = n + 2;
            assert!(problem.starts_with(&format!("line {line}: password_hash: ")), "{problem}");
            assert!(problem.contains(reason), "line {line}: {problem} should say {reason}");
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = 'ok@example.com'")
            .fetch_one(app.state.db().pool())
            .await
            .expect("count");
        assert_eq!(count, 0, "nothing is imported while a line is refused");
    }
}
