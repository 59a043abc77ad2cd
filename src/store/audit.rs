//! The audit trail: AuditEvent resources appended to `resources`.
//!
//! Owns: writing one AuditEvent (resource row, history row and its search-index rows)
//! through `Store::commit`, so audit writes share the group-commit writer's transactions
//! with the requests they describe. Reading and searching go through the ordinary
//! `Store::read` / `Store::search`.
//! Must not: build AuditEvents (auth::audit does) or write any other resource type.

use super::{CommitOutcome, ResourceWrite, Store, StoreError, StoredResource, WriteUnit};
use serde_json::Value;

/// Resource type of audit records.
pub const AUDIT_EVENT: &str = "AuditEvent";

impl Store {
    /// Append an AuditEvent with a fresh id; `index` are its `(param, value)` search rows.
    pub async fn append_audit_event(
        &self,
        resource: Value,
        index: &[(&'static str, String)],
    ) -> Result<StoredResource, StoreError> {
        let unit = WriteUnit {
            writes: vec![ResourceWrite {
                resource_type: AUDIT_EVENT.into(),
                id: crate::store::new_id(),
                resource,
                if_match: None,
            }],
            search_rows: index
                .iter()
                .map(|(param, value)| (0, *param, value.clone()))
                .collect(),
            ..Default::default()
        };
        match self.commit(unit).await? {
            CommitOutcome::Committed(mut stored) if !stored.is_empty() => Ok(stored.remove(0)),
            _ => Err(StoreError::Corrupt("audit event not written".into())),
        }
    }
}
