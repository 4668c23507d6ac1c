//! `tandem audit verify`: the real binary against a real database (SQLite,
//! and PostgreSQL when `TANDEM_TEST_POSTGRES_URL` is set), and against an
//! NDJSON export; a tampered entry makes it exit 1 naming the entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use diesel::{Connection, RunQueryDsl};
use serde_json::Value;
use tandem_control::db::{self, write_tx, DbConnection};
use tandem_control::store::audit::{self, Entry};

fn tandem(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .env_remove("TANDEM_DATABASE_URL")
        .output()
        .expect("tandem runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "not JSON: {stdout} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

/// Five entries for `org` (and two for another org, which must not matter).
fn seed(conn: &mut DbConnection, org: &str) {
    for n in 0..5 {
        write_tx(conn, |c| {
            let e = Entry::new("u1", "org.update", format!("org:{org}"))
                .after(serde_json::json!({ "name": format!("Name {n}"), "ünï": "çödé\n" }));
            audit::append(c, org, &e)?;
            audit::append(c, "other", &Entry::new("u2", "member.add", "workspace:w")).map(|_| ())
        })
        .unwrap();
    }
}

/// The outsider's recipe of proto-docs/admin.md (proto-docs/examples/
/// verify_audit.py) agrees with the server's hashing, when python3 is here.
fn python_recipe(file: &str, ok: bool) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../proto-docs/examples/verify_audit.py"
    );
    let Ok(out) = Command::new("python3").arg(script).arg(file).output() else {
        eprintln!("skipping the Python recipe: no python3");
        return;
    };
    assert_eq!(
        out.status.success(),
        ok,
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(url: &str, tamper_off: &str, tamper_on: &str) {
    let (_pool, _) = db::connect(url, 2).expect("database opens and migrates");
    let mut conn = db::open(url).unwrap();
    seed(&mut conn, "acme");
    let (code, v) = tandem(&["audit", "verify", "--org", "acme", "--database-url", url]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["checked"], 5);

    // An export (as the endpoint writes it) verifies offline too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.ndjson");
    let lines: Vec<String> = audit::chunk_after(&mut conn, "acme", 0)
        .unwrap()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let f = file.to_str().unwrap();
    let (code, v) = tandem(&["audit", "verify", "--org", "acme", "--file", f]);
    assert_eq!((code, v["checked"].clone()), (0, Value::from(5)), "{v}");
    python_recipe(f, true);
    let forged = lines[3].replace("Name 3", "Name X");
    let mut edited = lines.clone();
    edited[3] = forged;
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();
    let (code, v) = tandem(&["audit", "verify", "--org", "acme", "--file", f]);
    assert_eq!(code, 1);
    assert_eq!(v["firstBrokenSeq"], 4);
    python_recipe(f, false);

    // Tamper with entry 2 in the database (past the trigger).
    diesel::sql_query(tamper_off).execute(&mut conn).unwrap();
    diesel::sql_query("UPDATE audit_log SET actor = 'mallory' WHERE org_id = 'acme' AND seq = 2")
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query(tamper_on).execute(&mut conn).unwrap();
    let (code, v) = tandem(&["audit", "verify", "--org", "acme", "--database-url", url]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["firstBrokenSeq"], 2);
    assert_eq!(v["checked"], 1);
    // The other org's chain is untouched.
    let (code, _) = tandem(&["audit", "verify", "--org", "other", "--database-url", url]);
    assert_eq!(code, 0);
}

#[test]
fn verify_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    run(
        &url,
        "DROP TRIGGER audit_log_no_update",
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    );
}

#[test]
fn verify_postgres() {
    let Ok(admin) = std::env::var("TANDEM_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("TANDEM_TEST_REQUIRE_POSTGRES").is_err(),
            "TANDEM_TEST_REQUIRE_POSTGRES is set but TANDEM_TEST_POSTGRES_URL is not"
        );
        eprintln!("skipping: TANDEM_TEST_POSTGRES_URL is not set");
        return;
    };
    let name = format!("tandem_cli_{}", tandem_control::crypto::new_id());
    let mut c = diesel::pg::PgConnection::establish(&admin).unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    run(
        &format!("{base}/{name}"),
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change",
        "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change",
    );
}
