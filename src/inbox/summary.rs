//! A referral message Bundle as a provider reads it.

use super::InboxError;
use serde_json::Value;

/// The facts a provider needs to pick a referral up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralSummary {
    pub service_request_id: String,
    pub task_id: String,
    /// Patient name as given in the referral (for the provider's eyes only).
    pub patient: String,
    pub nhs_number: Option<String>,
    /// Who referred: requester display / organisation.
    pub referrer: String,
    /// Why: reason and requested service.
    pub reason: String,
    pub priority: String,
}

impl std::fmt::Display for ReferralSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "New referral  Task/{}  (ServiceRequest/{})",
            self.task_id, self.service_request_id
        )?;
        writeln!(
            f,
            "  who:      {}{}",
            self.patient,
            self.nhs_number
                .as_deref()
                .map(|n| format!("  NHS {n}"))
                .unwrap_or_default()
        )?;
        writeln!(f, "  why:      {}", self.reason)?;
        writeln!(f, "  from:     {}", self.referrer)?;
        write!(f, "  priority: {}", self.priority)
    }
}

fn resources<'a>(bundle: &'a Value, rtype: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("resource"))
        .filter(move |r| r.get("resourceType").and_then(Value::as_str) == Some(rtype))
}

fn concept_text(c: &Value) -> Option<String> {
    c.get("text")
        .and_then(Value::as_str)
        .or_else(|| c.pointer("/coding/0/display").and_then(Value::as_str))
        .map(str::to_string)
}

fn human_name(patient: &Value) -> Option<String> {
    let name = patient.pointer("/name/0")?;
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    let given: Vec<&str> = name
        .get("given")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let family = name
        .get("family")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(format!("{} {family}", given.join(" ")).trim().to_string())
}

/// Read a referral message Bundle (as spbridge sends it to providers).
pub fn summarise(bundle: &Value) -> Result<ReferralSummary, InboxError> {
    let bad = |why: &str| InboxError::BadReferral(why.to_string());
    let sr = resources(bundle, "ServiceRequest")
        .next()
        .ok_or_else(|| bad("no ServiceRequest in the message"))?;
    let task = resources(bundle, "Task")
        .next()
        .ok_or_else(|| bad("no Task in the message"))?;
    let id = |r: &Value| r.get("id").and_then(Value::as_str).map(str::to_string);
    let patient = resources(bundle, "Patient").next();
    let nhs_number = patient.and_then(|p| {
        p.get("identifier")?.as_array()?.iter().find_map(|i| {
            (i.get("system")?.as_str()? == "https://fhir.nhs.uk/Id/nhs-number")
                .then(|| i.get("value")?.as_str().map(str::to_string))
                .flatten()
        })
    });
    let mut reasons: Vec<String> = sr
        .get("reasonCode")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(concept_text)
        .collect();
    if let Some(code) = sr.get("code").and_then(concept_text) {
        reasons.push(format!("for: {code}"));
    }
    let referrer = sr
        .pointer("/requester/display")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            resources(bundle, "Organization")
                .find_map(|o| o.get("name")?.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "(not stated)".into());
    Ok(ReferralSummary {
        service_request_id: id(sr).ok_or_else(|| bad("ServiceRequest has no id"))?,
        task_id: id(task).ok_or_else(|| bad("Task has no id"))?,
        patient: patient
            .and_then(human_name)
            .unwrap_or_else(|| "(not in the message)".into()),
        nhs_number,
        referrer,
        reason: if reasons.is_empty() {
            "(not stated)".into()
        } else {
            reasons.join("; ")
        },
        priority: sr
            .get("priority")
            .and_then(Value::as_str)
            .unwrap_or("routine")
            .to_string(),
    })
}
