//! Tenancy on the broker itself: a provider's RabbitMQ user, made by
//! `scripts/rabbitmq-provider-user`, consumes only its own queue and publishes Task updates
//! only with its own routing key. RabbitMQ refuses the rest (ACCESS_REFUSED) before spbridge
//! sees anything; spbridge's own owner check is tested in `security_tenancy`.
//!
//! Needs `rabbitmqctl` for the machine's RabbitMQ (it creates and deletes a throwaway user).

#[path = "support/intake.rs"]
mod common;
#[path = "support/inbox.rs"]
mod provider_inbox;

use common::{fixture, wait_for, Db, Harness};
use hyper::StatusCode;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use spbridge::inbox::InboxSettings;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const PROVIDER: &str = "8kx42";
const OTHER_PROVIDER: &str = "8lt19";

/// A throwaway RabbitMQ user for one provider, deleted on drop.
struct ProviderUser {
    name: String,
    password: String,
}

impl ProviderUser {
    fn create(prefix: &str, provider: &str) -> Option<ProviderUser> {
        let name = format!("{prefix}-{provider}");
        let password = uuid::Uuid::new_v4().simple().to_string();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/rabbitmq-provider-user"
        );
        let status = Command::new(script)
            .args([provider, &name, &password, prefix, "/"])
            .status()
            .ok()?;
        assert!(status.success(), "scripts/rabbitmq-provider-user failed");
        Some(ProviderUser { name, password })
    }

    fn url(&self) -> String {
        let base = common::amqp_url();
        let host = base.rsplit('@').next().unwrap_or("127.0.0.1:5672/%2f");
        format!("amqp://{}:{}@{host}", self.name, self.password)
    }
}

impl Drop for ProviderUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_user", &self.name])
            .status();
    }
}

fn have_rabbitmqctl() -> bool {
    Command::new("rabbitmqctl")
        .arg("-q")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Publish a Task update as `user` with `routing_key`; Ok if the broker confirmed it.
async fn publish_as(
    connection: &Connection,
    exchange: &str,
    routing_key: &str,
) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let update = json!({"resourceType": "Task", "id": "no-such-task", "status": "received"});
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            update.to_string().as_bytes(),
            BasicProperties::default().with_message_id(uuid::Uuid::new_v4().to_string().into()),
        )
        .await?
        .await?;
    // A refused publish closes the channel asynchronously: ask the broker something on it.
    channel.basic_qos(1, Default::default()).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_user_reaches_only_its_own_queue_and_routing_key() {
    if !have_rabbitmqctl() {
        eprintln!("skipped: rabbitmqctl is not available for the test broker");
        return;
    }
    let h = Harness::start(Db::Sqlite).await;
    let updates_exchange = format!("{}.task-updates", h.prefix);
    wait_for("topology never declared", WAIT, async || {
        h.depth(&updates_exchange).await.is_some()
            && h.depth(&h.queue(OTHER_PROVIDER)).await.is_some()
    })
    .await;
    let user = ProviderUser::create(&h.prefix, PROVIDER).expect("rabbitmqctl runs");
    let connection = tokio::time::timeout(
        WAIT,
        Connection::connect(&user.url(), ConnectionProperties::default()),
    )
    .await
    .unwrap()
    .expect("the provider user connects");

    // Publishing as another provider: refused by the broker.
    let refused = publish_as(
        &connection,
        &updates_exchange,
        &format!("provider.{OTHER_PROVIDER}"),
    )
    .await;
    let err = refused.expect_err("another provider's routing key is refused");
    assert!(err.to_string().contains("ACCESS_REFUSED"), "{err}");

    // Reading another provider's queue: refused.
    let channel = connection.create_channel().await.unwrap();
    let other = channel
        .basic_consume(
            h.queue(OTHER_PROVIDER).as_str().into(),
            "spy".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    let err = other.expect_err("another provider's queue is refused");
    assert!(err.to_string().contains("ACCESS_REFUSED"), "{err}");

    // Declaring anything: refused.
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            format!("{}.mine", h.prefix).as_str().into(),
            Default::default(),
            FieldTable::default(),
        )
        .await;
    assert!(declared.is_err(), "a provider user may not declare queues");
    let _ = connection.close(200, "done".into()).await;

    // What the inbox does — consume its own queue, publish as itself — works.
    let mut bundle = fixture("referral-transaction-bundle.json");
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = json!("broker-perm-1");
    let answer = h.post("/", &bundle, &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let settings = InboxSettings {
        amqp_url: user.url(),
        tls: Default::default(),
        prefix: h.prefix.clone(),
        provider_id: PROVIDER.into(),
    };
    // The referral reaches the provider user's inbox; accepting uses its own routing key.
    let task_id = provider_inbox::receive_and_accept(&settings, WAIT).await;
    wait_for("update never applied", WAIT, async || {
        h.get(&format!("/Task/{task_id}")).await.body["status"] == "accepted"
    })
    .await;
    drop(user);
    h.finish().await;
}
