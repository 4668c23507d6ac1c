//! Diesel table definitions, written by hand to match `migrations/*`.

diesel::table! {
    orgs (id) {
        id -> Text,
        name -> Text,
        domain -> Text,
        owner_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        display_name -> Text,
        password_hash -> Nullable<Text>,
        external_sub -> Nullable<Text>,
        org_id -> Text,
        org_role -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    workspaces (id) {
        id -> Text,
        org_id -> Text,
        kind -> Text,
        owner_id -> Nullable<Text>,
        name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    projects (id) {
        id -> Text,
        workspace_id -> Text,
        name -> Text,
        created_by -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    resources (id) {
        id -> Text,
        kind -> Text,
        project_id -> Text,
        title -> Text,
        created_by -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    members (scope_id, user_id) {
        scope_id -> Text,
        user_id -> Text,
        scope_kind -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    collab_tokens (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        room_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    access_events (seq) {
        seq -> BigInt,
        room_id -> Nullable<Text>,
        user_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    room_snapshots (room_id) {
        room_id -> Text,
        state -> Binary,
        size -> BigInt,
        saves -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(users -> orgs (org_id));
diesel::joinable!(collab_tokens -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(projects -> workspaces (workspace_id));
diesel::joinable!(resources -> projects (project_id));
diesel::joinable!(members -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    orgs,
    users,
    sessions,
    workspaces,
    projects,
    resources,
    members,
    collab_tokens,
    access_events,
    room_snapshots
);
