//! The identity migration (`2026-12-03-000005_identity`) on a database that
//! already has users: they count as verified (they were admitted before
//! verification existed), and solo orgs take nobody in by domain.

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel_migrations::MigrationHarness;

use super::*;

const BEFORE_IDENTITY: usize = 4;

#[derive(QueryableByName, Debug, PartialEq)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    email: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    verified: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    policy: String,
}

const QUERY: &str = "SELECT u.email, u.email_verified_at AS verified, o.join_policy AS policy
     FROM users u JOIN orgs o ON o.id = u.org_id ORDER BY u.email";

/// Migrates up to just before the identity migration, adds two users, then
/// runs the rest.
fn migrate_with_users<C>(conn: &mut C, source: impl Fn() -> EmbeddedMigrations)
where
    C: MigrationHarness<C::Backend> + SimpleConnection + Connection,
    EmbeddedMigrations: MigrationSource<C::Backend>,
{
    for _ in 0..BEFORE_IDENTITY {
        conn.run_next_migration(source()).unwrap();
    }
    conn.batch_execute(
        "INSERT INTO orgs (id, name, domain, owner_id, created_at) VALUES
           ('o1', 'Acme', 'acme.com', 'u1', 10), ('o2', 'Gus', 'personal-u2', 'u2', 20);
         INSERT INTO users (id, email, display_name, org_id, org_role, created_at, last_seen_at) VALUES
           ('u1', 'ada@acme.com', 'Ada', 'o1', 'owner', 111, 111),
           ('u2', 'gus@gmail.com', 'Gus', 'o2', 'owner', 222, 222);",
    )
    .unwrap();
    conn.run_pending_migrations(source()).unwrap();
}

fn expected() -> Vec<Row> {
    vec![
        Row {
            email: "ada@acme.com".into(),
            verified: Some(111),
            policy: "auto".into(),
        },
        Row {
            email: "gus@gmail.com".into(),
            verified: Some(222),
            policy: "off".into(),
        },
    ]
}

#[test]
fn existing_users_count_as_verified_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
    migrate_with_users(&mut conn, || SQLITE_MIGRATIONS);
    let rows: Vec<Row> = diesel::sql_query(QUERY).load(&mut conn).unwrap();
    assert_eq!(rows, expected());
    // And back down, cleanly.
    conn.revert_last_migration(SQLITE_MIGRATIONS).unwrap();
}

#[test]
fn existing_users_count_as_verified_postgres() {
    let Ok(admin) = std::env::var("TANDEM_TEST_POSTGRES_URL") else {
        eprintln!("skipping: TANDEM_TEST_POSTGRES_URL is not set");
        return;
    };
    let name = format!("tandem_migr_{}", crate::crypto::new_id());
    let mut root = PgConnection::establish(&admin).unwrap();
    root.batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let mut conn = PgConnection::establish(&format!("{base}/{name}")).unwrap();
    migrate_with_users(&mut conn, || POSTGRES_MIGRATIONS);
    let rows: Vec<Row> = diesel::sql_query(QUERY).load(&mut conn).unwrap();
    assert_eq!(rows, expected());
    conn.revert_last_migration(POSTGRES_MIGRATIONS).unwrap();
}
