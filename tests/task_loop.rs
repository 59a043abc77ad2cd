//! Acceptance tests of the Task loop, over real sockets, the real RabbitMQ and
//! SQLite/PostgreSQL: the provider inbox receives a referral, the provider answers
//! over AMQP or HTTP, the Task follows the FHIR state machine with full history,
//! the ServiceRequest follows the Task, and the referrer hears every change —
//! through its rest-hook Subscription (in order, surviving an endpoint outage) and
//! its AMQP requester queue. Refused updates are dead-lettered with the reason.

#[path = "support/intake.rs"]
mod common;
#[path = "support/hook.rs"]
mod hook;
#[path = "support/inbox.rs"]
mod provider_inbox;

use common::{amqp_header, fixture, test_config, wait_for, Db, Harness};
use futures_util::StreamExt;
use hook::Hook;
use hyper::{Method, StatusCode};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::{json, Value};
use spbridge::inbox::{self, InboxSettings, TaskAction};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// The referring organisation: the surgery named in the fixtures, or — with the security
/// layer on (`SPBRIDGE_TEST_SECURITY`) — the organisation of the requester's token.
fn requester_ods() -> &'static str {
    if std::env::var_os("SPBRIDGE_TEST_SECURITY").is_some() {
        "A81001"
    } else {
        "B86642"
    }
}
const PROVIDER: &str = "8kx42";

async fn start(db: Db) -> Harness {
    let (mut config, schema, dir) = test_config(db, &common::amqp_url());
    config.notify.retry_base_ms = 50;
    config.notify.retry_max_ms = 400;
    config.notify.poll_interval_ms = 50;
    config.notify.max_attempts = 4;
    config.notify.requester_queues = vec![requester_ods().into()];
    let h = Harness::start_config(db, config, schema, dir).await;
    // The consumer declares the topology once it has connected.
    let updates = format!("{}.task-updates", h.prefix);
    wait_for("topology never declared", WAIT, async || {
        h.depth(&updates).await.is_some()
    })
    .await;
    h
}

/// POST the transaction-bundle referral (with a unique placer id); returns the Task id.
async fn refer(h: &Harness, placer: &str) -> String {
    let mut bundle = fixture("referral-transaction-bundle.json");
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = json!(placer);
    let answer = h.post("/", &bundle, &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let task = answer.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| {
            e["response"]["location"]
                .as_str()
                .filter(|l| l.starts_with("Task/"))
                .map(|l| l.split('/').nth(1).unwrap().to_string())
        });
    match task {
        Some(t) => t,
        None => {
            // The transaction response may not list the Task: search for it.
            let sr = answer.body["entry"][0]["response"]["location"]
                .as_str()
                .unwrap()
                .split('/')
                .nth(1)
                .unwrap()
                .to_string();
            let found = h.get(&format!("/Task?based-on=ServiceRequest/{sr}")).await;
            found.body["entry"][0]["resource"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    }
}

fn settings(h: &Harness, provider: &str) -> InboxSettings {
    InboxSettings {
        amqp_url: common::amqp_url(),
        tls: Default::default(),
        prefix: h.prefix.clone(),
        provider_id: provider.into(),
    }
}

async fn subscribe(h: &Harness, hook: &Hook, criteria: &str) -> String {
    let subscription = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Tell the surgery what happened to its referrals",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": hook.url(),
                    "payload": "application/fhir+json",
                    "header": ["Authorization: Bearer referrer-secret"]}
    });
    let answer = h.post("/Subscription", &subscription, &[]).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["status"], "active");
    answer.body["id"].as_str().unwrap().to_string()
}

/// Wait until the Task reaches `version`.
async fn task_at(h: &Harness, task: &str, version: u32) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = h.get(&format!("/Task/{task}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        if answer.body["meta"]["versionId"] == json!(version.to_string()) {
            return answer.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Task/{task} never reached version {version}: {}",
            answer.body["meta"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn end_to_end_over_amqp(db: Db) {
    let h = start(db).await;
    let hook = Hook::start().await;
    let subscription = subscribe(&h, &hook, &format!("Task?requester={}", requester_ods())).await;
    let task_id = refer(&h, "KBS-E2E-1").await;

    // The provider's inbox receives the referral and records it as received.
    let seen = provider_inbox::receive_one(&settings(&h, PROVIDER), WAIT).await;
    assert_eq!(seen.task_id, task_id);
    assert!(!seen.reason.is_empty());
    task_at(&h, &task_id, 2).await;

    // Accept, start, complete over AMQP.
    provider_inbox::accept(&settings(&h, PROVIDER), &task_id).await;
    for action in [
        TaskAction::Start,
        TaskAction::Complete {
            outcome: "Eight weeks of befriending; now attends two groups".into(),
            code: "support-completed".into(),
        },
    ] {
        inbox::send_update(&settings(&h, PROVIDER), &action.task_update(&task_id))
            .await
            .unwrap();
    }
    let done = task_at(&h, &task_id, 5).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["output"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "support-completed"
    );

    // The rest-hook endpoint got every change, in order, with the Subscription's header.
    let got = hook.wait_for(4, WAIT).await;
    let statuses: Vec<&str> = got
        .iter()
        .map(|r| r.body["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["received", "accepted", "in-progress", "completed"]
    );
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.method, "PUT");
        assert_eq!(r.path, format!("/fhir/Task/{task_id}"));
        assert_eq!(r.body["meta"]["versionId"], json!((i + 2).to_string()));
        assert_eq!(
            r.headers.get("authorization").unwrap().to_str().unwrap(),
            "Bearer referrer-secret"
        );
    }

    // History shows every version, newest first.
    let history = h.get(&format!("/Task/{task_id}/_history")).await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(history.body["type"], "history");
    let versions: Vec<&str> = history.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        [
            "completed",
            "in-progress",
            "accepted",
            "received",
            "requested"
        ]
    );
    let v3 = h.get(&format!("/Task/{task_id}/_history/3")).await;
    assert_eq!(v3.body["status"], "accepted");

    // The ServiceRequest follows the Task.
    let sr_ref = done["basedOn"][0]["reference"].as_str().unwrap();
    assert_eq!(
        h.get(&format!("/{sr_ref}")).await.body["status"],
        "completed"
    );

    // The requester's AMQP queue received the same four changes.
    let queue = format!("{}.requester.{}", h.prefix, requester_ods());
    let messages = h.take(&queue, 4, WAIT, Duration::from_millis(500)).await;
    let statuses: Vec<&str> = messages
        .iter()
        .map(|(_, b)| b["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["received", "accepted", "in-progress", "completed"]
    );
    assert_eq!(
        messages[0]
            .0
            .kind()
            .as_ref()
            .map(|k| k.to_string())
            .as_deref(),
        Some("task-update")
    );

    // Polling works too: search by based-on and _lastUpdated.
    let found = h
        .get(&format!("/Task?based-on={sr_ref}&status=completed"))
        .await;
    assert_eq!(found.body["total"], 1);
    let sub = h.get(&format!("/Subscription/{subscription}")).await;
    assert_eq!(sub.body["status"], "active");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_over_amqp_sqlite() {
    end_to_end_over_amqp(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_over_amqp_postgres() {
    end_to_end_over_amqp(Db::Postgres).await;
}

/// The provider's bearer token when the security layer is on.
fn as_provider(h: &Harness) -> Option<String> {
    h.secure.as_ref().map(|s| format!("Bearer {}", s.provider))
}

/// PUT as the provider (the owner of the Task).
async fn put(h: &Harness, task: &Value, if_match: Option<&str>) -> common::Answer {
    let token = as_provider(h);
    let mut headers = vec![];
    if let Some(t) = &token {
        headers.push(("authorization", t.as_str()));
    }
    if let Some(m) = if_match {
        headers.push(("if-match", m));
    }
    let path = format!("/Task/{}", task["id"].as_str().unwrap());
    h.request(Method::PUT, &path, Some(task), &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_put_and_patch_with_if_match() {
    let h = start(Db::Sqlite).await;
    let task_id = refer(&h, "KBS-HTTP-1").await;
    let task = h.get(&format!("/Task/{task_id}")).await;
    assert_eq!(task.header("etag"), Some("W/\"1\""));
    let mut received = task.body.clone();
    received["status"] = json!("received");

    let no_match = put(&h, &received, None).await;
    assert_eq!(no_match.status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(no_match.body["resourceType"], "OperationOutcome");

    let ok = put(&h, &received, Some("W/\"1\"")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.header("etag"), Some("W/\"2\""));
    assert_eq!(ok.body["status"], "received");

    // A stale version is refused and changes nothing.
    let mut accepted = ok.body.clone();
    accepted["status"] = json!("accepted");
    let stale = put(&h, &accepted, Some("W/\"1\"")).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(stale.body["issue"][0]["code"], "conflict");

    // A field a provider may not change.
    let mut intent = ok.body.clone();
    intent["intent"] = json!("plan");
    let refused = put(&h, &intent, Some("W/\"2\"")).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("Task.intent"));

    // An illegal transition names itself.
    let mut completed = ok.body.clone();
    completed["status"] = json!("completed");
    let illegal = put(&h, &completed, Some("W/\"2\"")).await;
    assert_eq!(illegal.status, StatusCode::CONFLICT);
    let text = illegal.body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(text.contains("'received' to 'completed'"), "{text}");

    // Rejecting needs a reason.
    let mut no_reason = ok.body.clone();
    no_reason["status"] = json!("rejected");
    let refused = put(&h, &no_reason, Some("W/\"2\"")).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(
        refused.body["issue"][0]["expression"][0],
        "Task.statusReason"
    );

    // JSON Patch.
    let patch = json!([{"op": "replace", "path": "/status", "value": "accepted"},
                       {"op": "add", "path": "/businessStatus", "value": {"text": "Link worker assigned"}}]);
    let patched = h
        .request(
            Method::PATCH,
            &format!("/Task/{task_id}"),
            Some(&patch),
            &[
                ("content-type", "application/json-patch+json"),
                ("if-match", "W/\"2\""),
                ("authorization", as_provider(&h).as_deref().unwrap_or("")),
            ],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["status"], "accepted");
    assert_eq!(patched.header("etag"), Some("W/\"3\""));

    // Once accepted, the provider cannot reject (it fails or completes instead).
    let mut rejected = patched.body.clone();
    rejected["status"] = json!("rejected");
    rejected["statusReason"] = json!({"text": "changed our mind"});
    let late = put(&h, &rejected, Some("W/\"3\"")).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);

    // A retried request (same X-Request-ID) is applied once.
    let mut started = patched.body.clone();
    started["status"] = json!("in-progress");
    let path = format!("/Task/{task_id}");
    let provider = as_provider(&h);
    let headers = [
        ("if-match", "W/\"3\""),
        ("x-request-id", "retry-me-1"),
        ("authorization", provider.as_deref().unwrap_or("")),
    ];
    let first = h
        .request(Method::PUT, &path, Some(&started), &headers)
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let again = h
        .request(Method::PUT, &path, Some(&started), &headers)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.header("etag"), Some("W/\"4\""));

    // The requester cancels: the ServiceRequest is revoked.
    let mut cancel = again.body.clone();
    cancel["status"] = json!("cancelled");
    let cancelled = h
        .request(
            Method::PUT,
            &path,
            Some(&cancel),
            &[("if-match", "W/\"4\"")],
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let sr = cancelled.body["basedOn"][0]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(h.get(&format!("/{sr}")).await.body["status"], "revoked");
    let history = h.get(&format!("/Task/{task_id}/_history")).await;
    assert_eq!(history.body["total"], 5);
    h.finish().await;
}

/// Publish a raw task update; returns after the broker confirms it.
async fn publish(h: &Harness, routing_key: &str, body: &[u8], props: BasicProperties) {
    let channel = h.amqp.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            format!("{}.task-updates", h.prefix).as_str().into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
}

fn props(message_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(message_id.into())
        .with_content_type("application/fhir+json".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_updates_are_dead_lettered_with_their_reason() {
    let h = start(Db::Sqlite).await;
    let task_id = refer(&h, "KBS-DLQ-1").await;
    // A reply queue for the provider's answers.
    let reply = h
        .channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let reply_queue = reply.name().to_string();

    let illegal = json!({"resourceType": "Task", "id": task_id, "status": "completed"});
    publish(
        &h,
        &format!("provider.{PROVIDER}"),
        illegal.to_string().as_bytes(),
        props("dlq-1")
            .with_reply_to(reply_queue.as_str().into())
            .with_correlation_id("corr-dlq-1".into()),
    )
    .await;
    // Provider B may not touch provider A's Task.
    let other = json!({"resourceType": "Task", "id": task_id, "status": "accepted"});
    publish(
        &h,
        "provider.8wy01",
        other.to_string().as_bytes(),
        props("dlq-2"),
    )
    .await;
    // Not JSON at all; and a Task without an id.
    publish(
        &h,
        &format!("provider.{PROVIDER}"),
        b"{not json",
        props("dlq-3"),
    )
    .await;
    let no_id = json!({"resourceType": "Task", "status": "accepted"});
    publish(
        &h,
        &format!("provider.{PROVIDER}"),
        no_id.to_string().as_bytes(),
        props("dlq-4"),
    )
    .await;
    // A provider cannot cancel (only the referrer can).
    let cancel = json!({"resourceType": "Task", "id": task_id, "status": "cancelled"});
    publish(
        &h,
        &format!("provider.{PROVIDER}"),
        cancel.to_string().as_bytes(),
        props("dlq-5"),
    )
    .await;

    let dead = h
        .take(
            &format!("{}.dead-letter", h.prefix),
            5,
            WAIT,
            Duration::from_millis(500),
        )
        .await;
    let by_id = |id: &str| {
        dead.iter()
            .find(|(p, _)| amqp_header(p, "x-original-message-id").as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} not dead-lettered"))
    };
    let (p1, b1) = by_id("dlq-1");
    assert!(amqp_header(p1, "x-spbridge-error")
        .unwrap()
        .contains("illegal-transition"));
    assert_eq!(b1["resourceType"], "OperationOutcome");
    assert!(b1["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("'requested' to 'completed'"));
    assert!(amqp_header(p1, "x-original-body")
        .unwrap()
        .contains("completed"));
    let (p2, _) = by_id("dlq-2");
    assert!(amqp_header(p2, "x-spbridge-error")
        .unwrap()
        .contains("not-owner"));
    let (p3, b3) = by_id("dlq-3");
    assert!(amqp_header(p3, "x-spbridge-error")
        .unwrap()
        .contains("not valid FHIR JSON"));
    assert_eq!(b3["issue"][0]["code"], "structure");
    let (_, b4) = by_id("dlq-4");
    assert_eq!(b4["issue"][0]["expression"][0], "Task.id");
    let (p5, _) = by_id("dlq-5");
    assert!(amqp_header(p5, "x-spbridge-error")
        .unwrap()
        .contains("referrer only"));

    // The provider that asked for a reply got the OperationOutcome, correlated.
    let channel = h.amqp.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            reply_queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    assert_eq!(
        delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.to_string())
            .as_deref(),
        Some("corr-dlq-1")
    );
    let body: Value = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");

    // Nothing changed the Task.
    let task = h.get(&format!("/Task/{task_id}")).await;
    assert_eq!(task.body["meta"]["versionId"], "1");
    assert_eq!(task.body["status"], "requested");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_update_is_applied_once() {
    let h = start(Db::Postgres).await;
    let task_id = refer(&h, "KBS-ONCE-1").await;
    let accept = json!({"resourceType": "Task", "id": task_id, "status": "accepted",
                        "note": [{"text": "picked up"}]});
    for _ in 0..3 {
        publish(
            &h,
            &format!("provider.{PROVIDER}"),
            accept.to_string().as_bytes(),
            props("once-1"),
        )
        .await;
    }
    // A later, different message proves the consumer has passed the three copies.
    let start_msg = json!({"resourceType": "Task", "id": task_id, "status": "in-progress"});
    publish(
        &h,
        &format!("provider.{PROVIDER}"),
        start_msg.to_string().as_bytes(),
        props("once-2"),
    )
    .await;
    let task = task_at(&h, &task_id, 3).await;
    assert_eq!(task["status"], "in-progress");
    assert_eq!(task["note"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let history = h.get(&format!("/Task/{task_id}/_history")).await;
    assert_eq!(
        history.body["total"], 3,
        "requested, accepted once, in-progress"
    );
    assert_eq!(h.depth(&format!("{}.dead-letter", h.prefix)).await, Some(0));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_hook_that_was_down_gets_everything_once_back() {
    let h = start(Db::Sqlite).await;
    let hook = Hook::start().await;
    subscribe(&h, &hook, "Task?status=received,accepted,in-progress").await;
    // Down for the first three attempts (max_attempts is 4, so it stays active).
    hook.fail_next(3);
    let task_id = refer(&h, "KBS-HOOK-1").await;
    let mut task = h.get(&format!("/Task/{task_id}")).await.body;
    for (i, status) in ["received", "accepted", "in-progress"].iter().enumerate() {
        task["status"] = json!(status);
        let etag = format!("W/\"{}\"", i + 1);
        let answer = put(&h, &task, Some(&etag)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        task = answer.body;
    }
    let got = hook.wait_for(3, WAIT).await;
    assert!(hook.refused() >= 3);
    let statuses: Vec<&str> = got
        .iter()
        .map(|r| r.body["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["received", "accepted", "in-progress"],
        "in order, each once"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_hook_that_stays_down_puts_the_subscription_in_error() {
    let h = start(Db::Sqlite).await;
    let hook = Hook::start().await;
    let subscription = subscribe(&h, &hook, "Task").await;
    hook.fail_next(usize::MAX);
    let task_id = refer(&h, "KBS-HOOK-2").await;
    let mut task = h.get(&format!("/Task/{task_id}")).await.body;
    task["status"] = json!("received");
    assert_eq!(put(&h, &task, Some("W/\"1\"")).await.status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + WAIT;
    let sub = loop {
        let sub = h.get(&format!("/Subscription/{subscription}")).await.body;
        if sub["status"] == "error" {
            break sub;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription never went to error: {sub}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let why = sub["error"].as_str().unwrap();
    assert!(why.contains("4 times") && why.contains("503"), "{why}");
    assert_eq!(hook.refused(), 4);
    assert!(hook.received().is_empty());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused() {
    let h = start(Db::Sqlite).await;
    for (criteria, channel) in [
        (
            "Patient?name=x",
            json!({"type": "rest-hook", "endpoint": "http://127.0.0.1:9/x"}),
        ),
        (
            "Task?colour=red",
            json!({"type": "rest-hook", "endpoint": "http://127.0.0.1:9/x"}),
        ),
        ("Task", json!({"type": "websocket"})),
        (
            "Task",
            json!({"type": "rest-hook", "endpoint": "not a url"}),
        ),
    ] {
        let s = json!({"resourceType": "Subscription", "status": "requested", "reason": "r",
                       "criteria": criteria, "channel": channel});
        let answer = h.post("/Subscription", &s, &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{criteria}: {}",
            answer.body
        );
        assert_eq!(answer.body["resourceType"], "OperationOutcome");
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_reroutes_the_referral_to_the_new_provider() {
    let h = start(Db::Sqlite).await;
    let task_id = refer(&h, "KBS-FWD-1").await;
    // The first provider's copy.
    h.take(&h.queue(PROVIDER), 1, WAIT, Duration::from_millis(200))
        .await;
    let forward = json!({"resourceType": "Task", "id": task_id,
        "owner": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "8KX57"},
                  "display": "Walking group"},
        "note": [{"text": "Better served by the walking group"}]});
    publish(
        &h,
        &format!("provider.{PROVIDER}"),
        forward.to_string().as_bytes(),
        props("fwd-1"),
    )
    .await;
    let got = h
        .take(&h.queue("8kx57"), 1, WAIT, Duration::from_millis(200))
        .await;
    let bundle = &got[0].1;
    let task = common::entry_of(bundle, "Task").unwrap();
    assert_eq!(task["id"], json!(task_id));
    assert_eq!(task["status"], "requested");
    assert_eq!(task["owner"]["identifier"]["value"], "8KX57");
    // The old provider can no longer update it; the new one can.
    let accept = json!({"resourceType": "Task", "id": task_id, "status": "accepted"});
    publish(
        &h,
        &format!("provider.{PROVIDER}"),
        accept.to_string().as_bytes(),
        props("fwd-2"),
    )
    .await;
    publish(
        &h,
        "provider.8kx57",
        accept.to_string().as_bytes(),
        props("fwd-3"),
    )
    .await;
    let t = task_at(&h, &task_id, 3).await;
    assert_eq!(t["status"], "accepted");
    h.finish().await;
}
