//! The Task loop: a provider's update to a referral's Task, from whichever door it
//! came in (AMQP `task-updates` or HTTP `PUT`/`PATCH /Task/{id}`), applied once.
//!
//! Owns: the Task state machine (`status.rs`), what an update may change
//! (`change.rs`), tenancy (`tenancy.rs`), and `Workflow::apply`: check ownership,
//! merge, check the transition, validate the new Task against the task profile,
//! and commit in ONE store transaction the new Task version, the ServiceRequest
//! that follows it (completed / revoked), a re-routed referral message when the
//! Task is forwarded, the requester's AMQP notification (outbox) and the
//! rest-hook notifications of every Subscription that wants it.
//! Must not: speak HTTP or AMQP (callers translate `UpdateError` into a status
//! code or a dead-letter) or deliver notifications.

mod apply;
mod change;
mod status;
pub mod tenancy;

pub use apply::{AppliedUpdate, Caller, TaskUpdate, UpdateError, UpdateOutcome, Workflow};
pub use change::{merge, ChangeError, MergedTask, CHANGEABLE_FIELDS};
pub use status::{Actor, Refusal, TaskStatus};

/// Outbox destination (exchange suffix) of referrer notifications.
pub const NOTIFICATIONS_DESTINATION: &str = "notifications";
/// Outbox destination (exchange suffix) providers publish Task updates to.
pub const TASK_UPDATES_DESTINATION: &str = "task-updates";
/// AMQP `type` of a requester notification.
pub const TASK_UPDATE_MESSAGE_TYPE: &str = "task-update";

/// Routing key of a requester's notification queue binding.
pub fn requester_routing_key(ods: &str) -> String {
    format!("requester.{}", ods.to_ascii_uppercase())
}
