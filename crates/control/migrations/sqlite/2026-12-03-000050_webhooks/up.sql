-- Webhooks of an organization (plan 001 phase 7): endpoints, one delivery per
-- event and endpoint (leased like the email outbox), the attempts of each,
-- and the debounce marks of `document.saved`.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of event types.
    events TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    -- manual | gone | failing | exhausted, while disabled.
    disabled_reason TEXT,
    -- The signing secret, AES-256-GCM sealed with TANDEM_SETTINGS_KEY (its
    -- key id beside it); never stored in the clear.
    secret_sealed TEXT NOT NULL,
    secret_key_id TEXT NOT NULL,
    created_by TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- First failure of the current streak (NULL after a success).
    failing_since BIGINT
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id, created_at, id);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The message id (`webhook-id`), shared by the endpoints of one event.
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The exact body sent: {"type","timestamp","data"}.
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- pending | delivered | failed
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    -- Attempts made before the current retry schedule started (a manual
    -- redelivery starts a new one).
    round_start BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at, id);

CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- When an org last got a debounced event (`document.saved`) for a subject.
CREATE TABLE webhook_debounce (
    org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, subject)
);
