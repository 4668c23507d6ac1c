//! Share links (plan 003): `POST /conversations/{id}/share` (owner),
//! `GET /shares/{shareId}` (anyone signed in: read-only view),
//! `DELETE /shares/{shareId}` (owner), `POST /shares/{shareId}/fork`
//! ("continue privately": a copy in the viewer's project) and
//! `POST /shares/{shareId}/join` ("continue with creator": the viewer becomes
//! a participant of the shared conversation).

use actix_web::{web, HttpResponse};
use tandem_protocol::chat::{Conversation, ForkShare, Share, SharedConversation, UserSummary};
use tandem_protocol::http::Role;

use super::conversations::{authorized, on_conversation};
use super::{authorize, load};
use crate::authz::{self, Action, ResourceKind};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::conversations::{self, ConversationRow};
use crate::store::{accounts, admin, messages};

/// Share ids are 43-character base64url tokens; anything else cannot exist.
fn checked(share_id: &str) -> Result<&str, ApiError> {
    let ok = share_id.len() == 43
        && share_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(share_id).ok_or(ApiError::NotFound("share"))
}

/// The conversation behind a live share link, once `can()` allows `action`
/// to the caller: reading goes by their own relation if they have one, else
/// the link makes them a `viewer`; anything else needs their own relation.
fn shared(
    c: &mut DbConnection,
    user: &AuthUser,
    share_id: &str,
    action: Action,
) -> Result<(ConversationRow, Role), ApiError> {
    let row = conversations::shared(c, checked(share_id)?)?;
    let mut relation = conversations::relation(c, &row, user.id())?;
    if action == Action::Read && relation.is_none() {
        // Reading through the link: a guest of the workspace needs guest
        // access at least `view`.
        if let Some(ws) = admin::workspace_of_conversation(c, &row.id)? {
            admin::check_guest_in(c, &ws, user.id(), Role::Viewer)?;
        }
        relation = Some(Role::Viewer);
    }
    let noun = if relation.is_some() {
        "share"
    } else {
        "conversation"
    };
    let facts = row.facts(relation).into();
    let role = authz::can(&user.actor(), action, ResourceKind::Conversation, &facts)
        .into_result()
        .map_err(|d| ApiError::denied(d, noun))?;
    Ok((row, role))
}

pub async fn create(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let share = on_conversation(
        &state,
        user,
        id.into_inner(),
        Action::ManageMembers,
        |c, user, row, _| {
            let share_id = conversations::create_share(c, &row.id, user.id())?;
            Ok(Share {
                share_id,
                conversation_id: row.id,
            })
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(share))
}

/// `DELETE /conversations/{id}/shares`: revokes every link (the owner lost one).
pub async fn revoke_all(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let revoked = on_conversation(
        &state,
        user,
        id.into_inner(),
        Action::ManageMembers,
        |c, user, row, _| conversations::revoke_all_shares(c, &row.id, user.id()),
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": revoked })))
}

pub async fn view(
    state: State,
    user: AuthUser,
    share_id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<SharedConversation>, ApiError> {
    let page = page.check()?;
    let view = state
        .db(move |c| {
            let (row, role) = shared(c, &user, &share_id, Action::Read)?;
            let owner =
                accounts::user_by_id(c, &row.owner_id)?.ok_or(ApiError::NotFound("share"))?;
            // Readers through a link see names, not email addresses.
            let hide = |u: &mut UserSummary| {
                if role == Role::Viewer {
                    u.email.clear();
                }
            };
            let mut owner = owner.summary();
            hide(&mut owner);
            let (mut list, next_cursor) = messages::list(c, &row.id, &page)?;
            list.iter_mut()
                .filter_map(|m| m.sender_user.as_mut())
                .for_each(hide);
            Ok(SharedConversation {
                messages: list,
                conversation: row.to_dto(role),
                owner,
                next_cursor,
            })
        })
        .await?;
    Ok(web::Json(view))
}

pub async fn revoke(
    state: State,
    user: AuthUser,
    share_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .db(move |c| {
            shared(c, &user, &share_id, Action::ManageMembers)?;
            conversations::revoke_share(c, &share_id, user.id())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// "Continue privately": a new conversation owned by the caller, in a
/// project where they may create things, with a copy of every message.
pub async fn fork(
    state: State,
    user: AuthUser,
    share_id: web::Path<String>,
    body: web::Json<ForkShare>,
) -> Result<HttpResponse, ApiError> {
    let forked = state
        .db(move |c| {
            let (row, _) = shared(c, &user, &share_id, Action::Read)?;
            let (project, chain) = load::project(c, &body.project_id)?;
            authorize(
                c,
                &user.actor(),
                Action::CreateChild,
                ResourceKind::Project,
                &chain,
            )?;
            // One transaction: a fork appears whole or not at all.
            let copy = write_tx(c, |c| {
                let copy =
                    conversations::create(c, user.id(), &project.id, &row.title, Some(&row.id))?;
                messages::copy_all(c, &row.id, &copy.id)?;
                Ok::<_, ApiError>(copy)
            })?;
            let copy =
                conversations::get(c, &copy.id)?.ok_or(ApiError::NotFound("conversation"))?;
            Ok(copy.to_dto(Role::Owner))
        })
        .await?;
    Ok(HttpResponse::Created().json(forked))
}

/// "Continue with creator": the caller becomes a participant of the shared
/// conversation (which becomes collaborative). Joining twice is harmless.
pub async fn join(
    state: State,
    user: AuthUser,
    share_id: web::Path<String>,
) -> Result<web::Json<Conversation>, ApiError> {
    let joined = state
        .db(move |c| {
            let (row, role) = shared(c, &user, &share_id, Action::Read)?;
            if role == Role::Viewer {
                match conversations::add_participant(c, &row, &user.user, &row.owner_id, user.id())
                {
                    // A concurrent join of the same user got there first.
                    Ok(_) | Err(ApiError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let (row, role) = authorized(c, &user.actor(), &row.id, Action::Read)?;
            Ok(row.to_dto(role))
        })
        .await?;
    state.chat_changed(&joined.id);
    Ok(web::Json(joined))
}
