-- The search index as a WITHOUT ROWID table keyed by what a search looks up: each row is
-- one B-tree entry in the key plus one in the owner index (it was a rowid table plus two
-- indexes, three B-tree inserts per row), and a search reads the key alone. Rows are small
-- (type, param, value, id), which is what WITHOUT ROWID is for.
CREATE TABLE search_index_keyed (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (resource_type, param, value, id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO search_index_keyed (resource_type, id, param, value)
    SELECT resource_type, id, param, value FROM search_index;
DROP TABLE search_index;
ALTER TABLE search_index_keyed RENAME TO search_index;
CREATE INDEX search_index_owner ON search_index (resource_type, id);
