//! Lists that grow without bound (accounts, the audit log): cursors that visit every item
//! once in order whatever is written meanwhile, bound to their tenant and query; indexed search
//! that answers exactly what the unindexed `LIKE` rule answered.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

/// A stored hash in a verifiable format: these accounts only need to exist.
const STORED: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g";

async fn account(app: &TestApp, email: &str, first: &str, last: &str) {
    let user = app
        .create_user(email, PASSWORD, &["user"], Some(STORED))
        .await;
    sqlx::query("UPDATE users SET first_name = $1, last_name = $2 WHERE id = $3")
        .bind(first)
        .bind(last)
        .bind(&user.id)
        .execute(app.state.db().pool())
        .await
        .expect("renamed");
}

async fn get(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get_bearer(path, token).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

fn emails(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["email"].as_str().expect("email").to_lowercase())
        .collect()
}

/// Creates tenant `other` with its own administrator; returns that administrator's token.
async fn other_tenant_admin(app: &TestApp) -> String {
    let pool = app.state.db().pool();
    sqlx::query("INSERT INTO tenants (id, slug, name, active, created_at) VALUES ('t-other', 'other', 'Other', 1, 0)")
        .execute(pool).await.expect("tenant");
    sqlx::query("INSERT INTO roles (tenant_id, name, description, permissions, built_in, created_at, updated_at) SELECT 't-other', name, description, permissions, built_in, created_at, updated_at FROM roles WHERE tenant_id = $1")
        .bind(tessera::tenants::DEFAULT_TENANT_ID)
        .execute(pool).await.expect("roles");
    let hash = app
        .state
        .passwords()
        .hash(PASSWORD.to_owned())
        .await
        .expect("hash");
    let boss = tessera::users::NewUser {
        tenant_id: "t-other".into(),
        email: tessera::users::Email::parse("boss@example.com").expect("email"),
        username: None,
        first_name: "Other".into(),
        last_name: "Boss".into(),
        password_hash: Some(hash),
        roles: vec!["admin".into()],
    };
    let mut tx = pool.begin().await.expect("tx");
    tessera::users::create(
        &mut tx,
        &boss,
        &tessera::audit::Actor::System,
        &tessera::http::client::RequestMeta::default(),
    )
    .await
    .expect("user");
    tx.commit().await.expect("commit");
    let login: Value = app.post_json("/api/v1/auth/login", &json!({"login": "boss@example.com", "password": PASSWORD, "tenant": "other", "delivery": "body"})).await.json().await.expect("JSON");
    login["access_token"].as_str().expect("token").to_owned()
}

on_each_database! {
    async fn user_cursors_visit_every_account_once_in_order_while_accounts_are_added(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        for i in [10, 20, 30, 40, 50, 60, 70, 80, 90] {
            account(&app, &format!("m{i}@example.com"), "M", "Member").await;
        }
        let before: Vec<String> = emails(&get(&app, "/api/v1/admin/users?page_size=100", &admin).await);

        let mut seen = Vec::new();
        let mut path = "/api/v1/admin/users?page_size=3".to_owned();
        let mut round = 0;
        loop {
            let page = get(&app, &path, &admin).await;
            assert!(page["items"].as_array().expect("items").len() <= 3);
            if round > 0 {
                assert!(page["page"].is_null(), "a page reached by cursor has no number: {page}");
            }
            seen.extend(emails(&page));
            // Between pages: one account sorting before everything read so far, one after.
            account(&app, &format!("a{round}@example.com"), "A", "Early").await;
            account(&app, &format!("z{round}@example.com"), "Z", "Late").await;
            round += 1;
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/admin/users?page_size=3&after={cursor}"),
                None => break,
            }
            assert!(round < 50, "the cursor walk does not end");
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "strictly in order, never twice: {seen:?}");
        let seen_set: BTreeSet<&String> = seen.iter().collect();
        for email in &before {
            assert!(seen_set.contains(email), "{email} skipped: {seen:?}");
        }
        assert!(!seen.iter().any(|e| e.starts_with("a0@")), "added behind the cursor, so not visited");
        assert!(seen.iter().any(|e| e.starts_with("z0@")), "added ahead of the cursor, so visited");

        // The search list pages by cursor the same way.
        let first = get(&app, "/api/v1/admin/users?q=member&page_size=4", &admin).await;
        assert_eq!((first["total"].as_i64(), first["total_is_estimate"].as_bool()), (Some(9), Some(false)));
        let cursor = first["next_cursor"].as_str().expect("more members");
        let rest = get(&app, &format!("/api/v1/admin/users?q=member&page_size=100&after={cursor}"), &admin).await;
        let mut members = emails(&first);
        members.extend(emails(&rest));
        let expected: Vec<String> = [10, 20, 30, 40, 50, 60, 70, 80, 90].iter().map(|i| format!("m{i}@example.com")).collect();
        assert_eq!(members, expected);
        assert!(rest.get("next_cursor").is_none(), "the last page has no cursor: {rest}");

        // Page numbers still work beside cursors, deep pages included.
        let third = get(&app, "/api/v1/admin/users?page_size=2&page=3", &admin).await;
        let all = emails(&get(&app, "/api/v1/admin/users?page_size=100", &admin).await);
        assert_eq!(emails(&third), all[4..6].to_vec());
        assert_eq!(third["page"], 3);
        let past = get(&app, "/api/v1/admin/users?page_size=2&page=500", &admin).await;
        assert!(emails(&past).is_empty());
    }
}

on_each_database! {
    async fn indexed_search_answers_exactly_what_the_like_rule_answered(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        for (email, first, last) in [
            ("ada@example.com", "Ada", "Lovelace"),
            ("grace@navy.mil", "Grace", "Hopper"),
            ("deal@shop.io", "50% Off", "Sale"),
            ("five@shop.io", "500 Off", "Sale"),
            ("snake_case@x.io", "Under", "Score"),
            ("snakeXcase@x.io", "Not", "Underscored"),
            ("back@x.io", "Back\\slash", "Name"),
            ("zoe@x.io", "Zoë", "Ünal"),
            ("quote@x.io", "Say \"hi\"", "O'Brien"),
            ("JOHN.DOE@Example.org", "JOHN", "DOE"),
        ] {
            account(&app, email, first, last).await;
        }
        let backend = app.state.db().backend();
        for q in [
            "ada", "ADA", "lovelace", "LoveLace", "example", "EXAMPLE.ORG", "john.doe", "doe",
            "%", "50%", "0%", "_", "e_c", "snake_case", "\\", "k\\s", "a", "ov", "zo", "zoë",
            "ZOË", "ünal", "\"hi\"", "o'brien", "say \"hi", "nomatch", "x.io", "@", "  ada  ",
            "OR", "NEAR", "*", "ad*",
        ] {
            let encoded: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
            let page = get(&app, &format!("/api/v1/admin/users?page_size=100&q={encoded}"), &admin).await;
            let found: BTreeSet<String> = emails(&page).into_iter().collect();
            // The rule as it stood before any index: a LIKE scan of every account.
            let pattern = tessera::users::listing::like_pattern(q.trim());
            let expected: BTreeSet<String> = sqlx::query_scalar::<_, String>(
                "SELECT email_normalized FROM users WHERE tenant_id = $1 AND (email_normalized LIKE $2 ESCAPE '\\' \
                 OR username_normalized LIKE $2 ESCAPE '\\' OR LOWER(first_name) LIKE $2 ESCAPE '\\' \
                 OR LOWER(last_name) LIKE $2 ESCAPE '\\')",
            )
            .bind(tessera::tenants::DEFAULT_TENANT_ID)
            .bind(&pattern)
            .fetch_all(app.state.db().pool())
            .await
            .expect("LIKE scan")
            .into_iter()
            .collect();
            assert_eq!(found, expected, "q={q:?} on {backend:?}");
            assert_eq!(page["total"].as_u64(), Some(found.len() as u64), "q={q:?}");
        }
        // A few answers spelled out, so that the rule itself is pinned and not only its index.
        let search = |q: &'static str| {
            let app = &app;
            let admin = admin.clone();
            async move {
                let encoded: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
                emails(&get(app, &format!("/api/v1/admin/users?page_size=100&q={encoded}"), &admin).await)
            }
        };
        assert_eq!(search("50%").await, ["deal@shop.io"]);
        assert_eq!(search("e_c").await, ["snake_case@x.io"]);
        assert_eq!(search("LoveLace").await, ["ada@example.com"]);
        assert_eq!(search("zoë").await, ["zoe@x.io"]);
        assert_eq!(search("say \"hi").await, ["quote@x.io"]);
        assert!(search("ad*").await.is_empty());

        // Renaming moves an account in and out of the results: the index follows every write.
        let ada = get(&app, "/api/v1/admin/users?q=lovelace", &admin).await;
        let id = ada["items"][0]["id"].as_str().expect("id").to_owned();
        app.send(Method::PATCH, &format!("/api/v1/admin/users/{id}"), &admin, Some(json!({"last_name": "King"}))).await;
        assert!(search("lovelace").await.is_empty());
        assert_eq!(search("king").await, ["ada@example.com"]);
    }
}

on_each_database! {
    async fn cursors_only_work_for_their_own_tenant_list_and_query(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        for i in 0..5 {
            account(&app, &format!("u{i}@example.com"), "U", "Ser").await;
        }
        let page = get(&app, "/api/v1/admin/users?page_size=2", &admin).await;
        let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
        let searched = get(&app, "/api/v1/admin/users?page_size=2&q=ser", &admin).await;
        let search_cursor = searched["next_cursor"].as_str().expect("cursor").to_owned();
        let audit = get(&app, "/api/v1/audit?page_size=2", &admin).await;
        let audit_cursor = audit["next_cursor"].as_str().expect("cursor").to_owned();
        assert_eq!(get(&app, &format!("/api/v1/admin/users?page_size=2&after={cursor}"), &admin).await["items"].as_array().map(Vec::len), Some(2));

        let other = other_tenant_admin(&app).await;
        // Another tenant's cursor is refused outright, not read in the caller's own tenant.
        problem(app.get_bearer(&format!("/api/v1/admin/users?after={cursor}"), &other).await, 422, "invalid_cursor").await;
        problem(app.get_bearer(&format!("/api/v1/audit?after={audit_cursor}"), &other).await, 422, "invalid_cursor").await;
        // Another query's, another list's, or an altered one: refused as well.
        problem(app.get_bearer(&format!("/api/v1/admin/users?after={search_cursor}"), &admin).await, 422, "invalid_cursor").await;
        problem(app.get_bearer(&format!("/api/v1/admin/users?q=u&after={search_cursor}"), &admin).await, 422, "invalid_cursor").await;
        problem(app.get_bearer(&format!("/api/v1/admin/users?after={audit_cursor}"), &admin).await, 422, "invalid_cursor").await;
        problem(app.get_bearer(&format!("/api/v1/audit?action=user.created&after={audit_cursor}"), &admin).await, 422, "invalid_cursor").await;
        let (position, tag) = cursor.split_once('.').expect("two parts");
        use base64::Engine as _;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"["a"]"#);
        let long = "x".repeat(5_000);
        for bad in [format!("{forged}.{tag}"), position.to_owned(), format!("{position}.{}", &tag[2..]), "%00".to_owned(), "..".to_owned(), long] {
            problem(app.get_bearer(&format!("/api/v1/admin/users?after={bad}"), &admin).await, 422, "invalid_cursor").await;
            problem(app.get_bearer(&format!("/api/v1/audit?after={bad}"), &admin).await, 422, "invalid_cursor").await;
        }
        problem(app.get_bearer(&format!("/api/v1/admin/users?page=2&after={cursor}"), &admin).await, 422, "invalid_pagination").await;
    }
}

on_each_database! {
    async fn audit_cursors_visit_every_event_once_newest_first_while_events_are_written(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let admin = app.token_for("root@example.com", PASSWORD, &["admin"]).await;
        for i in 0..8 {
            account(&app, &format!("e{i}@example.com"), "E", "Vent").await;
        }
        let before: Vec<String> = get(&app, "/api/v1/audit?page_size=100", &admin).await["items"].as_array().expect("items").iter().map(|e| e["id"].as_str().expect("id").to_owned()).collect();
        let mut seen: Vec<(i64, String)> = Vec::new();
        let mut path = "/api/v1/audit?page_size=3".to_owned();
        for round in 0.. {
            let page = get(&app, &path, &admin).await;
            seen.extend(page["items"].as_array().expect("items").iter().map(|e| (e["occurred_at"].as_i64().expect("t"), e["id"].as_str().expect("id").to_owned())));
            // New events land ahead of the cursor (newer), so they cannot shift what follows.
            account(&app, &format!("n{round}@example.com"), "N", "Ew").await;
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/audit?page_size=3&after={cursor}"),
                None => break,
            }
            assert!(round < 50, "the cursor walk does not end");
        }
        assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, never twice: {seen:?}");
        let ids: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids, before, "exactly the events there were when the walk began");

        let deep = get(&app, "/api/v1/audit?page_size=2&page=3", &admin).await;
        let all = get(&app, "/api/v1/audit?page_size=100", &admin).await;
        assert_eq!(deep["items"][0]["id"], all["items"][4]["id"]);
        assert_eq!(deep["items"][1]["id"], all["items"][5]["id"]);
        assert_eq!(all["total_is_estimate"], false);
    }
}
