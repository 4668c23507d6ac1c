//! Issue 15 (admin): org settings, ownership transfer, org members, workspace
//! guest access, the admin policy over HTTP, and the audit log (entries for
//! each privileged action, verification, tampering, append-only triggers,
//! NDJSON export).

use diesel::{Connection, RunQueryDsl};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::conversations::conversation;
use crate::helpers::{Backend, TestApp, TestUser};

both_backends!(
    admin_policy_settings_and_audit,
    tampering_is_found_and_triggers_refuse_changes,
    concurrent_appends_keep_one_chain
);

const SECRET: &str = "test-relay-secret";

/// Runs a statement on the test database; `Err` with the database's message
/// when it refuses.
fn try_sql(app: &TestApp, statement: &str) -> Result<(), String> {
    if let Some(path) = app.db.url.strip_prefix("sqlite://") {
        let mut c = diesel::sqlite::SqliteConnection::establish(path).unwrap();
        diesel::sql_query("PRAGMA busy_timeout = 10000")
            .execute(&mut c)
            .unwrap();
        diesel::sql_query(statement)
            .execute(&mut c)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        let mut c = diesel::pg::PgConnection::establish(&app.db.url).unwrap();
        diesel::sql_query(statement)
            .execute(&mut c)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Every audit entry of the org, newest first, read page by page.
async fn audit_all(app: &TestApp, who: &TestUser, org: &str, filter: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/orgs/{org}/audit?limit=3{filter}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let a = app.get(&path, &who.token).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        out.extend(a.body["items"].as_array().unwrap().iter().cloned());
        match a.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn find<'a>(entries: &'a [Value], action: &str, target: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["action"] == action && e["target"] == target)
        .unwrap_or_else(|| panic!("no {action} on {target} in {entries:#?}"))
}

async fn export(app: &TestApp, who: &TestUser, org: &str) -> (String, String) {
    let res = app
        .client
        .get(format!("{}/orgs/{org}/audit/export", app.base))
        .bearer_auth(&who.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    (ct, res.text().await.unwrap())
}

async fn admin_policy_settings_and_audit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@acme.dev", "Olga").await;
    let member = app.signup("max@acme.dev", "Max").await;
    let leaver = app.signup("lea@acme.dev", "Lea").await;
    let guest = app.signup("gus@other.dev", "Gus").await;
    let org = app.org_of(&owner).await;
    assert_eq!(app.org_of(&member).await, org);
    let team = app.workspace(&owner, "team").await;
    let project = app.create_project(&owner, &team, "Plans").await;
    let doc = app
        .create_resource(&owner, &project, "documents", "Doc")
        .await;

    // The admin policy over HTTP: members (editors) look, owners change,
    // outsiders are told nothing exists.
    let members = app
        .get(&format!("/orgs/{org}/members"), &member.token)
        .await;
    assert_eq!(members.status, StatusCode::OK, "{}", members.body);
    assert_eq!(members.body["items"].as_array().unwrap().len(), 3);
    assert_eq!(members.body["items"][0]["orgRole"], "owner");
    let page = app
        .get(&format!("/orgs/{org}/members?limit=2"), &owner.token)
        .await;
    let next = page.body["nextCursor"].as_str().unwrap().to_string();
    let rest = app
        .get(
            &format!("/orgs/{org}/members?limit=2&cursor={next}"),
            &owner.token,
        )
        .await;
    assert_eq!(rest.body["items"][0]["userId"], leaver.id.as_str());
    for (who, status) in [
        (&member, StatusCode::FORBIDDEN),
        (&guest, StatusCode::NOT_FOUND),
    ] {
        let patch = app
            .patch(&format!("/orgs/{org}"), &who.token, json!({"name": "X"}))
            .await;
        assert_eq!(patch.status, status);
        assert_eq!(
            app.get(&format!("/orgs/{org}/audit"), &who.token)
                .await
                .status,
            status
        );
        assert_eq!(
            app.get(&format!("/orgs/{org}/audit/verify"), &who.token)
                .await
                .status,
            status
        );
        let ws = app
            .patch(
                &format!("/workspaces/{team}"),
                &who.token,
                json!({"guestAccess": "off"}),
            )
            .await;
        assert_eq!(ws.status, status, "{}", ws.body);
    }
    assert_eq!(
        app.get(&format!("/orgs/{org}/members"), &guest.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Org settings: rename (validated).
    let bad = app
        .patch(&format!("/orgs/{org}"), &owner.token, json!({"name": "  "}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let renamed = app
        .patch(
            &format!("/orgs/{org}"),
            &owner.token,
            json!({"name": "Acme Inc", "joinPolicy": "approval"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "Acme Inc");

    // Grants on a project: a guest (another org) as editor, then viewer.
    let pm = format!("/projects/{project}/members");
    let add = app.grant(&pm, &owner, &guest.id, "editor").await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.body);
    let set = app
        .patch(
            &format!("{pm}/{}", guest.id),
            &owner.token,
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let add = app.grant(&pm, &owner, &leaver.id, "editor").await;
    assert_eq!(add.status, StatusCode::CREATED);

    // An invite, revoked.
    let inv = app
        .post(
            &format!("/workspaces/{team}/invites"),
            &owner.token,
            json!({"email": "new@else.dev", "role": "viewer"}),
        )
        .await;
    assert_eq!(inv.status, StatusCode::CREATED, "{}", inv.body);
    let invite_id = inv.id();
    let rev = app
        .delete(
            &format!("/workspaces/{team}/invites/{invite_id}"),
            &owner.token,
        )
        .await;
    assert_eq!(rev.status, StatusCode::OK, "{}", rev.body);

    // Guest access: editors cannot change it; lowering to `view` clamps the
    // guest's owner grant to viewer.
    let ws = app
        .patch(
            &format!("/workspaces/{team}"),
            &member.token,
            json!({"name": "Y"}),
        )
        .await;
    assert_eq!(ws.status, StatusCode::FORBIDDEN);
    let ws = app
        .patch(
            &format!("/workspaces/{team}"),
            &owner.token,
            json!({"guestAccess": "view", "name": "Acme Team"}),
        )
        .await;
    assert_eq!(ws.status, StatusCode::OK, "{}", ws.body);
    assert_eq!(ws.body["guestAccess"], "view");
    assert_eq!(ws.body["clampedGrants"], 1);
    let role = app.get(&format!("/projects/{project}"), &guest.token).await;
    assert_eq!(role.body["role"], "viewer", "{}", role.body);
    // Above viewer is refused with a clear code; viewer is fine.
    let dm = format!("/documents/{doc}/members");
    let refused = app.grant(&dm, &owner, &guest.id, "editor").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.code(), "guest_access_denied");
    let up = app
        .patch(
            &format!("{pm}/{}", guest.id),
            &owner.token,
            json!({"role": "editor"}),
        )
        .await;
    assert_eq!(up.code(), "guest_access_denied");
    let ok = app.grant(&dm, &owner, &guest.id, "viewer").await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);

    // Share links: with `view` a guest reads through the link but cannot
    // join; with `off` not even read; with `edit` they join.
    let c = conversation(&app, &owner, &project, "Shared").await;
    let share = app
        .post(
            &format!("/conversations/{c}/share"),
            &owner.token,
            Value::Null,
        )
        .await;
    assert_eq!(share.status, StatusCode::CREATED);
    let link = format!("/shares/{}", share.body["shareId"].as_str().unwrap());
    assert_eq!(app.get(&link, &guest.token).await.status, StatusCode::OK);
    let join = app
        .post(&format!("{link}/join"), &guest.token, Value::Null)
        .await;
    assert_eq!(join.code(), "guest_access_denied", "{}", join.body);
    let off = app
        .patch(
            &format!("/workspaces/{team}"),
            &owner.token,
            json!({"guestAccess": "off"}),
        )
        .await;
    assert_eq!(off.body["clampedGrants"], 2, "{}", off.body);
    assert_eq!(
        app.get(&format!("/projects/{project}"), &guest.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&link, &guest.token).await.code(),
        "guest_access_denied"
    );
    app.patch(
        &format!("/workspaces/{team}"),
        &owner.token,
        json!({"guestAccess": "edit"}),
    )
    .await;
    let join = app
        .post(&format!("{link}/join"), &guest.token, Value::Null)
        .await;
    assert_eq!(join.status, StatusCode::OK, "{}", join.body);
    assert_eq!(
        app.delete(&link, &owner.token).await.status,
        StatusCode::NO_CONTENT
    );

    // Ownership transfer: only to a member of the org.
    let t = app
        .post(
            &format!("/orgs/{org}/transfer"),
            &owner.token,
            json!({"userId": guest.id}),
        )
        .await;
    assert_eq!(t.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", t.body);
    let t = app
        .post(
            &format!("/orgs/{org}/transfer"),
            &member.token,
            json!({"userId": member.id}),
        )
        .await;
    assert_eq!(t.status, StatusCode::FORBIDDEN);
    let t = app
        .post(
            &format!("/orgs/{org}/transfer"),
            &owner.token,
            json!({"userId": member.id}),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    assert_eq!(app.session(&member).await["user"]["orgRole"], "owner");
    assert_eq!(app.session(&owner).await["user"]["orgRole"], "member");
    assert_eq!(
        app.get(&format!("/orgs/{org}/audit"), &owner.token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let new_owner = member;

    // Removing a member ends their grants, through the access feed.
    let start = app.get("/collaboration/events", SECRET).await;
    let cursor = start.body["last"].as_i64().unwrap();
    let room = format!("doc-{doc}");
    let access = |u: &str| format!("/collaboration/check-access?roomId={room}&userId={u}");
    assert_eq!(
        app.get(&access(&leaver.id), SECRET).await.body["hasAccess"],
        true
    );
    let owner_out = app
        .delete(
            &format!("/orgs/{org}/members/{}", new_owner.id),
            &new_owner.token,
        )
        .await;
    assert_eq!(owner_out.status, StatusCode::CONFLICT);
    let out = app
        .delete(
            &format!("/orgs/{org}/members/{}", leaver.id),
            &new_owner.token,
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    assert_eq!(
        app.get(&access(&leaver.id), SECRET).await.body["hasAccess"],
        false
    );
    let feed = app
        .get(
            &format!("/collaboration/events?after={cursor}&timeoutMs=50"),
            SECRET,
        )
        .await;
    assert!(
        feed.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["userId"] == leaver.id.as_str()),
        "{}",
        feed.body
    );
    let s = app.session(&leaver).await;
    assert_ne!(s["user"]["orgId"], org.as_str());
    assert!(s["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["type"] == "personal"));
    assert_eq!(
        app.get(
            &format!("/orgs/{org}/members/{}", leaver.id),
            &new_owner.token
        )
        .await
        .status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    // The audit log: one entry per privileged action, newest first.
    let entries = audit_all(&app, &new_owner, &org, "").await;
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let want: Vec<i64> = (1..=seqs.len() as i64).rev().collect();
    assert_eq!(seqs, want);
    let e = find(&entries, "org.update", &format!("org:{org}"));
    assert_eq!(e["actor"], owner.id.as_str());
    assert_eq!(e["before"], json!({"name": "Acme", "joinPolicy": "auto"}));
    assert_eq!(
        e["after"],
        json!({"name": "Acme Inc", "joinPolicy": "approval"})
    );
    assert!(!e["requestId"].as_str().unwrap().is_empty());
    let target = format!("project:{project}");
    let adds: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "member.add" && e["target"] == target.as_str())
        .collect();
    assert_eq!(adds.len(), 2);
    assert!(adds.iter().any(
        |e| e["after"] == json!({"userId": guest.id, "role": "editor"})
            && e["before"].is_null()
            && e["actor"] == owner.id.as_str()
    ));
    let e = find(&entries, "member.role", &target);
    assert_eq!(e["before"], json!({"userId": guest.id, "role": "editor"}));
    assert_eq!(e["after"], json!({"userId": guest.id, "role": "owner"}));
    let e = find(&entries, "member.add", &format!("doc:{doc}"));
    assert_eq!(e["after"]["role"], "viewer");
    let e = find(&entries, "invite.create", &format!("invite:{invite_id}"));
    assert_eq!(
        e["after"],
        json!({"workspaceId": team, "email": "new@else.dev", "role": "viewer"})
    );
    let e = find(&entries, "invite.revoke", &format!("invite:{invite_id}"));
    assert_eq!(e["after"], json!({"status": "revoked"}));
    let ws_updates: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "workspace.update")
        .collect();
    assert_eq!(ws_updates.len(), 3);
    let first = ws_updates.last().unwrap();
    assert_eq!(first["target"], format!("workspace:{team}"));
    assert_eq!(first["before"]["guestAccess"], "edit");
    assert_eq!(
        first["after"],
        json!({"name": "Acme Team", "guestAccess": "view", "clampedGrants": 1})
    );
    let conv = format!("conversation:{c}");
    find(&entries, "share.create", &conv);
    find(&entries, "share.revoke", &conv);
    let e = find(&entries, "participant.add", &conv);
    assert_eq!(e["actor"], guest.id.as_str());
    let e = find(&entries, "org.transfer", &format!("org:{org}"));
    assert_eq!(e["actor"], owner.id.as_str());
    assert_eq!(e["after"], json!({"ownerId": new_owner.id}));
    assert_eq!(e["before"]["ownerId"], owner.id.as_str());
    let e = find(
        &entries,
        "org.member.remove",
        &format!("user:{}", leaver.id),
    );
    assert_eq!(e["actor"], new_owner.id.as_str());
    assert_eq!(e["before"]["orgRole"], "member");
    assert_eq!(e["after"], json!({"endedGrants": 1}));

    // Filters.
    let only = audit_all(&app, &new_owner, &org, "&action=member.add").await;
    assert_eq!(only.len(), 3);
    assert!(only.iter().all(|e| e["action"] == "member.add"));
    let by_guest = audit_all(&app, &new_owner, &org, &format!("&actor={}", guest.id)).await;
    assert_eq!(by_guest.len(), 1);
    let at = entries[0]["at"].as_i64().unwrap();
    let recent = audit_all(&app, &new_owner, &org, &format!("&since={at}")).await;
    assert!(!recent.is_empty() && recent.iter().all(|e| e["at"].as_i64() >= Some(at)));
    assert!(audit_all(&app, &new_owner, &org, "&until=1")
        .await
        .is_empty());
    assert_eq!(
        app.get(&format!("/orgs/{org}/audit?cursor=x"), &new_owner.token)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get(&format!("/orgs/{org}/audit?bogus=1"), &new_owner.token)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Verification and export.
    let v = app
        .get(&format!("/orgs/{org}/audit/verify"), &new_owner.token)
        .await;
    assert_eq!(v.body["ok"], true, "{}", v.body);
    assert_eq!(v.body["checked"], entries.len());
    assert!(v.body.get("firstBrokenSeq").is_none());
    assert_eq!(v.body["headHash"], entries[0]["hash"]);
    let (ct, text) = export(&app, &new_owner, &org).await;
    assert_eq!(ct, "application/x-ndjson");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let mut listed = entries.clone();
    listed.reverse();
    assert_eq!(lines, listed);
    assert!(text.ends_with('\n'));
}

async fn tampering_is_found_and_triggers_refuse_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@tamper.dev", "Olga").await;
    let org = app.org_of(&owner).await;
    for n in 1..=5 {
        let a = app
            .patch(
                &format!("/orgs/{org}"),
                &owner.token,
                json!({"name": format!("Name {n}")}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let ok = app
        .get(&format!("/orgs/{org}/audit/verify"), &owner.token)
        .await;
    assert_eq!(ok.body["ok"], true);
    assert_eq!(ok.body["checked"], 5);

    // The triggers refuse UPDATE and DELETE.
    let update = try_sql(
        &app,
        &format!("UPDATE audit_log SET actor = 'mallory' WHERE org_id = '{org}' AND seq = 3"),
    );
    assert!(update.unwrap_err().contains("append-only"));
    let delete = try_sql(
        &app,
        &format!("DELETE FROM audit_log WHERE org_id = '{org}'"),
    );
    assert!(delete.unwrap_err().contains("append-only"));
    if backend == Backend::Postgres {
        let t = try_sql(&app, "TRUNCATE audit_log");
        assert!(t.unwrap_err().contains("append-only"));
    }
    assert_eq!(
        app.get(&format!("/orgs/{org}/audit/verify"), &owner.token)
            .await
            .body["ok"],
        true
    );

    // Someone with the database's keys gets past the trigger and edits
    // entry 3: verification names it.
    let (off, on) = match backend {
        Backend::Sqlite => (
            "DROP TRIGGER audit_log_no_update".to_string(),
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
                .to_string(),
        ),
        Backend::Postgres => (
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change".to_string(),
            "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change".to_string(),
        ),
    };
    try_sql(&app, &off).unwrap();
    try_sql(
        &app,
        &format!(
            "UPDATE audit_log SET after = '{{\"joinPolicy\":\"auto\",\"name\":\"Evil\"}}' \
             WHERE org_id = '{org}' AND seq = 3"
        ),
    )
    .unwrap();
    try_sql(&app, &on).unwrap();
    let v = app
        .get(&format!("/orgs/{org}/audit/verify"), &owner.token)
        .await;
    assert_eq!(
        v.body,
        json!({
            "ok": false,
            "checked": 2,
            "firstBrokenSeq": 3,
            "headSeq": 2,
            "headHash": v.body["headHash"],
        })
    );
    // A forged row appended after the end does not link either.
    try_sql(
        &app,
        &format!(
            "INSERT INTO audit_log (org_id, seq, at, actor, action, target, before, after, \
             request_id, prev_hash, hash) VALUES ('{org}', 6, 1, 'mallory', 'org.update', \
             'org:{org}', NULL, NULL, NULL, 'x', 'y')"
        ),
    )
    .unwrap();
    let v = app
        .get(&format!("/orgs/{org}/audit/verify"), &owner.token)
        .await;
    assert_eq!(v.body["firstBrokenSeq"], 3);
}

/// Many privileged changes of one org at once: the chain stays one line.
async fn concurrent_appends_keep_one_chain(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@busy.dev", "Olga").await;
    let org = app.org_of(&owner).await;
    let calls = (0..24).map(|n| {
        let app = &app;
        let owner = &owner;
        let org = &org;
        async move {
            app.patch(
                &format!("/orgs/{org}"),
                &owner.token,
                json!({"name": format!("Name {n}")}),
            )
            .await
            .status
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let v = app
        .get(&format!("/orgs/{org}/audit/verify"), &owner.token)
        .await;
    assert_eq!(v.body["ok"], true, "{}", v.body);
    assert_eq!(v.body["checked"], 24);
}
