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
use std::fmt::Write as _;

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
    NewOutboxMessage {
        id: ctx.message_id.clone(),
        destination: REFERRALS_DESTINATION.into(),
        routing_key: provider_routing_key(&ctx.provider.id),
        message_type: EVENT_SERVICEREQUEST_REQUEST.into(),
        content_type: "application/fhir+json".into(),
        profile: Some(ctx.profile.clone()),
        body: message_body(ctx, stored),
        correlation_id: Some(ctx.correlation_id.clone()),
        traceparent: ctx.traceparent.clone(),
        tracestate: ctx.tracestate.clone(),
    }
}

/// The message Bundle as JSON text. Written straight out: each resource is serialised
/// once, never copied into a Bundle `Value` first (that copy and its drop cost about three
/// times the referral's validation).
fn message_body(ctx: &MessageContext, stored: &[StoredResource]) -> String {
    let full_url = |reference: &str| Value::String(format!("{}/{reference}", ctx.base_url));
    let sr = stored.first();
    let task = stored.get(1);
    // (Type/id, resource), in Bundle order, each resource once.
    let mut entries: Vec<(String, &Value)> = Vec::new();
    fn push<'a>(
        entries: &mut Vec<(String, &'a Value)>,
        rtype: &str,
        id: &str,
        resource: &'a Value,
    ) {
        let key = format!("{rtype}/{id}");
        if !entries.iter().any(|(k, _)| *k == key) {
            entries.push((key, resource));
        }
    }
    // Patient and requester next (stored now or fetched), then the Task, then the rest.
    let lookup = |reference: Option<&str>| -> Option<(String, String, &Value)> {
        let (rtype, id) = relative_reference(reference?)?;
        let key = format!("{rtype}/{id}");
        stored
            .iter()
            .find(|s| s.resource_type == rtype && s.id == id)
            .map(|s| &s.resource)
            .or_else(|| ctx.fetched.get(&key))
            .map(|r| (rtype, id, r))
    };
    if let Some(sr) = sr {
        push(&mut entries, &sr.resource_type, &sr.id, &sr.resource);
    }
    let sr_value = sr.map(|s| &s.resource);
    for pointer in ["/subject/reference", "/requester/reference"] {
        if let Some((rtype, id, r)) = lookup(
            sr_value
                .and_then(|v| v.pointer(pointer))
                .and_then(Value::as_str),
        ) {
            push(&mut entries, &rtype, &id, r);
        }
    }
    if let Some(task) = task {
        push(&mut entries, &task.resource_type, &task.id, &task.resource);
    }
    for s in stored.iter().skip(2) {
        push(&mut entries, &s.resource_type, &s.id, &s.resource);
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
        "focus": sr.map(|s| vec![json!({"reference": full_url(&s.reference())})]).unwrap_or_default(),
    });
    if let (Some(sender), Value::Object(map)) = (sender, &mut header) {
        map.insert("sender".into(), sender);
    }
    let now = instant_text(now_millis());
    let head = json!({
        "resourceType": "Bundle",
        "id": ctx.message_id,
        "meta": {"lastUpdated": now},
        "identifier": {"system": "https://tools.ietf.org/html/rfc4122", "value": ctx.message_id},
        "type": "message",
        "timestamp": now,
    })
    .to_string();
    // `head` is a JSON object: reopen it to append `entry`.
    let mut body = String::with_capacity(head.len() + 1024 * (entries.len() + 1));
    body.push_str(head.strip_suffix('}').unwrap_or(&head));
    body.push_str(",\"entry\":[");
    let header_entry = json!({"fullUrl": format!("urn:uuid:{header_id}"), "resource": header});
    // Writing JSON into a `String` cannot fail.
    let _ = write!(body, "{header_entry}");
    for (key, resource) in &entries {
        let url = full_url(key);
        let _ = write!(body, ",{{\"fullUrl\":{url},\"resource\":{resource}}}");
    }
    body.push_str("]}");
    body
}
