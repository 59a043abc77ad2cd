-- Task loop: rest-hook notifications queued durably, in the same commit as the Task change.
CREATE TABLE notifications (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    subscription_id TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    version_id      BIGINT NOT NULL,
    correlation_id  TEXT,
    traceparent     TEXT,
    tracestate      TEXT,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    delivered_at    BIGINT,
    abandoned_at    BIGINT,
    last_error      TEXT
);
CREATE INDEX notifications_pending ON notifications (subscription_id, seq)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
