-- The PostgreSQL floor (see `run`): a schema holding only the tables a referral's rows
-- go to, as spbridge's migrations lay them out, and the fixture contents to copy.
-- psql variables sr, task and body hold the JSON (set by `run`).
DROP SCHEMA IF EXISTS spb_floor CASCADE;
CREATE SCHEMA spb_floor;
SET search_path = spb_floor;
CREATE TABLE template (kind TEXT PRIMARY KEY, content TEXT NOT NULL);
INSERT INTO template VALUES ('sr', :'sr'), ('task', :'task'), ('body', :'body');
-- Time-ordered ids, as spbridge's UUIDv7.
CREATE FUNCTION ordered_id() RETURNS TEXT LANGUAGE sql AS
  $$ SELECT lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000000)::bigint), 16, '0')
            || substr(gen_random_uuid()::text, 17) $$;
-- bare: the content and the outbox row only.
CREATE TABLE bare_resources (resource_type TEXT NOT NULL, id TEXT NOT NULL,
  version_id BIGINT NOT NULL, last_updated BIGINT NOT NULL, content TEXT NOT NULL,
  PRIMARY KEY (resource_type, id));
CREATE TABLE bare_outbox (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, created_at BIGINT NOT NULL, sent_at BIGINT);
CREATE INDEX bare_outbox_unsent ON bare_outbox (seq) WHERE sent_at IS NULL;
-- spbridge's tables (migrations/postgres), the columns a referral fills.
CREATE TABLE resources (resource_type TEXT NOT NULL, id TEXT NOT NULL,
  version_id BIGINT NOT NULL, last_updated BIGINT NOT NULL,
  -- only the gin variant fills it (and `run` indexes it then)
  terms TEXT[],
  PRIMARY KEY (resource_type, id));
CREATE INDEX resources_last_updated ON resources (resource_type, last_updated);
CREATE TABLE resource_history (resource_type TEXT NOT NULL, id TEXT NOT NULL,
  version_id BIGINT NOT NULL, last_updated BIGINT NOT NULL, content TEXT NOT NULL,
  PRIMARY KEY (resource_type, id, version_id));
CREATE TABLE search_index (resource_type TEXT NOT NULL, id TEXT NOT NULL,
  param TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX search_index_lookup ON search_index (resource_type, param, value);
CREATE INDEX search_index_owner ON search_index (resource_type, id);
CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, refs TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE outbox (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, sent_at BIGINT);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE TABLE outbox_bodies (id TEXT PRIMARY KEY, body TEXT NOT NULL);
