//! Accounts: the bootstrap admin, case-insensitive uniqueness, audited writes, legacy imports.

use tessera::audit::Actor;
use tessera::http::client::RequestMeta;
use tessera::tenants::DEFAULT_TENANT_ID;
use tessera::users::{self, Email, NewUser, UserError};

use crate::helpers::spawn_app_with;
use crate::on_each_database;

async fn audit_actions(app: &crate::helpers::TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_events ORDER BY occurred_at, id")
        .fetch_all(app.state.db().pool())
        .await
        .expect("audit rows")
}

on_each_database! {
    async fn the_first_start_creates_one_audited_admin_in_the_default_tenant(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let state = &app.state;
        let admin = users::find_by_email(state.db(), DEFAULT_TENANT_ID, &Email::parse("ADMIN@localhost").expect("email"))
            .await
            .expect("admin exists");
        assert!(admin.active);
        assert_eq!(users::roles(state.db(), &admin.id).await.expect("roles"), ["admin"]);
        let hash = users::password_hash(state.db(), &admin.id).await.expect("hash").expect("set");
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(audit_actions(&app).await, ["user.created"]);

        let again = users::bootstrap::ensure_admin(state.db(), state.passwords(), None, None)
            .await
            .expect("idempotent");
        assert!(again.is_none(), "an installation with accounts gets no second admin");
    }
}

on_each_database! {
    async fn emails_are_unique_per_tenant_whatever_their_case(db: TestDatabase) {
        let app = spawn_app_with(db, |_| {}).await;
        let pool = app.state.db().pool();
        let new = |email: &str| NewUser {
            tenant_id: DEFAULT_TENANT_ID.into(),
            email: Email::parse(email).expect("email"),
            username: None,
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            password_hash: None,
            roles: vec!["user".into()],
        };
        let mut tx = pool.begin().await.expect("tx");
        users::create(&mut tx, &new("ada@example.com"), &Actor::System, &RequestMeta::default())
            .await
            .expect("created");
        tx.commit().await.expect("commit");

        let mut tx = pool.begin().await.expect("tx");
        let duplicate =
            users::create(&mut tx, &new("ADA@Example.com"), &Actor::System, &RequestMeta::default()).await;
        assert!(matches!(duplicate, Err(UserError::Conflict)), "{duplicate:?}");
        drop(tx);
        assert_eq!(users::count(app.state.db()).await.expect("count"), 2, "admin + ada only");
        assert_eq!(audit_actions(&app).await.len(), 2, "the failed create left no audit row");
    }
}
