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

fn autocheckpoint(c: &mut DbConnection) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Pages {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        wal_autocheckpoint: i64,
    }
    diesel::sql_query("PRAGMA wal_autocheckpoint")
        .get_result::<Pages>(c)
        .expect("wal_autocheckpoint")
        .wal_autocheckpoint
}

#[actix_web::test]
async fn sqlite_checkpoints_run_beside_the_commits_not_inside_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.db");
    let url = format!("sqlite://{}", file.display());
    let (pool, _) = connect(&url, 2).expect("pool");
    // Commits leave the WAL to the checkpointer (until it would pass 20,000 pages)…
    let pages = on_pool(&pool, autocheckpoint).await.expect("pragma");
    assert_eq!(pages, i64::from(SQLITE_AUTOCHECKPOINT_PAGES));
    let before = std::fs::metadata(&file).expect("db file").len();
    on_pool(&pool, |c| {
        c.batch_execute(
            "CREATE TABLE big (x BLOB);
             INSERT INTO big SELECT zeroblob(4000) FROM
               (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                SELECT i FROM n);",
        )
    })
    .await
    .expect("blocking")
    .expect("2 000 pages written");
    // …which copies them into the database file on its own, within a few rounds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let copied = loop {
        let len = std::fs::metadata(&file).expect("db file").len();
        if len >= before + 2000 * 4000 || std::time::Instant::now() > deadline {
            break len;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        copied >= before + 2000 * 4000,
        "the database file grew from {before} to {copied} bytes only"
    );
    // Dropping the pool stops the checkpointer (the drop joins its thread).
    drop(pool);
    // A connection without a pool (tools) keeps SQLite's own checkpoints.
    let mut tool = open(&url).expect("open");
    assert_eq!(autocheckpoint(&mut tool), 1000);
}

#[test]
fn sqlite_wal_starts_over_under_a_steady_stream_of_commits() {
    // One writer commits with hardly a pause, rewriting two 4 KB rows each
    // time (two WAL frames a commit), until 3 x SQLITE_RESTART_FRAMES frames
    // were written. Passive checkpoints alone never let the log start over
    // while commits keep landing, so it grew until a commit checkpointed by
    // itself at SQLITE_AUTOCHECKPOINT_PAGES (with its syncs, the writers
    // waiting): the WAL file reached that many frames. The checkpointer
    // makes it start over past SQLITE_RESTART_FRAMES instead.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.db");
    let (pool, _) = connect(&format!("sqlite://{}", file.display()), 2).expect("pool");
    let mut c = pool.get().expect("a connection");
    c.batch_execute(
        "CREATE TABLE churn (id INTEGER PRIMARY KEY, x BLOB);
         INSERT INTO churn (x) VALUES (zeroblob(4000)), (zeroblob(4000));",
    )
    .expect("two rows");
    let frame = 4096 + 24;
    let wal = dir.path().join("t.db-wal");
    let target = 3 * SQLITE_RESTART_FRAMES;
    let mut written = 0i64;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while written < target && std::time::Instant::now() < deadline {
        write_tx(&mut c, |c| {
            c.batch_execute("UPDATE churn SET x = randomblob(4000)")
        })
        .expect("a commit");
        written += 2;
        // The pause bounds the pace at under 20,000 frames a second however
        // fast the machine (the checkpointer looks every 200 ms), and is too
        // short for a checkpoint with its syncs to end between two commits,
        // which would let the log start over without the checkpointer.
        std::thread::sleep(Duration::from_micros(100));
    }
    assert!(
        written >= target,
        "only {written} frames written in two minutes"
    );
    let frames = (std::fs::metadata(&wal).expect("the WAL").len() / frame) as i64;
    assert!(
        frames < i64::from(SQLITE_AUTOCHECKPOINT_PAGES),
        "the WAL grew to {frames} frames: commits had to checkpoint by themselves"
    );
    assert!(
        frames >= SQLITE_RESTART_FRAMES,
        "the WAL never reached the restart threshold ({frames} frames): the test proves nothing"
    );
}

#[test]
fn pools_opening_one_new_sqlite_file_at_once_all_start() {
    // Replicas starting together: each switches the file to WAL, migrates,
    // and runs its checkpointer beside the others.
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let opened: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || connect(&url, 2).map(|(pool, _)| pool))
            })
            .collect();
        let mut pools = Vec::new();
        for (i, t) in opened.into_iter().enumerate() {
            match t.join().expect("thread") {
                Ok(pool) => pools.push(pool),
                Err(e) => panic!("round {round}, pool {i}: {e}"),
            }
        }
        let mut conn = pools[0].get().expect("a connection");
        assert_eq!(count(&mut conn), 0);
    }
}
