//! Membership changes on workspaces, projects, documents and diagrams.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(
    membership_lifecycle,
    membership_refusals,
    document_shared_outside_the_org
);

async fn membership_lifecycle(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@members.dev", "Olga").await;
    let guest = app.signup("gus@elsewhere.dev", "Gus").await;
    let ws = app.workspace(&owner, "personal").await;
    let project = app.create_project(&owner, &ws, "P").await;
    let members = format!("/projects/{project}/members");

    // The creator is the first member (owner).
    let list = app.get(&members, &owner.token).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["items"][0]["userId"], owner.id.as_str());
    assert_eq!(list.body["items"][0]["role"], "owner");

    assert_eq!(
        app.get(&format!("/projects/{project}"), &guest.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let add = app.grant(&members, &owner, &guest.id, "viewer").await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.body);
    assert_eq!(add.body["email"], "gus@elsewhere.dev");
    assert_eq!(add.body["displayName"], "Gus");
    assert_eq!(
        app.get(&format!("/projects/{project}"), &guest.token)
            .await
            .body["role"],
        "viewer"
    );
    // A viewer reads the member list but cannot change it or the project.
    assert_eq!(
        app.get(&members, &guest.token).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let doc_create = app
        .post(
            &format!("/projects/{project}/documents"),
            &guest.token,
            json!({"title": "t"}),
        )
        .await;
    assert_eq!(doc_create.status, StatusCode::FORBIDDEN);

    // Promote to editor: now they can create documents.
    let member = format!("{members}/{}", guest.id);
    let up = app
        .patch(&member, &owner.token, json!({"role": "editor"}))
        .await;
    assert_eq!(up.status, StatusCode::OK);
    assert_eq!(up.body["role"], "editor");
    let doc_create = app
        .post(
            &format!("/projects/{project}/documents"),
            &guest.token,
            json!({"title": "t"}),
        )
        .await;
    assert_eq!(doc_create.status, StatusCode::CREATED);

    // Remove: access is gone at once (404, not 403).
    assert_eq!(
        app.delete(&member, &owner.token).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/projects/{project}"), &guest.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&member, &owner.token).await.status,
        StatusCode::NOT_FOUND
    );

    // Anyone may leave: re-add, then the guest removes themselves.
    app.grant(&members, &owner, &guest.id, "viewer").await;
    assert_eq!(
        app.delete(&member, &guest.token).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/projects/{project}"), &guest.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn membership_refusals(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@refusals.dev", "Olga").await;
    let editor = app.signup("ed@refusals.dev", "Ed").await; // org member → editor of team ws
    let other = app.signup("ot@other-refusals.dev", "Ot").await;
    let team = app.workspace(&owner, "team").await;
    let members = format!("/workspaces/{team}/members");

    // Editors cannot manage members (403: they can see the workspace).
    let a = app.grant(&members, &editor, &other.id, "viewer").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.code(), "forbidden");
    // Strangers get 404.
    let a = app.grant(&members, &other, &other.id, "owner").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // Unknown user, bad role, duplicate.
    let a = app.grant(&members, &owner, "nosuchuser", "viewer").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let a = app.grant(&members, &owner, &other.id, "admin").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = app.grant(&members, &owner, &other.id, "viewer").await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let dup = app.grant(&members, &owner, &other.id, "editor").await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    // Patching someone who is not a member.
    let a = app
        .patch(
            &format!("{members}/{}", editor.id),
            &owner.token,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // Tasks have no members.
    let p = app.create_project(&owner, &team, "P").await;
    let t = app.create_resource(&owner, &p, "tasks", "T").await;
    assert_eq!(
        app.get(&format!("/tasks/{t}/members"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn document_shared_outside_the_org(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@share.dev", "Olga").await;
    let member = app.signup("max@share.dev", "Max").await;
    let outsider = app.signup("out@gmail.com", "Out").await;
    let team = app.workspace(&owner, "team").await;
    let p = app.create_project(&member, &team, "P").await;
    // An org member (editor) created the document, so owns it and may share it.
    let doc = app.create_resource(&member, &p, "documents", "Doc").await;
    let share = app
        .post(
            &format!("/documents/{doc}/members"),
            &member.token,
            json!({"userId": outsider.id, "role": "editor"}),
        )
        .await;
    assert_eq!(share.status, StatusCode::CREATED, "{}", share.body);
    let seen = app.get(&format!("/documents/{doc}"), &outsider.token).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body["role"], "editor");
    let renamed = app
        .patch(
            &format!("/documents/{doc}"),
            &outsider.token,
            json!({"title": "Renamed"}),
        )
        .await;
    assert_eq!(renamed.body["title"], "Renamed");
    // Only that document: the project and its other documents stay hidden.
    let other_doc = app.create_resource(&owner, &p, "documents", "Other").await;
    assert_eq!(
        app.get(&format!("/documents/{other_doc}"), &outsider.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/projects/{p}"), &outsider.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The org owner sees the document as owner through the team workspace.
    assert_eq!(
        app.get(&format!("/documents/{doc}"), &owner.token)
            .await
            .body["role"],
        "owner"
    );
}

both_backends!(member_added_by_email);

/// `{email, role}` names the new member by address (any case); exactly one
/// of `userId` and `email`; an address without an account is a 422.
async fn member_added_by_email(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.signup("olga@by-email.dev", "Olga").await;
    let guest = app.signup("gus@by-email-guest.dev", "Gus").await;
    let ws = app.workspace(&owner, "personal").await;
    let project = app.create_project(&owner, &ws, "P").await;
    let doc = app
        .create_resource(&owner, &project, "documents", "D")
        .await;
    let members = format!("/documents/{doc}/members");

    let add = app
        .post(
            &members,
            &owner.token,
            json!({"email": "  Gus@By-Email-Guest.dev ", "role": "editor"}),
        )
        .await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.body);
    assert_eq!(add.body["userId"], guest.id.as_str());
    assert_eq!(add.body["role"], "editor");
    assert_eq!(
        app.get(&format!("/documents/{doc}"), &guest.token)
            .await
            .body["role"],
        "editor"
    );
    let again = app
        .post(
            &members,
            &owner.token,
            json!({"email": "gus@by-email-guest.dev", "role": "viewer"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    for body in [
        json!({"email": "nobody@by-email.dev", "role": "viewer"}),
        json!({"email": "not an address", "role": "viewer"}),
        json!({"email": guest.email, "userId": guest.id, "role": "viewer"}),
        json!({"role": "viewer"}),
    ] {
        let a = app.post(&members, &owner.token, body.clone()).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(a.code(), "validation_failed");
    }
    // Only owners may look people up this way: an editor gets 403.
    let a = app
        .post(
            &members,
            &guest.token,
            json!({"email": "olga@by-email.dev", "role": "viewer"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}
