//! The HTTP surface of control. Each handler extracts, asks `can()` through
//! [`authorize`], calls the store and maps the result; the route table below
//! fits on one screen. Each route and method also has its entry in
//! `crate::openapi` (`operations.rs`, `chat.rs`; the `openapi` tests check
//! both ways).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod chat_stream;
pub mod client_ip;
pub mod collab;
pub mod conversations;
pub mod demo;
pub mod extensions;
pub mod extract;
pub mod files;
pub mod health;
pub mod identity;
pub mod invites;
pub mod load;
pub mod members;
pub mod message_sets;
pub mod messages;
pub mod orgs;
pub mod paths;
pub mod projects;
pub mod resources;
pub mod settings;
pub mod shares;
pub mod snapshots;
pub mod sse;
pub mod sync;
pub mod usage;
pub mod webhooks;
pub mod workspace_stream;
pub mod workspaces;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest};
use tandem_protocol::http::Role;

use crate::authz::{self, Action, Actor, AdminAction, AdminFacts, ResourceKind};
use crate::db::DbConnection;
use crate::error::ApiError;
use crate::store::{facts, Chain};

/// Loads the actor's facts for `chain` and asks `can()`; a denial becomes a
/// 404 (cannot read) or 403 (can read, may not do this).
pub fn authorize(
    c: &mut DbConnection,
    actor: &Actor,
    action: Action,
    kind: ResourceKind,
    chain: &Chain,
) -> Result<Role, ApiError> {
    let facts = facts::for_chain(c, &actor.user_id, chain)?;
    authz::can(actor, action, kind, &facts)
        .into_result()
        .map_err(|d| ApiError::denied(d, noun(kind)))
}

/// Loads the actor's facts for the workspace of `chain` and asks the admin
/// policy (`can_admin`) whether they may do each of `actions` there:
/// outsiders 404, those without the role 403.
pub fn authorize_admin(
    c: &mut DbConnection,
    actor: &Actor,
    actions: &[AdminAction],
    chain: &Chain,
) -> Result<(), ApiError> {
    let denied = |d| ApiError::denied(d, "workspace");
    let authz::Facts::Chain(f) = facts::for_chain(c, &actor.user_id, chain)? else {
        return Err(denied(authz::Denial::NotFound));
    };
    let who = AdminFacts::for_workspace(actor, &f);
    for action in actions {
        authz::can_admin(*action, &who)
            .into_result()
            .map_err(denied)?;
    }
    Ok(())
}

fn noun(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Workspace => "workspace",
        ResourceKind::Project => "project",
        ResourceKind::Document => "document",
        ResourceKind::Diagram => "diagram",
        ResourceKind::Task => "task",
        ResourceKind::Conversation => "conversation",
        ResourceKind::Org => "org",
    }
}

const KINDS: &str = "{kind:documents|diagrams|tasks}";
const SCOPES: &str = "{scope:workspaces|projects|documents|diagrams}";

/// A resource whose other methods answer 405 (not the app-wide 404).
fn at(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async {
        ApiError::MethodNotAllowed.into_response()
    }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, patch, post};
    cfg.service(at("/healthz").route(get().to(health::healthz)))
        .service(at("/metrics").route(get().to(health::metrics)))
        .service(at("/readyz").route(get().to(health::readyz)))
        .service(at("/openapi.json").route(get().to(health::openapi)))
        .service(at("/auth/signup").route(post().to(auth::signup)))
        .service(at("/auth/login").route(post().to(auth::login)))
        .service(at("/auth/logout").route(post().to(auth::logout)))
        .service(at("/auth/session").route(get().to(auth::session)))
        .service(at("/auth/verify-email").route(post().to(identity::verify_email)))
        .service(at("/auth/verify-email/resend").route(post().to(identity::resend)))
        .service(at("/auth/link-identity").route(post().to(identity::link_identity)))
        .service(at("/workspaces").route(get().to(workspaces::list)))
        .service(at("/workspaces/{id}").route(patch().to(workspaces::update)))
        .service(at("/collaboration/token").route(post().to(collab::token)))
        .service(at("/collaboration/verify").route(post().to(collab::verify)))
        .service(at("/collaboration/verify-batch").route(post().to(collab::verify_batch)))
        .service(
            at("/collaboration/check-access")
                .route(get().to(collab::check_access))
                .route(post().to(collab::check_access_batch)),
        )
        .service(
            at("/collaboration/check-access-batch").route(post().to(collab::check_access_many)),
        )
        .service(at("/collaboration/events").route(get().to(collab::events)))
        .service(
            at("/collaboration/rooms/{roomId}/snapshot")
                .route(get().to(snapshots::load))
                .route(post().to(snapshots::save)),
        )
        .service(
            at("/workspaces/{id}/projects")
                .route(get().to(workspaces::list_projects))
                .route(post().to(workspaces::create_project)),
        )
        .service(at("/workspaces/{id}/events").route(get().to(workspace_stream::events)))
        .service(
            at("/projects/{id}")
                .route(get().to(projects::get))
                .route(patch().to(projects::update))
                .route(delete().to(projects::delete)),
        )
        .service(
            at(&format!("/{SCOPES}/{{id}}/members"))
                .route(get().to(members::list))
                .route(post().to(members::add)),
        )
        .service(
            at(&format!("/{SCOPES}/{{id}}/members/{{userId}}"))
                .route(patch().to(members::update))
                .route(delete().to(members::remove)),
        )
        .service(
            at(&format!("/projects/{{id}}/{KINDS}"))
                .route(get().to(projects::list_resources))
                .route(post().to(projects::create_resource)),
        )
        .service(
            at(&format!("/{KINDS}/{{id}}"))
                .route(get().to(resources::get))
                .route(patch().to(resources::update))
                .route(delete().to(resources::delete)),
        );
    chat_routes(cfg);
    org_routes(cfg);
    sync_routes(cfg);
    file_routes(cfg);
    extension_routes(cfg);
    admin_routes(cfg);
}

/// Org extensions and their use in workspaces.
fn extension_routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, post, put};
    cfg.service(
        at("/orgs/{id}/extensions")
            .route(get().to(extensions::list))
            .route(post().to(extensions::upload)),
    )
    .service(
        at("/orgs/{id}/extensions/{ext}")
            .route(get().to(extensions::get))
            .route(delete().to(extensions::delete)),
    )
    .service(at("/workspaces/{id}/extensions").route(get().to(extensions::workspace_list)))
    .service(at("/workspaces/{id}/extensions/{ext}").route(put().to(extensions::set)))
    .service(
        at("/workspaces/{id}/extensions/{ext}/files/{path:.+}").route(get().to(extensions::file)),
    );
}

/// Instance administration (`TANDEM_ADMINS`).
fn admin_routes(cfg: &mut web::ServiceConfig) {
    use web::{get, post};
    cfg.service(at("/admin/config").route(get().to(admin::config)))
        .service(at("/admin/config/validate").route(post().to(admin::validate)))
        .service(at("/admin/config/reload").route(post().to(admin::reload)));
}

/// The sync engine; pushes may be larger than other bodies.
fn sync_routes(cfg: &mut web::ServiceConfig) {
    use web::{get, post};
    let push_body = web::JsonConfig::default()
        .limit(tandem_protocol::sync::MAX_PUSH_BYTES)
        .error_handler(json_error);
    cfg.service(
        at("/workspaces/{id}/sync/push")
            .app_data(push_body)
            .route(post().to(sync::push)),
    )
    .service(at("/workspaces/{id}/sync/pull").route(get().to(sync::pull)))
    .service(at("/workspaces/{id}/sync/events").route(get().to(sync::events)));
}

/// Files, and the directory backend's signed transfer URLs.
fn file_routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, post, put};
    cfg.service(at("/workspaces/{id}/files/uploads").route(post().to(files::create_upload)))
        .service(at("/files/uploads/{uploadId}").route(get().to(files::get_upload)))
        .service(at("/files/uploads/{uploadId}/complete").route(post().to(files::complete)))
        .service(
            at("/files/{id}")
                .route(get().to(files::get))
                .route(delete().to(files::delete)),
        )
        .service(at("/files/{id}/content").route(get().to(files::content)))
        .service(at("/files/{id}/url").route(get().to(files::url)))
        .service(at("/blobs/{fileId}").route(get().to(files::get_blob)))
        .service(at("/blobs/{fileId}/parts/{n}").route(put().to(files::put_part)));
}

/// Organizations: settings, join requests, members, ownership, audit log.
fn org_routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, patch, post};
    cfg.service(
        at("/orgs/{id}")
            .route(get().to(orgs::get))
            .route(patch().to(orgs::update)),
    )
    .service(at("/orgs/{id}/join-requests").route(get().to(orgs::join_requests)))
    .service(at("/orgs/{id}/members").route(get().to(orgs::members)))
    .service(at("/orgs/{id}/members/{userId}").route(delete().to(orgs::remove_member)))
    .service(at("/orgs/{id}/transfer").route(post().to(orgs::transfer)))
    .service(at("/orgs/{id}/audit").route(get().to(audit::list)))
    .service(at("/orgs/{id}/audit/verify").route(get().to(audit::verify)))
    .service(at("/orgs/{id}/audit/export").route(get().to(audit::export)))
    .service(at("/orgs/{id}/join-requests/{userId}/accept").route(post().to(orgs::accept)))
    .service(at("/orgs/{id}/join-requests/{userId}/refuse").route(post().to(orgs::refuse)));
    webhook_routes(cfg);
}

/// Webhooks of an organization.
fn webhook_routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, patch, post};
    const H: &str = "/orgs/{id}/webhooks";
    cfg.service(
        at("/orgs/{id}/webhooks")
            .route(get().to(webhooks::list))
            .route(post().to(webhooks::create)),
    )
    .service(
        at(&format!("{H}/{{hookId}}"))
            .route(get().to(webhooks::get))
            .route(patch().to(webhooks::update))
            .route(delete().to(webhooks::delete)),
    )
    .service(at(&format!("{H}/{{hookId}}/rotate-secret")).route(post().to(webhooks::rotate_secret)))
    .service(at(&format!("{H}/{{hookId}}/deliveries")).route(get().to(webhooks::deliveries)))
    .service(
        at(&format!(
            "{H}/{{hookId}}/deliveries/{{deliveryId}}/redeliver"
        ))
        .route(post().to(webhooks::redeliver)),
    );
}

/// Conversations, sharing, usage, invites, settings.
fn chat_routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, patch, post, put};
    cfg.service(at("/projects/{id}/conversations").route(post().to(conversations::create)))
        .service(at("/conversations").route(get().to(conversations::list)))
        .service(
            at("/conversations/{id}")
                .route(get().to(conversations::get))
                .route(patch().to(conversations::update))
                .route(delete().to(conversations::delete)),
        )
        .service(
            at("/conversations/{id}/participants")
                .route(get().to(conversations::participants))
                .route(post().to(conversations::add_participant)),
        )
        .service(
            at("/conversations/{id}/participants/{userId}")
                .route(delete().to(conversations::remove_participant)),
        )
        .service(
            at("/conversations/{id}/presence")
                .route(get().to(conversations::presence))
                .route(post().to(conversations::heartbeat)),
        )
        .service(
            at("/conversations/{id}/messages")
                .route(get().to(messages::list))
                .route(post().to(messages::send)),
        )
        .service(
            at("/conversations/{id}/messages/{messageId}/chunks")
                .route(post().to(messages::append)),
        )
        .service(
            at("/conversations/{id}/messages/{messageId}/finish")
                .route(post().to(messages::finish)),
        )
        .service(
            at("/conversations/{id}/messages/{messageId}/tools")
                .route(post().to(messages::start_tool)),
        )
        .service(
            at("/conversations/{id}/tools/{toolCallId}")
                .route(get().to(messages::get_tool))
                .route(post().to(messages::finish_tool)),
        )
        .service(
            at("/conversations/{id}/sets")
                .route(get().to(message_sets::list))
                .route(post().to(message_sets::create)),
        )
        .service(
            at("/conversations/{id}/sets/{setId}/messages")
                .route(post().to(message_sets::add_message)),
        )
        .service(
            at("/conversations/{id}/messages/{messageId}/select")
                .route(post().to(message_sets::select)),
        )
        .service(
            at("/conversations/{id}/messages/{messageId}/parts")
                .route(post().to(message_sets::add_part)),
        )
        .service(at("/conversations/{id}/branch").route(post().to(message_sets::branch)))
        .service(at("/conversations/{id}/events").route(get().to(chat_stream::events)))
        .service(at("/conversations/{id}/share").route(post().to(shares::create)))
        .service(at("/conversations/{id}/shares").route(delete().to(shares::revoke_all)))
        .service(
            at("/shares/{shareId}")
                .route(get().to(shares::view))
                .route(delete().to(shares::revoke)),
        )
        .service(at("/shares/{shareId}/fork").route(post().to(shares::fork)))
        .service(at("/shares/{shareId}/join").route(post().to(shares::join)))
        .service(
            at("/usage")
                .route(get().to(usage::mine))
                .route(post().to(usage::record)),
        )
        .service(at("/orgs/{id}/usage").route(get().to(usage::org)))
        .service(
            at("/workspaces/{id}/invites")
                .route(get().to(invites::list))
                .route(post().to(invites::create)),
        )
        .service(at("/workspaces/{id}/invites/{inviteId}").route(delete().to(invites::revoke)))
        .service(at("/invites/accept").route(post().to(invites::accept)))
        .service(
            at("/me/settings")
                .route(get().to(settings::get))
                .route(patch().to(settings::update)),
        )
        .service(
            at("/me/settings/api-keys/{provider}")
                .route(put().to(settings::put_key))
                .route(delete().to(settings::delete_key)),
        );
}

/// Maps body-parsing failures to JSON errors: unreadable JSON is a 400,
/// readable JSON with missing or mistyped fields a 422, too large a 413.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::PayloadTooLarge(*limit),
        JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge(*limit),
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::validation(e.to_string()),
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {e}")),
        other => ApiError::BadRequest(other.to_string()),
    };
    api.into()
}

pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(err.to_string()).into()
}

pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(err.to_string()).into()
}
