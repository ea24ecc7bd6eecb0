//! Migrations apply, roll back and re-apply cleanly on both databases.

use tessera::db::{Create, Db};

use crate::helpers::TestDatabase;
use crate::on_each_database;

async fn table_exists(db: &Db, table: &str) -> bool {
    // Table names here are test literals.
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(db.pool())
        .await
        .is_ok()
}

on_each_database! {
    async fn migrations_go_up_down_and_up_again(test_db: TestDatabase) {
        let config = test_db.config();
        let db = Db::connect(&config.database, Create::IfMissing).await.expect("connect");
        assert!(!db.schema_is_current().await.expect("readable"));

        let applied = db.migrate_up().await.expect("up");
        assert!(!applied.is_empty());
        assert!(db.schema_is_current().await.expect("readable"));
        assert!(table_exists(&db, "signing_keys").await);
        assert!(db.migrate_up().await.expect("up again").is_empty(), "idempotent");

        let reverted = db.migrate_down(applied.len()).await.expect("down");
        assert_eq!(reverted.len(), applied.len());
        assert!(!table_exists(&db, "signing_keys").await);
        assert!(db.migration_status().await.expect("status").iter().all(|m| !m.applied));

        assert_eq!(db.migrate_up().await.expect("up"), applied);
        assert!(db.migration_status().await.expect("status").iter().all(|m| m.applied && !m.modified));
        db.close().await;
    }
}

on_each_database! {
    async fn rolling_back_more_steps_than_applied_stops_at_zero(test_db: TestDatabase) {
        let config = test_db.config();
        let db = Db::connect(&config.database, Create::IfMissing).await.expect("connect");
        let applied = db.migrate_up().await.expect("up");
        let reverted = db.migrate_down(applied.len() + 5).await.expect("down");
        assert_eq!(reverted.len(), applied.len());
        assert!(db.migrate_down(1).await.expect("nothing left").is_empty());
        db.close().await;
    }
}

#[tokio::test]
async fn a_missing_sqlite_file_is_not_created_by_read_only_commands() {
    let test_db = TestDatabase::sqlite();
    let config = test_db.config();
    let err = Db::connect(&config.database, Create::Never)
        .await
        .expect_err("missing");
    assert!(err.to_string().contains("does not exist yet"), "{err}");
    assert!(!test_db.data_dir().join("db/tessera.db").exists());
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error_without_the_password() {
    let mut config = TestDatabase::sqlite().config();
    config.database.url =
        tessera::config::DatabaseUrl::parse("postgres://app:pw-secret@127.0.0.1:1/none")
            .expect("url");
    config.database.acquire_timeout_secs = 2;
    let err = Db::connect(&config.database, Create::IfMissing)
        .await
        .expect_err("unreachable");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot connect to postgres://app:"),
        "{text}"
    );
    assert!(!text.contains("pw-secret"), "{text}");
}
