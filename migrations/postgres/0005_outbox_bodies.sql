-- Outbox message bodies in a table of their own, as on SQLite (where an UPDATE rewrites
-- the whole record): the relay's lease and sent updates touch only the small row.
CREATE TABLE outbox_bodies (
    id   TEXT NOT NULL PRIMARY KEY,
    body TEXT NOT NULL
);
INSERT INTO outbox_bodies (id, body) SELECT id, body FROM outbox;
ALTER TABLE outbox DROP COLUMN body;
