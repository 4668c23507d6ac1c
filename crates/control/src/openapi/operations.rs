//! The core routes of `http::routes`, one entry per route and method.

use tandem_protocol::admin::*;
use tandem_protocol::collab::*;
use tandem_protocol::http::*;
use tandem_protocol::identity::*;
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
            "Prometheus metrics (OpenMetrics text format)",
        )
        .metrics()
        .static_answer()
        .describe(
            "With `TANDEM_METRICS_TOKEN` set, only to `Authorization: Bearer <token>` (401 \
             otherwise); with `TANDEM_METRICS_LISTEN` set, only on that listener (404 here).",
        )
        .errors(&[404])
        .answer(
            200,
            "Metrics",
            Some((
                "application/openmetrics-text",
                Content::new(Some(typed(Type::String))),
            )),
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
        post(
            "/auth/verify-email",
            "verifyEmail",
            "Prove an address with the token of the emailed link",
        )
        .public()
        .describe(
            "No login needed: the token is the proof. Answers the verified user's session \
             context (no session token). 400: unknown or malformed token; 410: used already, \
             expired, or for an address the account no longer has.",
        )
        .body::<VerifyEmailRequest>()
        .errors(&[410, 429])
        .ok::<SessionContext>(200),
        post(
            "/auth/verify-email/resend",
            "resendVerification",
            "Mail a new verification link",
        )
        .describe("409 when the address is verified already; 429 after 3 emails in 10 minutes.")
        .errors(&[409, 429])
        .ok::<VerificationSent>(202),
        post(
            "/auth/link-identity",
            "linkIdentity",
            "Link an identity-provider account to the password account of its email",
        )
        .describe(
            "`Authorization: Bearer <identity-provider JWT>` (a session token is not enough) and \
             the password account's password. 401: no JWT, a JWT not accepted, or a wrong \
             password; 409: the address is not verified, or either side is linked already.",
        )
        .body::<LinkIdentityRequest>()
        .errors(&[409, 429])
        .ok::<SessionContext>(200),
        get(
            "/workspaces",
            "listWorkspaces",
            "Workspaces the caller can see",
        )
        .page::<WorkspaceSummary>(),
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
        .describe(
            "The relay's secret in `x-tandem-relay-secret` and the client's token as Bearer; \
             without the secret (401) nothing is consumed.",
        )
        .body::<VerifyRequest>()
        .errors(&[403])
        .ok::<VerifyResponse>(200),
        post(
            "/collaboration/verify-batch",
            "verifyCollaborationTokens",
            "Relay: consume many one-time tokens in one call",
        )
        .relay()
        .describe(
            "The relay's secret as Bearer; 1 to 100 items (422 otherwise). Each token is \
             consumed exactly as by `/collaboration/verify` (once, whichever relay or replica \
             asks first; a token named twice in one batch succeeds at most once) and answered \
             in the order of the items: `verified` (with the user), `refused` (what `verify` \
             answers 403 to) or `invalid` (a room id that does not parse; nothing consumed).",
        )
        .body::<VerifyBatchRequest>()
        .ok::<VerifyBatchResponse>(200),
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
        post(
            "/collaboration/check-access-batch",
            "checkAccessMany",
            "Relay: may each of these users still use their room?",
        )
        .relay()
        .describe(
            "The relay's secret as Bearer; 1 to 100 (room, user) pairs in any mix of rooms \
             (422 otherwise, or when a room id does not parse), answered in their order as \
             `GET /collaboration/check-access` would answer each. The relay gathers the access \
             checks of concurrent resume-ticket joins into one call.",
        )
        .body::<AccessBatchRequest>()
        .ok::<AccessBatchResponse>(200),
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
        .page::<Project>(),
        post(
            "/workspaces/{id}/projects",
            "createProject",
            "Create a project",
        )
        .body::<CreateProject>()
        .errors(&[403, 404])
        .ok::<Project>(201),
        workspace_events(),
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
            .page::<Member>(),
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
            .page::<Resource>(),
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
    ops.extend(org_operations());
    ops.extend(super::webhooks::operations());
    ops.extend(super::sync::operations());
    ops.extend(super::files::operations());
    ops.extend(super::extensions::operations());
    ops
}

/// Organizations: settings and join requests (`http::org_routes`).
fn org_operations() -> Vec<Op> {
    const O: &str = "/orgs/{id}";
    let decide = |verb: &str, id: &str, summary: &str| {
        post(&format!("{O}/join-requests/{{userId}}/{verb}"), id, summary)
            .describe("404 when there is no such pending request (decided already).")
            .errors(&[403, 404])
            .no_content()
    };
    vec![
        get(O, "getOrg", "An organization (its members)")
            .errors(&[404])
            .ok::<OrgDetails>(200),
        patch(
            O,
            "updateOrg",
            "Rename an organization, set its join policy (owners)",
        )
        .describe(
            "422 for an unknown policy, a join policy on a solo org (it has no domain), \
                 or a name that is empty or longer than 200 characters. Appends `org.update` \
                 to the audit log.",
        )
        .body::<UpdateOrg>()
        .errors(&[403, 404])
        .ok::<OrgDetails>(200),
        get(
            &format!("{O}/join-requests"),
            "listJoinRequests",
            "Verified users of the domain waiting to join, oldest first (owners)",
        )
        .errors(&[403, 404])
        .page::<JoinRequest>(),
        decide(
            "accept",
            "acceptJoinRequest",
            "Accept a join request: the user becomes a member",
        ),
        decide(
            "refuse",
            "refuseJoinRequest",
            "Refuse a join request: the user keeps their solo org",
        ),
        get(
            &format!("{O}/members"),
            "listOrgMembers",
            "The members of an organization, oldest first (owners and members; not guests)",
        )
        .errors(&[404])
        .page::<OrgMember>(),
        delete(
            &format!("{O}/members/{{userId}}"),
            "removeOrgMember",
            "Remove a member from an organization (owners)",
        )
        .describe(
            "Ends every grant the user holds in the org's workspaces, projects and resources \
             and their chat participations there (live connections and event streams are \
             revoked through the access feed); the user keeps their personal workspace in a \
             solo org of their own. 404 for someone not in the org; 409 for the owner \
             (transfer first). Appends `org.member.remove`.",
        )
        .errors(&[403, 404, 409])
        .no_content(),
        post(
            &format!("{O}/transfer"),
            "transferOrg",
            "Hand an organization to another member (the owner)",
        )
        .describe(
            "The new owner must be a member of the org (422 otherwise; 409 if they own it \
             already); the old owner becomes a member. Appends `org.transfer`.",
        )
        .body::<TransferOrg>()
        .errors(&[403, 404, 409])
        .ok::<OrgDetails>(200),
        get(
            &format!("{O}/audit"),
            "listAudit",
            "The organization's audit log, newest first (owners)",
        )
        .describe(
            "`nextCursor` is the seq to continue below. Entries are described in \
             proto-docs/admin.md.",
        )
        .query("action", Type::String, "Only entries with this action")
        .query("actor", Type::String, "Only entries by this user id")
        .query(
            "since",
            Type::Integer,
            "Only entries at or after this time (ms)",
        )
        .query("until", Type::Integer, "Only entries before this time (ms)")
        .errors(&[403, 404])
        .page::<AuditEntry>(),
        get(
            &format!("{O}/audit/verify"),
            "verifyAudit",
            "Recompute the organization's audit hash chain (owners)",
        )
        .errors(&[403, 404])
        .ok::<AuditVerification>(200),
        {
            let mut export = get(
                &format!("{O}/audit/export"),
                "exportAudit",
                "The whole audit log, oldest first, as NDJSON (owners)",
            )
            .describe(
                "`application/x-ndjson`: one AuditEntry per line, streamed. Verify it with \
                 `tandem audit verify --org ID --file export.ndjson` or the recipe in \
                 proto-docs/admin.md.",
            )
            .errors(&[403, 404]);
            let schema = export.register::<AuditEntry>();
            export.answer(
                200,
                "NDJSON, one AuditEntry per line",
                Some(("application/x-ndjson", Content::new(Some(schema)))),
            )
        },
        patch(
            "/workspaces/{id}",
            "updateWorkspace",
            "Rename a workspace, set its guest access (owners of the workspace)",
        )
        .describe(
            "`guestAccess`: whether people outside the workspace's org may be members or \
             share-link participants (`off`), only viewers (`view`), or anything (`edit`, the \
             default). Lowering it clamps guests' existing grants (removed for `off`, lowered \
             to viewer for `view`) and removes their chat participations; `clampedGrants` \
             says how many changed. Editors get 403, outsiders 404. Appends \
             `workspace.update`.",
        )
        .body::<UpdateWorkspace>()
        .errors(&[403, 404])
        .ok::<WorkspaceSettings>(200),
    ]
}

/// `GET /workspaces/{id}/events`.
fn workspace_events() -> Op {
    let mut events = get(
        "/workspaces/{id}/events",
        "workspaceEvents",
        "What changes in a workspace, live (Server-Sent Events)",
    )
    .describe(
        "`text/event-stream`: first `ready` (`id:` the workspace's current seq; load lists \
         through the REST endpoints after it), then one event per change the caller may read \
         (`project|document|diagram|task|conversation|member` `.created|.updated|.deleted`; \
         each `data:` a WorkspaceEvent, each `id:` its `seq`). Readability is decided when \
         an event is delivered; skipped events advance the id with an `id:`-only frame. \
         Resume with `Last-Event-ID` (or `?after=`); when that is no longer possible the \
         stream sends `reset` (reload the lists) and goes on. A caller who loses the \
         workspace gets `revoked` (`data: {reason}`) and the stream ends. Open to those who \
         can read the workspace or hold a grant on something in it. 429: the caller holds \
         `TANDEM_MAX_STREAMS_PER_USER` streams on this replica already.",
    )
    .query(
        "after",
        Type::Integer,
        "Resume after this seq (like Last-Event-ID)",
    )
    .errors(&[400, 404, 429]);
    events.builder = events.builder.parameter(
        utoipa::openapi::path::ParameterBuilder::new()
            .name("Last-Event-ID")
            .parameter_in(utoipa::openapi::path::ParameterIn::Header)
            .required(utoipa::openapi::Required::False)
            .description(Some("The last seq received: resume after it"))
            .schema(Some(typed(Type::String))),
    );
    let schema = events.register::<WorkspaceEvent>();
    events.answer(
        200,
        "An event stream",
        Some(("text/event-stream", Content::new(Some(schema)))),
    )
}
