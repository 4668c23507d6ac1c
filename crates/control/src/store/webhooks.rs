//! Webhooks of an organization: endpoints, the deliveries [`emit`] writes in
//! the transaction of the change it announces, and their attempts.
//!
//! A delivery is one message (`event_id`, the `webhook-id` header) to one
//! endpoint. [`crate::webhooks::dispatch`] claims due deliveries with a lease
//! (a conditional update, as the email outbox does), so several control
//! replicas never send one attempt twice at once, and records each attempt
//! with [`record_attempt`], which schedules the next one or gives up.
//!
//! Privileged changes (create, update, delete, rotate, automatic disable) are
//! appended to the org's audit log in the same transaction.

use std::cell::Cell;

use diesel::prelude::*;
use serde_json::{json, Value};
use tandem_protocol::http::Page;
use tandem_protocol::webhooks::{
    UpdateWebhook, WebhookAttempt, WebhookDelivery, WebhookEndpoint, EVENT_TYPES,
};

use super::audit::{self, Entry};
use super::now_ms;
use crate::crypto;
use crate::db::schema::workspaces;
use crate::db::webhook_schema::{
    webhook_attempts, webhook_debounce, webhook_deliveries, webhook_endpoints,
};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::page::PageReq;

/// Endpoints one organization may have (each event costs one row per endpoint).
pub const MAX_ENDPOINTS: i64 = 20;
/// The retry schedule: the wait before attempt n+1 after n failures in a
/// round (attempt 1 is immediate), in seconds, before scaling and jitter.
pub const SCHEDULE_SECS: [i64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 86400];
/// An endpoint failing for this long (scaled like the schedule) is disabled.
pub const FAILING_WINDOW_SECS: i64 = 5 * 24 * 3600;
/// Attempts kept (and shown) per delivery: the latest.
const SHOWN_ATTEMPTS: usize = 20;
/// Stored start of an answer's body.
pub const STORED_BODY_BYTES: usize = 4096;
/// Largest message content copied into `conversation.message_created`.
const MAX_CONTENT_CHARS: usize = 8192;

thread_local! {
    /// Whether deliveries were written on this thread since [`take_pending`]:
    /// `AppState::db` wakes the dispatcher once the work is done.
    static PENDING: Cell<bool> = const { Cell::new(false) };
}

/// Whether deliveries were written on this thread since the last call.
pub fn take_pending() -> bool {
    PENDING.with(|p| p.replace(false))
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
pub struct EndpointRow {
    pub id: String,
    pub org_id: String,
    pub url: String,
    pub description: String,
    pub events: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret_sealed: String,
    pub secret_key_id: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub failing_since: Option<i64>,
}

impl EndpointRow {
    pub fn events(&self) -> Vec<String> {
        serde_json::from_str(&self.events).unwrap_or_default()
    }

    pub fn to_dto(&self) -> WebhookEndpoint {
        WebhookEndpoint {
            id: self.id.clone(),
            org_id: self.org_id.clone(),
            url: self.url.clone(),
            description: self.description.clone(),
            events: self.events(),
            enabled: self.enabled,
            disabled_reason: self.disabled_reason.clone(),
            failing_since: self.failing_since,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// What the sealed secret is bound to (a ciphertext moved to another
    /// endpoint does not open).
    pub fn secret_aad(id: &str) -> String {
        format!("webhook:{id}")
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
    pub state: String,
    pub attempts: i64,
    pub round_start: i64,
    pub next_attempt_at: i64,
    pub claimed_until: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts)]
struct AttemptRow {
    delivery_id: String,
    attempt: i64,
    at: i64,
    status_code: Option<i64>,
    error: Option<String>,
    duration_ms: i64,
    response_body: Option<String>,
}

const PENDING_STATE: &str = "pending";
const DELIVERED: &str = "delivered";
const FAILED: &str = "failed";

// ---------------------------------------------------------------- input

/// Checks a URL's form (not where it points: see `crate::webhooks::check_target`).
pub fn check_url(raw: &str) -> Result<url::Url, ApiError> {
    if raw.len() > 2000 {
        return Err(ApiError::validation("url: at most 2000 characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| ApiError::validation(format!("url: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(ApiError::validation("url: must be https:// or http://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::validation(
            "url: must not carry credentials (they would be shown in lists)",
        ));
    }
    if url.host().is_none() {
        return Err(ApiError::validation("url: has no host"));
    }
    Ok(url)
}

/// Checks and normalizes a list of event types (sorted, no duplicates).
pub fn check_events(events: &[String]) -> Result<Vec<String>, ApiError> {
    if events.is_empty() || events.len() > EVENT_TYPES.len() * 2 {
        return Err(ApiError::validation(format!(
            "events: 1 to {} of {}",
            EVENT_TYPES.len(),
            EVENT_TYPES.join(", ")
        )));
    }
    let mut out = Vec::new();
    for e in events {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(ApiError::validation(format!(
                "events: unknown type {:?} (known: {})",
                e.chars().take(60).collect::<String>(),
                EVENT_TYPES.join(", ")
            )));
        }
        out.push(e.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn check_description(d: &str) -> Result<String, ApiError> {
    if d.chars().count() > 500 || d.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::validation(
            "description: at most 500 characters, no control characters",
        ));
    }
    Ok(d.to_string())
}

// ---------------------------------------------------------------- endpoints

/// A new endpoint. `secret` is sealed already (`SecretBox::seal` with
/// [`EndpointRow::secret_aad`] of `id`).
pub struct NewEndpoint {
    pub id: String,
    pub org_id: String,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub secret_sealed: String,
    pub secret_key_id: String,
    pub created_by: String,
}

pub fn create(conn: &mut DbConnection, new: NewEndpoint) -> Result<EndpointRow, ApiError> {
    write_tx(conn, |c| {
        let count: i64 = webhook_endpoints::table
            .filter(webhook_endpoints::org_id.eq(&new.org_id))
            .count()
            .get_result(c)?;
        if count >= MAX_ENDPOINTS {
            return Err(ApiError::validation(format!(
                "an organization has at most {MAX_ENDPOINTS} webhooks"
            )));
        }
        let now = now_ms();
        diesel::insert_into(webhook_endpoints::table)
            .values((
                webhook_endpoints::id.eq(&new.id),
                webhook_endpoints::org_id.eq(&new.org_id),
                webhook_endpoints::url.eq(&new.url),
                webhook_endpoints::description.eq(&new.description),
                webhook_endpoints::events.eq(json!(new.events).to_string()),
                webhook_endpoints::enabled.eq(true),
                webhook_endpoints::secret_sealed.eq(&new.secret_sealed),
                webhook_endpoints::secret_key_id.eq(&new.secret_key_id),
                webhook_endpoints::created_by.eq(Some(&new.created_by)),
                webhook_endpoints::created_at.eq(now),
                webhook_endpoints::updated_at.eq(now),
            ))
            .execute(c)?;
        let row = get(c, &new.org_id, &new.id)?;
        let entry = Entry::new(
            &new.created_by,
            "webhook.create",
            format!("webhook:{}", new.id),
        )
        .after(json!(row.to_dto()));
        audit::append(c, &new.org_id, &entry)?;
        Ok(row)
    })
}

/// An endpoint of the org; `NotFound` for another org's.
pub fn get(conn: &mut DbConnection, org_id: &str, id: &str) -> Result<EndpointRow, ApiError> {
    webhook_endpoints::table
        .find(id)
        .filter(webhook_endpoints::org_id.eq(org_id))
        .select(EndpointRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("webhook"))
}

/// The endpoint of a delivery being sent (any org).
pub fn endpoint(conn: &mut DbConnection, id: &str) -> Result<Option<EndpointRow>, ApiError> {
    Ok(webhook_endpoints::table
        .find(id)
        .select(EndpointRow::as_select())
        .first(conn)
        .optional()?)
}

/// The org's endpoints, oldest first.
pub fn list(
    conn: &mut DbConnection,
    org_id: &str,
    page: &PageReq,
) -> Result<Page<WebhookEndpoint>, ApiError> {
    let mut q = webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(org_id))
        .into_boxed();
    if let Some((at, id)) = &page.after {
        q = q.filter(
            webhook_endpoints::created_at
                .gt(*at)
                .or(webhook_endpoints::created_at
                    .eq(*at)
                    .and(webhook_endpoints::id.gt(id.clone()))),
        );
    }
    let rows: Vec<EndpointRow> = q
        .order((
            webhook_endpoints::created_at.asc(),
            webhook_endpoints::id.asc(),
        ))
        .limit(page.fetch())
        .select(EndpointRow::as_select())
        .load(conn)?;
    Ok(crate::page::page(
        rows,
        page,
        |r| (r.created_at, r.id.as_str()),
        |r| r.to_dto(),
    ))
}

/// Applies a checked change (url and events already validated).
pub fn update(
    conn: &mut DbConnection,
    by: &str,
    org_id: &str,
    id: &str,
    change: &UpdateWebhook,
) -> Result<EndpointRow, ApiError> {
    write_tx(conn, |c| {
        let before = get(c, org_id, id)?;
        let now = now_ms();
        let url = change.url.clone().unwrap_or(before.url.clone());
        let events = match &change.events {
            Some(e) => json!(e).to_string(),
            None => before.events.clone(),
        };
        let description = change
            .description
            .clone()
            .unwrap_or(before.description.clone());
        let (enabled, reason, failing_since) = match change.enabled {
            Some(true) => (true, None, None),
            Some(false) if before.enabled => (false, Some("manual".to_string()), None),
            _ => (
                before.enabled,
                before.disabled_reason.clone(),
                before.failing_since,
            ),
        };
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::url.eq(url),
                webhook_endpoints::events.eq(events),
                webhook_endpoints::description.eq(description),
                webhook_endpoints::enabled.eq(enabled),
                webhook_endpoints::disabled_reason.eq(reason),
                webhook_endpoints::failing_since.eq(failing_since),
                webhook_endpoints::updated_at.eq(now),
            ))
            .execute(c)?;
        let after = get(c, org_id, id)?;
        let entry = Entry::new(by, "webhook.update", format!("webhook:{id}"))
            .before(json!(before.to_dto()))
            .after(json!(after.to_dto()));
        audit::append(c, org_id, &entry)?;
        Ok(after)
    })
}

/// Deletes an endpoint with its deliveries.
pub fn delete(conn: &mut DbConnection, by: &str, org_id: &str, id: &str) -> Result<(), ApiError> {
    write_tx(conn, |c| {
        let before = get(c, org_id, id)?;
        diesel::delete(webhook_endpoints::table.find(id)).execute(c)?;
        let entry = Entry::new(by, "webhook.delete", format!("webhook:{id}"))
            .before(json!(before.to_dto()));
        audit::append(c, org_id, &entry)?;
        Ok(())
    })
}

/// Replaces the sealed secret.
pub fn set_secret(
    conn: &mut DbConnection,
    by: &str,
    org_id: &str,
    id: &str,
    sealed: &str,
    key_id: &str,
) -> Result<(), ApiError> {
    write_tx(conn, |c| {
        get(c, org_id, id)?;
        diesel::update(webhook_endpoints::table.find(id))
            .set((
                webhook_endpoints::secret_sealed.eq(sealed),
                webhook_endpoints::secret_key_id.eq(key_id),
                webhook_endpoints::updated_at.eq(now_ms()),
            ))
            .execute(c)?;
        let entry = Entry::new(by, "webhook.rotate_secret", format!("webhook:{id}"));
        audit::append(c, org_id, &entry)?;
        Ok(())
    })
}

// ---------------------------------------------------------------- deliveries

/// One page of an endpoint's deliveries, newest first, with their attempts.
pub fn deliveries(
    conn: &mut DbConnection,
    endpoint_id: &str,
    page: &PageReq,
) -> Result<Page<WebhookDelivery>, ApiError> {
    let mut q = webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .into_boxed();
    if let Some((at, id)) = &page.after {
        q = q.filter(
            webhook_deliveries::created_at
                .lt(*at)
                .or(webhook_deliveries::created_at
                    .eq(*at)
                    .and(webhook_deliveries::id.lt(id.clone()))),
        );
    }
    let rows: Vec<DeliveryRow> = q
        .order((
            webhook_deliveries::created_at.desc(),
            webhook_deliveries::id.desc(),
        ))
        .limit(page.fetch())
        .select(DeliveryRow::as_select())
        .load(conn)?;
    let (rows, next_cursor) = crate::page::cut(rows, page, |r| (r.created_at, r.id.as_str()));
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let attempts: Vec<AttemptRow> = webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(&ids))
        .order((
            webhook_attempts::delivery_id.asc(),
            webhook_attempts::attempt.asc(),
        ))
        .select(AttemptRow::as_select())
        .load(conn)?;
    let items = rows
        .into_iter()
        .map(|r| {
            let mine: Vec<&AttemptRow> =
                attempts.iter().filter(|a| a.delivery_id == r.id).collect();
            delivery_dto(r, &mine)
        })
        .collect();
    Ok(Page { items, next_cursor })
}

fn delivery_dto(r: DeliveryRow, attempts: &[&AttemptRow]) -> WebhookDelivery {
    let skip = attempts.len().saturating_sub(SHOWN_ATTEMPTS);
    WebhookDelivery {
        next_attempt_at: (r.state == PENDING_STATE).then_some(r.next_attempt_at),
        id: r.id,
        event_id: r.event_id,
        event_type: r.event_type,
        state: r.state,
        created_at: r.created_at,
        attempts: attempts
            .iter()
            .skip(skip)
            .map(|a| WebhookAttempt {
                attempt: a.attempt,
                at: a.at,
                status_code: a.status_code,
                error: a.error.clone(),
                duration_ms: a.duration_ms,
                response_body: a.response_body.clone(),
            })
            .collect(),
    }
}

fn delivery(conn: &mut DbConnection, id: &str) -> Result<WebhookDelivery, ApiError> {
    let row: DeliveryRow = webhook_deliveries::table
        .find(id)
        .select(DeliveryRow::as_select())
        .first(conn)?;
    let attempts: Vec<AttemptRow> = webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq(id))
        .order(webhook_attempts::attempt.asc())
        .select(AttemptRow::as_select())
        .load(conn)?;
    Ok(delivery_dto(row, &attempts.iter().collect::<Vec<_>>()))
}

/// Sends a delivery again now, with a fresh retry schedule (same message
/// id, a new signature and timestamp). 409 while the endpoint is disabled
/// or the delivery is pending.
pub fn redeliver(
    conn: &mut DbConnection,
    endpoint: &EndpointRow,
    delivery_id: &str,
) -> Result<WebhookDelivery, ApiError> {
    write_tx(conn, |c| {
        let row: DeliveryRow = webhook_deliveries::table
            .find(delivery_id)
            .filter(webhook_deliveries::endpoint_id.eq(&endpoint.id))
            .select(DeliveryRow::as_select())
            .first(c)
            .optional()?
            .ok_or(ApiError::NotFound("delivery"))?;
        if !endpoint.enabled {
            return Err(ApiError::Conflict(
                "the webhook is disabled: enable it first".into(),
            ));
        }
        if row.state == PENDING_STATE {
            return Err(ApiError::Conflict(
                "this delivery is pending already".into(),
            ));
        }
        diesel::update(webhook_deliveries::table.find(delivery_id))
            .set((
                webhook_deliveries::state.eq(PENDING_STATE),
                webhook_deliveries::round_start.eq(row.attempts),
                webhook_deliveries::next_attempt_at.eq(now_ms()),
                webhook_deliveries::claimed_until.eq(0),
            ))
            .execute(c)?;
        PENDING.with(|p| p.set(true));
        delivery(c, delivery_id)
    })
}

// ---------------------------------------------------------------- emitting

/// Announces an event to the org's enabled endpoints subscribed to its
/// type: one delivery each, written with the caller's connection (call it
/// inside the transaction of the change). Returns how many were written.
///
/// An org without enabled endpoints costs one probe of the
/// `webhook_endpoints (org_id, …)` index that finds nothing. Nothing is
/// cached in the process: an endpoint created through another replica is
/// used by the next event.
pub fn emit(
    conn: &mut DbConnection,
    org_id: &str,
    event_type: &str,
    data: Value,
) -> Result<usize, ApiError> {
    let endpoints: Vec<(String, String)> = webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(org_id))
        .filter(webhook_endpoints::enabled.eq(true))
        .select((webhook_endpoints::id, webhook_endpoints::events))
        .load(conn)?;
    write_deliveries(conn, &subscribed(endpoints, event_type), event_type, data)
}

/// The endpoints (of `(id, events)`) subscribed to `event_type`.
fn subscribed(endpoints: Vec<(String, String)>, event_type: &str) -> Vec<String> {
    endpoints
        .into_iter()
        .filter(|(_, events)| {
            serde_json::from_str::<Vec<String>>(events)
                .is_ok_and(|e| e.iter().any(|t| t == event_type))
        })
        .map(|(id, _)| id)
        .collect()
}

/// One delivery of the event to each of `endpoint_ids`.
fn write_deliveries(
    conn: &mut DbConnection,
    endpoint_ids: &[String],
    event_type: &str,
    data: Value,
) -> Result<usize, ApiError> {
    if endpoint_ids.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let event_id = format!("msg_{}", crypto::new_id());
    let payload = json!({
        "type": event_type,
        "timestamp": rfc3339(now),
        "data": data,
    })
    .to_string();
    for endpoint_id in endpoint_ids {
        diesel::insert_into(webhook_deliveries::table)
            .values((
                webhook_deliveries::id.eq(crypto::new_id()),
                webhook_deliveries::endpoint_id.eq(endpoint_id),
                webhook_deliveries::event_id.eq(&event_id),
                webhook_deliveries::event_type.eq(event_type),
                webhook_deliveries::payload.eq(&payload),
                webhook_deliveries::created_at.eq(now),
                webhook_deliveries::state.eq(PENDING_STATE),
                webhook_deliveries::attempts.eq(0),
                webhook_deliveries::round_start.eq(0),
                webhook_deliveries::next_attempt_at.eq(now),
                webhook_deliveries::claimed_until.eq(0),
            ))
            .execute(conn)?;
    }
    PENDING.with(|p| p.set(true));
    Ok(endpoint_ids.len())
}

/// The org of a team workspace and its enabled endpoints subscribed to
/// `event_type`, in one query (the endpoints' `org_id` index probed with the
/// org that the workspace's primary key gives, a scalar subquery): `None` when there are none, for a personal
/// workspace (its content is its owner's alone: it sends no webhooks) and
/// for a missing one.
fn subscribed_in_workspace(
    conn: &mut DbConnection,
    workspace_id: &str,
    event_type: &str,
) -> Result<Option<(String, Vec<String>)>, ApiError> {
    let org_of_team = workspaces::table
        .filter(workspaces::id.eq(workspace_id))
        .filter(workspaces::kind.eq("team"))
        .select(workspaces::org_id.nullable())
        .single_value();
    let rows: Vec<(String, String, String)> = webhook_endpoints::table
        .filter(webhook_endpoints::org_id.nullable().eq(org_of_team))
        .filter(webhook_endpoints::enabled.eq(true))
        .select((
            webhook_endpoints::org_id,
            webhook_endpoints::id,
            webhook_endpoints::events,
        ))
        .load(conn)?;
    let Some(org_id) = rows.first().map(|r| r.0.clone()) else {
        return Ok(None);
    };
    let ids = subscribed(
        rows.into_iter().map(|(_, id, ev)| (id, ev)).collect(),
        event_type,
    );
    Ok((!ids.is_empty()).then_some((org_id, ids)))
}

/// [`emit`] for a change in a workspace: only team workspaces send webhooks.
pub fn emit_in_workspace(
    conn: &mut DbConnection,
    workspace_id: &str,
    event_type: &str,
    mut data: Value,
) -> Result<usize, ApiError> {
    let Some((_, endpoints)) = subscribed_in_workspace(conn, workspace_id, event_type)? else {
        return Ok(0);
    };
    if let Some(o) = data.as_object_mut() {
        o.insert("workspaceId".into(), json!(workspace_id));
    }
    write_deliveries(conn, &endpoints, event_type, data)
}

/// The webhook events of the workspace feed's changes (called by
/// `workspace_events::record`, in the change's transaction).
pub fn from_feed(
    conn: &mut DbConnection,
    workspace_id: &str,
    kind: &str,
    data: &Value,
) -> Result<(), ApiError> {
    let event_type = match kind {
        "member.created" => "member.added",
        "member.updated" => "member.role_changed",
        "member.deleted" => "member.removed",
        "document.created" => "document.created",
        "document.deleted" => "document.deleted",
        _ => return Ok(()),
    };
    let mut data = data.clone();
    // The feed's member events name the role `memberRole`; here it is `role`.
    if let Some(o) = data.as_object_mut() {
        if let Some(r) = o.remove("memberRole") {
            o.insert("role".into(), r);
        }
    }
    emit_in_workspace(conn, workspace_id, event_type, data).map(|_| ())
}

/// `document.saved` for a document of a team workspace, at most once per
/// `debounce_ms` per document (the first save of a burst is announced).
pub fn document_saved(
    conn: &mut DbConnection,
    document_id: &str,
    size: i64,
    saves: i64,
    debounce_ms: i64,
) -> Result<usize, ApiError> {
    use crate::db::schema::{projects, resources};
    write_tx(conn, |c| {
        let place: Option<(String, String, String)> = resources::table
            .inner_join(projects::table)
            .filter(resources::id.eq(document_id))
            .filter(resources::kind.eq("doc"))
            .select((projects::workspace_id, projects::id, resources::title))
            .first(c)
            .optional()?;
        let Some((workspace_id, project_id, title)) = place else {
            return Ok(0);
        };
        let Some((org_id, endpoints)) =
            subscribed_in_workspace(c, &workspace_id, "document.saved")?
        else {
            return Ok(0);
        };
        let now = now_ms();
        let subject = format!("document.saved:{document_id}");
        let last: Option<i64> = webhook_debounce::table
            .find((&org_id, &subject))
            .select(webhook_debounce::last_at)
            .first(c)
            .optional()?;
        if last.is_some_and(|at| now - at < debounce_ms) {
            return Ok(0);
        }
        let n = write_deliveries(
            c,
            &endpoints,
            "document.saved",
            json!({
                "id": document_id,
                "projectId": project_id,
                "workspaceId": workspace_id,
                "title": title,
                "size": size,
                "saves": saves,
                "savedAt": now,
            }),
        )?;
        // The mark is updated, or written anew when there is none (or
        // [`prune`] just removed an expired one).
        let marked = match n > 0 && last.is_some() {
            true => diesel::update(webhook_debounce::table.find((&org_id, &subject)))
                .set(webhook_debounce::last_at.eq(now))
                .execute(c)?,
            false => 0,
        };
        if n > 0 && marked == 0 {
            diesel::insert_into(webhook_debounce::table)
                .values((
                    webhook_debounce::org_id.eq(&org_id),
                    webhook_debounce::subject.eq(&subject),
                    webhook_debounce::last_at.eq(now),
                ))
                .execute(c)?;
        }
        Ok(n)
    })
}

/// `conversation.message_created` (inside the message's transaction).
pub fn message_created(
    conn: &mut DbConnection,
    conversation_id: &str,
    message: &tandem_protocol::chat::Message,
) -> Result<(), ApiError> {
    use crate::db::schema::{conversations, projects};
    let place: Option<(String, String)> = conversations::table
        .inner_join(projects::table)
        .filter(conversations::id.eq(conversation_id))
        .select((projects::workspace_id, projects::id))
        .first(conn)
        .optional()?;
    let Some((workspace_id, project_id)) = place else {
        return Ok(());
    };
    let mut m = json!(message);
    if let Some(o) = m.as_object_mut() {
        if let Some(Value::String(content)) = o.get("content") {
            if content.chars().count() > MAX_CONTENT_CHARS {
                let cut: String = content.chars().take(MAX_CONTENT_CHARS).collect();
                o.insert("content".into(), json!(cut));
                o.insert("contentTruncated".into(), json!(true));
            }
        }
    }
    emit_in_workspace(
        conn,
        &workspace_id,
        "conversation.message_created",
        json!({ "conversationId": conversation_id, "projectId": project_id, "message": m }),
    )
    .map(|_| ())
}

// ---------------------------------------------------------------- dispatching

/// A delivery claimed for one attempt, with its endpoint.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery: DeliveryRow,
    pub endpoint: EndpointRow,
}

/// Claims the most overdue pending delivery of an enabled endpoint for
/// `lease_ms`, if any (one another replica claims first is skipped).
pub fn claim_one(conn: &mut DbConnection, lease_ms: i64) -> Result<Option<Claimed>, ApiError> {
    let now = now_ms();
    let enabled = webhook_endpoints::table
        .filter(webhook_endpoints::enabled.eq(true))
        .select(webhook_endpoints::id);
    let due: Vec<String> = webhook_deliveries::table
        .filter(webhook_deliveries::state.eq(PENDING_STATE))
        .filter(webhook_deliveries::next_attempt_at.le(now))
        .filter(webhook_deliveries::claimed_until.lt(now))
        .filter(webhook_deliveries::endpoint_id.eq_any(enabled))
        .order(webhook_deliveries::next_attempt_at.asc())
        .limit(8)
        .select(webhook_deliveries::id)
        .load(conn)?;
    for id in due {
        let n = diesel::update(
            webhook_deliveries::table
                .find(&id)
                .filter(webhook_deliveries::state.eq(PENDING_STATE))
                .filter(webhook_deliveries::claimed_until.lt(now)),
        )
        .set(webhook_deliveries::claimed_until.eq(now + lease_ms))
        .execute(conn)?;
        if n != 1 {
            continue;
        }
        let delivery: DeliveryRow = webhook_deliveries::table
            .find(&id)
            .select(DeliveryRow::as_select())
            .first(conn)?;
        if let Some(endpoint) = endpoint(conn, &delivery.endpoint_id)? {
            return Ok(Some(Claimed { delivery, endpoint }));
        }
    }
    Ok(None)
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub at: i64,
    pub status_code: Option<u16>,
    /// `None` on success (a 2xx answer).
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response_body: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// The wait after `failures` failed attempts of a round (1-based), scaled
/// and with ±10 % jitter; `None` when the schedule is used up.
pub fn retry_delay_ms(failures: i64, scale: f64, jitter: f64) -> Option<i64> {
    let secs = *SCHEDULE_SECS.get(usize::try_from(failures).ok()?)?;
    let base = secs as f64 * 1000.0 * scale.max(0.0);
    Some((base * (0.9 + 0.2 * jitter.clamp(0.0, 1.0))).round() as i64)
}

/// Records an attempt and decides what follows: delivered; a retry on the
/// schedule; or failed, disabling the endpoint when it answered 410, when
/// the schedule is used up, or when it has been failing for 5 days (scaled).
/// Returns the endpoint's disabled reason when this attempt disabled it.
pub fn record_attempt(
    conn: &mut DbConnection,
    claimed: &Claimed,
    outcome: &Outcome,
    scale: f64,
) -> Result<Option<&'static str>, ApiError> {
    let d = &claimed.delivery;
    write_tx(conn, |c| {
        let attempt = d.attempts + 1;
        diesel::insert_into(webhook_attempts::table)
            .values((
                webhook_attempts::delivery_id.eq(&d.id),
                webhook_attempts::attempt.eq(attempt),
                webhook_attempts::at.eq(outcome.at),
                webhook_attempts::status_code.eq(outcome.status_code.map(i64::from)),
                webhook_attempts::error.eq(&outcome.error),
                webhook_attempts::duration_ms.eq(outcome.duration_ms),
                webhook_attempts::response_body.eq(&outcome.response_body),
            ))
            .execute(c)?;
        // Only the latest attempts are kept (redeliveries add without end).
        let dropped_up_to = attempt - SHOWN_ATTEMPTS as i64;
        if dropped_up_to > 0 {
            diesel::delete(
                webhook_attempts::table
                    .filter(webhook_attempts::delivery_id.eq(&d.id))
                    .filter(webhook_attempts::attempt.le(dropped_up_to)),
            )
            .execute(c)?;
        }
        let now = now_ms();
        if outcome.ok() {
            diesel::update(webhook_deliveries::table.find(&d.id))
                .set((
                    webhook_deliveries::state.eq(DELIVERED),
                    webhook_deliveries::attempts.eq(attempt),
                    // A finished delivery's `next_attempt_at` is when it
                    // finished ([`prune`] counts the retention from it).
                    webhook_deliveries::next_attempt_at.eq(now),
                    webhook_deliveries::claimed_until.eq(0),
                ))
                .execute(c)?;
            diesel::update(webhook_endpoints::table.find(&d.endpoint_id))
                .set(webhook_endpoints::failing_since.eq(None::<i64>))
                .execute(c)?;
            return Ok(None);
        }
        let failing_since: Option<i64> = webhook_endpoints::table
            .find(&d.endpoint_id)
            .select(webhook_endpoints::failing_since)
            .first(c)
            .optional()?
            .flatten();
        let since = failing_since.unwrap_or(outcome.at);
        let window = (FAILING_WINDOW_SECS as f64 * 1000.0 * scale.max(0.0)) as i64;
        let failures = attempt - d.round_start;
        let next = retry_delay_ms(failures, scale, crypto::random_fraction());
        let disable = if outcome.status_code == Some(410) {
            Some("gone")
        } else if failing_since.is_some() && now - since >= window {
            Some("failing")
        } else if next.is_none() {
            Some("exhausted")
        } else {
            None
        };
        let (state, next_at) = match (disable, next) {
            (None, Some(wait)) => (PENDING_STATE, now + wait),
            _ => (FAILED, now),
        };
        diesel::update(webhook_deliveries::table.find(&d.id))
            .set((
                webhook_deliveries::state.eq(state),
                webhook_deliveries::attempts.eq(attempt),
                webhook_deliveries::next_attempt_at.eq(next_at),
                webhook_deliveries::claimed_until.eq(0),
            ))
            .execute(c)?;
        let endpoint = webhook_endpoints::table.find(&d.endpoint_id);
        match disable {
            Some(reason) => {
                diesel::update(endpoint.filter(webhook_endpoints::enabled.eq(true)))
                    .set((
                        webhook_endpoints::enabled.eq(false),
                        webhook_endpoints::disabled_reason.eq(Some(reason)),
                        webhook_endpoints::failing_since.eq(Some(since)),
                        webhook_endpoints::updated_at.eq(now),
                    ))
                    .execute(c)?;
                if let Some(org_id) = webhook_endpoints::table
                    .find(&d.endpoint_id)
                    .select(webhook_endpoints::org_id)
                    .first::<String>(c)
                    .optional()?
                {
                    let entry = Entry::new(
                        audit::SYSTEM,
                        "webhook.disable",
                        format!("webhook:{}", d.endpoint_id),
                    )
                    .after(json!({ "enabled": false, "reason": reason }));
                    audit::append(c, &org_id, &entry)?;
                }
            }
            None => {
                diesel::update(endpoint)
                    .set(webhook_endpoints::failing_since.eq(Some(since)))
                    .execute(c)?;
            }
        }
        Ok(disable)
    })
}

/// Most deliveries, and most debounce marks, one [`prune`] removes.
pub const PRUNE_BATCH: i64 = 500;
/// Debounce marks are kept this much longer than the debounce window, so
/// that replicas whose clocks disagree a little do not announce a save twice.
const DEBOUNCE_SLACK_MS: i64 = 60_000;

/// What one [`prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Finished deliveries (their attempts went with them).
    pub deliveries: usize,
    /// Expired `document.saved` debounce marks.
    pub debounce_marks: usize,
}

/// Removes at most [`PRUNE_BATCH`] finished deliveries — delivered, or
/// failed for good — that finished more than `retention_ms` ago, with their
/// attempts (`ON DELETE CASCADE`), and at most as many debounce marks that
/// no longer debounce anything (older than `debounce_ms`, with some slack).
/// A pending delivery (new, or waiting for a retry) is never removed, and
/// neither is one that a redelivery made pending again meanwhile. Both
/// lookups are index range scans (`webhook_deliveries (state,
/// next_attempt_at)`, `webhook_debounce (last_at)`).
pub fn prune(
    conn: &mut DbConnection,
    retention_ms: i64,
    debounce_ms: i64,
) -> Result<Pruned, ApiError> {
    let now = now_ms();
    write_tx(conn, |c| {
        let expired: Vec<String> = webhook_deliveries::table
            .filter(webhook_deliveries::state.eq_any([DELIVERED, FAILED]))
            .filter(webhook_deliveries::next_attempt_at.lt(now.saturating_sub(retention_ms)))
            .limit(PRUNE_BATCH)
            .select(webhook_deliveries::id)
            .load(c)?;
        let deliveries = match expired.is_empty() {
            true => 0,
            false => diesel::delete(
                webhook_deliveries::table
                    .filter(webhook_deliveries::id.eq_any(&expired))
                    .filter(webhook_deliveries::state.ne(PENDING_STATE)),
            )
            .execute(c)?,
        };
        let cutoff = now
            .saturating_sub(debounce_ms)
            .saturating_sub(DEBOUNCE_SLACK_MS);
        let marks: Vec<(String, String)> = webhook_debounce::table
            .filter(webhook_debounce::last_at.lt(cutoff))
            .limit(PRUNE_BATCH)
            .select((webhook_debounce::org_id, webhook_debounce::subject))
            .load(c)?;
        let mut debounce_marks = 0;
        for (org_id, subject) in &marks {
            debounce_marks += diesel::delete(
                webhook_debounce::table
                    .find((org_id, subject))
                    .filter(webhook_debounce::last_at.lt(cutoff)),
            )
            .execute(c)?;
        }
        Ok(Pruned {
            deliveries,
            debounce_marks,
        })
    })
}

/// `2026-12-03T23:50:00.000Z` for Unix ms.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_614_265_330_123), "2021-02-25T15:02:10.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_schedule_scales_jitters_and_ends() {
        assert_eq!(retry_delay_ms(1, 1.0, 0.5), Some(5_000));
        assert_eq!(retry_delay_ms(2, 1.0, 0.5), Some(300_000));
        assert_eq!(retry_delay_ms(7, 1.0, 0.5), Some(86_400_000));
        assert_eq!(retry_delay_ms(8, 1.0, 0.5), None);
        assert_eq!(retry_delay_ms(1, 1.0, 0.0), Some(4_500));
        assert_eq!(retry_delay_ms(1, 1.0, 1.0), Some(5_500));
        assert_eq!(retry_delay_ms(7, 0.001, 0.5), Some(86_400));
    }

    #[test]
    fn inputs_are_checked() {
        assert!(check_url("https://example.com/hook").is_ok());
        assert!(check_url("ftp://example.com/").is_err());
        assert!(check_url("https://u:p@example.com/").is_err());
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(2000))).is_err());
        assert_eq!(
            check_events(&[
                "org.updated".into(),
                "file.uploaded".into(),
                "org.updated".into()
            ])
            .unwrap(),
            vec!["file.uploaded".to_string(), "org.updated".to_string()]
        );
        assert!(check_events(&[]).is_err());
        assert!(check_events(&["nope".into()]).is_err());
        assert!(check_description("x\u{0}").is_err());
    }

    /// What an event costs a workspace whose org has no endpoint, before
    /// (the workspace's org, then the org's endpoints: two queries) and now
    /// (one query joining them). A measurement, not a check: run with
    /// `cargo test -p tandem-control --lib emit_cost -- --ignored --nocapture`
    /// (and `TANDEM_TEST_POSTGRES_URL` for PostgreSQL too).
    #[test]
    #[ignore = "a measurement: cargo test -p tandem-control --lib emit_cost -- --ignored --nocapture"]
    fn emit_cost_without_endpoints() {
        use diesel::Connection;
        let dir = tempfile::tempdir().unwrap();
        let mut urls = vec![format!("sqlite://{}", dir.path().join("t.db").display())];
        if let Ok(admin) = std::env::var("TANDEM_TEST_POSTGRES_URL") {
            let name = format!("tandem_test_{}", crypto::new_id());
            let mut c = diesel::pg::PgConnection::establish(&admin).unwrap();
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .unwrap();
            urls.push(format!("{}/{name}", admin.rsplit_once('/').unwrap().0));
        }
        for url in urls {
            let (pool, _) = crate::db::connect(&url, 1).unwrap();
            let c = &mut pool.get().unwrap();
            for (i, org) in ["o0", "o1", "o2"].iter().enumerate() {
                diesel::sql_query(format!(
                    "INSERT INTO orgs (id, name, domain, created_at, join_policy) \
                     VALUES ('{org}', 'O', 'd{i}.dev', 0, 'auto')"
                ))
                .execute(c)
                .unwrap();
                diesel::sql_query(format!(
                    "INSERT INTO workspaces (id, org_id, kind, name, created_at, event_seq, guest_access) \
                     VALUES ('w{i}', '{org}', 'team', 'T', 0, 0, 'edit')"
                ))
                .execute(c)
                .unwrap();
            }
            // Other orgs have endpoints; o0 has none.
            for i in 0..40 {
                let org = ["o1", "o2"][i % 2];
                diesel::sql_query(format!(
                    "INSERT INTO webhook_endpoints (id, org_id, url, description, events, enabled, \
                     secret_sealed, secret_key_id, created_at, updated_at) VALUES ('e{i}', '{org}', \
                     'https://1.1.1.1/', '', '[\"member.added\"]', TRUE, 'x', 'k', {i}, 0)"
                ))
                .execute(c)
                .unwrap();
            }
            #[derive(QueryableByName)]
            struct Plan {
                #[diesel(sql_type = diesel::sql_types::Text)]
                detail: String,
            }
            if url.starts_with("sqlite") {
                let plan: Vec<Plan> = diesel::sql_query(
                    "EXPLAIN QUERY PLAN SELECT org_id, id, events FROM webhook_endpoints \
                     WHERE org_id = (SELECT org_id FROM workspaces WHERE id = 'w0' \
                     AND kind = 'team') AND enabled = 1",
                )
                .load(c)
                .unwrap();
                for p in plan {
                    println!("plan: {}", p.detail);
                }
            }
            let n = 4_000;
            let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
            let (mut before, mut now) = (Vec::new(), Vec::new());
            // Interleaved rounds, the median of each (the machine is shared).
            for _ in 0..7 {
                let t = std::time::Instant::now();
                for _ in 0..n {
                    let org: Option<String> = workspaces::table
                        .find("w0")
                        .filter(workspaces::kind.eq("team"))
                        .select(workspaces::org_id)
                        .first(c)
                        .optional()
                        .unwrap();
                    emit(c, &org.unwrap(), "member.added", json!({})).unwrap();
                }
                before.push(per(t.elapsed()));
                let t = std::time::Instant::now();
                for _ in 0..n {
                    emit_in_workspace(c, "w0", "member.added", json!({})).unwrap();
                }
                now.push(per(t.elapsed()));
            }
            before.sort_by(f64::total_cmp);
            now.sort_by(f64::total_cmp);
            println!(
                "{}: no endpoints, per event (median of 7 rounds of {n}): before {:.1} µs \
                 (2 queries), now {:.1} µs (1 query)",
                url.split(':').next().unwrap_or_default(),
                before[3],
                now[3]
            );
            assert_eq!(
                emit_in_workspace(c, "w1", "member.added", json!({})).unwrap(),
                20
            );
        }
    }
}
