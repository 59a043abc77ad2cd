//! The second half of the demo: one provider's inbox, its answers, and the GP's
//! rest-hook hearing each change.

use crate::broker::Topology;
use crate::inbox::{self, InboxSettings, TaskAction};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The provider whose inbox the demo runs (North Leeds Community Connectors).
pub const LOOP_PROVIDER: &str = "8kx42";
/// The referring surgery (Kirkstall Brook Surgery).
pub const LOOP_REQUESTER: &str = "B86642";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A GP system's rest-hook endpoint: prints each notification as it arrives.
pub struct RestHook {
    pub url: String,
    received: Arc<Mutex<usize>>,
}

impl RestHook {
    pub async fn start() -> Option<RestHook> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let url = format!("http://{}/gp-system/fhir", listener.local_addr().ok()?);
        let received = Arc::new(Mutex::new(0usize));
        let count = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let task: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            if let Ok(mut n) = count.lock() {
                                *n += 1;
                            }
                            println!(
                                "    GP rest-hook ← PUT {path}  status={}  version={}{}",
                                task["status"].as_str().unwrap_or("?"),
                                task["meta"]["versionId"].as_str().unwrap_or("?"),
                                task["output"][1]["valueString"]
                                    .as_str()
                                    .map(|o| format!("  outcome: {o}"))
                                    .unwrap_or_default()
                            );
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Some(RestHook { url, received })
    }

    fn count(&self) -> usize {
        self.received.lock().map(|n| *n).unwrap_or(0)
    }
}

/// One HTTP call; status and JSON body.
pub async fn call(
    client: &HttpClient,
    method: hyper::Method,
    url: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let Ok(request) = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/fhir+json")
        .body(Full::new(bytes))
    else {
        return (0, Value::Null);
    };
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Inbox → accept/start/complete → notifications → history.
pub async fn task_loop(
    running: &crate::service::Running,
    connection: &lapin::Connection,
    topology: &Topology,
    client: &HttpClient,
    hook: &Option<RestHook>,
    broker: &crate::config::BrokerConfig,
) {
    let settings = InboxSettings {
        amqp_url: broker.url.clone(),
        tls: broker.tls_files(),
        prefix: topology.prefix.clone(),
        provider_id: LOOP_PROVIDER.into(),
    };
    let queue = topology.provider_queue(LOOP_PROVIDER);
    let waiting = match connection.create_channel().await {
        Ok(channel) => channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .map(|q| q.message_count() as usize)
            .unwrap_or(0),
        Err(_) => 0,
    };
    println!("\nThe provider inbox ({queue}, `spbridge inbox --provider {LOOP_PROVIDER}`):");
    let mut tasks = Vec::new();
    let handled = inbox::run(&settings, Some(waiting), |summary| {
        println!(
            "  Task/{} from {} — {} — recorded as received",
            summary.task_id, summary.referrer, summary.reason
        );
        tasks.push(summary.task_id.clone());
    })
    .await;
    if let Err(err) = handled {
        println!("  inbox stopped: {err}");
        return;
    }
    let Some(task_id) = tasks.first() else {
        println!("  (no referral reached this provider)");
        return;
    };
    println!(
        "\nThe provider answers Task/{task_id} (`spbridge task {task_id} accept|start|complete`):"
    );
    for action in [
        TaskAction::Accept,
        TaskAction::Start,
        TaskAction::Complete {
            outcome: "Eight weeks of befriending calls; now attends two community groups".into(),
            code: "support-completed".into(),
        },
    ] {
        let label = format!("{action:?}");
        match inbox::send_update(&settings, &action.task_update(task_id)).await {
            Ok(id) => println!(
                "  sent {} (message {id})",
                label.split([' ', '{']).next().unwrap_or("")
            ),
            Err(err) => println!("  could not send: {err}"),
        }
    }
    // Wait for the four changes (received, accepted, in-progress, completed).
    for _ in 0..100 {
        if hook.as_ref().is_none_or(|h| h.count() >= 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, history) = call(
        client,
        hyper::Method::GET,
        &format!("{}/Task/{task_id}/_history", running.base_url),
        None,
    )
    .await;
    let statuses: Vec<&str> = history["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["status"].as_str())
        .collect();
    println!(
        "\nGET /Task/{task_id}/_history (newest first): {}",
        statuses.join(" ← ")
    );
    let (_, task) = call(
        client,
        hyper::Method::GET,
        &format!("{}/Task/{task_id}", running.base_url),
        None,
    )
    .await;
    if let Some(sr) = task["basedOn"][0]["reference"].as_str() {
        let (_, sr_body) = call(
            client,
            hyper::Method::GET,
            &format!("{}/{sr}", running.base_url),
            None,
        )
        .await;
        println!(
            "GET /{sr}: status {}",
            sr_body["status"].as_str().unwrap_or("?")
        );
    }
}
