//! The provider's side of the Task loop for tests: run the provider inbox (`spbridge::inbox`)
//! until it has received one referral, and accept that referral's Task over AMQP.
#![allow(dead_code)]

use spbridge::inbox::{self, InboxSettings, ReferralSummary, TaskAction};
use std::time::Duration;

/// Run the provider inbox until it has handled one referral, within `wait`, and return the
/// referral as the provider saw it. The inbox records the Task as `received` (a Task update
/// over AMQP) before it acks the message.
pub async fn receive_one(settings: &InboxSettings, wait: Duration) -> ReferralSummary {
    let mut seen = Vec::new();
    let handled = tokio::time::timeout(
        wait,
        inbox::run(settings, Some(1), |s| seen.push(s.clone())),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no referral reached provider {}'s inbox within {wait:?}",
            settings.provider_id
        )
    })
    .unwrap_or_else(|e| panic!("the inbox of provider {} failed: {e}", settings.provider_id));
    assert_eq!(handled, 1, "the inbox handled one message");
    assert_eq!(
        seen.len(),
        1,
        "the message the inbox handled was a referral"
    );
    seen.pop().unwrap()
}

/// Publish the provider's acceptance of Task `task_id` over AMQP (confirmed by the broker).
pub async fn accept(settings: &InboxSettings, task_id: &str) {
    inbox::send_update(settings, &TaskAction::Accept.task_update(task_id))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "provider {} could not accept Task/{task_id}: {e}",
                settings.provider_id
            )
        });
}

/// Receive one referral through the inbox (see [`receive_one`]), then accept its Task.
/// Returns the Task id.
pub async fn receive_and_accept(settings: &InboxSettings, wait: Duration) -> String {
    let task_id = receive_one(settings, wait).await.task_id;
    accept(settings, &task_id).await;
    task_id
}
