//! Tenancy with the security layer on (TLS + tokens): a requester sees only the
//! referrals and Tasks it made, a provider sees and changes only the Tasks it owns,
//! cross-tenant reads and updates answer 404 (revealing nothing), only the referrer
//! cancels, and over AMQP a provider's routing key must match the Task's owner.

#[path = "support/intake.rs"]
mod common;

use common::{amqp_header, fixture, test_config, wait_for, Db, Harness};
use hyper::{Method, StatusCode};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn start() -> Harness {
    // Every request of this test process goes through TLS and the token gate.
    std::env::set_var("SPBRIDGE_TEST_SECURITY", "tls");
    let (config, schema, dir) = test_config(Db::Sqlite, &common::amqp_url());
    let h = Harness::start_config(Db::Sqlite, config, schema, dir).await;
    assert!(h.base().starts_with("https://"));
    let updates = format!("{}.task-updates", h.prefix);
    wait_for("topology never declared", WAIT, async || {
        h.depth(&updates).await.is_some()
    })
    .await;
    h
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// POST a referral Bundle as the requester; the Task id.
async fn refer(h: &Harness, file: &str, placer: &str) -> String {
    let mut bundle = fixture(file);
    for entry in bundle["entry"].as_array_mut().unwrap() {
        if entry["resource"]["resourceType"] == "ServiceRequest" {
            entry["resource"]["identifier"][0]["value"] = json!(placer);
        }
    }
    let answer = h.post("/", &bundle, &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer
        .header("x-spbridge-task")
        .map(|t| t.trim_start_matches("Task/").to_string())
        .unwrap_or_else(|| {
            answer.body["entry"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|e| {
                    e["response"]["location"]
                        .as_str()
                        .filter(|l| l.starts_with("Task/"))
                })
                .expect("Task location")
                .split('/')
                .nth(1)
                .unwrap()
                .to_string()
        })
}

async fn get_as(h: &Harness, path: &str, token: &str) -> common::Answer {
    h.request(
        Method::GET,
        path,
        None,
        &[("authorization", &bearer(token))],
    )
    .await
}

async fn put_as(h: &Harness, task: &Value, version: u32, token: &str) -> common::Answer {
    let path = format!("/Task/{}", task["id"].as_str().unwrap());
    let etag = format!("W/\"{version}\"");
    h.request(
        Method::PUT,
        &path,
        Some(task),
        &[("authorization", &bearer(token)), ("if-match", &etag)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_and_change_only_their_own() {
    let h = start().await;
    let secure = h.secure.as_ref().unwrap();
    let (requester, provider) = (secure.requester.clone(), secure.provider.clone());
    // A second requester (B82002, only system/Task.rs) from the same kit.
    let other_requester = secure
        .kit
        .token(&secure.http, &h.base(), &secure.kit.narrow, None)
        .await;

    // Referred by A81001 to provider 8kx42 (North Leeds) …
    let mine = refer(&h, "referral-transaction-bundle.json", "TEN-1").await;
    // … and one routed to another provider (8kx57, by its HealthcareService).
    let elsewhere = refer(
        &h,
        "referral/variants/healthcareservice-performer-leeds-south.json",
        "TEN-2",
    )
    .await;

    // The requester sees its Tasks; another requester sees nothing, not even that they exist.
    let task = get_as(&h, &format!("/Task/{mine}"), &requester).await;
    assert_eq!(task.status, StatusCode::OK);
    assert_eq!(task.body["requester"]["identifier"]["value"], "A81001");
    let hidden = get_as(&h, &format!("/Task/{mine}"), &other_requester).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(hidden.body["resourceType"], "OperationOutcome");
    let search = get_as(&h, "/Task", &other_requester).await;
    assert_eq!(search.body["total"], 0);
    let search = get_as(&h, "/Task", &requester).await;
    assert_eq!(search.body["total"], 2);
    let history = get_as(&h, &format!("/Task/{mine}/_history"), &other_requester).await;
    assert_eq!(history.status, StatusCode::NOT_FOUND);

    // The provider sees and updates what it owns, and nothing else.
    assert_eq!(
        get_as(&h, &format!("/Task/{mine}"), &provider).await.status,
        StatusCode::OK
    );
    let theirs = get_as(&h, &format!("/Task/{elsewhere}"), &provider).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let search = get_as(&h, "/Task", &provider).await;
    assert_eq!(search.body["total"], 1);
    let mut received = task.body.clone();
    received["status"] = json!("received");
    let ok = put_as(&h, &received, 1, &provider).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let mut foreign = json!({"resourceType": "Task", "id": elsewhere, "status": "received"});
    let refused = put_as(&h, &foreign, 1, &provider).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    // A requester's token lacks Task.u for another tenant's Task as well.
    foreign["status"] = json!("cancelled");
    let refused = put_as(&h, &foreign, 1, &other_requester).await;
    assert!(refused.status == StatusCode::FORBIDDEN || refused.status == StatusCode::NOT_FOUND);

    // The requester may cancel but not make the provider's moves.
    let mut accepted = ok.body.clone();
    accepted["status"] = json!("accepted");
    let provider_move = put_as(&h, &accepted, 2, &requester).await;
    assert!(
        provider_move.status == StatusCode::CONFLICT
            || provider_move.status == StatusCode::FORBIDDEN,
        "{}: {}",
        provider_move.status,
        provider_move.body
    );

    // Over AMQP, a provider's routing key must own the Task.
    let channel = h.amqp.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let update = json!({"resourceType": "Task", "id": mine, "status": "accepted"});
    channel
        .basic_publish(
            format!("{}.task-updates", h.prefix).as_str().into(),
            "provider.8kx57".into(),
            BasicPublishOptions::default(),
            update.to_string().as_bytes(),
            BasicProperties::default().with_message_id("tenancy-1".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let dead = h
        .take(
            &format!("{}.dead-letter", h.prefix),
            1,
            WAIT,
            Duration::from_millis(300),
        )
        .await;
    assert!(amqp_header(&dead[0].0, "x-spbridge-error")
        .unwrap()
        .contains("not-owner"));
    let still = get_as(&h, &format!("/Task/{mine}"), &requester).await;
    assert_eq!(still.body["status"], "received");
    h.finish().await;
}
