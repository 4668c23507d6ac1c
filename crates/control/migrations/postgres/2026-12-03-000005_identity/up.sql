-- Identity at the edge (issue 11): verified email addresses, org join
-- policies and join requests, email verification links, and per-account
-- login throttling.

-- When the user proved their address (a verification link, or an identity
-- provider's `email_verified`); NULL until then. Unverified users keep their
-- personal workspace only and join no organization by domain.
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;
-- Users who exist before this migration were admitted to their orgs already:
-- they count as verified since they signed up.
UPDATE users SET email_verified_at = created_at;

-- How verified addresses of the org's domain join it: auto | approval | off.
ALTER TABLE orgs ADD COLUMN join_policy TEXT NOT NULL DEFAULT 'auto';
-- Solo orgs (free-mail users) take nobody in by domain.
UPDATE orgs SET join_policy = 'off' WHERE domain LIKE 'personal-%';

-- One row per verification email: the link's token, stored hashed; single
-- use (`used_at`), expiring. Also counts emails sent, for the resend limit.
CREATE TABLE email_verifications (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX email_verifications_user ON email_verifications (user_id, created_at);

-- A verified user waiting for an owner of an `approval` org to let them in.
CREATE TABLE org_join_requests (
    org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_join_requests_user ON org_join_requests (user_id);

-- Password attempts per account (keyed by a hash of the lowercased email, so
-- unknown addresses are throttled alike and no address is stored), in a
-- fixed window; a successful login deletes the row.
CREATE TABLE login_throttle (
    account_hash TEXT PRIMARY KEY NOT NULL,
    attempts BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
CREATE INDEX login_throttle_window ON login_throttle (window_start);
