//! FHIR R4 `Subscription` resources: checking a new one, and the active ones a Task
//! change is matched against.
//!
//! Owns: what spbridge accepts in a Subscription (channel `rest-hook`, an http(s)
//! endpoint, payload `application/fhir+json` or none, `header` lines, criteria on
//! Task), its server-managed status (`active`, then `error` with a reason), the
//! tenancy it inherits from its creator, and listing the active ones.
//! Must not: deliver notifications (rest_hook.rs) or decide Task rules.

use super::criteria::{Criteria, CriteriaError};
use crate::auth::Principal;
use crate::store::{SearchQuery, Store, StoreError, StoredResource};
use crate::workflow::tenancy;
use serde_json::{json, Value};

/// A Subscription that receives notifications.
#[derive(Debug, Clone)]
pub struct ActiveSubscription {
    pub id: String,
    pub criteria: Criteria,
    pub resource: Value,
}

impl ActiveSubscription {
    /// Whether this Subscription is told about `task`: criteria match, and its
    /// creator's tenancy (copied onto the Subscription) can see the Task.
    pub fn wants(&self, task: &Value) -> bool {
        self.criteria.matches("Task", task) && same_tenant(&self.resource, task)
    }
}

fn same_tenant(subscription: &Value, task: &Value) -> bool {
    let mine: Vec<&str> = tenancy::tags(subscription).collect();
    mine.is_empty() || tenancy::tags(task).any(|t| mine.contains(&t))
}

/// Why a Subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("the body is not a Subscription resource")]
    NotASubscription,
    #[error(transparent)]
    Criteria(#[from] CriteriaError),
    #[error("Subscription.channel.type '{0}' is not supported; spbridge delivers rest-hook notifications")]
    ChannelType(String),
    #[error("Subscription.channel.endpoint must be an absolute http or https URL")]
    Endpoint,
    #[error("Subscription.channel.payload '{0}' is not supported; use application/fhir+json or leave it out")]
    Payload(String),
    #[error("Subscription.channel.header entries must be 'Name: value' lines")]
    Header,
}

/// Check a client's Subscription and make it ready to store: status `active`,
/// the creator's tenancy tags, no stale `error`.
pub fn prepare(
    mut subscription: Value,
    creator: Option<&Principal>,
) -> Result<Value, SubscriptionError> {
    if subscription.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
        return Err(SubscriptionError::NotASubscription);
    }
    let criteria = subscription
        .get("criteria")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Criteria::parse(criteria)?;
    let channel = subscription.get("channel").cloned().unwrap_or(Value::Null);
    let kind = channel
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "rest-hook" {
        return Err(SubscriptionError::ChannelType(kind.to_string()));
    }
    let endpoint = channel
        .get("endpoint")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match endpoint.parse::<hyper::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
        _ => return Err(SubscriptionError::Endpoint),
    }
    if let Some(payload) = channel.get("payload").and_then(Value::as_str) {
        if !payload.starts_with("application/fhir+json") && payload != "application/json" {
            return Err(SubscriptionError::Payload(payload.to_string()));
        }
    }
    for header in headers(&subscription) {
        let (name, _) = header.split_once(':').ok_or(SubscriptionError::Header)?;
        hyper::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| SubscriptionError::Header)?;
    }
    if let Some(map) = subscription.as_object_mut() {
        map.insert("status".into(), json!("active"));
        map.remove("error");
    }
    if let Some(code) = tenancy::restriction_code(creator) {
        tenancy::set_tags(&mut subscription, &[code]);
    }
    Ok(subscription)
}

/// `channel.header` lines.
pub fn headers(subscription: &Value) -> Vec<String> {
    subscription
        .pointer("/channel/header")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Every active Subscription (criteria that no longer parse are skipped).
pub async fn active(store: &Store) -> Result<Vec<ActiveSubscription>, StoreError> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = store
            .search(
                "Subscription",
                &SearchQuery {
                    params: vec![("status".into(), vec!["active".into()])],
                    count: 500,
                    offset,
                    ..Default::default()
                },
            )
            .await?;
        let n = page.matches.len() as u32;
        out.extend(page.matches.into_iter().filter_map(from_stored));
        if n < 500 {
            return Ok(out);
        }
        offset += n;
    }
}

fn from_stored(stored: StoredResource) -> Option<ActiveSubscription> {
    let criteria = Criteria::parse(stored.resource.get("criteria")?.as_str()?).ok()?;
    Some(ActiveSubscription {
        id: stored.id,
        criteria,
        resource: stored.resource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Value {
        json!({"resourceType": "Subscription", "status": "requested", "reason": "outcomes",
            "criteria": "Task?requester=B86642",
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook",
                "payload": "application/fhir+json", "header": ["Authorization: Bearer x"]}})
    }

    #[test]
    fn a_good_subscription_becomes_active() {
        let s = prepare(good(), None).unwrap();
        assert_eq!(s["status"], "active");
    }

    #[test]
    fn bad_channels_are_refused() {
        let mut s = good();
        s["channel"]["type"] = json!("websocket");
        assert!(matches!(
            prepare(s, None),
            Err(SubscriptionError::ChannelType(_))
        ));
        let mut s = good();
        s["channel"]["endpoint"] = json!("ftp://x");
        assert_eq!(prepare(s, None).unwrap_err(), SubscriptionError::Endpoint);
        let mut s = good();
        s["channel"]["header"] = json!(["no colon"]);
        assert_eq!(prepare(s, None).unwrap_err(), SubscriptionError::Header);
    }
}
