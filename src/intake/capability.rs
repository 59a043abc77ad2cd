//! `GET /metadata`: the CapabilityStatement, listing exactly what is implemented.
//!
//! Owns: the CapabilityStatement content. It is built from the same tables the
//! dispatcher and the store use (readable/searchable types, search parameters),
//! so it cannot claim more than exists.
//! Must not: advertise interactions that are not routed.

use super::dispatch::{READABLE_TYPES, SEARCHABLE_TYPES};
use super::Intake;
use crate::http::{ApiRequest, ApiResponse};
use crate::store::supported_params;
use hyper::StatusCode;
use serde_json::{json, Value};

pub(crate) fn handle(intake: &Intake, request: &ApiRequest) -> ApiResponse {
    ApiResponse::json(
        StatusCode::OK,
        capability_statement(intake, &request.base_url),
    )
}

fn param_type(name: &str) -> &'static str {
    match name {
        "identifier" | "status" => "token",
        _ => "reference",
    }
}

/// The CapabilityStatement for this server.
pub fn capability_statement(intake: &Intake, base_url: &str) -> Value {
    let resources: Vec<Value> = READABLE_TYPES
        .iter()
        .map(|t| {
            let mut interactions = vec![json!({"code": "read"}), json!({"code": "vread"})];
            let mut entry = json!({"type": t, "versioning": "versioned", "readHistory": true,
                                   "updateCreate": false});
            interactions.push(json!({"code": "history-instance"}));
            if SEARCHABLE_TYPES.contains(t) {
                interactions.push(json!({"code": "search-type"}));
                let mut params: Vec<Value> = supported_params(t)
                    .iter()
                    .map(|p| json!({"name": p, "type": param_type(p)}))
                    .collect();
                params.push(json!({"name": "_id", "type": "token"}));
                params.push(json!({"name": "_lastUpdated", "type": "date"}));
                entry["searchParam"] = json!(params);
            }
            if *t == "ServiceRequest" {
                interactions.push(json!({"code": "create"}));
                entry["conditionalCreate"] = json!(true);
                entry["supportedProfile"] = json!([intake.config.referral_profile]);
            }
            if *t == "Task" {
                interactions.push(json!({"code": "update"}));
                interactions.push(json!({"code": "patch"}));
                entry["conditionalUpdate"] = json!(false);
                entry["supportedProfile"] = json!([
                    "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Task",
                    intake.workflow_task_profile()
                ]);
            }
            if *t == "Subscription" {
                interactions.push(json!({"code": "create"}));
            }
            entry["interaction"] = json!(interactions);
            entry
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": crate::store::instant_text(crate::store::now_millis()),
        "kind": "instance",
        "software": {"name": "spbridge", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "spbridge social-prescribing referral intake", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "transaction"}],
            "operation": [{
                "name": "process-message",
                "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message"
            }]
        }],
        "messaging": [{
            "supportedMessage": [{
                "mode": "receiver",
                "definition": "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral"
            }, {
                "mode": "sender",
                "definition": "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral"
            }]
        }]
    })
}
