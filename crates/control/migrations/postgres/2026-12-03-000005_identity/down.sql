DROP TABLE login_throttle;
DROP TABLE org_join_requests;
DROP TABLE email_verifications;
ALTER TABLE orgs DROP COLUMN join_policy;
ALTER TABLE users DROP COLUMN email_verified_at;
