//! The pool never hands out a connection left inside a transaction by a panic.

use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};

use super::*;

/// A fresh database of each backend: SQLite always; PostgreSQL when
/// `TANDEM_TEST_POSTGRES_URL` is set (a new database on that server).
fn databases() -> Vec<(String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut out = vec![(sqlite, Some(dir))];
    if let Ok(admin) = std::env::var("TANDEM_TEST_POSTGRES_URL") {
        let name = format!("tandem_test_{}", crate::crypto::new_id());
        let mut conn = PgConnection::establish(&admin).expect("postgres admin");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create database");
        let (base, _) = admin.rsplit_once('/').expect("a database in the url");
        out.push((format!("{base}/{name}"), None));
    }
    out
}

/// Runs `f` on the blocking pool with a pooled connection, as `AppState::db` does.
async fn on_pool<T: Send + 'static>(
    pool: &DbPool,
    f: impl FnOnce(&mut DbConnection) -> T + Send + 'static,
) -> Result<T, actix_web::error::BlockingError> {
    let pool = pool.clone();
    actix_web::web::block(move || f(&mut pool.get().expect("a connection"))).await
}

fn count(c: &mut DbConnection) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT COUNT(*) AS n FROM outbox")
        .get_result::<N>(c)
        .expect("count")
        .n
}

#[actix_web::test]
async fn a_panic_inside_a_transaction_does_not_poison_the_pool() {
    for (url, _dir) in databases() {
        // One connection: the next request would get the very same one.
        let (pool, _) = connect(&url, 1).expect("pool");
        let before = on_pool(&pool, count).await.expect("count");
        for tx in ["write", "read"] {
            let panicked = on_pool(&pool, move |c| {
                let work = |c: &mut DbConnection| -> Result<(), diesel::result::Error> {
                    if tx == "write" {
                        c.batch_execute(
                            "INSERT INTO outbox (id, kind, recipient, subject, body, created_at, attempts, \
                             next_attempt_at, claimed_until) \
                             VALUES ('panic-row', 'k', 'a@b.c', 's', 'b', 0, 0, 0, 0)",
                        )?;
                    }
                    panic!("a bug in a handler, halfway through its transaction");
                };
                if tx == "write" {
                    write_tx(c, work)
                } else {
                    read_tx(c, work)
                }
            })
            .await;
            assert!(panicked.is_err(), "{url}: the closure panicked");
            // The next request: transactions start cleanly and see nothing of the half-done one.
            let after = on_pool(&pool, |c| {
                write_tx(c, |c| Ok::<_, diesel::result::Error>(count(c)))
            })
            .await
            .expect("not panicking");
            let after =
                after.unwrap_or_else(|e| panic!("{url}: {tx} left a dirty connection: {e}"));
            assert_eq!(after, before, "{url}: the half-done insert is not there");
        }
    }
}
