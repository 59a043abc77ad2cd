//! The message a provider receives for a new referral, as an outbox row.
//!
//! Owns: the FHIR message Bundle (MessageHeader event `servicerequest-request`,
//! destination the provider, focus the ServiceRequest; entries ServiceRequest,
//! Patient, requester, Task and the other resources that came with the referral)
//! and the outbox row's routing key, type, profile and trace context.
//! Must not: publish (the broker relay does) or choose the provider (routing does).

use super::accept::relative_reference;
use super::{EVENT_SERVICEREQUEST_REQUEST, MESSAGE_EVENTS_SYSTEM, REFERRALS_DESTINATION};
use crate::routing::Provider;
use crate::store::{instant_text, now_millis, NewOutboxMessage, StoredResource};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Everything fixed before the commit.
pub(crate) struct MessageContext {
    pub message_id: String,
    pub provider: Provider,
    pub source_endpoint: String,
    pub base_url: String,
    pub profile: String,
    pub correlation_id: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// Referenced resources already in the store (not written with this referral).
    pub fetched: HashMap<String, Value>,
}

/// Routing key of a provider's queue binding.
pub fn provider_routing_key(provider_id: &str) -> String {
    format!("provider.{provider_id}")
}

/// Build the outbox row from the just-stamped resources (`stored[0]` is the
/// ServiceRequest, `stored[1]` the Task, then companions).
pub(crate) fn outbox_row(ctx: &MessageContext, stored: &[StoredResource]) -> NewOutboxMessage {
    let body = message_bundle(ctx, stored);
    NewOutboxMessage {
        id: ctx.message_id.clone(),
        destination: REFERRALS_DESTINATION.into(),
        routing_key: provider_routing_key(&ctx.provider.id),
        message_type: EVENT_SERVICEREQUEST_REQUEST.into(),
        content_type: "application/fhir+json".into(),
        profile: Some(ctx.profile.clone()),
        body: body.to_string(),
        correlation_id: Some(ctx.correlation_id.clone()),
        traceparent: ctx.traceparent.clone(),
        tracestate: ctx.tracestate.clone(),
    }
}

fn message_bundle(ctx: &MessageContext, stored: &[StoredResource]) -> Value {
    let full_url = |rtype: &str, id: &str| format!("{}/{rtype}/{id}", ctx.base_url);
    let sr = stored.first();
    let task = stored.get(1);
    let mut entries: Vec<Value> = Vec::new();
    let mut included: Vec<String> = Vec::new();
    let mut push = |rtype: &str, id: &str, resource: &Value, entries: &mut Vec<Value>| {
        let key = format!("{rtype}/{id}");
        if !included.contains(&key) {
            included.push(key);
            entries.push(json!({"fullUrl": full_url(rtype, id), "resource": resource}));
        }
    };
    if let Some(sr) = sr {
        push(&sr.resource_type, &sr.id, &sr.resource, &mut entries);
    }
    // Patient and requester next (stored now or fetched), then the Task, then the rest.
    let lookup = |reference: Option<&str>| -> Option<(String, String, Value)> {
        let (rtype, id) = relative_reference(reference?)?;
        let key = format!("{rtype}/{id}");
        stored
            .iter()
            .find(|s| s.resource_type == rtype && s.id == id)
            .map(|s| s.resource.clone())
            .or_else(|| ctx.fetched.get(&key).cloned())
            .map(|r| (rtype, id, r))
    };
    let sr_value = sr.map(|s| &s.resource);
    for pointer in ["/subject/reference", "/requester/reference"] {
        if let Some((rtype, id, r)) = lookup(
            sr_value
                .and_then(|v| v.pointer(pointer))
                .and_then(Value::as_str),
        ) {
            push(&rtype, &id, &r, &mut entries);
        }
    }
    if let Some(task) = task {
        push(&task.resource_type, &task.id, &task.resource, &mut entries);
    }
    for s in stored.iter().skip(2) {
        push(&s.resource_type, &s.id, &s.resource, &mut entries);
    }
    let header_id = uuid::Uuid::new_v4().to_string();
    let sender = sr_value.and_then(|v| v.get("requester")).cloned();
    let mut header = json!({
        "resourceType": "MessageHeader",
        "id": header_id,
        "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-MessageHeader"]},
        "eventCoding": {"system": MESSAGE_EVENTS_SYSTEM, "code": EVENT_SERVICEREQUEST_REQUEST,
                        "display": "Referral request"},
        "destination": [{
            "name": ctx.provider.name,
            "endpoint": format!("urn:spbridge:provider:{}", ctx.provider.id),
            "receiver": task.and_then(|t| t.resource.get("owner")).cloned()
                .unwrap_or_else(|| json!({"display": ctx.provider.name})),
        }],
        "source": {"name": "spbridge", "endpoint": ctx.source_endpoint},
        "focus": sr.map(|s| vec![json!({"reference": full_url(&s.resource_type, &s.id)})]).unwrap_or_default(),
    });
    if let (Some(sender), Value::Object(map)) = (sender, &mut header) {
        map.insert("sender".into(), sender);
    }
    entries.insert(
        0,
        json!({"fullUrl": format!("urn:uuid:{header_id}"), "resource": header}),
    );
    json!({
        "resourceType": "Bundle",
        "id": ctx.message_id,
        "meta": {"lastUpdated": instant_text(now_millis())},
        "identifier": {"system": "https://tools.ietf.org/html/rfc4122", "value": ctx.message_id},
        "type": "message",
        "timestamp": instant_text(now_millis()),
        "entry": entries,
    })
}
