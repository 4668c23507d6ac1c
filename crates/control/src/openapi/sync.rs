//! The sync engine's routes (`http::sync_routes`; `proto-docs/sync.md`).

use tandem_protocol::sync::*;
use utoipa::openapi::schema::Type;
use utoipa::openapi::Content;

use super::*;

pub fn operations() -> Vec<Op> {
    const S: &str = "/workspaces/{id}/sync";
    vec![
        post(
            &format!("{S}/push"),
            "syncPush",
            "Send a batch of row mutations (field-level last-writer-wins by hlc)",
        )
        .describe(
            "One transaction per batch, a result per mutation: `applied`, `duplicate` (the \
             client sent this id before; nothing changes) or `rejected` (viewers; rows that \
             would outgrow their bounds). Clocks more than `TANDEM_SYNC_MAX_DRIFT_MS` ahead \
             of the server are clamped. 400: a bad collection name, row id, field name, op, \
             hlc or id order; 413: more than 500 mutations, fields over 64 KiB, or a body \
             over 4 MiB; 403: the client id belongs to another user.",
        )
        .body::<PushRequest>()
        .errors(&[403, 404])
        .ok::<PushResponse>(200),
        get(
            &format!("{S}/pull"),
            "syncPull",
            "Changed rows after a cursor (the whole state without one)",
        )
        .describe(
            "Pull again at once while `hasMore`. With `reset: true` drop the local copy first: \
             the cursor was older than the compaction horizon and these pages are the whole \
             current state. A reader never misses a change committed after it read.",
        )
        .query("cursor", Type::String, "Opaque cursor of the previous pull")
        .query(
            "limit",
            Type::Integer,
            "Changes per page, 1..=1000 (default 500)",
        )
        .query(
            "clientGroupId",
            Type::String,
            "Report only this client group's lastMutationIds",
        )
        .errors(&[400, 404, 422])
        .ok::<PullResponse>(200),
        {
            let mut events = get(
                &format!("{S}/events"),
                "syncEvents",
                "Live sync notices (Server-Sent Events)",
            )
            .describe(
                "`text/event-stream`: `poke` (`data`: `{cursor}`) at once and whenever the \
                 workspace changed (pull unless you are at that cursor already); `revoked` \
                 (`data`: `{reason}`) when the caller loses the workspace (delete the local \
                 copy; the stream ends). 429: the caller holds `TANDEM_MAX_STREAMS_PER_USER` \
                 streams on this replica already.",
            )
            .errors(&[404, 429]);
            let poke = events.register::<Poke>();
            events.register::<Revoked>();
            events.answer(
                200,
                "An event stream",
                Some(("text/event-stream", Content::new(Some(poke)))),
            )
        },
    ]
}
