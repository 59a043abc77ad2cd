//! Acceptance tests of referral intake over real sockets, the real RabbitMQ and
//! both SQLite and PostgreSQL: each way of sending a referral lands in the right
//! provider queue exactly once; retries make nothing new; invalid referrals are
//! refused with nothing stored or published.

#[path = "support/intake.rs"]
mod common;

use common::{amqp_header, entry_of, fixture, Db, Harness};
use hyper::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_millis(1500);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The single-resource fixture with the given placer identifier value.
fn single_referral(value: &str) -> Value {
    let mut sr = fixture("referral/servicerequest.json");
    sr["identifier"][0]["value"] = json!(value);
    sr
}

fn check_message_properties(props: &lapin::BasicProperties, correlation: Option<&str>) {
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        props
            .content_type()
            .as_ref()
            .map(|s| s.to_string())
            .as_deref(),
        Some("application/fhir+json")
    );
    assert_eq!(
        props.kind().as_ref().map(|s| s.to_string()).as_deref(),
        Some("servicerequest-request")
    );
    let id = props
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "message_id is the outbox id"
    );
    if let Some(c) = correlation {
        assert_eq!(
            props
                .correlation_id()
                .as_ref()
                .map(|s| s.to_string())
                .as_deref(),
            Some(c)
        );
    }
    assert_eq!(
        amqp_header(props, "profile").as_deref(),
        Some("https://fhir.spbridge.org/StructureDefinition/SPBridge-SocialPrescribingReferral")
    );
}

/// The provider message: MessageHeader first, event, focus the SR, carries SR + Task (+ Patient).
fn check_message_body(body: &Value, sr_id: &str, task_id: &str, expect_patient: bool) {
    assert_eq!(body["resourceType"], "Bundle");
    assert_eq!(body["type"], "message");
    let header = &body["entry"][0]["resource"];
    assert_eq!(header["resourceType"], "MessageHeader");
    assert_eq!(header["eventCoding"]["code"], "servicerequest-request");
    assert!(header["focus"][0]["reference"]
        .as_str()
        .unwrap()
        .ends_with(&format!("ServiceRequest/{sr_id}")));
    assert!(header["destination"][0]["endpoint"]
        .as_str()
        .unwrap()
        .starts_with("urn:spbridge:provider:"));
    let sr = entry_of(body, "ServiceRequest").expect("ServiceRequest in message");
    assert_eq!(sr["id"], sr_id);
    assert_eq!(sr["meta"]["versionId"], "1");
    let task = entry_of(body, "Task").expect("Task in message");
    assert_eq!(task["id"], task_id);
    assert_eq!(task["status"], "requested");
    assert_eq!(task["intent"], "order");
    assert_eq!(
        task["basedOn"][0]["reference"],
        format!("ServiceRequest/{sr_id}")
    );
    assert_eq!(
        task["focus"]["reference"],
        format!("ServiceRequest/{sr_id}")
    );
    if expect_patient {
        let patient = entry_of(body, "Patient").expect("Patient in message");
        assert_eq!(
            task["for"]["reference"],
            format!("Patient/{}", patient["id"].as_str().unwrap())
        );
    }
}

fn task_id_from_link(answer: &common::Answer) -> String {
    let task = answer.header("x-spbridge-task").expect("task header");
    task.strip_prefix("Task/").unwrap().to_string()
}

async fn single_resource_lands_once(db: Db) {
    let h = Harness::start(db).await;
    let sr = single_referral("SINGLE-0001");
    let first = h
        .post(
            "/ServiceRequest",
            &sr,
            &[
                ("x-correlation-id", "corr-single-1"),
                ("traceparent", TRACEPARENT),
            ],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.header("x-correlation-id"), Some("corr-single-1"));
    let sr_id = first.body["id"].as_str().unwrap().to_string();
    assert_ne!(sr_id, "spb-sr-0001", "server assigns the id");
    assert!(first
        .header("location")
        .unwrap()
        .ends_with(&format!("/ServiceRequest/{sr_id}/_history/1")));
    assert_eq!(first.header("etag"), Some("W/\"1\""));
    assert!(first.header("last-modified").is_some());
    assert!(first.header("link").unwrap().contains("rel=\"related\""));
    let task_id = task_id_from_link(&first);

    // Retried POST: same identifier → 200 with the same referral, nothing new.
    let again = h
        .post("/ServiceRequest", &sr, &[("prefer", "return=minimal")])
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, Value::Null, "return=minimal");
    assert!(again.header("location").unwrap().contains(&sr_id));
    assert_eq!(task_id_from_link(&again), task_id);

    let messages = h.take(&h.queue("8kx42"), 1, WAIT, SETTLE).await;
    let (props, body) = &messages[0];
    check_message_properties(props, Some("corr-single-1"));
    assert_eq!(
        amqp_header(props, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    check_message_body(body, &sr_id, &task_id, false);

    // Reads and searches see one referral and one Task.
    let read = h.get(&format!("/ServiceRequest/{sr_id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    let tasks = h
        .get(&format!(
            "/Task?based-on=ServiceRequest/{sr_id}&status=requested"
        ))
        .await;
    assert_eq!(tasks.body["total"], 1, "{}", tasks.body);
    assert_eq!(
        tasks.body["entry"][0]["resource"]["owner"]["identifier"]["value"],
        "8KX42"
    );
    let by_ident = h
        .get("/ServiceRequest?identifier=https://fhir.spbridge.org/Id/gp-referral/B86642%7CSINGLE-0001")
        .await;
    assert_eq!(by_ident.body["total"], 1);
    assert_eq!(
        h.depth(&h.queue("8wy01")).await,
        Some(0),
        "nothing to triage"
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_resource_lands_once_sqlite() {
    single_resource_lands_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_resource_lands_once_postgres() {
    single_resource_lands_once(Db::Postgres).await;
}

/// The relay hands a batch's messages to lapin all at once (`broker/relay.rs`); they must
/// still reach the queue in the order the referrals were accepted.
async fn referrals_reach_the_queue_in_the_order_accepted(db: Db) {
    let h = Harness::start(db).await;
    let mut accepted = Vec::new();
    for n in 0..40 {
        let answer = h
            .post(
                "/ServiceRequest",
                &single_referral(&format!("ORDER-{n:04}")),
                &[("prefer", "return=minimal")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        let location = answer.header("location").expect("location").to_string();
        let id = location
            .split("/ServiceRequest/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("id in location")
            .to_string();
        accepted.push(id);
    }
    let messages = h.take(&h.queue("8kx42"), 40, WAIT, SETTLE).await;
    let delivered: Vec<String> = messages
        .iter()
        .map(|(_, body)| {
            entry_of(body, "ServiceRequest").expect("ServiceRequest entry")["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    assert_eq!(delivered, accepted);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrals_reach_the_queue_in_the_order_accepted_sqlite() {
    referrals_reach_the_queue_in_the_order_accepted(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrals_reach_the_queue_in_the_order_accepted_postgres() {
    referrals_reach_the_queue_in_the_order_accepted(Db::Postgres).await;
}

async fn transaction_bundle_lands_once(db: Db) {
    let h = Harness::start(db).await;
    let bundle = fixture("referral-transaction-bundle.json");
    let first = h.post("/", &bundle, &[]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["type"], "transaction-response");
    let entries = first.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), bundle["entry"].as_array().unwrap().len());
    assert!(entries
        .iter()
        .all(|e| e["response"]["status"] == "201 Created"));
    let sr_location = entries[0]["response"]["location"].as_str().unwrap();
    let sr_id = sr_location.split('/').nth(1).unwrap().to_string();
    let task_id = task_id_from_link(&first);
    // urn:uuid references were resolved to server ids.
    let sr = &entries[0]["resource"];
    assert!(sr["subject"]["reference"]
        .as_str()
        .unwrap()
        .starts_with("Patient/"));
    assert!(!sr.to_string().contains("urn:uuid"));

    let retry = h.post("/", &bundle, &[]).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(
        retry.body["entry"][0]["response"]["location"],
        format!("ServiceRequest/{sr_id}")
    );
    assert_eq!(task_id_from_link(&retry), task_id);

    let messages = h.take(&h.queue("8kx42"), 1, WAIT, SETTLE).await;
    check_message_properties(&messages[0].0, None);
    check_message_body(&messages[0].1, &sr_id, &task_id, true);
    assert!(
        entry_of(&messages[0].1, "PractitionerRole").is_some(),
        "requester travels with the message"
    );

    let srs = h.get("/ServiceRequest").await;
    assert_eq!(srs.body["total"], 1);
    let patients = h
        .get(&format!(
            "/{}",
            sr["subject"]["reference"].as_str().unwrap()
        ))
        .await;
    assert_eq!(patients.status, StatusCode::OK);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_bundle_lands_once_sqlite() {
    transaction_bundle_lands_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_bundle_lands_once_postgres() {
    transaction_bundle_lands_once(Db::Postgres).await;
}

async fn message_bundle_lands_once(db: Db) {
    let h = Harness::start(db).await;
    let message = fixture("referral-message-bundle.json");
    let headers = [
        ("x-request-id", "req-msg-0001"),
        ("x-correlation-id", "corr-msg-1"),
    ];
    let first = h.post("/$process-message", &message, &headers).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.header("x-correlation-id"), Some("corr-msg-1"));
    assert_eq!(first.header("x-request-id"), Some("req-msg-0001"));
    let header = &first.body["entry"][0]["resource"];
    assert_eq!(header["resourceType"], "MessageHeader");
    assert_eq!(header["response"]["code"], "ok");
    assert_eq!(
        header["response"]["identifier"],
        "5273448b-f7ce-52a1-a403-7056ee1be764"
    );
    let task = entry_of(&first.body, "Task").unwrap();
    let task_id = task["id"].as_str().unwrap().to_string();
    let sr_id = task["focus"]["reference"]
        .as_str()
        .unwrap()
        .trim_start_matches("ServiceRequest/")
        .to_string();

    // Same X-Request-ID and body → the original answer, nothing new.
    let again = h.post("/$process-message", &message, &headers).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        entry_of(&again.body, "Task").unwrap()["id"],
        task_id.as_str()
    );
    // Same X-Request-ID, different message → 409 duplicate.
    let mut other = message.clone();
    other["entry"][1]["resource"]["identifier"][0]["value"] = json!("OTHER-1");
    let conflict = h.post("/$process-message", &other, &headers).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.body["issue"][0]["code"], "duplicate");
    // A new X-Request-ID for the same referral: the identifier guard answers.
    let renewed = h
        .post(
            "/$process-message",
            &message,
            &[("x-request-id", "req-msg-0002")],
        )
        .await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert_eq!(
        entry_of(&renewed.body, "Task").unwrap()["id"],
        task_id.as_str()
    );

    let messages = h.take(&h.queue("8kx42"), 1, WAIT, SETTLE).await;
    check_message_properties(&messages[0].0, Some("corr-msg-1"));
    check_message_body(&messages[0].1, &sr_id, &task_id, true);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_bundle_lands_once_sqlite() {
    message_bundle_lands_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_bundle_lands_once_postgres() {
    message_bundle_lands_once(Db::Postgres).await;
}

async fn invalid_referral_is_refused(db: Db) {
    let h = Harness::start(db).await;
    let mut sr = single_referral("BAD-0001");
    sr.as_object_mut().unwrap().remove("subject");
    let answer = h.post("/ServiceRequest", &sr, &[]).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.body["resourceType"], "OperationOutcome");
    assert!(
        error_at(&answer.body, "ServiceRequest.subject"),
        "{}",
        answer.body
    );

    let mut bundle = fixture("referral-transaction-bundle.json");
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = json!("9990001244");
    let answer = h.post("/", &bundle, &[]).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    assert!(
        error_at(&answer.body, "Bundle.entry[1].resource.identifier[0].value"),
        "{}",
        answer.body
    );
    assert!(
        !answer.body.to_string().contains("9990001244"),
        "no NHS number in diagnostics"
    );

    let mut message = fixture("referral-message-bundle.json");
    message["entry"][1]["resource"]["status"] = json!("bogus");
    let answer = h
        .post(
            "/$process-message",
            &message,
            &[("x-request-id", "bad-msg-1")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error_at(&answer.body, "Bundle.entry[1].resource.status"),
        "{}",
        answer.body
    );
    // The refused X-Request-ID is not burnt: a corrected message goes through later.

    for path in [
        "/ServiceRequest",
        "/Task",
        "/ServiceRequest?_lastUpdated=ge2000-01-01",
    ] {
        assert_eq!(h.get(path).await.body["total"], 0, "{path}");
    }
    // Give the relay time to publish anything it (wrongly) had.
    tokio::time::sleep(SETTLE).await;
    for provider in h.running().router.provider_ids() {
        let depth = h.depth(&h.queue(&provider)).await;
        assert!(matches!(depth, Some(0) | None), "{provider}: {depth:?}");
    }
    let stats = h.running().store.outbox_stats().await.unwrap();
    assert_eq!(stats.pending, 0);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_referral_is_refused_sqlite() {
    invalid_referral_is_refused(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_referral_is_refused_postgres() {
    invalid_referral_is_refused(Db::Postgres).await;
}

/// The routing variants of the fixture set reach their documented providers, and a
/// second referral for a known patient reuses the Patient (`ifNoneExist`).
async fn fixture_variants_route_to_their_providers(db: Db) {
    let h = Harness::start(db).await;
    let cases = [
        (
            "referral/variants/healthcareservice-performer-leeds-south.json",
            "/",
            "8kx57",
        ),
        (
            "referral/variants/financial-no-performer-manchester.json",
            "/",
            "8lt19",
        ),
        (
            "referral/variants/triage-no-performer-bradford.json",
            "/",
            "8wy01",
        ),
        (
            "referral/variants/message-hackney.json",
            "/$process-message",
            "8hd07",
        ),
    ];
    for (file, path, _) in &cases {
        let answer = h.post(path, &fixture(file), &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{file}: {}", answer.body);
    }
    for (file, _, provider) in &cases {
        let messages = h
            .take(&h.queue(provider), 1, WAIT, Duration::from_millis(200))
            .await;
        let task = entry_of(&messages[0].1, "Task").unwrap();
        assert_eq!(task["status"], "requested", "{file}");
    }

    let first = h
        .post("/", &fixture("referral-transaction-bundle.json"), &[])
        .await;
    let mut second = fixture("referral-transaction-bundle.json");
    second["entry"][0]["resource"]["identifier"][0]["value"] = json!("KBS-SP-2026-00999");
    let second = h.post("/", &second, &[]).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(
        second.body["entry"][1]["response"]["status"], "200 OK",
        "existing Patient reused"
    );
    assert_eq!(
        first.body["entry"][1]["response"]["location"]
            .as_str()
            .unwrap()
            .split('/')
            .nth(1),
        second.body["entry"][1]["response"]["location"]
            .as_str()
            .unwrap()
            .split('/')
            .nth(1)
    );
    let patient_ref = second.body["entry"][0]["resource"]["subject"]["reference"]
        .as_str()
        .unwrap();
    let first_patient = first.body["entry"][1]["response"]["location"]
        .as_str()
        .unwrap();
    assert!(first_patient.starts_with(&format!("{patient_ref}/")));
    h.take(&h.queue("8kx42"), 2, WAIT, SETTLE).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_variants_route_to_their_providers_sqlite() {
    fixture_variants_route_to_their_providers(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_variants_route_to_their_providers_postgres() {
    fixture_variants_route_to_their_providers(Db::Postgres).await;
}

/// True when the OperationOutcome has an error issue located at `expression`.
fn error_at(outcome: &Value, expression: &str) -> bool {
    outcome["issue"].as_array().is_some_and(|issues| {
        issues.iter().any(|i| {
            matches!(i["severity"].as_str(), Some("error" | "fatal"))
                && i["expression"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x == expression))
        })
    })
}
