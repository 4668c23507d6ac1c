//! Every list endpoint returns exactly what `can(.., Read, ..)` allows: for
//! several users with grants at every level, each list is compared with the
//! set of things that user can GET one by one.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestUser};

both_backends!(lists_agree_with_can, access_follows_the_chain);

struct World {
    users: Vec<TestUser>,
    workspaces: Vec<String>,
    projects: Vec<String>,
    /// (path segment, id)
    resources: Vec<(&'static str, String)>,
}

async fn build_world(app: &TestApp) -> World {
    let alice = app.signup("alice@acme.dev", "Alice").await; // acme owner
    let bob = app.signup("bob@acme.dev", "Bob").await; // acme member
    let carol = app.signup("carol@gmail.com", "Carol").await; // outsider
    let dave = app.signup("dave@other.dev", "Dave").await; // other org owner
    let team = app.workspace(&alice, "team").await;
    let alice_personal = app.workspace(&alice, "personal").await;
    let dave_team = app.workspace(&dave, "team").await;

    let p1 = app.create_project(&alice, &team, "Roadmap").await;
    let p2 = app.create_project(&bob, &team, "Bob's").await;
    let p3 = app.create_project(&alice, &alice_personal, "Private").await;
    let p4 = app.create_project(&dave, &dave_team, "Other").await;
    let mut resources = Vec::new();
    for (user, project) in [(&alice, &p1), (&bob, &p2), (&alice, &p3), (&dave, &p4)] {
        for kind in ["documents", "diagrams", "tasks"] {
            for n in 0..2 {
                let id = app
                    .create_resource(user, project, kind, &format!("{kind} {n}"))
                    .await;
                resources.push((kind, id));
            }
        }
    }
    // Grants at each level: carol views one document of p3, dave edits p1,
    // bob views alice's personal workspace, carol owns a diagram of p4.
    // Resources were created per project in order p1, p2, p3, p4, two of each kind.
    let doc_p3 = resources
        .iter()
        .filter(|(k, _)| *k == "documents")
        .nth(4)
        .map(|(_, id)| id.clone())
        .unwrap();
    let diagram_p4 = resources
        .iter()
        .filter(|(k, _)| *k == "diagrams")
        .nth(6)
        .map(|(_, id)| id.clone())
        .unwrap();
    for (owner, path, who, role) in [
        (
            &alice,
            format!("/documents/{doc_p3}/members"),
            &carol,
            "viewer",
        ),
        (&alice, format!("/projects/{p1}/members"), &dave, "editor"),
        (
            &alice,
            format!("/workspaces/{alice_personal}/members"),
            &bob,
            "viewer",
        ),
        (
            &dave,
            format!("/diagrams/{diagram_p4}/members"),
            &carol,
            "owner",
        ),
    ] {
        let a = app
            .post(&path, &owner.token, json!({"userId": who.id, "role": role}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{path}: {}", a.body);
    }
    World {
        users: vec![alice, bob, carol, dave],
        workspaces: vec![team, alice_personal, dave_team],
        projects: vec![p1, p2, p3, p4],
        resources,
    }
}

fn ids(body: &serde_json::Value) -> BTreeSet<String> {
    assert!(body["nextCursor"].is_null(), "one page holds these: {body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

async fn readable(app: &TestApp, user: &TestUser, path: String) -> bool {
    let a = app.get(&path, &user.token).await;
    match a.status {
        StatusCode::OK => true,
        StatusCode::NOT_FOUND => false,
        other => panic!("GET {path} answered {other}"),
    }
}

async fn lists_agree_with_can(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let w = build_world(&app).await;
    for user in &w.users {
        // Workspaces: listed ⇔ readable (a readable workspace lists its projects).
        let listed = ids(&app.get("/workspaces", &user.token).await.body);
        let mut can_read = BTreeSet::new();
        for ws in &w.workspaces {
            if readable(&app, user, format!("/workspaces/{ws}/projects")).await {
                can_read.insert(ws.clone());
            }
        }
        // Personal workspaces of others are not in `w.workspaces` unless shared.
        let listed_known: BTreeSet<_> = listed
            .iter()
            .filter(|x| w.workspaces.contains(x))
            .cloned()
            .collect();
        assert_eq!(listed_known, can_read, "workspaces of {}", user.email);

        // Projects of each readable workspace.
        for ws in &can_read {
            let listed = ids(&app
                .get(&format!("/workspaces/{ws}/projects"), &user.token)
                .await
                .body);
            let mut expect = BTreeSet::new();
            for p in &w.projects {
                let a = app.get(&format!("/projects/{p}"), &user.token).await;
                if a.status == StatusCode::OK && a.body["workspaceId"] == ws.as_str() {
                    expect.insert(p.clone());
                }
            }
            assert_eq!(listed, expect, "projects of {ws} for {}", user.email);
        }

        // Resources of each readable project, per kind.
        for p in &w.projects {
            for kind in ["documents", "diagrams", "tasks"] {
                let a = app.get(&format!("/projects/{p}/{kind}"), &user.token).await;
                if a.status == StatusCode::NOT_FOUND {
                    continue;
                }
                assert_eq!(a.status, StatusCode::OK);
                let listed = ids(&a.body);
                let mut expect = BTreeSet::new();
                for (k, id) in w.resources.iter().filter(|(k, _)| *k == kind) {
                    let r = app.get(&format!("/{k}/{id}"), &user.token).await;
                    if r.status == StatusCode::OK && r.body["projectId"] == p.as_str() {
                        expect.insert(id.clone());
                    }
                }
                assert_eq!(listed, expect, "{kind} of {p} for {}", user.email);
            }
        }
    }
}

async fn access_follows_the_chain(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let w = build_world(&app).await;
    let [alice, bob, carol, dave] = [&w.users[0], &w.users[1], &w.users[2], &w.users[3]];
    let [p1, p2, p3, p4] = [
        &w.projects[0],
        &w.projects[1],
        &w.projects[2],
        &w.projects[3],
    ];
    let team = &w.workspaces[0];

    // Bob (org member = editor) can edit p1 but not delete it (owner only): 403.
    assert_eq!(
        app.patch(
            &format!("/projects/{p1}"),
            &bob.token,
            json!({"name": "R2"})
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        app.delete(&format!("/projects/{p1}"), &bob.token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Bob created p2, so he owns it; alice owns it as org owner.
    let p2_seen = app.get(&format!("/projects/{p2}"), &bob.token).await;
    assert_eq!(p2_seen.body["role"], "owner");
    // Dave: editor on p1 via project grant, nothing on the team workspace.
    assert_eq!(
        app.get(&format!("/projects/{p1}"), &dave.token).await.body["role"],
        "editor"
    );
    assert_eq!(
        app.get(&format!("/workspaces/{team}/projects"), &dave.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/projects/{p2}"), &dave.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Dave may not delete p1 (403, he can see it), nor touch p3 (404, he cannot).
    assert_eq!(
        app.delete(&format!("/projects/{p1}"), &dave.token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&format!("/projects/{p3}"), &dave.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Carol: one document of p3 as viewer; not the project, not its other documents.
    assert_eq!(
        app.get(&format!("/projects/{p3}"), &carol.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let p3_docs = app
        .get(&format!("/projects/{p3}/documents"), &alice.token)
        .await;
    let docs: Vec<String> = ids(&p3_docs.body).into_iter().collect();
    let visible: Vec<bool> = futures_util::future::join_all(
        docs.iter()
            .map(|d| readable(&app, carol, format!("/documents/{d}"))),
    )
    .await;
    assert_eq!(visible.iter().filter(|v| **v).count(), 1);
    let shared = &docs[visible.iter().position(|v| *v).unwrap()];
    let as_carol = app.get(&format!("/documents/{shared}"), &carol.token).await;
    assert_eq!(as_carol.body["role"], "viewer");
    assert_eq!(
        app.patch(
            &format!("/documents/{shared}"),
            &carol.token,
            json!({"title": "x"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // Bob: viewer on alice's personal workspace → reads p3, cannot create in it.
    assert_eq!(
        app.get(&format!("/projects/{p3}"), &bob.token).await.body["role"],
        "viewer"
    );
    let ws_personal = &w.workspaces[1];
    let create = app
        .post(
            &format!("/workspaces/{ws_personal}/projects"),
            &bob.token,
            json!({"name": "n"}),
        )
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    // p4 belongs to another org: alice cannot see it.
    assert_eq!(
        app.get(&format!("/projects/{p4}"), &alice.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Deleting a project takes its documents with it.
    let p1_docs = ids(&app
        .get(&format!("/projects/{p1}/documents"), &alice.token)
        .await
        .body);
    assert_eq!(
        app.delete(&format!("/projects/{p1}"), &alice.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    for d in p1_docs {
        assert_eq!(
            app.get(&format!("/documents/{d}"), &alice.token)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }
    // A task is not a document.
    let task = &w.resources.iter().find(|(k, _)| *k == "tasks").unwrap().1;
    assert_eq!(
        app.get(&format!("/documents/{task}"), &alice.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
