//! An org's audit log (owners): `GET /orgs/{id}/audit` (newest first,
//! cursor paged, filters `action`, `actor`, `since`, `until`),
//! `GET /orgs/{id}/audit/verify` and `GET /orgs/{id}/audit/export`
//! (the whole chain, oldest first, as NDJSON, read in chunks).

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use tandem_protocol::admin::{AuditEntry, AuditVerification};
use tandem_protocol::http::Page;

use super::orgs::admin_authorized;
use crate::authz::AdminAction;
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::state::State;
use crate::store::audit::{self, Filter};

/// Longest `action` or `actor` filter accepted.
const MAX_FILTER_LEN: usize = 100;

/// `?cursor=&limit=&action=&actor=&since=&until=`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditQuery {
    /// The `seq` to continue below (the previous page's `nextCursor`).
    cursor: Option<String>,
    limit: Option<i64>,
    action: Option<String>,
    actor: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
}

impl AuditQuery {
    fn check(self) -> Result<(Filter, Option<i64>, i64), ApiError> {
        let limit = crate::page::check(None, self.limit)?.limit;
        let cursor = self
            .cursor
            .map(|c| {
                c.parse::<i64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| ApiError::BadRequest("cursor is not valid".into()))
            })
            .transpose()?;
        let short = |name: &str, v: Option<String>| match v {
            Some(s) if s.is_empty() || s.len() > MAX_FILTER_LEN => Err(ApiError::validation(
                format!("{name} must be 1..={MAX_FILTER_LEN} characters"),
            )),
            other => Ok(other),
        };
        let filter = Filter {
            action: short("action", self.action)?,
            actor: short("actor", self.actor)?,
            since: self.since,
            until: self.until,
        };
        Ok((filter, cursor, limit))
    }
}

pub async fn list(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<Page<AuditEntry>>, ApiError> {
    let (filter, cursor, limit) = query.into_inner().check()?;
    let (items, next) = state
        .db(move |c| {
            let org = admin_authorized(c, &user, &id, AdminAction::ReadAudit)?;
            audit::list(c, &org.id, &filter, cursor, limit)
        })
        .await?;
    Ok(web::Json(Page {
        items,
        next_cursor: next.map(|s| s.to_string()),
    }))
}

pub async fn verify(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<web::Json<AuditVerification>, ApiError> {
    let result = state
        .db(move |c| {
            let org = admin_authorized(c, &user, &id, AdminAction::ReadAudit)?;
            Ok(audit::verify(c, &org.id)?)
        })
        .await?;
    Ok(web::Json(result))
}

/// Streams the chain as NDJSON, one entry per line, [`audit::CHUNK`] rows
/// read at a time (memory does not grow with the log). A database failure
/// mid-way ends the stream early: the last line is then not the head that
/// `verify` reports.
pub async fn export(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org = state
        .db(move |c| admin_authorized(c, &user, &id, AdminAction::ReadAudit))
        .await?;
    let start = (state.clone(), org.id, 0_i64, false);
    let body = futures_util::stream::unfold(start, |(state, org_id, after, done)| async move {
        if done {
            return None;
        }
        let org = org_id.clone();
        let rows = match state
            .db(move |c| Ok(audit::chunk_after(c, &org, after)?))
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "audit export ended early");
                return None;
            }
        };
        if rows.is_empty() {
            return None;
        }
        let last = rows.last().map_or(after, |e| e.seq);
        let finished = (rows.len() as i64) < audit::CHUNK;
        let mut out = Vec::new();
        for e in &rows {
            // An entry always serializes; a failure would only drop its line.
            if serde_json::to_writer(&mut out, e).is_ok() {
                out.push(b'\n');
            }
        }
        let chunk: Result<Bytes, actix_web::Error> = Ok(Bytes::from(out));
        Some((chunk, (state, org_id, last, finished)))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body))
}
