-- spbridge store schema (PostgreSQL). Timestamps are Unix epoch milliseconds.
CREATE TABLE resources (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    BIGINT NOT NULL,
    last_updated  BIGINT NOT NULL,
    content       TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resources_last_updated ON resources (resource_type, last_updated);

CREATE TABLE resource_history (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    BIGINT NOT NULL,
    last_updated  BIGINT NOT NULL,
    content       TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, version_id)
);

CREATE TABLE search_index (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    value         TEXT NOT NULL
);
CREATE INDEX search_index_lookup ON search_index (resource_type, param, value);
CREATE INDEX search_index_owner ON search_index (resource_type, id);

CREATE TABLE idempotency_keys (
    key        TEXT PRIMARY KEY,
    refs       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE outbox (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    destination     TEXT NOT NULL,
    routing_key     TEXT NOT NULL,
    message_type    TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    profile         TEXT,
    body            TEXT NOT NULL,
    correlation_id  TEXT,
    traceparent     TEXT,
    tracestate      TEXT,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    sent_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at, seq) WHERE sent_at IS NULL;
