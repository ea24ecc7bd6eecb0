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

/// Every table and its columns, by name, as `db` holds them after migrating: what code that
/// runs on both databases may rely on. SQLite's full-text tables (a virtual table and the
/// shadow tables it keeps) implement an index PostgreSQL builds differently, so they are left
/// out.
async fn tables_and_columns(db: &Db) -> std::collections::BTreeMap<String, Vec<String>> {
    let pool = db.pool();
    let mut tables = std::collections::BTreeMap::new();
    if db.backend() == tessera::db::Backend::Postgres {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%'",
        )
        .fetch_all(pool)
        .await
        .expect("columns");
        for (table, column) in rows {
            tables.entry(table).or_insert_with(Vec::new).push(column);
        }
    } else {
        let virtual_tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'",
        )
        .fetch_all(pool)
        .await
        .expect("virtual tables");
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\'",
        )
        .fetch_all(pool)
        .await
        .expect("tables");
        for name in names {
            if virtual_tables
                .iter()
                .any(|v| name == *v || name.starts_with(&format!("{v}_")))
            {
                continue;
            }
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(&name)
                .fetch_all(pool)
                .await
                .expect("columns");
            tables.insert(name, columns);
        }
    }
    for columns in tables.values_mut() {
        columns.sort();
    }
    tables
}

#[tokio::test]
async fn both_migration_trees_have_the_same_versions_and_build_the_same_tables() {
    let folder = |dialect: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dialect);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("migration folder")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        folder("sqlite"),
        folder("postgres"),
        "every version, up and down, in both trees"
    );

    let Some(postgres) = TestDatabase::postgres().await else {
        return;
    };
    let sqlite = TestDatabase::sqlite();
    let mut schemas = Vec::new();
    for test_db in [&sqlite, &postgres] {
        let db = Db::connect(&test_db.config().database, Create::IfMissing)
            .await
            .expect("connect");
        db.migrate_up().await.expect("up");
        schemas.push(tables_and_columns(&db).await);
        db.close().await;
    }
    assert!(
        schemas[0].contains_key("users") && schemas[0].len() > 10,
        "{:?}",
        schemas[0].keys()
    );
    assert_eq!(
        schemas[0], schemas[1],
        "SQLite (left) and PostgreSQL (right) schemas differ"
    );
}
