//! Usage events: `POST /usage` records one (attributed to the user whose
//! message triggered the work), `GET /usage` the caller's totals by day,
//! `GET /orgs/{id}/usage` an org's totals by day and user (org owners).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use tandem_protocol::chat::{MessageRole, RecordUsage, UsageEvent, UsageReport};
use tandem_protocol::http::OrgRole;

use super::conversations::authorized;
use crate::authz::Action;
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::state::State;
use crate::store::{accounts, conversations, messages, usage};
use crate::validate;

const MAX_TOKENS: i64 = 1_000_000_000;
const MAX_DAYS: i64 = 366;

pub async fn record(
    state: State,
    user: AuthUser,
    body: web::Json<RecordUsage>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let model = validate::text("model", &body.model, 200)?;
    for (field, n) in [
        ("inputTokens", body.input_tokens),
        ("outputTokens", body.output_tokens),
    ] {
        if !(0..=MAX_TOKENS).contains(&n) {
            return Err(ApiError::validation(format!(
                "{field} must be 0..={MAX_TOKENS}"
            )));
        }
    }
    if body.message_id.is_some() && body.conversation_id.is_none() {
        return Err(ApiError::validation("messageId needs conversationId"));
    }
    let row = state
        .db(move |c| {
            // Who pays: the user an assistant message is attributed to (who
            // triggered it) while they still take part in the conversation;
            // otherwise the caller. So nobody can bill someone who is not in
            // the conversation (e.g. the original senders copied into a fork).
            let mut payer = user.user.clone();
            if let Some(cid) = &body.conversation_id {
                let (conv, _) = authorized(c, &user.actor(), cid, Action::CreateChild)?;
                if let Some(mid) = &body.message_id {
                    let m = messages::get(c, &conv.id, mid)?;
                    if m.role != MessageRole::Assistant.as_str() {
                        return Err(ApiError::validation(
                            "messageId must name an assistant message",
                        ));
                    }
                    if let Some(uid) = m.user_id.filter(|u| *u != payer.id) {
                        if conversations::relation(c, &conv, &uid)?.is_some() {
                            payer =
                                accounts::user_by_id(c, &uid)?.ok_or(ApiError::NotFound("user"))?;
                        }
                    }
                }
            }
            usage::record(
                c,
                &payer.id,
                &payer.org_id,
                body.conversation_id.as_deref(),
                body.message_id.as_deref(),
                &model,
                body.input_tokens,
                body.output_tokens,
            )
        })
        .await?;
    Ok(HttpResponse::Created().json(UsageEvent {
        id: row.id,
        user_id: row.user_id,
        org_id: row.org_id,
        model: row.model,
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        created_at: row.created_at,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Days {
    days: Option<i64>,
}

fn days(q: &Days) -> Result<i64, ApiError> {
    let d = q.days.unwrap_or(30);
    if (1..=MAX_DAYS).contains(&d) {
        Ok(d)
    } else {
        Err(ApiError::validation(format!("days must be 1..={MAX_DAYS}")))
    }
}

pub async fn mine(
    state: State,
    user: AuthUser,
    q: web::Query<Days>,
) -> Result<web::Json<UsageReport>, ApiError> {
    let days = days(&q)?;
    let totals = state
        .db(move |c| usage::totals(c, usage::Scope::User(user.id()), days))
        .await?;
    Ok(web::Json(UsageReport { totals }))
}

/// An org's usage: its owner only; members get 403, outsiders 404.
pub async fn org(
    state: State,
    user: AuthUser,
    org_id: web::Path<String>,
    q: web::Query<Days>,
) -> Result<web::Json<UsageReport>, ApiError> {
    let days = days(&q)?;
    if user.user.org_id != *org_id {
        return Err(ApiError::NotFound("org"));
    }
    if user.user.org_role() != OrgRole::Owner {
        return Err(ApiError::Forbidden);
    }
    let totals = state
        .db(move |c| usage::totals(c, usage::Scope::Org(&org_id), days))
        .await?;
    Ok(web::Json(UsageReport { totals }))
}
