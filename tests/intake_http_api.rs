//! The REST surface over a real socket: CapabilityStatement, content negotiation,
//! limits and error answers (always OperationOutcome), Prefer, If-None-Exist,
//! reads, paging, and HTTP/2.

#[path = "support/intake.rs"]
mod common;

use bytes::Bytes;
use common::{fixture, Db, Harness};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

fn referral(value: &str) -> Value {
    let mut sr = fixture("referral/servicerequest.json");
    sr["identifier"][0]["value"] = json!(value);
    sr
}

fn is_outcome(body: &Value, code: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_surface_answers_in_fhir() {
    let h = Harness::start(Db::Sqlite).await;

    let meta = h.get("/metadata").await;
    assert_eq!(meta.status, StatusCode::OK);
    assert!(meta
        .header("content-type")
        .unwrap()
        .starts_with("application/fhir+json"));
    assert!(
        uuid::Uuid::parse_str(meta.header("x-request-id").unwrap()).is_ok(),
        "request id generated"
    );
    let cs = &meta.body;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    let sr = resources
        .iter()
        .find(|r| r["type"] == "ServiceRequest")
        .unwrap();
    let codes: Vec<&str> = sr["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"create") && codes.contains(&"search-type") && codes.contains(&"read"));
    assert!(
        !codes.contains(&"update") && !codes.contains(&"delete"),
        "only what is implemented"
    );
    assert_eq!(cs["rest"][0]["operation"][0]["name"], "process-message");

    let xml = h
        .request(
            Method::GET,
            "/metadata",
            None,
            &[("accept", "application/fhir+xml")],
        )
        .await;
    assert_eq!(xml.status, StatusCode::NOT_ACCEPTABLE);
    is_outcome(&xml.body, "not-supported");
    assert_eq!(
        h.get("/metadata?_format=xml").await.status,
        StatusCode::NOT_ACCEPTABLE
    );

    let sr = referral("HTTP-0001");
    let wrong_type = h
        .post(
            "/ServiceRequest",
            &sr,
            &[("content-type", "application/fhir+xml")],
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    is_outcome(&wrong_type.body, "not-supported");

    let malformed = Request::post(format!("{}/ServiceRequest", h.base()))
        .header("content-type", "application/fhir+json")
        .body(Full::new(Bytes::from_static(b"{\"resourceType\": ")))
        .unwrap();
    let malformed = h.send(malformed).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    is_outcome(&malformed.body, "structure");

    let mut huge = sr.clone();
    huge["note"] = json!([{"text": "x".repeat(300 * 1024)}]);
    let too_big = h.post("/ServiceRequest", &huge, &[]).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    is_outcome(&too_big.body, "too-long");

    let not_a_sr = h
        .post("/ServiceRequest", &json!({"resourceType": "Patient"}), &[])
        .await;
    assert_eq!(not_a_sr.status, StatusCode::BAD_REQUEST);
    let nowhere = h.get("/Nowhere").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    is_outcome(&nowhere.body, "not-found");
    let delete = h
        .request(Method::DELETE, "/ServiceRequest", None, &[])
        .await;
    assert_eq!(delete.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(delete.header("allow"), Some("GET, POST"));
    assert_eq!(
        h.get("/ServiceRequest/unknown").await.status,
        StatusCode::NOT_FOUND
    );
    let bad_param = h.get("/Task?colour=blue").await;
    assert_eq!(bad_param.status, StatusCode::BAD_REQUEST);
    is_outcome(&bad_param.body, "not-supported");

    // Prefer: return=OperationOutcome, then If-None-Exist finds it.
    let created = h
        .post(
            "/ServiceRequest",
            &sr,
            &[("prefer", "return=OperationOutcome")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    is_outcome(&created.body, "informational");
    let location = created.header("location").unwrap().to_string();
    let id = location.rsplit('/').nth(2).unwrap().to_string();
    let mut other = referral("HTTP-0002");
    other["identifier"][0]["value"] = json!("HTTP-0002");
    let conditional = h
        .post(
            "/ServiceRequest",
            &other,
            &[(
                "if-none-exist",
                "identifier=https://fhir.spbridge.org/Id/gp-referral/B86642|HTTP-0001",
            )],
        )
        .await;
    assert_eq!(conditional.status, StatusCode::OK);
    assert_eq!(conditional.body["id"], id.as_str());
    let vread = h.get(&format!("/ServiceRequest/{id}/_history/1")).await;
    assert_eq!(vread.status, StatusCode::OK);
    assert_eq!(vread.header("etag"), Some("W/\"1\""));

    // Paging with self/next links.
    for n in 3..=4 {
        let answer = h
            .post("/ServiceRequest", &referral(&format!("HTTP-000{n}")), &[])
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
    }
    let page = h.get("/ServiceRequest?status=active&_count=2").await;
    assert_eq!(page.body["type"], "searchset");
    assert_eq!(page.body["total"], 3);
    assert_eq!(page.body["entry"].as_array().unwrap().len(), 2);
    let links = page.body["link"].as_array().unwrap();
    assert!(links.iter().any(|l| l["relation"] == "self"));
    let next = links.iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap();
    let next_page = h.get(next.strip_prefix(&h.base()).unwrap()).await;
    assert_eq!(next_page.body["entry"].as_array().unwrap().len(), 1);
    assert!(!next_page.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["relation"] == "next"));

    // HTTP/2 with prior knowledge on the same listener.
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let response = h2
        .request(
            Request::get(format!("{}/metadata", h.base()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.into_body().collect().await.unwrap();

    assert_eq!(h.get("/livez").await.status, StatusCode::OK);
    h.finish().await;
}
