//! Telling the referrer: FHIR `Subscription`s with rest-hook delivery.
//!
//! Owns: Subscription criteria and checks (`criteria.rs`, `subscription.rs`),
//! choosing which Subscriptions hear about a Task version (`notifications_for`,
//! called by the workflow inside the Task change's commit, so a notification is
//! queued exactly when the change is durable), and delivery with retry
//! (`rest_hook.rs`). The AMQP alternative for referrers is an outbox row the
//! workflow writes to `<prefix>.notifications`; the broker relay publishes it.
//! Must not: change Tasks or decide Task rules.

mod criteria;
mod rest_hook;
mod subscription;

pub use criteria::{Criteria, CriteriaError};
pub use rest_hook::{Notifier, NotifierHandle};
pub use subscription::{active, prepare, ActiveSubscription, SubscriptionError};

use crate::store::NewNotification;
use serde_json::Value;

/// Trace and correlation context carried from the change to its notifications.
#[derive(Debug, Clone, Default)]
pub struct NotificationContext {
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// One notification per active Subscription that wants this Task version.
pub fn notifications_for(
    subscriptions: &[ActiveSubscription],
    task_id: &str,
    task: &Value,
    version_id: i64,
    context: &NotificationContext,
) -> Vec<NewNotification> {
    subscriptions
        .iter()
        .filter(|s| s.wants(task))
        .map(|s| NewNotification {
            id: crate::store::new_id(),
            subscription_id: s.id.clone(),
            resource_type: "Task".into(),
            resource_id: task_id.to_string(),
            version_id,
            correlation_id: context.correlation_id.clone(),
            traceparent: context.traceparent.clone(),
            tracestate: context.tracestate.clone(),
        })
        .collect()
}
