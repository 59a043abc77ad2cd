//! The audit trail: AuditEvent resources appended to `resources`.
//!
//! Owns: writing one AuditEvent (resource row, history row and its search-index
//! rows) in its own transaction. Reading and searching go through the ordinary
//! `Store::read` / `Store::search`.
//! Must not: build AuditEvents (auth::audit does) or write any other resource type.

use super::{instant_text, now_millis, Store, StoreError, StoredResource};
use serde_json::{json, Value};

/// Resource type of audit records.
pub const AUDIT_EVENT: &str = "AuditEvent";

impl Store {
    /// Append an AuditEvent with a fresh id; `index` are its `(param, value)` search rows.
    pub async fn append_audit_event(
        &self,
        mut resource: Value,
        index: &[(&'static str, String)],
    ) -> Result<StoredResource, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_millis();
        if let Value::Object(map) = &mut resource {
            map.insert("resourceType".into(), json!(AUDIT_EVENT));
            map.insert("id".into(), json!(id));
            map.insert(
                "meta".into(),
                json!({"versionId": "1", "lastUpdated": instant_text(now)}),
            );
        }
        let content = resource.to_string();
        let mut tx = self.begin_write().await?;
        for statement in [
            "INSERT INTO resources (resource_type, id, version_id, last_updated, content) \
             VALUES ($1, $2, $3, $4, $5)",
            "INSERT INTO resource_history (resource_type, id, version_id, last_updated, content) \
             VALUES ($1, $2, $3, $4, $5)",
        ] {
            sqlx::query(statement)
                .bind(AUDIT_EVENT)
                .bind(id.clone())
                .bind(1_i64)
                .bind(now)
                .bind(content.clone())
                .execute(&mut *tx)
                .await?;
        }
        for (param, value) in index {
            sqlx::query(
                "INSERT INTO search_index (resource_type, id, param, value) VALUES ($1, $2, $3, $4)",
            )
            .bind(AUDIT_EVENT)
            .bind(id.clone())
            .bind(*param)
            .bind(value.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(StoredResource {
            resource_type: AUDIT_EVENT.into(),
            id,
            version_id: 1,
            last_updated: now,
            resource,
        })
    }
}
