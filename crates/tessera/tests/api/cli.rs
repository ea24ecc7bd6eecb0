//! The `tessera` binary: exit codes, messages naming the key or argument, and a real `serve`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// The binary, run in `dir` with no `TESSERA_*` variables but those given.
fn tessera(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command.current_dir(dir).args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("TESSERA_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = tessera(dir, args, env).output().expect("binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn generated_docs_need_no_valid_config() {
    let dir = TempDir::new().expect("dir");
    let bad = [("TESSERA_NOPE", "1")];
    let (code, example, _) = run(dir.path(), &["config", "example"], &bad);
    assert_eq!(code, 0);
    for section in ["[http]", "[database]", "[log]"] {
        assert!(example.contains(section), "{section}");
    }
    let (code, table, _) = run(dir.path(), &["config", "env"], &bad);
    assert_eq!(code, 0);
    assert!(table.contains("| `TESSERA_DATABASE__URL` |"));
}

#[test]
fn an_invalid_config_lists_every_problem_and_exits_2() {
    let dir = TempDir::new().expect("dir");
    std::fs::write(
        dir.path().join("tessera.toml"),
        "environment = \"production\"\n[http]\nbind = \"nowhere\"\ncolour = \"blue\"\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run(dir.path(), &["config", "show"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    for needle in [
        "`http.bind`",
        "`http.colour`",
        "unknown key",
        "`master_key`",
        "`database.url`",
        "`public_url`",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from:\n{stderr}");
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
}

#[test]
fn an_explicit_config_path_that_does_not_exist_is_named() {
    let dir = TempDir::new().expect("dir");
    let (code, _, stderr) = run(dir.path(), &["--config", "missing.toml", "serve"], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("missing.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
    let (code, _, stderr) = run(dir.path(), &["serve"], &[("TESSERA_CONFIG", "other.toml")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("other.toml"), "{stderr}");
}

#[test]
fn bad_arguments_name_the_argument() {
    let dir = TempDir::new().expect("dir");
    let (code, _, stderr) = run(dir.path(), &["migrate", "down", "--steps", "0"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--steps"), "{stderr}");
    let (code, _, stderr) = run(dir.path(), &["frobnicate"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("frobnicate"), "{stderr}");
}

#[test]
fn check_fails_on_a_missing_database_then_passes_after_migrate_up() {
    let dir = TempDir::new().expect("dir");
    let (code, stdout, _) = run(dir.path(), &["check"], &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("ok      config"), "{stdout}");
    assert!(
        stdout.contains("FAILED  database") && stdout.contains("does not exist yet"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("data/tessera.db").exists(),
        "check creates nothing"
    );

    let (code, stdout, stderr) = run(dir.path(), &["migrate", "up"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("applied 1"), "{stdout}");

    let (code, stdout, _) = run(dir.path(), &["check", "--json"], &[]);
    assert_eq!(code, 0, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["ok"], true);
    let names: Vec<_> = report["checks"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, ["config", "database", "migrations", "keys", "bus"]);

    let (code, stdout, _) = run(dir.path(), &["migrate", "down", "--steps", "1"], &[]);
    assert_eq!(code, 0);
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .expect("migrations")
        .filter_map(|e| e.ok()?.file_name().to_str()?.get(..4)?.parse::<u32>().ok())
        .max()
        .expect("a migration");
    assert!(stdout.contains(&format!("reverted {newest}")), "{stdout}");
    let (code, stdout, _) = run(dir.path(), &["migrate", "status"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("pending"), "{stdout}");
    let (code, stdout, _) = run(dir.path(), &["check"], &[]);
    assert_eq!(code, 1);
    assert!(stdout.contains("FAILED  migrations"), "{stdout}");
}

#[test]
fn check_reports_an_invalid_config_and_an_unreachable_database() {
    let dir = TempDir::new().expect("dir");
    let (code, stdout, _) = run(
        dir.path(),
        &["check", "--json"],
        &[("TESSERA_HTTP__BIND", "x")],
    );
    assert_eq!(code, 2);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["ok"], false);
    assert!(
        report["checks"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("http.bind"))
    );

    let unreachable = [
        (
            "TESSERA_DATABASE__URL",
            "postgres://tessera:hunter2@127.0.0.1:1/tessera",
        ),
        ("TESSERA_DATABASE__ACQUIRE_TIMEOUT_SECS", "2"),
    ];
    let (code, stdout, _) = run(dir.path(), &["check"], &unreachable);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("FAILED  database") && stdout.contains("cannot connect"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
}

#[test]
fn keys_rotate_publishes_ahead_and_list_shows_every_state() {
    let dir = TempDir::new().expect("dir");
    assert_eq!(run(dir.path(), &["migrate", "up"], &[]).0, 0);
    let (code, stdout, _) = run(dir.path(), &["keys", "list"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("no signing keys yet"), "{stdout}");

    let (code, stdout, stderr) = run(dir.path(), &["keys", "rotate", "--delay", "600"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("new EdDSA key"), "{stdout}");
    assert!(
        stderr.contains("DEVELOPMENT ONLY"),
        "a generated master key is loud: {stderr}"
    );
    assert_eq!(
        run(dir.path(), &["keys", "rotate", "--delay", "0"], &[]).0,
        0
    );
    let (code, _, _) = run(dir.path(), &["keys", "rotate", "--algorithm", "ES256"], &[]);
    assert_eq!(code, 0);

    let (code, stdout, _) = run(dir.path(), &["keys", "list"], &[]);
    assert_eq!(code, 0);
    let states: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(states, ["retired", "active", "pending"], "{stdout}");
    assert!(stdout.contains("ES256"), "{stdout}");

    let (code, stdout, _) = run(dir.path(), &["check"], &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("ok      keys") && stdout.contains("decrypts the active"),
        "{stdout}"
    );

    let wrong = [(
        "TESSERA_MASTER_KEY",
        "HxwdHhsZGhgXFRYUExIREA8ODQwLCgkIBgcEBQIDAAE=",
    )];
    let (code, stdout, _) = run(dir.path(), &["check"], &wrong);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAILED  keys") && stdout.contains("cannot decrypt"),
        "{stdout}"
    );
}

#[test]
fn keys_commands_refuse_hs256_mode_and_bad_algorithms() {
    let dir = TempDir::new().expect("dir");
    let hs = [
        ("TESSERA_TOKEN__ALGORITHM", "HS256"),
        (
            "TESSERA_TOKEN__HS256_SECRET",
            "0123456789abcdef0123456789abcdef",
        ),
    ];
    let (code, _, stderr) = run(dir.path(), &["keys", "rotate"], &hs);
    assert_eq!(code, 1);
    assert!(stderr.contains("HS256"), "{stderr}");
    let (code, _, stderr) = run(dir.path(), &["keys", "rotate", "--algorithm", "RS256"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--algorithm"), "{stderr}");
}

/// Runs the binary with `input` on standard input.
fn run_with_input(dir: &Path, args: &[&str], input: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = tessera(dir, args, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("finishes");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn users_import_is_all_or_nothing_and_keeps_legacy_hashes() {
    let dir = TempDir::new().expect("dir");
    assert_eq!(run(dir.path(), &["migrate", "up"], &[]).0, 0);
    let good = [
        r#"{"email": "django@example.com", "password_hash": "pbkdf2_sha256$1000$saltsalt$qQDPSZa3Ormyy9oK1Pu0ZLLwP2Svzmx3yu8OvDdq/J0="}"#,
        r#"{"email": "bcrypt@example.com", "first_name": "B", "password_hash": "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "roles": ["viewer"]}"#,
        r#"{"email": "plain@example.com", "password": "a long enough password"}"#,
    ];
    let bad = [
        r#"{"email": "md5@example.com", "password_hash": "5f4dcc3b5aa765d61d8327deb882cf99"}"#,
        r#"{"email": "not-an-email"}"#,
        r#"{"email": "x@example.com", "password": "short"}"#,
        r#"{"email": "y@example.com", "pasword": "typo in the key"}"#,
    ];
    let mixed = format!("{}\n{}\n", good.join("\n"), bad.join("\n"));
    let (code, _, stderr) = run_with_input(dir.path(), &["users", "import", "-"], &mixed);
    assert_eq!(code, 1);
    for line in ["line 4:", "line 5:", "line 6:", "line 7:"] {
        assert!(stderr.contains(line), "{line} missing: {stderr}");
    }
    assert!(stderr.contains("nothing imported"), "{stderr}");

    let (code, stdout, stderr) =
        run_with_input(dir.path(), &["users", "import", "-"], &good.join("\n"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("imported 3 account(s)"), "{stdout}");

    let again = format!("{}\n", good[0].replace("django@", "DJANGO@"));
    let (code, _, stderr) = run_with_input(dir.path(), &["users", "import", "-"], &again);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("line 1") && stderr.contains("already exists"),
        "{stderr}"
    );
}

#[test]
fn users_create_reset_password_and_disable() {
    let dir = TempDir::new().expect("dir");
    assert_eq!(run(dir.path(), &["migrate", "up"], &[]).0, 0);
    let args = [
        "users",
        "create",
        "--email",
        "ops@example.com",
        "--role",
        "admin",
        "--password-stdin",
    ];
    let (code, stdout, stderr) = run_with_input(dir.path(), &args, "a long enough password\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("created ops@example.com"), "{stdout}");
    assert!(
        !stdout.contains("password:"),
        "a given password is not echoed"
    );

    let (code, _, stderr) = run_with_input(dir.path(), &args, "short\n");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("password") && stderr.contains("shorter"),
        "{stderr}"
    );

    let (code, stdout, _) = run(
        dir.path(),
        &["users", "reset-password", "OPS@example.com"],
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("password: ") && l.len() > 30),
        "{stdout}"
    );

    assert_eq!(
        run(dir.path(), &["users", "disable", "ops@example.com"], &[]).0,
        0
    );
    let (code, _, stderr) = run(dir.path(), &["users", "disable", "nobody@example.com"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no account"), "{stderr}");
    let (code, _, stderr) = run(
        dir.path(),
        &["users", "disable", "ops@example.com", "--tenant", "nope"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("--tenant"), "{stderr}");
}

#[test]
fn serve_starts_on_a_fresh_folder_answers_and_stops_on_sigterm() {
    let dir = TempDir::new().expect("dir");
    let mut child = tessera(
        dir.path(),
        &["serve"],
        &[("TESSERA_HTTP__BIND", "127.0.0.1:0")],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut printed = Vec::new();
    let address = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).expect("a line") > 0,
            "exited early: {printed:?}"
        );
        if let Some(address) = line.trim().strip_prefix("tessera listening on ") {
            break address.to_owned();
        }
        printed.push(line);
    };
    assert!(
        printed[0].starts_with("created the first admin admin@localhost with password "),
        "the generated admin password is shown once: {printed:?}"
    );
    assert!(
        dir.path().join("data/tessera.db").exists(),
        "SQLite created on first serve"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let status = runtime.block_on(async {
        reqwest::get(format!("{address}/readyz"))
            .await
            .expect("request")
            .status()
    });
    assert_eq!(status, 200);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "graceful shutdown exits 0: {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn clients_are_created_rotated_and_disabled_from_the_command_line() {
    let dir = TempDir::new().expect("dir");
    assert_eq!(run(dir.path(), &["migrate", "up"], &[]).0, 0);
    let (code, stdout, stderr) = run(
        dir.path(),
        &[
            "clients",
            "create",
            "--name",
            "etl",
            "--scope",
            "reports:read",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let id = field(&stdout, "client_id:");
    let first = field(&stdout, "client_secret:");
    assert!(first.starts_with("tss_"), "{stdout}");
    let (code, stdout, _) = run(dir.path(), &["clients", "rotate-secret", &id], &[]);
    assert_eq!(code, 0);
    assert_ne!(field(&stdout, "client_secret:"), first);
    assert_eq!(run(dir.path(), &["clients", "disable", &id], &[]).0, 0);
    let (code, _, stderr) = run(dir.path(), &["clients", "disable", "no-such-client"], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("CLIENT_ID"), "{stderr}");
    let (code, _, stderr) = run(
        dir.path(),
        &["clients", "create", "--name", "x", "--scope", "bad scope"],
        &[],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("--scope"), "{stderr}");
}

#[test]
fn audit_export_writes_json_lines_and_verify_reports_the_chain() {
    let dir = TempDir::new().expect("dir");
    assert_eq!(run(dir.path(), &["migrate", "up"], &[]).0, 0);
    let (code, _, stderr) = run_with_input(
        dir.path(),
        &[
            "users",
            "create",
            "--email",
            "ada@example.com",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run(dir.path(), &["audit", "export"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(
        events.iter().any(|e| e["action"] == "user.created"),
        "{stdout}"
    );
    // Only a running server seals; verification says what is still waiting.
    let (code, stdout, stderr) = run(dir.path(), &["audit", "verify"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("audit chain intact") && stdout.contains("not sealed yet"),
        "{stdout}"
    );
}

#[test]
fn flags_list_and_config_show_say_where_each_value_comes_from() {
    let dir = TempDir::new().expect("dir");
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        "[flags.dark_mode]\ntype = \"bool\"\ndefault = false\npublic = true\n\n\
         [flags.banner]\ntype = \"string\"\ndefault = \"hello\"\n",
    )
    .expect("config written");
    assert_eq!(run(dir.path(), &["migrate", "up"], &[]).0, 0);
    let env = [("TESSERA_FLAG_DARK_MODE", "true")];
    let (code, stdout, stderr) = run(dir.path(), &["flags", "list"], &env);
    assert_eq!(code, 0, "{stderr}");
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} missing from {stdout}"))
            .to_owned()
    };
    assert!(
        line("dark_mode").contains("env TESSERA_FLAG_DARK_MODE"),
        "{stdout}"
    );
    assert!(line("dark_mode").contains("true"), "{stdout}");
    assert!(line("banner").ends_with("config"), "{stdout}");

    let (code, stdout, _) = run(dir.path(), &["config", "show"], &env);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("#   dark_mode: env TESSERA_FLAG_DARK_MODE"),
        "{stdout}"
    );
    assert!(stdout.contains("[flags.banner]"), "{stdout}");

    let (code, _, stderr) = run(
        dir.path(),
        &["flags", "list"],
        &[("TESSERA_FLAG_NOPE", "1")],
    );
    assert_eq!(code, 2, "an unknown flag variable is a config error");
    assert!(stderr.contains("TESSERA_FLAG_NOPE"), "{stderr}");
}
