//! A unit's rows rendered before it reaches the writer.
//!
//! Owns: stamping each resource of a `WriteUnit` (`id`, `meta.versionId`,
//! `meta.lastUpdated`), serialising it, extracting its search rows and building its outbox
//! rows — on the committing caller's task, so that this CPU work runs side by side on every
//! core instead of inside the one writer that serialises the database work. The versions
//! are predicted (`If-Match` + 1, or 1 for a new resource); the writer checks them against
//! the database and renders the unit again when one is wrong (an unconditional update).
//! Must not: touch the database.

use super::resources::{search_rows_of, stamp, WriteUnit};
use super::{NewOutboxMessage, StoredResource};

/// Everything a unit writes besides its idempotency keys and notifications; the three
/// vectors run parallel to `unit.writes`.
pub(super) struct Prepared {
    pub now: i64,
    /// The stamped resources (what the caller is answered with).
    pub stored: Vec<StoredResource>,
    /// Their serialised content.
    pub contents: Vec<String>,
    /// Their search rows.
    pub indexes: Vec<Vec<(&'static str, String)>>,
    pub outbox: Vec<NewOutboxMessage>,
}

impl Prepared {
    /// Render `unit` at `now` with the version each write will get.
    pub fn render(unit: &WriteUnit, now: i64, version_of: impl Fn(usize) -> i64) -> Prepared {
        let n = unit.writes.len();
        let (mut stored, mut contents, mut indexes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (position, write) in unit.writes.iter().enumerate() {
            let version = version_of(position);
            let mut resource = write.resource.clone();
            stamp(&mut resource, &write.resource_type, &write.id, version, now);
            contents.push(resource.to_string());
            indexes.push(search_rows_of(
                &unit.search_rows,
                position,
                &write.resource_type,
                &resource,
            ));
            stored.push(StoredResource {
                resource_type: write.resource_type.clone(),
                id: write.id.clone(),
                version_id: version,
                last_updated: now,
                resource,
            });
        }
        let mut outbox = unit.outbox.clone();
        if let Some(build) = &unit.outbox_from_stored {
            outbox.extend(build(&stored, &contents));
        }
        Prepared {
            now,
            stored,
            contents,
            indexes,
            outbox,
        }
    }

    /// Render with predicted versions: `If-Match` + 1, else 1 (a create).
    pub fn predict(unit: &WriteUnit, now: i64) -> Prepared {
        Prepared::render(unit, now, |i| {
            unit.writes[i].if_match.map_or(1, |expected| expected + 1)
        })
    }

    /// True when every predicted version is the one the database will give.
    pub fn versions_hold(&self, actual: impl Fn(usize) -> i64) -> bool {
        self.stored
            .iter()
            .enumerate()
            .all(|(i, s)| s.version_id == actual(i))
    }
}
