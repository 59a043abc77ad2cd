//! What a Task update may change, and the Task it produces.
//!
//! Owns: merging a proposed Task (full, as in `PUT`, or partial, as the inbox client
//! sends over AMQP) into the stored one, limited to the fields a provider may change:
//! `status`, `statusReason`, `businessStatus`, `output`, `note`, `lastModified`, and
//! `owner` when forwarding. Fields outside that list must be absent or unchanged.
//! Must not: decide whether a status move is allowed (status.rs) or touch the store.

use super::status::TaskStatus;
use serde_json::{Map, Value};

/// Fields an update may set. Absent ones keep their stored value; `note`s are appended.
pub const CHANGEABLE_FIELDS: &[&str] = &[
    "status",
    "statusReason",
    "businessStatus",
    "output",
    "note",
    "lastModified",
    "owner",
];

/// Fields the server manages or that carry no meaning for the update.
const IGNORED_FIELDS: &[&str] = &["resourceType", "id", "meta", "text"];

/// The stored Task with an update applied.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedTask {
    pub task: Value,
    pub from: TaskStatus,
    pub to: TaskStatus,
    /// The new owner's identifier value, when the update forwards the referral.
    pub forwarded_to: Option<String>,
}

/// Why a proposed Task cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("the update is not a Task resource")]
    NotATask,
    #[error("Task.id '{found}' does not match the Task being updated ('{expected}')")]
    IdMismatch { expected: String, found: String },
    #[error("{0} may not be changed by a Task update; only status, statusReason, businessStatus, output, note, lastModified and owner (to forward) may")]
    Forbidden(String),
    #[error("Task.status '{0}' is not a status a referral Task can take")]
    UnknownStatus(String),
    #[error("the stored Task has no usable status")]
    StoredStatus,
    #[error("a rejected referral needs Task.statusReason saying why")]
    RejectWithoutReason,
    #[error(
        "forwarding (a new Task.owner) must leave the status as it was or set it to 'requested'"
    )]
    ForwardWithStatus,
    #[error("Task.owner must identify the provider by identifier (system and value)")]
    OwnerWithoutIdentifier,
}

fn status_of(task: &Value) -> Option<&str> {
    task.get("status").and_then(Value::as_str)
}

/// The owner's identifier value (ODS code or provider id).
pub fn owner_value(task: &Value) -> Option<&str> {
    task.pointer("/owner/identifier/value")
        .and_then(Value::as_str)
}

/// Merge `proposed` into `current`. `now` is the server's `lastModified` text.
pub fn merge(
    current: &Value,
    proposed: &Value,
    task_id: &str,
    now: &str,
) -> Result<MergedTask, ChangeError> {
    let Some(update) = proposed.as_object() else {
        return Err(ChangeError::NotATask);
    };
    if update.get("resourceType").and_then(Value::as_str) != Some("Task") {
        return Err(ChangeError::NotATask);
    }
    if let Some(found) = update.get("id") {
        let found = found.as_str().unwrap_or_default();
        if found != task_id {
            return Err(ChangeError::IdMismatch {
                expected: task_id.to_string(),
                found: found.to_string(),
            });
        }
    }
    let stored = current.as_object().cloned().unwrap_or_default();
    for (key, value) in update {
        if IGNORED_FIELDS.contains(&key.as_str()) || CHANGEABLE_FIELDS.contains(&key.as_str()) {
            continue;
        }
        if stored.get(key) != Some(value) {
            return Err(ChangeError::Forbidden(format!("Task.{key}")));
        }
    }
    let from = status_of(current)
        .and_then(TaskStatus::parse)
        .ok_or(ChangeError::StoredStatus)?;
    let mut to = match status_of(proposed) {
        Some(code) => {
            TaskStatus::parse(code).ok_or_else(|| ChangeError::UnknownStatus(code.to_string()))?
        }
        None if update.contains_key("status") => {
            return Err(ChangeError::UnknownStatus("(not a code)".into()))
        }
        None => from,
    };
    let mut task: Map<String, Value> = stored;
    for field in ["statusReason", "businessStatus", "output"] {
        if let Some(value) = update.get(field) {
            task.insert(field.to_string(), value.clone());
        }
    }
    if let Some(Value::Array(notes)) = update.get("note") {
        let mut all = task
            .get("note")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for note in notes {
            if !all.contains(note) {
                all.push(note.clone());
            }
        }
        task.insert("note".into(), Value::Array(all));
    } else if let Some(other) = update.get("note") {
        task.insert("note".into(), other.clone());
    }
    let mut forwarded_to = None;
    if let Some(owner) = update.get("owner") {
        if task.get("owner") != Some(owner) {
            let new_value = owner
                .pointer("/identifier/value")
                .and_then(Value::as_str)
                .ok_or(ChangeError::OwnerWithoutIdentifier)?;
            if owner_value(current) != Some(new_value) {
                if to != from && to != TaskStatus::Requested {
                    return Err(ChangeError::ForwardWithStatus);
                }
                to = TaskStatus::Requested;
                forwarded_to = Some(new_value.to_string());
            }
            task.insert("owner".into(), owner.clone());
        }
    }
    task.insert("status".into(), Value::String(to.as_str().into()));
    task.insert("lastModified".into(), Value::String(now.into()));
    let task = Value::Object(task);
    Ok(MergedTask {
        task,
        from,
        to,
        forwarded_to,
    })
}

impl MergedTask {
    /// Rules on the merged Task itself (checked after the transition is known to be legal).
    pub fn check_complete(&self) -> Result<(), ChangeError> {
        if self.to == TaskStatus::Rejected && self.task.get("statusReason").is_none() {
            return Err(ChangeError::RejectWithoutReason);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored() -> Value {
        json!({"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order",
               "basedOn": [{"reference": "ServiceRequest/s1"}],
               "owner": {"identifier": {"system": "x", "value": "P1"}},
               "note": [{"text": "first"}]})
    }

    #[test]
    fn partial_update_keeps_the_rest_and_appends_notes() {
        let merged = merge(
            &stored(),
            &json!({"resourceType": "Task", "id": "t1", "status": "accepted", "note": [{"text": "second"}]}),
            "t1",
            "2026-12-02T10:00:00Z",
        )
        .unwrap();
        assert_eq!(merged.to, TaskStatus::Accepted);
        assert_eq!(merged.task["intent"], "order");
        assert_eq!(merged.task["note"].as_array().unwrap().len(), 2);
        assert_eq!(merged.task["lastModified"], "2026-12-02T10:00:00Z");
    }

    #[test]
    fn changing_other_fields_is_forbidden() {
        let err = merge(
            &stored(),
            &json!({"resourceType": "Task", "intent": "plan"}),
            "t1",
            "now",
        )
        .unwrap_err();
        assert_eq!(err, ChangeError::Forbidden("Task.intent".into()));
        // The same value is fine (a full PUT echoes it).
        assert!(merge(
            &stored(),
            &json!({"resourceType": "Task", "intent": "order"}),
            "t1",
            "now"
        )
        .is_ok());
    }

    #[test]
    fn rejecting_needs_a_reason_and_forwarding_resets_status() {
        let err = merge(
            &stored(),
            &json!({"resourceType": "Task", "status": "rejected"}),
            "t1",
            "n",
        )
        .unwrap()
        .check_complete()
        .unwrap_err();
        assert_eq!(err, ChangeError::RejectWithoutReason);
        let merged = merge(
            &stored(),
            &json!({"resourceType": "Task", "owner": {"identifier": {"system": "x", "value": "P2"}}}),
            "t1",
            "n",
        )
        .unwrap();
        assert_eq!(merged.forwarded_to.as_deref(), Some("P2"));
        assert_eq!(merged.to, TaskStatus::Requested);
    }

    #[test]
    fn id_mismatch_and_non_task_are_refused() {
        assert!(matches!(
            merge(
                &stored(),
                &json!({"resourceType": "Task", "id": "t2"}),
                "t1",
                "n"
            ),
            Err(ChangeError::IdMismatch { .. })
        ));
        assert_eq!(
            merge(&stored(), &json!({"resourceType": "Patient"}), "t1", "n"),
            Err(ChangeError::NotATask)
        );
    }
}
