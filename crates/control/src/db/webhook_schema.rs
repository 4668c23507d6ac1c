//! Tables of the webhooks (migration `2026-12-03-000050_webhooks`), kept
//! apart from `schema.rs`.

diesel::table! {
    webhook_endpoints (id) {
        id -> Text,
        org_id -> Text,
        url -> Text,
        description -> Text,
        events -> Text,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        secret_sealed -> Text,
        secret_key_id -> Text,
        created_by -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        failing_since -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        endpoint_id -> Text,
        event_id -> Text,
        event_type -> Text,
        payload -> Text,
        created_at -> BigInt,
        state -> Text,
        attempts -> BigInt,
        round_start -> BigInt,
        next_attempt_at -> BigInt,
        claimed_until -> BigInt,
    }
}

diesel::table! {
    webhook_attempts (delivery_id, attempt) {
        delivery_id -> Text,
        attempt -> BigInt,
        at -> BigInt,
        status_code -> Nullable<BigInt>,
        error -> Nullable<Text>,
        duration_ms -> BigInt,
        response_body -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_debounce (org_id, subject) {
        org_id -> Text,
        subject -> Text,
        last_at -> BigInt,
    }
}

diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    webhook_endpoints,
    webhook_deliveries,
    webhook_attempts,
    webhook_debounce
);

// `emit_in_workspace` finds a team workspace's org and its endpoints in one query.
use super::schema::workspaces;
diesel::allow_tables_to_appear_in_same_query!(webhook_endpoints, workspaces);
