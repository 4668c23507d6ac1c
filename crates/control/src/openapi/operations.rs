//! The core routes of `http::routes`, one entry per route and method.

use tandem_protocol::collab::*;
use tandem_protocol::http::*;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Content;

use super::*;

/// Every operation, in route-table order (`http::routes`).
pub fn operations() -> Vec<Op> {
    let mut ops = vec![
        get("/healthz", "healthz", "Liveness: the process answers")
            .public()
            .static_answer()
            .ok::<Health>(200),
        get(
            "/metrics",
            "metrics",
            "Prometheus metrics (text exposition format)",
        )
        .public()
        .static_answer()
        .answer(
            200,
            "Metrics",
            Some(("text/plain", Content::new(Some(typed(Type::String))))),
        ),
        get("/readyz", "readyz", "Readiness: the database answers")
            .public()
            .ok::<Health>(200),
        get("/openapi.json", "openapi", "This OpenAPI document")
            .public()
            .static_answer()
            .ok_object(200, ObjectBuilder::new()),
        post(
            "/auth/signup",
            "signup",
            "Create an account (and its personal workspace)",
        )
        .public()
        .body::<SignupRequest>()
        .errors(&[409, 429])
        .ok::<AuthResponse>(201),
        post("/auth/login", "login", "Sign in with email and password")
            .public()
            .body::<LoginRequest>()
            .errors(&[401, 429])
            .ok::<AuthResponse>(200),
        post("/auth/logout", "logout", "End this session").no_content(),
        get(
            "/auth/session",
            "getSession",
            "The caller, their organization and workspaces",
        )
        .ok::<SessionContext>(200),
        get(
            "/workspaces",
            "listWorkspaces",
            "Workspaces the caller can see",
        )
        .list::<WorkspaceSummary>(),
        post(
            "/collaboration/token",
            "createCollaborationToken",
            "A one-time token to join a room on the relay",
        )
        .body::<TokenRequest>()
        .errors(&[403, 404])
        .ok::<TokenResponse>(200),
        post(
            "/collaboration/verify",
            "verifyCollaborationToken",
            "Relay: consume a one-time token",
        )
        .relay_with_token()
        .body::<VerifyRequest>()
        .errors(&[403])
        .ok::<VerifyResponse>(200),
        get(
            "/collaboration/check-access",
            "checkAccess",
            "Relay: may this user still use this room?",
        )
        .relay()
        .query(
            "roomId",
            Type::String,
            "The room, `{resourceType}-{resourceId}`",
        )
        .query("userId", Type::String, "The user")
        .ok::<CheckAccessResponse>(200),
        post(
            "/collaboration/check-access",
            "checkAccessBatch",
            "Relay: may these users still use this room?",
        )
        .relay()
        .body::<CheckAccessBatchRequest>()
        .ok::<CheckAccessBatchResponse>(200),
        get(
            "/collaboration/events",
            "accessEvents",
            "Relay: access changes after a cursor (long poll)",
        )
        .relay()
        .query(
            "after",
            Type::Integer,
            "Cursor: the `last` of the previous answer",
        )
        .query(
            "timeoutMs",
            Type::Integer,
            "Longest wait for an event (at most 30000)",
        )
        .ok::<AccessEvents>(200),
        get(
            "/collaboration/rooms/{roomId}/snapshot",
            "loadSnapshot",
            "Relay: a room's stored Yjs state",
        )
        .relay()
        .errors(&[400, 404])
        .answer(
            200,
            "The Yjs update (empty when nothing was saved)",
            Some(("application/octet-stream", bytes())),
        ),
        {
            let saved = post(
                "/collaboration/rooms/{roomId}/snapshot",
                "saveSnapshot",
                "Relay: merge a Yjs update into a room's state",
            )
            .relay()
            .body_with("application/octet-stream", bytes())
            .errors(&[400, 404, 409, 413, 422]);
            saved.ok::<crate::store::snapshots::Saved>(200)
        },
        get(
            "/workspaces/{id}/projects",
            "listProjects",
            "Projects of a workspace",
        )
        .errors(&[404])
        .list::<Project>(),
        post(
            "/workspaces/{id}/projects",
            "createProject",
            "Create a project",
        )
        .body::<CreateProject>()
        .errors(&[403, 404])
        .ok::<Project>(201),
        get("/projects/{id}", "getProject", "A project")
            .errors(&[404])
            .ok::<Project>(200),
        patch("/projects/{id}", "updateProject", "Rename a project")
            .body::<UpdateProject>()
            .errors(&[403, 404])
            .ok::<Project>(200),
        delete(
            "/projects/{id}",
            "deleteProject",
            "Delete a project and everything in it",
        )
        .errors(&[403, 404])
        .no_content(),
    ];
    for scope in SCOPES {
        let one = scope.trim_end_matches('s');
        let path = format!("/{scope}/{{id}}/members");
        let (cap, id) = (
            capitalized(one),
            format!("/{scope}/{{id}}/members/{{userId}}"),
        );
        ops.push(
            get(
                &path,
                &format!("list{cap}Members"),
                &format!("Members of a {one}"),
            )
            .errors(&[404])
            .list::<Member>(),
        );
        ops.push(
            post(
                &path,
                &format!("add{cap}Member"),
                &format!("Grant a user a role on a {one}"),
            )
            .body::<AddMember>()
            .errors(&[403, 404, 409])
            .ok::<Member>(201),
        );
        ops.push(
            patch(
                &id,
                &format!("update{cap}Member"),
                &format!("Change a member's role on a {one}"),
            )
            .body::<UpdateMember>()
            .errors(&[403, 404, 409])
            .ok::<Member>(200),
        );
        ops.push(
            delete(
                &id,
                &format!("remove{cap}Member"),
                &format!("Remove a member from a {one}"),
            )
            .errors(&[403, 404, 409])
            .no_content(),
        );
    }
    for kind in KINDS {
        let one = kind.trim_end_matches('s');
        let cap = capitalized(one);
        let list = format!("/projects/{{id}}/{kind}");
        let item = format!("/{kind}/{{id}}");
        ops.push(
            get(
                &list,
                &format!("list{cap}s"),
                &format!("The {kind} of a project"),
            )
            .errors(&[404])
            .list::<Resource>(),
        );
        ops.push(
            post(&list, &format!("create{cap}"), &format!("Create a {one}"))
                .body::<CreateResource>()
                .errors(&[403, 404])
                .ok::<Resource>(201),
        );
        ops.push(
            get(&item, &format!("get{cap}"), &format!("A {one}"))
                .errors(&[404])
                .ok::<Resource>(200),
        );
        ops.push(
            patch(&item, &format!("update{cap}"), &format!("Rename a {one}"))
                .body::<UpdateResource>()
                .errors(&[403, 404])
                .ok::<Resource>(200),
        );
        ops.push(
            delete(&item, &format!("delete{cap}"), &format!("Delete a {one}"))
                .errors(&[403, 404])
                .no_content(),
        );
    }
    ops.extend(super::chat::operations());
    ops
}
