//! The sync engine (`/workspaces/{id}/sync/*`, proto-docs/sync.md): push,
//! pull, live pokes and revocation, compaction, on both databases.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Answer, Backend, EventStream, TestApp, TestUser};

both_backends!(
    pushes_apply_once_and_pull_returns_the_rows,
    concurrent_patches_resolve_by_hlc_on_every_replica,
    a_clock_far_in_the_future_is_clamped,
    viewers_are_rejected_per_mutation,
    removed_member_is_revoked_and_cannot_pull,
    reset_after_compaction_returns_exactly_the_current_state,
    late_commits_are_never_skipped,
    bad_inputs_are_refused_clearly,
    a_user_keeps_a_bounded_number_of_client_ids,
);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn hlc(ms: i64, counter: u32, client: &str) -> String {
    format!("{ms:013}:{counter:06}:{client}")
}

fn put(id: i64, row: &str, fields: Value, hlc: &str) -> Value {
    json!({"id": id, "collection": "todos", "rowId": row, "op": "put", "fields": fields, "hlc": hlc})
}

fn patch(id: i64, row: &str, fields: Value, hlc: &str) -> Value {
    json!({"id": id, "collection": "todos", "rowId": row, "op": "patch", "fields": fields, "hlc": hlc})
}

fn del(id: i64, row: &str, hlc: &str) -> Value {
    json!({"id": id, "collection": "todos", "rowId": row, "op": "delete", "hlc": hlc})
}

async fn push(app: &TestApp, who: &TestUser, ws: &str, client: &str, mutations: Value) -> Answer {
    app.post(
        &format!("/workspaces/{ws}/sync/push"),
        &who.token,
        json!({"clientGroupId": format!("g-{client}"), "clientId": client, "mutations": mutations}),
    )
    .await
}

fn statuses(a: &Answer) -> Vec<String> {
    a.body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {}", a.body))
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

/// What a client holds after applying pulls: `(collection, rowId)` → fields.
type Rows = BTreeMap<(String, String), Value>;

/// Pulls until `hasMore` is false, applying changes to `rows` (cleared on
/// a reset); returns the final cursor and whether a reset came.
async fn pull_into(
    app: &TestApp,
    who: &TestUser,
    ws: &str,
    cursor: Option<String>,
    limit: i64,
    rows: &mut Rows,
) -> (String, bool) {
    let mut cursor = cursor;
    let mut reset = false;
    loop {
        let mut path = format!("/workspaces/{ws}/sync/pull?limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let a = app.get(&path, &who.token).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        if a.body["reset"] == true {
            reset = true;
            rows.clear();
        }
        for ch in a.body["changes"].as_array().unwrap() {
            let key = (
                ch["collection"].as_str().unwrap().to_string(),
                ch["rowId"].as_str().unwrap().to_string(),
            );
            if ch["deleted"] == true {
                assert!(ch["fields"].is_null());
                rows.remove(&key);
            } else {
                rows.insert(key, ch["fields"].clone());
            }
        }
        cursor = Some(a.body["cursor"].as_str().unwrap().to_string());
        if a.body["hasMore"] != true {
            return (cursor.unwrap(), reset);
        }
    }
}

async fn state(app: &TestApp, who: &TestUser, ws: &str) -> Rows {
    let mut rows = Rows::new();
    pull_into(app, who, ws, None, 1000, &mut rows).await;
    rows
}

fn key(row: &str) -> (String, String) {
    ("todos".to_string(), row.to_string())
}

async fn pushes_apply_once_and_pull_returns_the_rows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann@sync.dev", "Ann").await;
    let ws = app.workspace(&ann, "personal").await;
    let t = now_ms();
    let batch = json!([
        put(
            1,
            "a",
            json!({"title": "A", "done": false}),
            &hlc(t, 0, "dev1")
        ),
        put(2, "b", json!({"title": "B"}), &hlc(t, 1, "dev1")),
        patch(3, "a", json!({"done": true}), &hlc(t, 2, "dev1")),
        put(4, "c", json!({"title": "C"}), &hlc(t, 3, "dev1")),
        del(5, "c", &hlc(t, 4, "dev1")),
    ]);
    let a = push(&app, &ann, &ws, "dev1", batch.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["lastMutationId"], 5);
    assert_eq!(statuses(&a), vec!["applied"; 5]);
    let first = state(&app, &ann, &ws).await;
    assert_eq!(
        first,
        Rows::from([
            (key("a"), json!({"title": "A", "done": true})),
            (key("b"), json!({"title": "B"})),
        ])
    );

    // The same ids again, even with other contents: duplicates, nothing changes.
    let mut replay = batch.clone();
    replay[0]["fields"] = json!({"title": "changed"});
    replay[4]["hlc"] = json!(hlc(t + 5, 0, "dev1"));
    let again = push(&app, &ann, &ws, "dev1", replay).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(statuses(&again), vec!["duplicate"; 5]);
    assert_eq!(again.body["lastMutationId"], 5);
    assert_eq!(state(&app, &ann, &ws).await, first);
    // A replay moves nothing: no other device is sent to pull.
    let mut seen = Rows::new();
    let (before, _) = pull_into(&app, &ann, &ws, None, 1000, &mut seen).await;
    push(&app, &ann, &ws, "dev1", batch.clone()).await;
    let mut news = Rows::new();
    let (after, _) = pull_into(&app, &ann, &ws, Some(before.clone()), 1000, &mut news).await;
    assert!(news.is_empty(), "a replay changed rows: {news:?}");
    assert_eq!(after, before, "a replay moved the workspace's cursor");
    // A partly new batch: only the new ids apply.
    let mixed = push(
        &app,
        &ann,
        &ws,
        "dev1",
        json!([
            patch(5, "a", json!({"title": "no"}), &hlc(t + 9, 0, "dev1")),
            patch(6, "a", json!({"title": "A2"}), &hlc(t + 9, 1, "dev1")),
        ]),
    )
    .await;
    assert_eq!(statuses(&mixed), vec!["duplicate", "applied"]);
    let after = state(&app, &ann, &ws).await;
    assert_eq!(after[&key("a")], json!({"title": "A2", "done": true}));

    // lastMutationIds: the caller's clients (of a group, if asked).
    let p = app
        .get(
            &format!("/workspaces/{ws}/sync/pull?clientGroupId=g-dev1"),
            &ann.token,
        )
        .await;
    assert_eq!(p.body["lastMutationIds"], json!({"dev1": 6}));
    let p = app
        .get(
            &format!("/workspaces/{ws}/sync/pull?clientGroupId=other"),
            &ann.token,
        )
        .await;
    assert_eq!(p.body["lastMutationIds"], json!({}));

    // An incremental pull after the last cursor is empty; a new change comes alone.
    let mut rows = after.clone();
    let (cursor, _) = pull_into(&app, &ann, &ws, None, 1, &mut Rows::new()).await;
    let p = app
        .get(
            &format!("/workspaces/{ws}/sync/pull?cursor={cursor}"),
            &ann.token,
        )
        .await;
    assert_eq!(p.body["changes"], json!([]));
    assert_eq!(p.body["cursor"], cursor.as_str());
    push(
        &app,
        &ann,
        &ws,
        "dev1",
        json!([put(7, "d", json!({"x": 1}), &hlc(t + 10, 0, "dev1"))]),
    )
    .await;
    let p = app
        .get(
            &format!("/workspaces/{ws}/sync/pull?cursor={cursor}"),
            &ann.token,
        )
        .await;
    assert_eq!(
        p.body["changes"],
        json!([{"collection": "todos", "rowId": "d", "fields": {"x": 1}, "deleted": false,
                "hlc": hlc(t + 10, 0, "dev1")}])
    );
    pull_into(&app, &ann, &ws, Some(cursor), 1, &mut rows).await;
    assert_eq!(rows.len(), 3);

    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "tandem_control_sync_pushes_total",
        "tandem_control_sync_mutations_duplicate_total 11",
        "tandem_control_sync_pulls_total",
        "tandem_control_sync_log_rows",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
}

async fn concurrent_patches_resolve_by_hlc_on_every_replica(backend: Backend) {
    let (a, b) = TestApp::spawn_pair(backend).await;
    let owner = a.signup("olga@lww.dev", "Olga").await;
    let ed = a.signup("ed@lww.dev", "Ed").await; // same org: editor of the team workspace
    let ws = a.workspace(&owner, "team").await;
    let t = now_ms();
    push(
        &a,
        &owner,
        &ws,
        "dev-a",
        json!([put(
            1,
            "r",
            json!({"title": "start", "n": 0}),
            &hlc(t, 0, "dev-a")
        )]),
    )
    .await;
    for round in 0..10_i64 {
        // Both patch `title` at once, through different replicas; one clock is
        // higher (alternating who), or — in odd rounds — equal but for the client id.
        let ms = t + 10 + round * 10;
        let (ha, hb) = if round % 2 == 0 {
            (hlc(ms, 0, "dev-a"), hlc(ms + 1, 0, "dev-b"))
        } else {
            (hlc(ms, 0, "dev-a"), hlc(ms, 0, "dev-b"))
        };
        let (ra, rb) = tokio::join!(
            push(
                &a,
                &owner,
                &ws,
                "dev-a",
                json!([patch(
                    round + 2,
                    "r",
                    json!({"title": format!("a{round}")}),
                    &ha
                )])
            ),
            push(
                &b,
                &ed,
                &ws,
                "dev-b",
                json!([patch(
                    round + 1,
                    "r",
                    json!({"title": format!("b{round}"), "n": round}),
                    &hb
                )])
            ),
        );
        assert_eq!(statuses(&ra), vec!["applied"]);
        assert_eq!(statuses(&rb), vec!["applied"]);
        // dev-b wins: a higher clock in even rounds, the higher client id on ties.
        let want = json!({"title": format!("b{round}"), "n": round});
        let (sa, sb) = tokio::join!(state(&a, &owner, &ws), state(&b, &ed, &ws));
        assert_eq!(sa[&key("r")], want, "round {round} on replica a");
        assert_eq!(sb[&key("r")], want, "round {round} on replica b");
    }
    // An older write arriving late loses, and is counted as a conflict.
    let late = push(
        &b,
        &ed,
        &ws,
        "dev-b",
        json!([patch(
            100,
            "r",
            json!({"title": "late"}),
            &hlc(t, 5, "dev-b")
        )]),
    )
    .await;
    assert_eq!(statuses(&late), vec!["applied"]);
    assert_eq!(state(&a, &owner, &ws).await[&key("r")]["title"], "b9");
}

async fn a_clock_far_in_the_future_is_clamped(backend: Backend) {
    let drift = 100;
    let app = TestApp::spawn_with(backend, |c| c.sync_max_drift_ms = drift).await;
    let ann = app.signup("ann@clock.dev", "Ann").await;
    let ws = app.workspace(&ann, "personal").await;
    let year_2100 = 4_102_444_800_000;
    let before = now_ms();
    let a = push(
        &app,
        &ann,
        &ws,
        "skewed",
        json!([put(
            1,
            "r",
            json!({"v": "future"}),
            &hlc(year_2100, 7, "skewed")
        )]),
    )
    .await;
    assert_eq!(statuses(&a), vec!["applied"]);
    let p = app
        .get(&format!("/workspaces/{ws}/sync/pull"), &ann.token)
        .await;
    let stored = p.body["changes"][0]["hlc"].as_str().unwrap().to_string();
    let ms: i64 = stored[..13].parse().unwrap();
    assert!(ms >= before && ms <= now_ms() + drift as i64, "{stored}");
    assert!(stored.ends_with(":000007:skewed"), "{stored}");
    // So an honest clock wins once real time passes the allowance (unclamped,
    // the skewed client would win every write until 2100).
    tokio::time::sleep(Duration::from_millis(drift + 50)).await;
    let honest = push(
        &app,
        &ann,
        &ws,
        "honest",
        json!([patch(
            1,
            "r",
            json!({"v": "now"}),
            &hlc(now_ms(), 0, "honest")
        )]),
    )
    .await;
    assert_eq!(statuses(&honest), vec!["applied"]);
    assert_eq!(state(&app, &ann, &ws).await[&key("r")], json!({"v": "now"}));
}

async fn viewers_are_rejected_per_mutation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@viewers.dev", "Olga").await;
    let viewer = app.signup("vic@elsewhere-viewers.dev", "Vic").await;
    let stranger = app.signup("sam@strangers.dev", "Sam").await;
    let ws = app.workspace(&owner, "team").await;
    let add = app
        .post(
            &format!("/workspaces/{ws}/members"),
            &owner.token,
            json!({"userId": viewer.id, "role": "viewer"}),
        )
        .await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.body);
    let t = now_ms();
    push(
        &app,
        &owner,
        &ws,
        "o",
        json!([put(1, "r", json!({"v": 1}), &hlc(t, 0, "o"))]),
    )
    .await;
    let a = push(
        &app,
        &viewer,
        &ws,
        "v",
        json!([
            patch(1, "r", json!({"v": 2}), &hlc(t + 1, 0, "v")),
            put(2, "s", json!({}), &hlc(t + 1, 1, "v"))
        ]),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(statuses(&a), vec!["rejected", "rejected"]);
    assert!(a.body["results"][0]["error"]
        .as_str()
        .unwrap()
        .contains("read"));
    assert_eq!(a.body["lastMutationId"], 2);
    // The viewer reads; nothing changed.
    assert_eq!(
        state(&app, &viewer, &ws).await,
        Rows::from([(key("r"), json!({"v": 1}))])
    );
    // Strangers see no workspace at all.
    let s = push(
        &app,
        &stranger,
        &ws,
        "s",
        json!([put(1, "r", json!({"v": 3}), &hlc(t + 2, 0, "s"))]),
    )
    .await;
    assert_eq!(s.status, StatusCode::NOT_FOUND);
    let s = app
        .get(&format!("/workspaces/{ws}/sync/pull"), &stranger.token)
        .await;
    assert_eq!(s.status, StatusCode::NOT_FOUND);
    let s = app
        .get(&format!("/workspaces/{ws}/sync/events"), &stranger.token)
        .await;
    assert_eq!(s.status, StatusCode::NOT_FOUND);
    // A client id is its first user's: another user cannot use (or replay) it.
    let s = push(
        &app,
        &viewer,
        &ws,
        "o",
        json!([put(9, "r", json!({"v": 4}), &hlc(t + 3, 0, "o"))]),
    )
    .await;
    assert_eq!(s.status, StatusCode::FORBIDDEN);
}

async fn removed_member_is_revoked_and_cannot_pull(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other = app.replica(|_| {}).await;
    let owner = app.signup("olga@revoke.dev", "Olga").await;
    let guest = app.signup("gus@elsewhere-revoke.dev", "Gus").await;
    let guest2 = app.signup("gia@elsewhere-revoke.dev", "Gia").await;
    let ws = app.workspace(&owner, "team").await;
    for g in [&guest, &guest2] {
        let add = app
            .post(
                &format!("/workspaces/{ws}/members"),
                &owner.token,
                json!({"userId": g.id, "role": "editor"}),
            )
            .await;
        assert_eq!(add.status, StatusCode::CREATED, "{}", add.body);
    }
    let path = format!("/workspaces/{ws}/sync/events");
    // Gus listens on this replica, Gia on the other one.
    let mut s = EventStream::open(&app, &path, &guest.token, None).await;
    let mut s2 = EventStream::open(&other, &path, &guest2.token, None).await;
    let first = s.next().await;
    assert_eq!(first.event, "poke");
    assert_eq!(s2.next().await.event, "poke");
    // A push pokes both (the other replica finds it by polling).
    let t = now_ms();
    push(
        &app,
        &owner,
        &ws,
        "o",
        json!([put(1, "r", json!({"v": 1}), &hlc(t, 0, "o"))]),
    )
    .await;
    let poke = s.next().await;
    assert_eq!(poke.event, "poke");
    assert_ne!(poke.data["cursor"], first.data["cursor"]);
    let p = app
        .get(&format!("/workspaces/{ws}/sync/pull"), &guest.token)
        .await;
    assert_eq!(
        p.body["cursor"], poke.data["cursor"],
        "a complete pull ends at the poke's cursor"
    );
    assert_eq!(s2.next().await.data["cursor"], poke.data["cursor"]);

    // Removing Gus revokes his stream at once; Gia's goes on.
    let r = app
        .delete(
            &format!("/workspaces/{ws}/members/{}", guest.id),
            &owner.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let revoked = s.next().await;
    assert_eq!(revoked.event, "revoked");
    assert_eq!(revoked.data["reason"], "access_revoked");
    assert_eq!(s.next_or_end().await, None);
    let p = app
        .get(&format!("/workspaces/{ws}/sync/pull"), &guest.token)
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    let p = push(
        &app,
        &guest,
        &ws,
        "g",
        json!([put(1, "x", json!({}), &hlc(t, 0, "g"))]),
    )
    .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    // Gia, on the other replica, is removed through this one: revoked by polling.
    let r = app
        .delete(
            &format!("/workspaces/{ws}/members/{}", guest2.id),
            &owner.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let revoked = s2.next().await;
    assert_eq!(revoked.event, "revoked", "{revoked:?}");
    assert_eq!(s2.next_or_end().await, None);
}

async fn reset_after_compaction_returns_exactly_the_current_state(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.sync_tombstone_horizon_ms = 1;
        c.sync_compact_interval_ms = 50;
    })
    .await;
    let ann = app.signup("ann@compact.dev", "Ann").await;
    let ws = app.workspace(&ann, "personal").await;
    let t = now_ms();
    let rows: Vec<Value> = (1..=6)
        .map(|i| {
            put(
                i,
                &format!("r{i}"),
                json!({"i": i, "s": "x"}),
                &hlc(t, i as u32, "d"),
            )
        })
        .collect();
    push(&app, &ann, &ws, "d", Value::Array(rows)).await;
    let mut old = Rows::new();
    let (old_cursor, _) = pull_into(&app, &ann, &ws, None, 1000, &mut old).await;
    assert_eq!(old.len(), 6);
    // Many writes to one row keep one entry; two rows are deleted.
    let mut muts = Vec::new();
    for n in 0..50 {
        muts.push(patch(
            10 + n,
            "r3",
            json!({"s": format!("v{n}")}),
            &hlc(t + 1, n as u32, "d"),
        ));
    }
    muts.push(del(100, "r2", &hlc(t + 2, 0, "d")));
    muts.push(del(101, "r5", &hlc(t + 2, 1, "d")));
    muts.push(put(102, "r7", json!({"i": 7}), &hlc(t + 2, 2, "d")));
    let a = push(&app, &ann, &ws, "d", Value::Array(muts)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let mut up_to_date = old.clone();
    let (new_cursor, _) = pull_into(
        &app,
        &ann,
        &ws,
        Some(old_cursor.clone()),
        1000,
        &mut up_to_date,
    )
    .await;
    let expected = state(&app, &ann, &ws).await;
    assert_eq!(up_to_date, expected);
    assert_eq!(expected.len(), 5);
    assert_eq!(expected[&key("r3")], json!({"i": 3, "s": "v49"}));

    // Wait (bounded) for the compactor to prune the two tombstones.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = app.sql_texts(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) AS t FROM sync_rows WHERE workspace_id = '{ws}'"
        ));
        if n == ["5"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tombstones not pruned: {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The old cursor may have missed a pruned deletion: reset, and the pages
    // (small ones, to cross page boundaries) hold exactly the current state.
    let mut stale = old.clone();
    stale.insert(key("ghost"), json!({"left": "behind"}));
    let (_, reset) = pull_into(&app, &ann, &ws, Some(old_cursor), 2, &mut stale).await;
    assert!(reset, "an old cursor resets");
    assert_eq!(stale, expected);
    // A cursor that saw the deletions does not reset.
    let mut fresh = expected.clone();
    let (_, reset) = pull_into(&app, &ann, &ws, Some(new_cursor), 2, &mut fresh).await;
    assert!(!reset);
    assert_eq!(fresh, expected);
}

/// Writers push new rows as fast as they can through two replicas while
/// readers pull incrementally; every reader must end up with every row.
/// `TANDEM_SYNC_RACE_PUSHES` sets the number of pushes (default 2000).
async fn late_commits_are_never_skipped(backend: Backend) {
    let pushes: usize = std::env::var("TANDEM_SYNC_RACE_PUSHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let (a, b) = TestApp::spawn_pair(backend).await;
    let owner = a.signup("olga@race-sync.dev", "Olga").await;
    let ws = a.workspace(&owner, "team").await;
    let writers = 6;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let apps = std::sync::Arc::new((a, b));
    let mut readers = Vec::new();
    for r in 0..3 {
        let (apps, owner, ws, done) = (apps.clone(), owner.clone(), ws.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let app = if r % 2 == 0 { &apps.0 } else { &apps.1 };
            let mut rows = Rows::new();
            let mut cursor = None;
            let mut pulls = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let (c, reset) = pull_into(app, &owner, &ws, cursor.clone(), 50, &mut rows).await;
                assert!(!reset);
                cursor = Some(c);
                pulls += 1;
                if finished {
                    return (rows, pulls);
                }
            }
        }));
    }
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (apps, owner, ws) = (apps.clone(), owner.clone(), ws.clone());
        tasks.push(tokio::spawn(async move {
            let app = if w % 2 == 0 { &apps.0 } else { &apps.1 };
            let client = format!("w{w}");
            for i in 0..pushes / writers {
                let id = i as i64 + 1;
                let h = hlc(now_ms(), i as u32, &client);
                let a = push(
                    app,
                    &owner,
                    &ws,
                    &client,
                    json!([put(id, &format!("{client}-{i}"), json!({"i": i}), &h)]),
                )
                .await;
                assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let expected: BTreeSet<(String, String)> = (0..writers)
        .flat_map(|w| (0..pushes / writers).map(move |i| key(&format!("w{w}-{i}"))))
        .collect();
    for r in readers {
        let (rows, pulls) = r.await.unwrap();
        let got: BTreeSet<_> = rows.into_keys().collect();
        let missing: Vec<_> = expected.difference(&got).take(5).collect();
        assert!(
            missing.is_empty(),
            "a reader missed {missing:?} (after {pulls} pulls)"
        );
        assert_eq!(got.len(), expected.len());
    }
}

async fn bad_inputs_are_refused_clearly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann@bad-sync.dev", "Ann").await;
    let ws = app.workspace(&ann, "personal").await;
    let t = now_ms();
    let h = hlc(t, 0, "d");
    let ok = put(1, "r", json!({"v": 1}), &h);
    let with = |field: &str, value: Value| {
        let mut m = ok.clone();
        m[field] = value;
        json!([m])
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            with("collection", json!("1todos")),
            StatusCode::BAD_REQUEST,
            "collection",
        ),
        (
            with("collection", json!("to-dos")),
            StatusCode::BAD_REQUEST,
            "collection",
        ),
        (
            with("collection", json!("pending_ops")),
            StatusCode::BAD_REQUEST,
            "collection",
        ),
        (
            with("collection", json!("x".repeat(65))),
            StatusCode::BAD_REQUEST,
            "collection",
        ),
        (with("rowId", json!("")), StatusCode::BAD_REQUEST, "rowId"),
        (
            with("rowId", json!("a\u{0}b")),
            StatusCode::BAD_REQUEST,
            "rowId",
        ),
        (
            with("op", json!("upsert")),
            StatusCode::BAD_REQUEST,
            "op must be",
        ),
        (
            with("hlc", json!("yesterday")),
            StatusCode::BAD_REQUEST,
            "hlc",
        ),
        (
            with("hlc", json!(hlc(t, 0, "someone-else"))),
            StatusCode::BAD_REQUEST,
            "hlc",
        ),
        (
            with("hlc", json!(format!("{t}:0:d"))),
            StatusCode::BAD_REQUEST,
            "hlc",
        ),
        (with("id", json!(0)), StatusCode::BAD_REQUEST, "ids"),
        (
            with("fields", json!({"": 1})),
            StatusCode::BAD_REQUEST,
            "field names",
        ),
        (
            json!([ok.clone(), ok.clone()]),
            StatusCode::BAD_REQUEST,
            "increase",
        ),
        (
            json!([del(1, "r", &h)
                .as_object()
                .cloned()
                .map(|mut m| {
                    m.insert("fields".into(), json!({}));
                    m
                })
                .unwrap()]),
            StatusCode::BAD_REQUEST,
            "no fields",
        ),
        (
            json!([{"id": 1, "collection": "todos", "rowId": "r", "op": "patch", "hlc": h}]),
            StatusCode::BAD_REQUEST,
            "needs fields",
        ),
        (
            with("fields", json!({"big": "x".repeat(70 * 1024)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "at most",
        ),
        (
            Value::Array(
                (1..=501)
                    .map(|i| put(i, "r", json!({}), &hlc(t, i as u32, "d")))
                    .collect(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "500 mutations",
        ),
    ];
    for (mutations, status, says) in cases {
        let a = push(&app, &ann, &ws, "d", mutations.clone()).await;
        assert_eq!(a.status, status, "{mutations}: {}", a.body);
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message} should mention {says}");
        assert!(a.body["error"]["requestId"].is_string());
    }
    // Nothing of that was stored, nor counted as a mutation.
    assert!(state(&app, &ann, &ws).await.is_empty());
    let a = push(&app, &ann, &ws, "d", json!([ok])).await;
    assert_eq!(statuses(&a), vec!["applied"]);
    // A body over 4 MiB.
    let huge: Vec<Value> = (1..=80)
        .map(|i| {
            put(
                i,
                "r",
                json!({"b": "y".repeat(60 * 1024)}),
                &hlc(t, i as u32, "d"),
            )
        })
        .collect();
    let a = push(&app, &ann, &ws, "d", Value::Array(huge)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    // Bad client ids, unknown body fields.
    let a = app
        .post(
            &format!("/workspaces/{ws}/sync/push"),
            &ann.token,
            json!({"clientGroupId": "g", "clientId": "a b", "mutations": []}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = app
        .post(
            &format!("/workspaces/{ws}/sync/push"),
            &ann.token,
            json!({"clientGroupId": "g", "clientId": "c", "mutations": [], "extra": 1}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Pull: cursors this server did not make, limits, unknown parameters.
    for (query, status) in [
        ("cursor=abc", StatusCode::BAD_REQUEST),
        ("cursor=c-5", StatusCode::BAD_REQUEST),
        ("cursor=s1.2", StatusCode::BAD_REQUEST),
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=1001", StatusCode::UNPROCESSABLE_ENTITY),
        ("clientGroupId=a%20b", StatusCode::BAD_REQUEST),
        ("bogus=1", StatusCode::BAD_REQUEST),
    ] {
        let a = app
            .get(&format!("/workspaces/{ws}/sync/pull?{query}"), &ann.token)
            .await;
        assert_eq!(a.status, status, "{query}: {}", a.body);
    }
    // A cursor from the future (another workspace's, say) resets instead of skipping.
    let a = app
        .get(
            &format!("/workspaces/{ws}/sync/pull?cursor=c999999"),
            &ann.token,
        )
        .await;
    assert_eq!(a.body["reset"], true);
    assert_eq!(a.body["changes"].as_array().unwrap().len(), 1);
    // Unknown workspace; wrong method.
    let a = app.get("/workspaces/nope/sync/pull", &ann.token).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = app
        .call(
            Method::GET,
            &format!("/workspaces/{ws}/sync/push"),
            Some(&ann.token),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

async fn a_user_keeps_a_bounded_number_of_client_ids(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ann = app.signup("ann@tabs.dev", "Ann").await;
    let ws = app.workspace(&ann, "personal").await;
    let t = now_ms();
    let max = tandem_control::store::sync::MAX_CLIENTS_PER_USER;
    // One tab session after another, each a new client id.
    for i in 0..max + 5 {
        let client = format!("tab{i:04}");
        let one = json!([put(1, &client, json!({"n": i}), &hlc(t, 0, &client))]);
        let a = push(&app, &ann, &ws, &client, one).await;
        assert_eq!(statuses(&a), vec!["applied"], "{}", a.body);
    }
    let a = app
        .get(&format!("/workspaces/{ws}/sync/pull?limit=1"), &ann.token)
        .await;
    let known = a.body["lastMutationIds"].as_object().unwrap();
    assert_eq!(known.len() as i64, max, "client ids kept");
    // The newest are kept, the oldest forgotten.
    assert!(known.contains_key(&format!("tab{:04}", max + 4)));
    assert!(!known.contains_key("tab0000"));
}
