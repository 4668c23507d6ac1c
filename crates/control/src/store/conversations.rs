//! Conversations (chats): rows, the actor's facts, the list (owned ∪
//! participating), create/update/delete, participants, share links, presence.
//! Every change that viewers should see live is written as an event
//! ([`super::chat_events::append`]) in the same transaction.

use diesel::prelude::*;
use serde_json::json;
use tandem_protocol::chat::{Conversation, Participant, ParticipantsMay};
use tandem_protocol::http::{Page, Role};

use super::audit::{self, Entry};
use super::workspace_events::{self as feed, Change, Entity, Op};
use super::{chat_events, now_ms, UserRow};
use crate::authz::ConversationFacts;
use crate::crypto;
use crate::db::schema::{conversation_participants, conversations, presence, shares, users};
use crate::db::{upsert, write_tx, DbConnection};
use crate::error::ApiError;
use crate::page::{cut, PageReq, Paged};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = conversations)]
pub struct ConversationRow {
    pub id: String,
    pub project_id: String,
    pub owner_id: String,
    pub title: String,
    pub is_collaborative: bool,
    pub starred: bool,
    pub archived: bool,
    pub participants_may_rename: bool,
    pub participants_may_star: bool,
    pub participants_may_archive: bool,
    pub forked_from: Option<String>,
    pub last_message_at: Option<i64>,
    pub sort_at: i64,
    pub event_seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub is_quick_chat: bool,
    pub parent_chat_id: Option<String>,
    pub summary: Option<String>,
}

impl ConversationRow {
    pub fn participants_may(&self) -> ParticipantsMay {
        ParticipantsMay {
            rename: self.participants_may_rename,
            star: self.participants_may_star,
            archive: self.participants_may_archive,
        }
    }

    pub fn to_dto(&self, role: Role) -> Conversation {
        Conversation {
            id: self.id.clone(),
            project_id: self.project_id.clone(),
            owner_id: self.owner_id.clone(),
            title: self.title.clone(),
            is_collaborative: self.is_collaborative,
            starred: self.starred,
            archived: self.archived,
            participants_may: self.participants_may(),
            forked_from: self.forked_from.clone(),
            is_quick_chat: self.is_quick_chat,
            parent_chat_id: self.parent_chat_id.clone(),
            summary: self.summary.clone(),
            last_message_at: self.last_message_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            role,
        }
    }

    /// The facts `can()` decides on, for a user whose relation is known.
    pub fn facts(&self, relation: Option<Role>) -> ConversationFacts {
        ConversationFacts {
            relation,
            participants_may: self.participants_may(),
        }
    }
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<Option<ConversationRow>, ApiError> {
    Ok(conversations::table
        .find(id)
        .select(ConversationRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn is_participant(conn: &mut DbConnection, id: &str, user_id: &str) -> Result<bool, ApiError> {
    let n: i64 = conversation_participants::table
        .filter(conversation_participants::conversation_id.eq(id))
        .filter(conversation_participants::user_id.eq(user_id))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// The user's relation to a conversation: owner, participant (`Editor`) or none.
pub fn relation(
    conn: &mut DbConnection,
    row: &ConversationRow,
    user_id: &str,
) -> Result<Option<Role>, ApiError> {
    if row.owner_id == user_id {
        return Ok(Some(Role::Owner));
    }
    Ok(is_participant(conn, &row.id, user_id)?.then_some(Role::Editor))
}

/// A conversation and the facts of `user_id` on it; `None` when it does not exist.
pub fn load(
    conn: &mut DbConnection,
    id: &str,
    user_id: &str,
) -> Result<Option<(ConversationRow, ConversationFacts)>, ApiError> {
    let Some(row) = get(conn, id)? else {
        return Ok(None);
    };
    let relation = relation(conn, &row, user_id)?;
    let facts = row.facts(relation);
    Ok(Some((row, facts)))
}

/// What a new conversation is besides its title (plan 004).
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub is_quick_chat: bool,
    pub parent_chat_id: Option<String>,
    pub summary: Option<String>,
}

pub fn create(
    conn: &mut DbConnection,
    owner: &str,
    project_id: &str,
    title: &str,
    forked_from: Option<&str>,
) -> Result<ConversationRow, ApiError> {
    create_with(
        conn,
        owner,
        project_id,
        title,
        forked_from,
        Extra::default(),
    )
}

/// [`create`] with plan 004's fields. Call inside a write transaction.
pub fn create_with(
    conn: &mut DbConnection,
    owner: &str,
    project_id: &str,
    title: &str,
    forked_from: Option<&str>,
    extra: Extra,
) -> Result<ConversationRow, ApiError> {
    let now = now_ms();
    let row = ConversationRow {
        id: crypto::new_id(),
        project_id: project_id.to_string(),
        owner_id: owner.to_string(),
        title: title.to_string(),
        is_collaborative: false,
        starred: false,
        archived: false,
        participants_may_rename: false,
        participants_may_star: false,
        participants_may_archive: false,
        forked_from: forked_from.map(str::to_string),
        last_message_at: None,
        sort_at: 0,
        event_seq: 0,
        created_at: now,
        updated_at: now,
        is_quick_chat: extra.is_quick_chat,
        parent_chat_id: extra.parent_chat_id,
        summary: extra.summary,
    };
    diesel::insert_into(conversations::table)
        .values(&row)
        .execute(conn)?;
    announce(conn, &row, Op::Created, vec![])?;
    Ok(row)
}

/// Writes a conversation change to its workspace's feed. Call inside the
/// write transaction of the change.
fn announce(
    c: &mut DbConnection,
    row: &ConversationRow,
    op: Op,
    audience: Vec<String>,
) -> Result<(), ApiError> {
    let Some(workspace_id) = feed::workspace_of_project(c, &row.project_id)? else {
        return Ok(());
    };
    let data = if op == Op::Deleted {
        json!({ "id": row.id, "projectId": row.project_id })
    } else {
        json!(row.to_dto(Role::Viewer))
    };
    let change = Change {
        entity: Entity::Conversation,
        op,
        id: &row.id,
        project_id: Some(&row.project_id),
        data,
        audience,
    };
    feed::record(c, &workspace_id, change)
}

/// Filters and page of `GET /conversations`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub project_id: Option<String>,
    pub archived: Option<bool>,
    pub starred: Option<bool>,
    /// `(sort_at, id)` of the last item of the previous page.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

/// The conversations `user_id` owns or takes part in (each once), newest
/// `lastMessageAt` first (never-written-to last), ties by id; one page plus
/// whether there is more.
pub fn list(
    conn: &mut DbConnection,
    user_id: &str,
    q: &ListQuery,
) -> Result<(Vec<(ConversationRow, Role)>, bool), ApiError> {
    let participating = conversation_participants::table
        .filter(conversation_participants::user_id.eq(user_id))
        .select(conversation_participants::conversation_id);
    let mut query = conversations::table
        .filter(
            conversations::owner_id
                .eq(user_id)
                .or(conversations::id.eq_any(participating)),
        )
        .select(ConversationRow::as_select())
        .order((conversations::sort_at.desc(), conversations::id.desc()))
        .limit(q.limit + 1)
        .into_boxed();
    if let Some(p) = &q.project_id {
        query = query.filter(conversations::project_id.eq(p.clone()));
    }
    if let Some(a) = q.archived {
        query = query.filter(conversations::archived.eq(a));
    }
    if let Some(s) = q.starred {
        query = query.filter(conversations::starred.eq(s));
    }
    if let Some((sort_at, id)) = &q.after {
        query = query.filter(
            conversations::sort_at
                .lt(*sort_at)
                .or(conversations::sort_at
                    .eq(*sort_at)
                    .and(conversations::id.lt(id.clone()))),
        );
    }
    let mut rows: Vec<ConversationRow> = query.load(conn)?;
    let more = rows.len() as i64 > q.limit;
    rows.truncate(q.limit.max(0) as usize);
    Ok((
        rows.into_iter()
            .map(|r| {
                let role = if r.owner_id == user_id {
                    Role::Owner
                } else {
                    Role::Editor
                };
                (r, role)
            })
            .collect(),
        more,
    ))
}

/// The changes of a `PATCH`, already authorized.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub title: Option<String>,
    pub starred: Option<bool>,
    pub archived: Option<bool>,
    pub participants_may: Option<ParticipantsMay>,
    pub summary: Option<String>,
}

/// The columns a `PATCH` writes; `None` leaves a column alone.
#[derive(AsChangeset)]
#[diesel(table_name = conversations)]
struct Patch<'a> {
    title: Option<&'a str>,
    starred: Option<bool>,
    archived: Option<bool>,
    participants_may_rename: Option<bool>,
    participants_may_star: Option<bool>,
    participants_may_archive: Option<bool>,
    summary: Option<&'a str>,
    updated_at: i64,
}

/// Applies a `PATCH` to `row`. Call inside a write transaction that has
/// locked the conversation ([`chat_events::lock`]), read `row` after the
/// lock and authorized the changes: one UPDATE of only the given fields, so
/// concurrent patches of different fields both stick.
pub fn update_in_tx(
    c: &mut DbConnection,
    row: &ConversationRow,
    changes: &Changes,
) -> Result<ConversationRow, ApiError> {
    let may = changes.participants_may;
    let patch = Patch {
        title: changes.title.as_deref(),
        starred: changes.starred,
        archived: changes.archived,
        participants_may_rename: may.map(|m| m.rename),
        participants_may_star: may.map(|m| m.star),
        participants_may_archive: may.map(|m| m.archive),
        summary: changes.summary.as_deref(),
        updated_at: now_ms(),
    };
    diesel::update(conversations::table.find(&row.id))
        .set(&patch)
        .execute(c)?;
    let mut row = row.clone();
    if let Some(t) = &changes.title {
        row.title = t.clone();
    }
    if let Some(s) = &changes.summary {
        row.summary = Some(s.clone());
    }
    row.starred = changes.starred.unwrap_or(row.starred);
    row.archived = changes.archived.unwrap_or(row.archived);
    if let Some(m) = may {
        row.participants_may_rename = m.rename;
        row.participants_may_star = m.star;
        row.participants_may_archive = m.archive;
    }
    row.updated_at = patch.updated_at;
    // Viewers get the conversation without anyone's role in it.
    let mut data = json!(row.to_dto(Role::Viewer));
    if let Some(o) = data.as_object_mut() {
        o.remove("role");
    }
    row.event_seq = chat_events::append(c, &row.id, "conversation_updated", &data)?;
    announce(c, &row, Op::Updated, vec![])?;
    Ok(row)
}

/// Deletes a conversation with its participants, messages, attachments,
/// events, shares, tool executions and presence (foreign keys cascade).
pub fn delete(conn: &mut DbConnection, id: &str) -> Result<(), ApiError> {
    write_tx(conn, |c| {
        // The conversation row first, as its other writers lock it.
        chat_events::lock(c, id)?;
        let Some(row) = get(c, id)? else {
            return Err(ApiError::NotFound("conversation"));
        };
        // Everyone who could read it learns it is gone.
        let mut audience: Vec<String> = conversation_participants::table
            .filter(conversation_participants::conversation_id.eq(id))
            .select(conversation_participants::user_id)
            .load(c)?;
        audience.push(row.owner_id.clone());
        announce(c, &row, Op::Deleted, audience)?;
        diesel::delete(conversations::table.find(id)).execute(c)?;
        Ok(())
    })
}

/// Paging key of the owner in the participant list: before everyone.
const OWNER_KEY: i64 = i64::MIN;

/// One page of: the owner first, then participants by the time they
/// joined, with user details (a user who is both is listed once, as owner);
/// and the cursor of the next page.
pub fn participants(
    conn: &mut DbConnection,
    row: &ConversationRow,
    page: &PageReq,
) -> Result<Page<Participant>, ApiError> {
    let owner: Option<UserRow> = match page.after {
        Some(_) => None,
        None => users::table
            .find(&row.owner_id)
            .select(UserRow::as_select())
            .first(conn)
            .optional()?,
    };
    let mut query = conversation_participants::table
        .inner_join(users::table)
        .filter(conversation_participants::conversation_id.eq(&row.id))
        .filter(conversation_participants::user_id.ne(&row.owner_id))
        .limit(page.fetch())
        .into_boxed();
    if let Some((at, id)) = page.after.clone().filter(|(at, _)| *at != OWNER_KEY) {
        query = query.filter(
            conversation_participants::created_at
                .gt(at)
                .or(conversation_participants::created_at
                    .eq(at)
                    .and(conversation_participants::user_id.gt(id))),
        );
    }
    let rows: Vec<(String, i64, UserRow)> = query
        .order((
            conversation_participants::created_at.asc(),
            conversation_participants::user_id.asc(),
        ))
        .select((
            conversation_participants::added_by,
            conversation_participants::created_at,
            UserRow::as_select(),
        ))
        .load(conn)?;
    let mut list: Vec<Participant> = owner
        .iter()
        .map(|u| Participant {
            user_id: u.id.clone(),
            added_by: u.id.clone(),
            created_at: row.created_at,
            kind: "owner".into(),
            user: u.summary(),
        })
        .collect();
    list.extend(
        rows.into_iter()
            .map(|(added_by, created_at, u)| Participant {
                user_id: u.id.clone(),
                added_by,
                created_at,
                kind: "participant".into(),
                user: u.summary(),
            }),
    );
    Ok(crate::page::page(list, page, participant_key, |p| p))
}

fn participant_key(p: &Participant) -> (i64, &str) {
    let at = if p.kind == "owner" {
        OWNER_KEY
    } else {
        p.created_at
    };
    (at, p.user_id.as_str())
}

/// Makes `user_id` a participant (and the conversation collaborative).
/// `Conflict` when they already are one.
pub fn add_participant(
    conn: &mut DbConnection,
    row: &ConversationRow,
    user: &UserRow,
    added_by: &str,
    actor: &str,
) -> Result<Participant, ApiError> {
    let id = row.id.as_str();
    write_tx(conn, |c| {
        // Taking part is writing: a guest needs `edit` guest access.
        if let Some(ws) = super::admin::workspace_of_conversation(c, id)? {
            super::admin::check_guest_in(c, &ws, &user.id, Role::Editor)?;
        }
        let now = now_ms();
        diesel::insert_into(conversation_participants::table)
            .values((
                conversation_participants::conversation_id.eq(id),
                conversation_participants::user_id.eq(&user.id),
                conversation_participants::added_by.eq(added_by),
                conversation_participants::created_at.eq(now),
            ))
            .execute(c)
            .map_err(|e| {
                ApiError::conflict_if_unique(e, "this user already takes part in the conversation")
            })?;
        diesel::update(conversations::table.find(id))
            .set((
                conversations::is_collaborative.eq(true),
                conversations::updated_at.eq(now),
            ))
            .execute(c)?;
        chat_events::append(
            c,
            id,
            "participant_added",
            &json!({ "userId": user.id, "user": user.summary(), "addedBy": added_by }),
        )?;
        // The new participant now reads it: it appears in their lists.
        announce(c, row, Op::Updated, vec![])?;
        let entry = Entry::new(actor, "participant.add", format!("conversation:{id}"))
            .after(json!({ "userId": user.id, "addedBy": added_by }));
        audit::append_for_conversation(c, id, &entry)?;
        Ok(Participant {
            user_id: user.id.clone(),
            added_by: added_by.to_string(),
            created_at: now,
            kind: if user.id == row.owner_id {
                "owner"
            } else {
                "participant"
            }
            .into(),
            user: user.summary(),
        })
    })
}

/// Removes a participant; `NotFound` when they were not one.
pub fn remove_participant(
    conn: &mut DbConnection,
    by: &str,
    id: &str,
    user_id: &str,
) -> Result<(), ApiError> {
    write_tx(conn, |c| {
        let n = diesel::delete(conversation_participants::table.find((id, user_id))).execute(c)?;
        if n == 0 {
            return Err(ApiError::NotFound("participant"));
        }
        diesel::delete(presence::table.find((id, user_id))).execute(c)?;
        chat_events::append(c, id, "participant_removed", &json!({ "userId": user_id }))?;
        let entry = Entry::new(by, "participant.remove", format!("conversation:{id}"))
            .before(json!({ "userId": user_id }));
        audit::append_for_conversation(c, id, &entry)?;
        // Gone from the removed participant's lists (and only theirs).
        if let Some(row) = get(c, id)? {
            announce(c, &row, Op::Deleted, vec![user_id.to_string()])?;
        }
        Ok(())
    })
}

/// The first 16 hex digits of a share link's stored hash: names the link
/// in the audit log without revealing it.
fn share_label(share_id: &str) -> String {
    crypto::hash_token(share_id).chars().take(16).collect()
}

/// Creates a share link; the id is returned once and stored hashed.
pub fn create_share(conn: &mut DbConnection, id: &str, by: &str) -> Result<String, ApiError> {
    let share_id = crypto::new_token();
    write_tx(conn, |c| {
        diesel::insert_into(shares::table)
            .values((
                shares::id_hash.eq(crypto::hash_token(&share_id)),
                shares::conversation_id.eq(id),
                shares::created_by.eq(by),
                shares::created_at.eq(now_ms()),
            ))
            .execute(c)?;
        let entry = Entry::new(by, "share.create", format!("conversation:{id}"))
            .after(json!({ "share": share_label(&share_id) }));
        audit::append_for_conversation(c, id, &entry)
    })?;
    Ok(share_id)
}

/// The conversation of a live share link.
pub fn shared(conn: &mut DbConnection, share_id: &str) -> Result<ConversationRow, ApiError> {
    let found: Option<(Option<i64>, ConversationRow)> = shares::table
        .inner_join(conversations::table)
        .filter(shares::id_hash.eq(crypto::hash_token(share_id)))
        .select((shares::revoked_at, ConversationRow::as_select()))
        .first(conn)
        .optional()?;
    match found {
        None => Err(ApiError::NotFound("share")),
        Some((Some(_), _)) => Err(ApiError::Gone("this share link was revoked".into())),
        Some((None, row)) => Ok(row),
    }
}

/// Revokes every live share link of a conversation (for a lost link).
pub fn revoke_all_shares(conn: &mut DbConnection, id: &str, by: &str) -> Result<usize, ApiError> {
    write_tx(conn, |c| {
        let n = diesel::update(
            shares::table
                .filter(shares::conversation_id.eq(id))
                .filter(shares::revoked_at.is_null()),
        )
        .set(shares::revoked_at.eq(now_ms()))
        .execute(c)?;
        let entry = Entry::new(by, "share.revoke_all", format!("conversation:{id}"))
            .after(json!({ "revoked": n }));
        audit::append_for_conversation(c, id, &entry)?;
        Ok(n)
    })
}

/// Revokes a share link (kept, so that its users are told it was revoked).
pub fn revoke_share(conn: &mut DbConnection, share_id: &str, by: &str) -> Result<(), ApiError> {
    let hash = crypto::hash_token(share_id);
    write_tx(conn, |c| {
        let conversation: Option<String> = shares::table
            .filter(shares::id_hash.eq(&hash))
            .filter(shares::revoked_at.is_null())
            .select(shares::conversation_id)
            .first(c)
            .optional()?;
        let Some(conversation) = conversation else {
            return Ok(());
        };
        diesel::update(shares::table.filter(shares::id_hash.eq(&hash)))
            .set(shares::revoked_at.eq(now_ms()))
            .execute(c)?;
        let entry = Entry::new(by, "share.revoke", format!("conversation:{conversation}"))
            .before(json!({ "share": share_label(share_id) }));
        audit::append_for_conversation(c, &conversation, &entry)
    })
}

/// Records that `user_id` is looking at the conversation now.
pub fn heartbeat(conn: &mut DbConnection, id: &str, user_id: &str) -> Result<(), ApiError> {
    let now = now_ms();
    upsert(
        conn,
        |c| {
            diesel::update(presence::table.find((id, user_id)))
                .set(presence::last_active_at.eq(now))
                .execute(c)
        },
        |c| {
            diesel::insert_into(presence::table)
                .values((
                    presence::conversation_id.eq(id),
                    presence::user_id.eq(user_id),
                    presence::last_active_at.eq(now),
                ))
                .execute(c)
        },
    )?;
    Ok(())
}

/// One page of the users whose last heartbeat is at most `window_ms` old,
/// most recent first, and the cursor of the next page.
pub fn present(
    conn: &mut DbConnection,
    id: &str,
    window_ms: i64,
    page: &PageReq,
) -> Result<Paged<(UserRow, i64)>, ApiError> {
    let since = now_ms() - window_ms;
    let mut query = presence::table
        .inner_join(users::table)
        .filter(presence::conversation_id.eq(id))
        .filter(presence::last_active_at.ge(since))
        .order((presence::last_active_at.desc(), presence::user_id.asc()))
        .select((UserRow::as_select(), presence::last_active_at))
        .limit(page.fetch())
        .into_boxed();
    if let Some((at, user)) = &page.after {
        query = query.filter(
            presence::last_active_at.lt(*at).or(presence::last_active_at
                .eq(*at)
                .and(presence::user_id.gt(user.clone()))),
        );
    }
    Ok(cut(query.load(conn)?, page, |(u, at): &(UserRow, i64)| {
        (*at, u.id.as_str())
    }))
}
