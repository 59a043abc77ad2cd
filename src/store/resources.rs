//! Versioned FHIR resources, their search index and idempotency keys.
//!
//! Owns: `commit` (resources + idempotency keys + outbox rows in ONE transaction),
//! reads, version reads, history, searches and idempotency look-ups.
//! Must not: build resources or messages; it only stamps `id` and `meta`.

use super::group_commit::CommitRequest;
use super::notifications::{insert_notification, NewNotification};
use super::outbox::{insert_outbox, NewOutboxMessage};
use super::prepared::Prepared;
use super::rows::Bind;
use super::search_index::{self, SearchQuery, SearchResult, TimeBound};
use super::{instant_text, now_millis, Store, StoreError, StoredResource};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

/// One resource to create or update.
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    pub resource_type: String,
    pub id: String,
    pub resource: Value,
    /// For updates: the version the caller read (`If-Match`); `None` = unconditional.
    pub if_match: Option<i64>,
}

/// A key that may be claimed once (duplicate guard); `refs` is what the first
/// claimant stored, handed to later duplicates.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub key: String,
    pub refs: Value,
}

/// Builds outbox rows from the versions just stamped, inside the same transaction
/// (so a message body carries the stored `meta.versionId`/`lastUpdated`).
/// The second argument is each stored resource's JSON text, as written to the database
/// (parallel to the first), so a message body can carry it without serialising it again.
/// (`Fn`, not `FnOnce`: a unit whose batch fails is written again on its own.)
pub type OutboxFromStored =
    Box<dyn Fn(&[StoredResource], &[String]) -> Vec<NewOutboxMessage> + Send + Sync>;

/// Everything one accepted request writes, atomically.
#[derive(Default)]
pub struct WriteUnit {
    pub writes: Vec<ResourceWrite>,
    pub idempotency: Vec<IdempotencyClaim>,
    pub outbox: Vec<NewOutboxMessage>,
    pub outbox_from_stored: Option<OutboxFromStored>,
    /// Rest-hook notifications announcing the versions written.
    pub notifications: Vec<NewNotification>,
    /// Search rows `(i, param, value)` for `writes[i]` that the caller computed, added to
    /// those `search_index::extract` finds (audit events index facts not in the resource).
    pub search_rows: Vec<(usize, &'static str, String)>,
}

/// Result of a commit.
#[derive(Debug, Clone)]
pub enum CommitOutcome {
    /// Written; the stored versions in the order of `writes`.
    Committed(Vec<StoredResource>),
    /// Nothing written: an idempotency key was already claimed.
    Duplicate { key: String, refs: Value },
}

/// A version's columns, as `resource_history` holds them (every version, the current one
/// included: a resource's content is stored once).
const SELECT_COLUMNS: &str = "resource_type, id, version_id, last_updated, content";

/// The current versions: `resources` (`r`, which says which version is current) joined to
/// that version's content; the same columns as `SELECT_COLUMNS`.
pub(super) const SELECT_CURRENT: &str =
    "SELECT r.resource_type, r.id, r.version_id, r.last_updated, \
     h.content FROM resources r JOIN resource_history h ON h.resource_type = r.resource_type \
     AND h.id = r.id AND h.version_id = r.version_id";

fn row_to_resource(row: &AnyRow) -> Result<StoredResource, StoreError> {
    stored_resource(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        &row.try_get::<String, _>(4)?,
    )
}

/// A stored version from its columns (`SELECT_COLUMNS`); content that is not JSON is
/// reported as corrupt.
pub(super) fn stored_resource(
    resource_type: String,
    id: String,
    version_id: i64,
    last_updated: i64,
    content: &str,
) -> Result<StoredResource, StoreError> {
    let resource = serde_json::from_str(content)
        .map_err(|_| StoreError::Corrupt(format!("{resource_type}/{id}")))?;
    Ok(StoredResource {
        resource_type,
        id,
        version_id,
        last_updated,
        resource,
    })
}

impl Store {
    /// Write a unit atomically. Idempotency keys are claimed first; if any is already
    /// taken, nothing is written and the earlier refs are returned. Units committed at
    /// the same time share one transaction (`group_commit`); the answer comes after the
    /// transaction holding this unit has committed.
    #[tracing::instrument(name = "store commit", skip_all, fields(otel.kind = "client", db.system = self.backend.name(), db.operation = "commit"))]
    pub async fn commit(&self, unit: WriteUnit) -> Result<CommitOutcome, StoreError> {
        match &self.writer {
            Some(queue) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let prepared = Some(Prepared::predict(&unit, now_millis()));
                queue
                    .send(CommitRequest {
                        unit,
                        prepared,
                        reply,
                    })
                    .await
                    .map_err(|_| StoreError::WriterStopped)?;
                answer.await.map_err(|_| StoreError::WriterStopped)?
            }
            None => self.commit_one(unit).await,
        }
    }

    /// Write one unit in a transaction of its own.
    pub(super) async fn commit_one(&self, unit: WriteUnit) -> Result<CommitOutcome, StoreError> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        for claim in &unit.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key, refs, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(claim.key.clone())
            .bind(claim.refs.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                let refs = self
                    .idempotency_refs(&claim.key)
                    .await?
                    .unwrap_or(Value::Null);
                return Ok(CommitOutcome::Duplicate {
                    key: claim.key.clone(),
                    refs,
                });
            }
        }
        let mut stored = Vec::with_capacity(unit.writes.len());
        let mut contents = Vec::with_capacity(unit.writes.len());
        let mut index_rows: Vec<(String, String, &'static str, String)> = Vec::new();
        for (position, write) in unit.writes.into_iter().enumerate() {
            let current: Option<i64> = sqlx::query(
                "SELECT version_id FROM resources WHERE resource_type = $1 AND id = $2",
            )
            .bind(write.resource_type.clone())
            .bind(write.id.clone())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
            if let Some(expected) = write.if_match {
                if current != Some(expected) {
                    tx.rollback().await?;
                    return Err(StoreError::VersionConflict(format!(
                        "{}/{}",
                        write.resource_type, write.id
                    )));
                }
            }
            let version = current.unwrap_or(0) + 1;
            let mut resource = write.resource;
            stamp(&mut resource, &write.resource_type, &write.id, version, now);
            let content = resource.to_string();
            let sql = if current.is_some() {
                "UPDATE resources SET version_id = $3, last_updated = $4 \
                 WHERE resource_type = $1 AND id = $2"
            } else {
                "INSERT INTO resources (resource_type, id, version_id, last_updated) \
                 VALUES ($1, $2, $3, $4)"
            };
            sqlx::query(sql)
                .bind(write.resource_type.clone())
                .bind(write.id.clone())
                .bind(version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO resource_history (resource_type, id, version_id, last_updated, content) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(write.resource_type.clone())
            .bind(write.id.clone())
            .bind(version)
            .bind(now)
            .bind(content.clone())
            .execute(&mut *tx)
            .await?;
            contents.push(content);
            if current.is_some() {
                sqlx::query("DELETE FROM search_index WHERE resource_type = $1 AND id = $2")
                    .bind(write.resource_type.clone())
                    .bind(write.id.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            for (param, value) in
                search_rows_of(&unit.search_rows, position, &write.resource_type, &resource)
            {
                index_rows.push((write.resource_type.clone(), write.id.clone(), param, value));
            }
            stored.push(StoredResource {
                resource_type: write.resource_type,
                id: write.id,
                version_id: version,
                last_updated: now,
                resource,
            });
        }
        // All index rows in a few multi-row statements (fewer round trips).
        for chunk in index_rows.chunks(100) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(${}, ${}, ${}, ${})",
                        4 * i + 1,
                        4 * i + 2,
                        4 * i + 3,
                        4 * i + 4
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO search_index (resource_type, id, param, value) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (rtype, id, param, value) in chunk {
                q = q
                    .bind(rtype.clone())
                    .bind(id.clone())
                    .bind(*param)
                    .bind(value.clone());
            }
            q.execute(&mut *tx).await?;
        }
        let mut outbox = unit.outbox;
        if let Some(build) = unit.outbox_from_stored {
            outbox.extend(build(&stored, &contents));
        }
        let wrote_outbox = !outbox.is_empty();
        for message in &outbox {
            insert_outbox(&mut tx, message, now).await?;
        }
        for notification in &unit.notifications {
            insert_notification(&mut tx, notification, now).await?;
        }
        tx.commit().await?;
        if wrote_outbox {
            self.outbox_signal.notify_one();
        }
        if !unit.notifications.is_empty() {
            self.notification_signal.notify_one();
        }
        Ok(CommitOutcome::Committed(stored))
    }

    /// The current version of a resource.
    #[tracing::instrument(name = "store read", skip_all, fields(otel.kind = "client", db.system = self.backend.name(), db.operation = "read"))]
    pub async fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>, StoreError> {
        if let Some(found) = self.read_inline(&[(resource_type, id)]) {
            return found.map(|mut found| found.pop());
        }
        let sql = format!("{SELECT_CURRENT} WHERE r.resource_type = $1 AND r.id = $2");
        let row = self
            .on_live_connection(|| {
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(resource_type.to_string())
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
            })
            .await?;
        row.as_ref().map(row_to_resource).transpose()
    }

    /// The current versions of several resources in one query (those that exist, in no
    /// particular order): what a referral references, read in one round trip.
    #[tracing::instrument(name = "store read_many", skip_all, fields(otel.kind = "client", db.system = self.backend.name(), db.operation = "read_many"))]
    pub async fn read_many(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<StoredResource>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.sqlite_readers.is_some() {
            let by_key: Vec<(&str, &str)> =
                keys.iter().map(|(t, i)| (t.as_str(), i.as_str())).collect();
            if let Some(found) = self.read_inline(&by_key) {
                return found;
            }
        }
        let mut found = Vec::with_capacity(keys.len());
        // A few keys per statement (a referral names two or three).
        for chunk in keys.chunks(50) {
            let filter: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(r.resource_type = ${} AND r.id = ${})",
                        2 * i + 1,
                        2 * i + 2
                    )
                })
                .collect();
            let sql = format!("{SELECT_CURRENT} WHERE {}", filter.join(" OR "));
            let rows = self
                .on_live_connection(|| {
                    let mut query = sqlx::query(AssertSqlSafe(sql.clone()));
                    for (rtype, id) in chunk {
                        query = query.bind(rtype.clone()).bind(id.clone());
                    }
                    query.fetch_all(&self.pool)
                })
                .await?;
            for row in rows {
                found.push(row_to_resource(&row)?);
            }
        }
        Ok(found)
    }

    /// SQLite: the read on one of the read-only connections, inline, without sqlx's
    /// worker thread (`sqlite_readers`); `None` on PostgreSQL, or when that cannot answer
    /// without waiting.
    fn read_inline(
        &self,
        keys: &[(&str, &str)],
    ) -> Option<Result<Vec<StoredResource>, StoreError>> {
        self.sqlite_readers.as_ref()?.read_many(keys)
    }

    /// One historical version.
    #[tracing::instrument(name = "store read_version", skip_all, fields(otel.kind = "client", db.system = self.backend.name(), db.operation = "read_version"))]
    pub async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM resource_history \
             WHERE resource_type = $1 AND id = $2 AND version_id = $3"
        );
        let row = self
            .on_live_connection(|| {
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(resource_type.to_string())
                    .bind(id.to_string())
                    .bind(version_id)
                    .fetch_optional(&self.pool)
            })
            .await?;
        row.as_ref().map(row_to_resource).transpose()
    }

    /// Every version, newest first.
    #[tracing::instrument(name = "store history", skip_all, fields(otel.kind = "client", db.system = self.backend.name(), db.operation = "history"))]
    pub async fn history(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<StoredResource>, StoreError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM resource_history \
             WHERE resource_type = $1 AND id = $2 ORDER BY version_id DESC"
        );
        let rows = self
            .on_live_connection(|| {
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(resource_type.to_string())
                    .bind(id.to_string())
                    .fetch_all(&self.pool)
            })
            .await?;
        rows.iter().map(row_to_resource).collect()
    }

    /// What the first claimant of an idempotency key stored, if anyone did.
    #[tracing::instrument(name = "store idempotency_refs", skip_all, fields(otel.kind = "client", db.system = self.backend.name(), db.operation = "idempotency_refs"))]
    pub async fn idempotency_refs(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let row = self
            .on_live_connection(|| {
                sqlx::query("SELECT refs FROM idempotency_keys WHERE key = $1")
                    .bind(key.to_string())
                    .fetch_optional(&self.pool)
            })
            .await?;
        match row {
            Some(row) => {
                let text: String = row.try_get(0)?;
                Ok(Some(serde_json::from_str(&text).map_err(|_| {
                    StoreError::Corrupt("idempotency key".into())
                })?))
            }
            None => Ok(None),
        }
    }

    /// Search current versions. Parameters must be among `supported_params` (the
    /// caller reports unknown ones); `_id` is handled here.
    #[tracing::instrument(name = "store search", skip_all, fields(otel.kind = "client", db.system = self.backend.name(), db.operation = "search"))]
    pub async fn search(
        &self,
        resource_type: &str,
        query: &SearchQuery,
    ) -> Result<SearchResult, StoreError> {
        let mut filter = String::from("r.resource_type = $1");
        let mut binds: Vec<Bind> = vec![Bind::Text(resource_type.to_string())];
        for (param, values) in &query.params {
            if values.is_empty() {
                continue;
            }
            // `_id` is the resource's own column; other parameters are looked for as indexed.
            let (indexed, values) = match param.as_str() {
                "_id" => (param.clone(), values.clone()),
                _ => search_index::index_terms(resource_type, param, values),
            };
            let mut alternatives = Vec::with_capacity(values.len());
            for value in values {
                binds.push(Bind::Text(value));
                alternatives.push(format!("${}", binds.len()));
            }
            if param == "_id" {
                filter.push_str(&format!(" AND r.id IN ({})", alternatives.join(", ")));
                continue;
            }
            binds.push(Bind::Text(indexed));
            filter.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM search_index s WHERE s.resource_type = r.resource_type \
                 AND s.id = r.id AND s.param = ${} AND s.value IN ({}))",
                binds.len(),
                alternatives.join(", ")
            ));
        }
        for bound in &query.last_updated {
            let (op, millis) = match *bound {
                TimeBound::Gt(m) => (">", m),
                TimeBound::Ge(m) => (">=", m),
                TimeBound::Lt(m) => ("<", m),
                TimeBound::Le(m) => ("<=", m),
            };
            binds.push(Bind::Int(millis));
            filter.push_str(&format!(" AND r.last_updated {op} ${}", binds.len()));
        }
        let count_sql = format!("SELECT COUNT(*) FROM resources r WHERE {filter}");
        let total: i64 = self
            .on_live_connection(|| {
                let mut count_query = sqlx::query(AssertSqlSafe(count_sql.clone()));
                for b in &binds {
                    count_query = b.bind(count_query);
                }
                count_query.fetch_one(&self.pool)
            })
            .await?
            .try_get(0)?;
        let page_sql = format!(
            "{SELECT_CURRENT} WHERE {filter} ORDER BY r.last_updated, r.id LIMIT {} OFFSET {}",
            query.count, query.offset
        );
        let rows = self
            .on_live_connection(|| {
                let mut page_query = sqlx::query(AssertSqlSafe(page_sql.clone()));
                for b in &binds {
                    page_query = b.bind(page_query);
                }
                page_query.fetch_all(&self.pool)
            })
            .await?;
        let matches = rows.iter().map(row_to_resource).collect::<Result<_, _>>()?;
        Ok(SearchResult { total, matches })
    }
}

/// The search rows of `writes[position]` once stamped as `resource`: what its type indexes
/// (`search_index::extract`) plus the caller's `WriteUnit::search_rows` for it.
pub(super) fn search_rows_of(
    given: &[(usize, &'static str, String)],
    position: usize,
    resource_type: &str,
    resource: &Value,
) -> Vec<(&'static str, String)> {
    // One row per (param, value): SQLite's index key, so the rows are inserted without
    // `ON CONFLICT` (which on PostgreSQL made every row a speculative insertion, with a
    // confirmation record in the WAL, though its index has no unique key to conflict on).
    // `extract` gives each pair once; the caller's rows may repeat one.
    let mut rows = search_index::extract(resource_type, resource);
    let before = rows.len();
    rows.extend(
        given
            .iter()
            .filter(|(i, _, _)| *i == position)
            .map(|(_, param, value)| (*param, value.clone())),
    );
    if rows.len() > before {
        rows.sort();
        rows.dedup();
    }
    rows
}

/// Set `resourceType`, `id`, `meta.versionId`, `meta.lastUpdated`.
pub(super) fn stamp(resource: &mut Value, resource_type: &str, id: &str, version: i64, now: i64) {
    if let Value::Object(map) = resource {
        map.insert("resourceType".into(), json!(resource_type));
        map.insert("id".into(), json!(id));
        let meta = map.entry("meta").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Value::Object(meta) = meta {
            meta.insert("versionId".into(), json!(version.to_string()));
            meta.insert("lastUpdated".into(), json!(instant_text(now)));
        }
    }
}
