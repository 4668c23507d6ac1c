//! `/projects/{id}/conversations`, `/conversations[/{id}]`,
//! `/conversations/{id}/participants[/{userId}]`, `/conversations/{id}/presence`.
//! Access is plan 003's matrix, decided by `can()` on the conversation's facts.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use tandem_protocol::chat::{
    AddParticipant, Conversation, ConversationPage, CreateConversation, Participant, PresenceEntry,
    UpdateConversation,
};
use tandem_protocol::http::{Page, Role};

use super::{authorize, load};
use crate::authz::{self, Action, Actor, ResourceKind};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::accounts;
use crate::store::chat_events;
use crate::store::conversations::{self, ConversationRow};
use crate::validate;

/// Loads a conversation and asks `can()`; someone with no relation to it
/// is told it does not exist.
pub fn authorized(
    c: &mut DbConnection,
    actor: &Actor,
    id: &str,
    action: Action,
) -> Result<(ConversationRow, Role), ApiError> {
    authorized_all(c, actor, id, &[action])
}

/// [`authorized`] for several actions at once (one load; all must be allowed).
pub fn authorized_all(
    c: &mut DbConnection,
    actor: &Actor,
    id: &str,
    actions: &[Action],
) -> Result<(ConversationRow, Role), ApiError> {
    let (row, facts) = load::conversation(c, id, &actor.user_id)?;
    let facts = facts.into();
    let mut role = Role::Viewer;
    for action in actions {
        role = authz::can(actor, *action, ResourceKind::Conversation, &facts)
            .into_result()
            .map_err(|d| ApiError::denied(d, "conversation"))?;
    }
    Ok((row, role))
}

/// Runs `f` on the database with the conversation, once `can()` allows `action`.
pub async fn on_conversation<T, F>(
    state: &State,
    user: AuthUser,
    id: String,
    action: Action,
    f: F,
) -> Result<T, ApiError>
where
    F: FnOnce(&mut DbConnection, &AuthUser, ConversationRow, Role) -> Result<T, ApiError>
        + Send
        + 'static,
    T: Send + 'static,
{
    state
        .db(move |c| {
            let (row, role) = authorized(c, &user.actor(), &id, action)?;
            f(c, &user, row, role)
        })
        .await
}

/// [`on_conversation`] for a change: afterwards the conversation's streams
/// in this process are woken.
pub async fn changing_conversation<T, F>(
    state: &State,
    user: AuthUser,
    id: String,
    action: Action,
    f: F,
) -> Result<T, ApiError>
where
    F: FnOnce(&mut DbConnection, &AuthUser, ConversationRow, Role) -> Result<T, ApiError>
        + Send
        + 'static,
    T: Send + 'static,
{
    let out = on_conversation(state, user, id.clone(), action, f).await?;
    state.chat_changed(&id);
    Ok(out)
}

pub async fn create(
    state: State,
    user: AuthUser,
    project_id: web::Path<String>,
    body: web::Json<CreateConversation>,
) -> Result<HttpResponse, ApiError> {
    let title = validate::title(&body.title)?;
    let extra = conversations::Extra {
        is_quick_chat: body.is_quick_chat,
        parent_chat_id: None,
        summary: body.summary.as_deref().map(summary).transpose()?,
    };
    let created = state
        .db(move |c| {
            let (project, chain) = load::project(c, &project_id)?;
            authorize(
                c,
                &user.actor(),
                Action::CreateChild,
                ResourceKind::Project,
                &chain,
            )?;
            let row = write_tx(c, |c| {
                conversations::create_with(c, user.id(), &project.id, &title, None, extra)
            })?;
            Ok(row.to_dto(Role::Owner))
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    project_id: Option<String>,
    archived: Option<bool>,
    starred: Option<bool>,
    cursor: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    state: State,
    user: AuthUser,
    params: web::Query<ListParams>,
) -> Result<web::Json<ConversationPage>, ApiError> {
    let p = params.into_inner();
    let page = crate::page::check(p.cursor.as_deref(), p.limit)?;
    let query = conversations::ListQuery {
        project_id: p.project_id,
        archived: p.archived,
        starred: p.starred,
        after: page.after,
        limit: page.limit,
    };
    let (rows, more) = state
        .db(move |c| conversations::list(c, user.id(), &query))
        .await?;
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|(r, _)| format!("{}.{}", r.sort_at, r.id));
    Ok(web::Json(ConversationPage {
        items: rows.iter().map(|(r, role)| r.to_dto(*role)).collect(),
        next_cursor,
    }))
}

pub async fn get(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<web::Json<Conversation>, ApiError> {
    let dto = on_conversation(
        &state,
        user,
        id.into_inner(),
        Action::Read,
        |_, _, row, role| Ok(row.to_dto(role)),
    )
    .await?;
    Ok(web::Json(dto))
}

pub async fn update(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<UpdateConversation>,
) -> Result<web::Json<Conversation>, ApiError> {
    let body = body.into_inner();
    let changes = conversations::Changes {
        title: body.title.as_deref().map(validate::title).transpose()?,
        starred: body.starred,
        archived: body.archived,
        participants_may: body.participants_may,
        summary: body.summary.as_deref().map(summary).transpose()?,
    };
    // Each field needs its own right; all must be allowed.
    let mut needed = vec![Action::Read];
    needed.extend(changes.title.as_ref().map(|_| Action::Rename));
    needed.extend(changes.summary.as_ref().map(|_| Action::Rename));
    needed.extend(changes.starred.map(|_| Action::Star));
    needed.extend(changes.archived.map(|_| Action::Archive));
    needed.extend(changes.participants_may.map(|_| Action::Update));
    let id = id.into_inner();
    let conversation_id = id.clone();
    let dto = state
        .db(move |c| {
            // Lock first, then decide and write: a right withdrawn by the
            // owner meanwhile is seen, and nothing is half-applied.
            write_tx(c, |c| {
                chat_events::lock(c, &id)?;
                let (row, role) = authorized_all(c, &user.actor(), &id, &needed)?;
                Ok(conversations::update_in_tx(c, &row, &changes)?.to_dto(role))
            })
        })
        .await?;
    state.chat_changed(&conversation_id);
    Ok(web::Json(dto))
}

pub async fn delete(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    changing_conversation(
        &state,
        user,
        id.into_inner(),
        Action::Delete,
        |c, _, row, _| conversations::delete(c, &row.id),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn participants(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<Participant>>, ApiError> {
    let page = page.check()?;
    let list = on_conversation(
        &state,
        user,
        id.into_inner(),
        Action::Read,
        move |c, _, row, _| conversations::participants(c, &row, &page),
    )
    .await?;
    Ok(web::Json(list))
}

pub async fn add_participant(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<AddParticipant>,
) -> Result<HttpResponse, ApiError> {
    let target = body.into_inner().user_id;
    let added = changing_conversation(
        &state,
        user,
        id.into_inner(),
        Action::ManageMembers,
        move |c, user, row, _| {
            let who = validate::id(&target)
                .ok()
                .map(|uid| accounts::user_by_id(c, uid))
                .transpose()?
                .flatten()
                .ok_or(ApiError::NotFound("user"))?;
            conversations::add_participant(c, &row, &who, user.id(), user.id())
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(added))
}

/// The owner removes anyone; a participant may remove themselves (leave).
pub async fn remove_participant(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, target) = path.into_inner();
    let action = if target == user.id() {
        Action::Read
    } else {
        Action::ManageMembers
    };
    changing_conversation(&state, user, id, action, move |c, user, row, _| {
        conversations::remove_participant(c, user.id(), &row.id, &target)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn heartbeat(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    on_conversation(
        &state,
        user,
        id.into_inner(),
        Action::Read,
        |c, user, row, _| conversations::heartbeat(c, &row.id, user.id()),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn presence(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<PresenceEntry>>, ApiError> {
    let page = page.check()?;
    let window = state.config.presence_window_ms as i64;
    let (list, next_cursor) = on_conversation(
        &state,
        user,
        id.into_inner(),
        Action::Read,
        move |c, _, row, _| conversations::present(c, &row.id, window, &page),
    )
    .await?;
    Ok(web::Json(Page {
        items: list
            .iter()
            .map(|(u, at)| PresenceEntry {
                user: u.summary(),
                last_active_at: *at,
            })
            .collect(),
        next_cursor,
    }))
}

/// Most characters of a conversation's summary.
const MAX_SUMMARY_CHARS: usize = 10_000;

/// A summary: free text of at most [`MAX_SUMMARY_CHARS`].
fn summary(s: &str) -> Result<String, ApiError> {
    if s.chars().count() > MAX_SUMMARY_CHARS {
        return Err(ApiError::validation(format!(
            "summary must be at most {MAX_SUMMARY_CHARS} characters"
        )));
    }
    validate::free_text("summary", s)?;
    Ok(s.to_string())
}
