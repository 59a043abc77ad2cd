-- Security (issue 6): the replay cache of client-assertion `jti`s, shared by every
-- instance. Rows are kept until the assertion they came from has expired.
-- (Audit events are AuditEvent resources in `resources`; no table of their own.)
CREATE TABLE jti_replay (
    issuer     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX jti_replay_expiry ON jti_replay (expires_at);
