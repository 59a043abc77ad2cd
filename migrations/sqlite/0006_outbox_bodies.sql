-- Outbox message bodies in a table of their own. The relay changes an outbox row twice
-- (lease, then sent); SQLite rewrites the whole record on UPDATE, so with the body inline
-- each change rewrote the message (several KiB of overflow pages) into the WAL again.
-- Now a body is written once, and the rows the relay updates are small.
CREATE TABLE outbox_bodies (
    id   TEXT NOT NULL PRIMARY KEY,
    body TEXT NOT NULL
);
INSERT INTO outbox_bodies (id, body) SELECT id, body FROM outbox;
ALTER TABLE outbox DROP COLUMN body;
