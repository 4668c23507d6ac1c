//! Diesel table definitions, written by hand to match `migrations/*`.

diesel::table! {
    orgs (id) {
        id -> Text,
        name -> Text,
        domain -> Text,
        owner_id -> Nullable<Text>,
        created_at -> BigInt,
        join_policy -> Text,
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
        email_verified_at -> Nullable<BigInt>,
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
        event_seq -> BigInt,
        guest_access -> Text,
        files_ready_bytes -> BigInt,
    }
}

diesel::table! {
    audit_log (org_id, seq) {
        org_id -> Text,
        seq -> BigInt,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        target -> Text,
        before -> Nullable<Text>,
        after -> Nullable<Text>,
        request_id -> Nullable<Text>,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    workspace_events (workspace_id, seq) {
        workspace_id -> Text,
        seq -> BigInt,
        kind -> Text,
        entity_id -> Text,
        project_id -> Nullable<Text>,
        data -> Text,
        audience -> Nullable<Text>,
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

diesel::table! {
    conversations (id) {
        id -> Text,
        project_id -> Text,
        owner_id -> Text,
        title -> Text,
        is_collaborative -> Bool,
        starred -> Bool,
        archived -> Bool,
        participants_may_rename -> Bool,
        participants_may_star -> Bool,
        participants_may_archive -> Bool,
        forked_from -> Nullable<Text>,
        last_message_at -> Nullable<BigInt>,
        sort_at -> BigInt,
        event_seq -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        is_quick_chat -> Bool,
        parent_chat_id -> Nullable<Text>,
        summary -> Nullable<Text>,
    }
}

diesel::table! {
    message_sets (id) {
        id -> Text,
        conversation_id -> Text,
        seq -> BigInt,
        set_type -> Text,
        level -> BigInt,
        selected_block_type -> Text,
        created_by -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    message_set_members (message_id) {
        message_id -> Text,
        set_id -> Text,
        block_type -> Text,
        selected -> Bool,
        is_review -> Bool,
        parts -> Text,
    }
}

diesel::table! {
    conversation_participants (conversation_id, user_id) {
        conversation_id -> Text,
        user_id -> Text,
        added_by -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        conversation_id -> Text,
        seq -> BigInt,
        user_id -> Nullable<Text>,
        role -> Text,
        content -> Text,
        state -> Text,
        error_message -> Nullable<Text>,
        model -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    message_attachments (id) {
        id -> Text,
        message_id -> Text,
        position -> BigInt,
        name -> Text,
        content_type -> Text,
        size_bytes -> BigInt,
        url -> Text,
        file_id -> Nullable<Text>,
    }
}

diesel::table! {
    files (id) {
        id -> Text,
        workspace_id -> Text,
        state -> Text,
        name -> Text,
        content_type -> Text,
        size_bytes -> BigInt,
        sha256 -> Text,
        storage_key -> Text,
        part_bytes -> BigInt,
        multipart_id -> Nullable<Text>,
        created_by -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        completed_at -> Nullable<BigInt>,
        unreferenced_since -> Nullable<BigInt>,
        deleted_at -> Nullable<BigInt>,
        parts_through_control -> Bool,
    }
}

diesel::table! {
    file_parts (file_id, part_number) {
        file_id -> Text,
        part_number -> BigInt,
        start_state -> Nullable<Text>,
        end_state -> Nullable<Text>,
        attempts -> Integer,
    }
}

diesel::table! {
    file_part_writers (id) {
        id -> Text,
        file_id -> Text,
        part_number -> BigInt,
        writing_until -> BigInt,
    }
}

diesel::table! {
    file_refs (file_id, ref_kind, ref_id) {
        file_id -> Text,
        ref_kind -> Text,
        ref_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    conversation_events (conversation_id, seq) {
        conversation_id -> Text,
        seq -> BigInt,
        kind -> Text,
        data -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    shares (id_hash) {
        id_hash -> Text,
        conversation_id -> Text,
        created_by -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    tool_executions (id) {
        id -> Text,
        conversation_id -> Text,
        message_id -> Text,
        tool_call_id -> Text,
        tool_name -> Text,
        args -> Text,
        status -> Text,
        result -> Nullable<Text>,
        error -> Nullable<Text>,
        started_by -> Text,
        started_at -> BigInt,
        completed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    usage_events (id) {
        id -> Text,
        user_id -> Text,
        org_id -> Text,
        conversation_id -> Nullable<Text>,
        message_id -> Nullable<Text>,
        model -> Text,
        input_tokens -> BigInt,
        output_tokens -> BigInt,
        day -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    presence (conversation_id, user_id) {
        conversation_id -> Text,
        user_id -> Text,
        last_active_at -> BigInt,
    }
}

diesel::table! {
    workspace_invites (id) {
        id -> Text,
        workspace_id -> Text,
        email -> Text,
        role -> Text,
        token_hash -> Text,
        invited_by -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        accepted_at -> Nullable<BigInt>,
        accepted_by -> Nullable<Text>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        kind -> Text,
        recipient -> Text,
        subject -> Text,
        body -> Text,
        created_at -> BigInt,
        attempts -> BigInt,
        next_attempt_at -> BigInt,
        claimed_until -> BigInt,
        sent_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    user_settings (user_id) {
        user_id -> Text,
        model_preferences -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    user_api_keys (user_id, provider) {
        user_id -> Text,
        provider -> Text,
        key_id -> Text,
        ciphertext -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    email_verifications (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        email -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    org_join_requests (org_id, user_id) {
        org_id -> Text,
        user_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    login_throttle (account_hash) {
        account_hash -> Text,
        attempts -> BigInt,
        window_start -> BigInt,
    }
}

diesel::table! {
    sync_workspaces (workspace_id) {
        workspace_id -> Text,
        seq -> BigInt,
        pruned_seq -> BigInt,
    }
}

diesel::table! {
    sync_rows (workspace_id, collection, row_id) {
        workspace_id -> Text,
        collection -> Text,
        row_id -> Text,
        seq -> BigInt,
        hlc -> Text,
        clear_hlc -> Text,
        clear_delete -> Bool,
        deleted -> Bool,
        state -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    sync_clients (workspace_id, client_id) {
        workspace_id -> Text,
        client_id -> Text,
        client_group_id -> Text,
        user_id -> Text,
        last_mutation_id -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    extensions (id) {
        id -> Text,
        org_id -> Text,
        ext_id -> Text,
        name -> Text,
        version -> Text,
        kind -> Text,
        entry -> Text,
        description -> Nullable<Text>,
        settings_schema -> Nullable<Text>,
        file_count -> BigInt,
        size_bytes -> BigInt,
        uploaded_by -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    extension_files (extension_id, path) {
        extension_id -> Text,
        path -> Text,
        content_type -> Text,
        sha256 -> Text,
        bytes -> Binary,
    }
}

diesel::table! {
    workspace_extensions (workspace_id, extension_id) {
        workspace_id -> Text,
        extension_id -> Text,
        enabled -> Bool,
        settings -> Text,
        updated_by -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::joinable!(users -> orgs (org_id));
diesel::joinable!(extension_files -> extensions (extension_id));
diesel::joinable!(workspace_extensions -> extensions (extension_id));
diesel::joinable!(org_join_requests -> users (user_id));
diesel::joinable!(collab_tokens -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(projects -> workspaces (workspace_id));
diesel::joinable!(resources -> projects (project_id));
diesel::joinable!(members -> users (user_id));
diesel::joinable!(conversations -> projects (project_id));
diesel::joinable!(conversation_participants -> conversations (conversation_id));
diesel::joinable!(conversation_participants -> users (user_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(messages -> users (user_id));
diesel::joinable!(presence -> users (user_id));
diesel::joinable!(shares -> conversations (conversation_id));
diesel::joinable!(message_set_members -> message_sets (set_id));
diesel::joinable!(message_set_members -> messages (message_id));
diesel::joinable!(file_refs -> files (file_id));
diesel::joinable!(file_parts -> files (file_id));
diesel::joinable!(file_part_writers -> files (file_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_log,
    file_parts,
    file_part_writers,
    orgs,
    users,
    sessions,
    workspaces,
    projects,
    resources,
    members,
    collab_tokens,
    access_events,
    room_snapshots,
    conversations,
    conversation_participants,
    messages,
    message_attachments,
    conversation_events,
    shares,
    tool_executions,
    usage_events,
    presence,
    workspace_invites,
    outbox,
    user_settings,
    user_api_keys,
    email_verifications,
    org_join_requests,
    login_throttle,
    sync_workspaces,
    sync_rows,
    sync_clients,
    workspace_events,
    message_sets,
    message_set_members,
    files,
    file_refs,
    extensions,
    extension_files,
    workspace_extensions
);
