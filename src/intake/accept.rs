//! Accepting a referral: the one path every entry point (single POST, transaction,
//! message) ends in.
//!
//! Owns: the duplicate guard (identifier and request-id keys), routing the
//! referral, creating its Task, and committing the ServiceRequest, its companions,
//! the Task and the outbox row in ONE store transaction; validation helpers that
//! re-root issue locations for Bundle entries.
//! Must not: shape HTTP responses (callers do) or publish anything.

use super::{provider_message, Intake};
use crate::outcome::OperationOutcome;
use crate::routing::{Provider, ReferralFacts, ODS_SYSTEM, PROVIDER_ID_SYSTEM};
use crate::store::{
    instant_text, now_millis, CommitOutcome, IdempotencyClaim, ResourceWrite, StoreError,
    StoredResource, WriteUnit,
};
use crate::workflow::tenancy;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// A resource that arrives with the referral and is stored with it.
#[derive(Debug, Clone)]
pub(crate) struct Companion {
    pub resource_type: String,
    pub id: String,
    pub resource: Value,
}

/// A referral ready to accept: ids assigned, references rewritten, validated.
#[derive(Debug, Clone)]
pub(crate) struct Submission {
    pub service_request_id: String,
    pub service_request: Value,
    pub companions: Vec<Companion>,
    /// Further idempotency keys (e.g. the message's `X-Request-ID`).
    pub extra_keys: Vec<String>,
    /// Extra facts kept with the keys, handed back to a duplicate.
    pub extra_refs: Map<String, Value>,
    pub correlation_id: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub base_url: String,
    /// The verified caller (`None` with auth off).
    pub principal: Option<std::sync::Arc<crate::auth::Principal>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub service_request: StoredResource,
    pub task: StoredResource,
    pub companions: Vec<StoredResource>,
    pub provider: Provider,
}

#[derive(Debug, Clone)]
pub(crate) enum AcceptOutcome {
    Accepted(Box<Accepted>),
    /// Already accepted earlier; the refs stored then.
    Duplicate(Value),
}

/// Idempotency keys of a ServiceRequest's business identifiers.
pub(crate) fn identifier_keys(service_request: &Value) -> Vec<String> {
    service_request
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let system = i.get("system")?.as_str()?;
            let value = i.get("value")?.as_str()?;
            Some(format!("ServiceRequest.identifier|{system}|{value}"))
        })
        .collect()
}

/// `Type/id` of a literal reference (relative or absolute URL).
pub(crate) fn relative_reference(reference: &str) -> Option<(String, String)> {
    let mut parts = reference.rsplit('/');
    let id = parts.next()?;
    let rtype = parts.next()?;
    let starts_upper = rtype.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    (starts_upper && !id.is_empty()).then(|| (rtype.to_string(), id.to_string()))
}

impl Intake {
    /// Validate one resource; issue locations are re-rooted under `root`
    /// (e.g. `Bundle.entry[2].resource`) when given.
    pub(crate) fn validate_resource(
        &self,
        resource: &Value,
        root: Option<&str>,
        outcome: &mut OperationOutcome,
    ) {
        let rtype = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let profile = (rtype == "ServiceRequest").then_some(self.config.referral_profile.as_str());
        let found = crate::telemetry::spans::validation(rtype, profile, || {
            self.validator.validate(resource, profile)
        });
        for mut issue in found.issues {
            if let Some(root) = root {
                issue.expression = issue
                    .expression
                    .into_iter()
                    .map(|e| match e.strip_prefix(rtype) {
                        Some(rest) if rest.is_empty() || rest.starts_with('.') => {
                            format!("{root}{rest}")
                        }
                        _ => format!("{root}.{e}"),
                    })
                    .collect();
            }
            outcome.push(issue);
        }
    }

    /// Refs stored with an earlier acceptance of any of these keys.
    pub(crate) async fn find_duplicate(
        &self,
        keys: &[String],
    ) -> Result<Option<Value>, StoreError> {
        for key in keys {
            if let Some(refs) = self.store.idempotency_refs(key).await? {
                return Ok(Some(refs));
            }
        }
        Ok(None)
    }

    /// Route, create the Task, commit everything with the outbox row.
    pub(crate) async fn accept(&self, submission: Submission) -> Result<AcceptOutcome, StoreError> {
        let mut keys = identifier_keys(&submission.service_request);
        keys.extend(submission.extra_keys.iter().cloned());
        // No look-up of the keys here: the commit claims them and answers `Duplicate`
        // when one is taken (entry points look them up before validating).
        // Everything routing and the provider message may need, by reference.
        let mut known: HashMap<String, Value> = HashMap::new();
        for c in &submission.companions {
            known.insert(format!("{}/{}", c.resource_type, c.id), c.resource.clone());
        }
        let sr = &submission.service_request;
        let mut wanted: Vec<&str> = Vec::new();
        for pointer in ["/subject/reference", "/requester/reference"] {
            wanted.extend(sr.pointer(pointer).and_then(Value::as_str));
        }
        for p in sr
            .get("performer")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            wanted.extend(p.get("reference").and_then(Value::as_str));
        }
        // Referenced resources not sent with the referral: read from the store in one query.
        let mut missing: Vec<(String, String)> = Vec::new();
        for reference in wanted {
            let Some((rtype, id)) = relative_reference(reference) else {
                continue;
            };
            let key = format!("{rtype}/{id}");
            if !known.contains_key(&key) && !missing.iter().any(|(t, i)| *t == rtype && *i == id) {
                missing.push((rtype, id));
            }
        }
        let fetched: HashMap<String, Value> = self
            .store
            .read_many(&missing)
            .await?
            .into_iter()
            .map(|found| (found.reference(), found.resource))
            .collect();
        let resolve = |reference: &str| -> Option<&Value> {
            let (rtype, id) = relative_reference(reference)?;
            let key = format!("{rtype}/{id}");
            known
                .get(&key)
                .or_else(|| fetched.get(&key))
                .or_else(|| self.router.directory_resource(&key))
        };
        let decision = self
            .router
            .route(&ReferralFacts::from_referral(sr, &resolve));
        let requester = RequesterOrganisation {
            ods: tenancy::requester_organisation(submission.principal.as_deref(), sr, &resolve),
            reference: requester_organisation_reference(sr, &resolve),
        };
        let provider = decision.provider.clone();
        tracing::info!(provider = %provider.id, reason = ?decision.reason, "referral routed");

        let task_id = crate::store::new_id();
        let task = new_task(&submission, &provider, &requester);
        let mut tags = vec![tenancy::provider_tag(&provider.id)];
        tags.extend(requester.ods.as_deref().map(tenancy::requester_tag));
        let mut service_request = submission.service_request.clone();
        tenancy::set_tags(&mut service_request, &tags);
        let mut refs = submission.extra_refs.clone();
        refs.insert(
            "serviceRequest".into(),
            json!(format!("ServiceRequest/{}", submission.service_request_id)),
        );
        refs.insert("task".into(), json!(format!("Task/{task_id}")));
        refs.insert("provider".into(), json!(provider.id));
        let refs = Value::Object(refs);

        let mut writes = vec![
            ResourceWrite {
                resource_type: "ServiceRequest".into(),
                id: submission.service_request_id.clone(),
                resource: service_request,
                if_match: None,
            },
            ResourceWrite {
                resource_type: "Task".into(),
                id: task_id,
                resource: task,
                if_match: None,
            },
        ];
        for c in &submission.companions {
            // Resources that come with a referral belong to the same tenants.
            let mut resource = c.resource.clone();
            tenancy::set_tags(&mut resource, &tags);
            writes.push(ResourceWrite {
                resource_type: c.resource_type.clone(),
                id: c.id.clone(),
                resource,
                if_match: None,
            });
        }
        let trace = crate::telemetry::propagation::current_traceparent().or_else(|| {
            let tp = submission.traceparent.clone()?;
            Some((tp, submission.tracestate.clone()))
        });
        let context = provider_message::MessageContext {
            message_id: crate::store::new_id(),
            provider: provider.clone(),
            source_endpoint: self.config.source_endpoint.clone(),
            base_url: submission.base_url.clone(),
            profile: sr
                .pointer("/meta/profile/0")
                .and_then(Value::as_str)
                .unwrap_or(&self.config.referral_profile)
                .to_string(),
            correlation_id: submission.correlation_id.clone(),
            // The relay's publish span continues this request's trace (the server span's
            // context when traces are exported, else the caller's traceparent as sent).
            traceparent: trace.as_ref().map(|t| t.0.clone()),
            tracestate: trace.and_then(|t| t.1),
            fetched: fetched.clone(),
        };
        let unit = WriteUnit {
            writes,
            idempotency: keys
                .into_iter()
                .map(|key| IdempotencyClaim {
                    key,
                    refs: refs.clone(),
                })
                .collect(),
            outbox: Vec::new(),
            outbox_from_stored: Some(Box::new(
                move |stored: &[StoredResource], contents: &[String]| {
                    vec![provider_message::outbox_row(&context, stored, contents)]
                },
            )),
            notifications: Vec::new(),
            search_rows: Vec::new(),
        };
        match self.store.commit(unit).await? {
            CommitOutcome::Duplicate { refs, .. } => Ok(AcceptOutcome::Duplicate(refs)),
            CommitOutcome::Committed(mut stored) => {
                let companions = stored.split_off(2.min(stored.len()));
                let mut it = stored.into_iter();
                match (it.next(), it.next()) {
                    (Some(service_request), Some(task)) => {
                        crate::telemetry::metrics::referral_accepted(&provider.id);
                        Ok(AcceptOutcome::Accepted(Box::new(Accepted {
                            service_request,
                            task,
                            companions,
                            provider,
                        })))
                    }
                    _ => Err(StoreError::Corrupt(
                        "commit returned too few resources".into(),
                    )),
                }
            }
        }
    }
}

/// The organisation that made a referral, as far as it is known.
struct RequesterOrganisation {
    ods: Option<String>,
    /// `Organization/<id>` when the referral names the Organization resource.
    reference: Option<String>,
}

/// `Organization/<id>` of the requester: the requester itself, or a PractitionerRole's organization.
fn requester_organisation_reference<'a>(
    sr: &'a Value,
    resolve: &dyn Fn(&str) -> Option<&'a Value>,
) -> Option<String> {
    let reference = sr.pointer("/requester/reference").and_then(Value::as_str)?;
    let (rtype, _) = relative_reference(reference)?;
    let org_ref = match rtype.as_str() {
        "Organization" => reference,
        "PractitionerRole" => resolve(reference)?
            .pointer("/organization/reference")
            .and_then(Value::as_str)?,
        _ => return None,
    };
    let (rtype, id) = relative_reference(org_ref)?;
    (rtype == "Organization").then(|| format!("Organization/{id}"))
}

/// The Task that tracks a referral at its provider. Its `requester` is the referring
/// organisation (ODS identifier, and reference when known), so a GP system can search
/// and subscribe with `Task?requester=…`; tenancy tags name requester and provider.
fn new_task(
    submission: &Submission,
    provider: &Provider,
    requester: &RequesterOrganisation,
) -> Value {
    let sr = &submission.service_request;
    let sr_ref = json!({"reference": format!("ServiceRequest/{}", submission.service_request_id)});
    let owner = match &provider.ods_code {
        Some(ods) => {
            json!({"identifier": {"system": ODS_SYSTEM, "value": ods}, "display": provider.name})
        }
        None => {
            json!({"identifier": {"system": PROVIDER_ID_SYSTEM, "value": provider.id}, "display": provider.name})
        }
    };
    let mut task = json!({
        "resourceType": "Task",
        "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Task"]},
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
        "basedOn": [sr_ref.clone()],
        "focus": sr_ref,
        "authoredOn": instant_text(now_millis()),
        "owner": owner,
    });
    if let Value::Object(map) = &mut task {
        if let Some(subject) = sr.get("subject") {
            map.insert("for".into(), subject.clone());
        }
        match &requester.ods {
            Some(ods) => {
                let mut reference = json!({"identifier": {"system": ODS_SYSTEM, "value": ods}});
                if let Some(r) = &requester.reference {
                    reference["reference"] = json!(r);
                }
                map.insert("requester".into(), reference);
            }
            None => {
                if let Some(requester) = sr.get("requester") {
                    map.insert("requester".into(), requester.clone());
                }
            }
        }
        if let Some(priority) = sr.get("priority") {
            map.insert("priority".into(), priority.clone());
        }
    }
    let mut tags = vec![tenancy::provider_tag(&provider.id)];
    tags.extend(requester.ods.as_deref().map(tenancy::requester_tag));
    tenancy::set_tags(&mut task, &tags);
    task
}
