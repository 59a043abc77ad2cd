-- A resource's content is stored once: in resource_history, which holds every version, the
-- current one included. `resources` keeps which version is current and when it was written;
-- a read or a search joins it to that version's content. Before, every write stored the
-- content twice (a referral's ServiceRequest and Task: ≈ 2.8 kB more per referral).
-- Any current version missing from the history (none should be) is copied there first.
INSERT INTO resource_history (resource_type, id, version_id, last_updated, content)
    SELECT r.resource_type, r.id, r.version_id, r.last_updated, r.content FROM resources r
    WHERE NOT EXISTS (SELECT 1 FROM resource_history h WHERE h.resource_type = r.resource_type
                      AND h.id = r.id AND h.version_id = r.version_id);
ALTER TABLE resources DROP COLUMN content;
