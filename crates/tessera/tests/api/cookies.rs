//! The browser flow: tokens in cookies, CSRF proof on every unsafe cookie request, Bearer
//! requests exempt.

use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use serde_json::json;

use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::on_each_database;

const PASSWORD: &str = "correct horse battery";

/// The cookies a response sets, by name: (value, full header).
fn set_cookies(
    response: &reqwest::Response,
) -> std::collections::HashMap<String, (String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| {
            let text = v.to_str().expect("ascii").to_owned();
            let (pair, _) = text.split_once(';').expect("attributes");
            let (name, value) = pair.split_once('=').expect("pair");
            (name.to_owned(), (value.to_owned(), text.clone()))
        })
        .collect()
}

struct Browser {
    access: String,
    refresh: String,
    csrf: String,
    origin: String,
}

impl Browser {
    fn cookie_header(&self) -> String {
        format!("access_token={}; csrf_token={}", self.access, self.csrf)
    }
}

/// The page's origin: the server's public URL, where its own pages live.
fn own_origin(app: &TestApp) -> String {
    app.state.config().public_url.origin().ascii_serialization()
}

async fn browser_login(app: &TestApp) -> Browser {
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header(ORIGIN, own_origin(app))
        .json(&json!({"login": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let cookies = set_cookies(&response);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "{body}"
    );
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert!(body["session_id"].is_string());

    let (access, access_header) = &cookies["access_token"];
    assert!(access_header.contains("HttpOnly") && access_header.contains("Path=/;"));
    let (refresh, refresh_header) = &cookies["refresh_token"];
    assert!(refresh_header.contains("HttpOnly"));
    assert!(refresh_header.contains("Path=/api/v1/auth/refresh"));
    assert!(refresh_header.contains("SameSite=Strict"));
    let (csrf, csrf_header) = &cookies["csrf_token"];
    assert!(!csrf_header.contains("HttpOnly"), "scripts read it");
    Browser {
        access: access.clone(),
        refresh: refresh.clone(),
        csrf: csrf.clone(),
        origin: own_origin(app),
    }
}

on_each_database! {
    async fn cookie_requests_need_the_csrf_proof_and_bearer_requests_do_not(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let browser = browser_login(&app).await;

        // Safe requests need no proof.
        let me = app.client.get(app.url("/api/v1/auth/me")).header(COOKIE, browser.cookie_header()).send().await.expect("sent");
        assert_eq!(me.status(), 200);

        let post = |headers: Vec<(&'static str, String)>| {
            let mut request = app.client.post(app.url("/api/v1/auth/sessions/revoke-others"));
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send()
        };
        let cookie = ("cookie", browser.cookie_header());
        let origin = ("origin", browser.origin.clone());
        let token = ("x-csrf-token", browser.csrf.clone());
        let refused = [
            vec![cookie.clone(), origin.clone()],
            vec![cookie.clone(), origin.clone(), ("x-csrf-token", "forged".into())],
            vec![cookie.clone(), ("origin", "https://evil.example".into()), token.clone()],
            vec![cookie.clone(), token.clone()],
            vec![("cookie", format!("access_token={}; csrf_token=forged", browser.access)), origin.clone(), ("x-csrf-token", "forged".into())],
        ];
        for headers in refused {
            problem(post(headers).await.expect("sent"), 403, "csrf_failed").await;
        }
        let accepted = post(vec![cookie.clone(), origin.clone(), token.clone()]).await.expect("sent");
        assert_eq!(accepted.status(), 200);
        let referer = post(vec![cookie.clone(), ("referer", format!("{}/account", browser.origin)), token.clone()]).await.expect("sent");
        assert_eq!(referer.status(), 200);

        // The same access token as a Bearer needs nothing else.
        let bearer = app.client.post(app.url("/api/v1/auth/sessions/revoke-others")).bearer_auth(&browser.access).send().await.expect("sent");
        assert_eq!(bearer.status(), 200);
    }
}

on_each_database! {
    async fn the_cookie_lifecycle_refreshes_and_logs_out(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let browser = browser_login(&app).await;

        let refresh = |csrf: &str| {
            app.client
                .post(app.url("/api/v1/auth/refresh"))
                .header("cookie", format!("refresh_token={}; csrf_token={}", browser.refresh, browser.csrf))
                .header("origin", &browser.origin)
                .header("x-csrf-token", csrf.to_owned())
                .send()
        };
        problem(refresh("forged").await.expect("sent"), 403, "csrf_failed").await;
        // A script on the page must not trade the HttpOnly cookie for tokens it can read.
        let to_body = app
            .client
            .post(app.url("/api/v1/auth/refresh"))
            .header("cookie", format!("refresh_token={}; csrf_token={}", browser.refresh, browser.csrf))
            .header("origin", &browser.origin)
            .header("x-csrf-token", browser.csrf.clone())
            .json(&json!({"delivery": "body"}))
            .send()
            .await
            .expect("sent");
        problem(to_body, 403, "forbidden").await;
        let response = refresh(&browser.csrf).await.expect("sent");
        assert_eq!(response.status(), 200);
        let cookies = set_cookies(&response);
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert!(body.get("access_token").is_none(), "{body}");
        let new_access = cookies["access_token"].0.clone();
        assert_ne!(cookies["refresh_token"].0, browser.refresh, "rotated");
        assert_eq!(cookies["csrf_token"].0, browser.csrf, "bound to the session, not the token");

        let logout = |access: &str, csrf: Option<&str>| {
            let mut request = app
                .client
                .post(app.url("/api/v1/auth/logout"))
                .header("cookie", format!("access_token={access}; csrf_token={}", browser.csrf))
                .header("origin", &browser.origin);
            if let Some(csrf) = csrf {
                request = request.header("x-csrf-token", csrf.to_owned());
            }
            request.send()
        };
        problem(logout(&new_access, None).await.expect("sent"), 403, "csrf_failed").await;
        let response = logout(&new_access, Some(&browser.csrf)).await.expect("sent");
        assert_eq!(response.status(), 204);
        let cleared = set_cookies(&response);
        for name in ["access_token", "refresh_token", "csrf_token"] {
            let (value, header) = &cleared[name];
            assert!(value.is_empty() && header.contains("Max-Age=0"), "{header}");
        }
        let me = app.client.get(app.url("/api/v1/auth/me")).header("cookie", format!("access_token={new_access}")).send().await.expect("sent");
        problem(me, 401, "session_ended").await;
    }
}

on_each_database! {
    async fn a_foreign_page_cannot_log_a_browser_in(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        app.create_user("ada@example.com", PASSWORD, &["user"], None).await;
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header(ORIGIN, "https://evil.example")
            .json(&json!({"login": "ada@example.com", "password": PASSWORD}))
            .send()
            .await
            .expect("sent");
        problem(response, 403, "csrf_failed").await;
    }
}
