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
/// ServiceRequest, `stored[1]` the Task, then companions). `contents` is their JSON text as
/// stored, parallel to `stored` (or shorter, even empty: the rest are serialised here).
pub(crate) fn outbox_row(
    ctx: &MessageContext,
    stored: &[StoredResource],
    contents: &[String],
) -> NewOutboxMessage {
    NewOutboxMessage {
        id: ctx.message_id.clone(),
        destination: REFERRALS_DESTINATION.into(),
        routing_key: provider_routing_key(&ctx.provider.id),
        message_type: EVENT_SERVICEREQUEST_REQUEST.into(),
        content_type: "application/fhir+json".into(),
        profile: Some(ctx.profile.clone()),
        body: message_body(ctx, stored, contents),
        correlation_id: Some(ctx.correlation_id.clone()),
        traceparent: ctx.traceparent.clone(),
        tracestate: ctx.tracestate.clone(),
    }
}

/// A Bundle entry's resource: the JSON text the store wrote, or a value to serialise.
#[derive(Clone, Copy)]
enum EntryResource<'a> {
    Text(&'a str),
    Value(&'a Value),
}

/// The message Bundle as JSON text. Written straight out: each resource is serialised
/// at most once (those just stored not at all: their stored text is reused), never copied
/// into a Bundle `Value` first (that copy and its drop cost about three times the
/// referral's validation).
fn message_body(ctx: &MessageContext, stored: &[StoredResource], contents: &[String]) -> String {
    let full_url = |reference: &str| Value::String(format!("{}/{reference}", ctx.base_url));
    let sr = stored.first();
    let task = stored.get(1);
    let of_stored = |i: usize| match contents.get(i) {
        Some(text) => EntryResource::Text(text),
        None => EntryResource::Value(&stored[i].resource),
    };
    // (Type/id, resource), in Bundle order, each resource once.
    let mut entries: Vec<(String, EntryResource)> = Vec::new();
    fn push<'a>(
        entries: &mut Vec<(String, EntryResource<'a>)>,
        rtype: &str,
        id: &str,
        resource: EntryResource<'a>,
    ) {
        let key = format!("{rtype}/{id}");
        if !entries.iter().any(|(k, _)| *k == key) {
            entries.push((key, resource));
        }
    }
    // Patient and requester next (stored now or fetched), then the Task, then the rest.
    let lookup = |reference: Option<&str>| -> Option<(String, String, EntryResource)> {
        let (rtype, id) = relative_reference(reference?)?;
        let key = format!("{rtype}/{id}");
        stored
            .iter()
            .position(|s| s.resource_type == rtype && s.id == id)
            .map(of_stored)
            .or_else(|| ctx.fetched.get(&key).map(EntryResource::Value))
            .map(|r| (rtype, id, r))
    };
    if let Some(sr) = sr {
        push(&mut entries, &sr.resource_type, &sr.id, of_stored(0));
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
        push(&mut entries, &task.resource_type, &task.id, of_stored(1));
    }
    for (i, s) in stored.iter().enumerate().skip(2) {
        push(&mut entries, &s.resource_type, &s.id, of_stored(i));
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
        let _ = match resource {
            EntryResource::Text(text) => {
                write!(body, ",{{\"fullUrl\":{url},\"resource\":{text}}}")
            }
            EntryResource::Value(value) => {
                write!(body, ",{{\"fullUrl\":{url},\"resource\":{value}}}")
            }
        };
    }
    body.push_str("]}");
    body
}
