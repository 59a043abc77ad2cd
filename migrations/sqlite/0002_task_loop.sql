-- Task loop: rest-hook notifications queued durably, in the same commit as the Task change.
CREATE TABLE notifications (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    subscription_id TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    version_id      INTEGER NOT NULL,
    correlation_id  TEXT,
    traceparent     TEXT,
    tracestate      TEXT,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    delivered_at    INTEGER,
    abandoned_at    INTEGER,
    last_error      TEXT
);
CREATE INDEX notifications_pending ON notifications (subscription_id, seq)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
