//! The facts of a referral that routing looks at, pulled out of FHIR JSON.
//!
//! Owns: extracting performer ODS codes / service identifiers, coded reasons and
//! the patient's postcode district from a ServiceRequest and the resources it
//! references (resolved by the caller).
//! Must not: do I/O or keep patient data beyond the postcode district.

use serde_json::Value;

/// NHS ODS organisation code system.
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// What routing needs to know about one referral.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferralFacts {
    /// ODS codes of performer organisations.
    pub performer_ods: Vec<String>,
    /// `system|value` identifiers of performer HealthcareServices (and other identifiers).
    pub performer_services: Vec<String>,
    /// `(system, code)` from category, code and reasonCode.
    pub codes: Vec<(Option<String>, String)>,
    /// Outward code of the patient's home postcode, upper case, e.g. `LS6`.
    pub postcode_district: Option<String>,
}

/// `(system, value)` of every identifier of a resource.
pub(crate) fn identifiers(resource: &Value) -> Vec<(Option<String>, String)> {
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(identifier_pair)
        .collect()
}

fn identifier_pair(ident: &Value) -> Option<(Option<String>, String)> {
    let value = ident.get("value")?.as_str()?.to_string();
    let system = ident
        .get("system")
        .and_then(Value::as_str)
        .map(str::to_string);
    Some((system, value))
}

impl ReferralFacts {
    /// Gather facts. `resolve` maps a reference string (`Organization/x`,
    /// `urn:uuid:…`) to the referenced resource when it is available.
    pub fn from_referral<'a>(
        service_request: &'a Value,
        resolve: &dyn Fn(&str) -> Option<&'a Value>,
    ) -> ReferralFacts {
        let mut facts = ReferralFacts::default();
        for performer in service_request
            .get("performer")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ident) = performer.get("identifier").and_then(identifier_pair) {
                facts.add_identifier(ident);
            }
            let target = performer
                .get("reference")
                .and_then(Value::as_str)
                .and_then(resolve);
            if let Some(target) = target {
                for ident in identifiers(target) {
                    facts.add_identifier(ident);
                }
                if let Some(org) = target
                    .pointer("/providedBy/reference")
                    .and_then(Value::as_str)
                    .and_then(resolve)
                {
                    for ident in identifiers(org) {
                        facts.add_identifier(ident);
                    }
                }
            }
        }
        for key in ["category", "reasonCode"] {
            for concept in service_request
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                facts.add_concept(concept);
            }
        }
        if let Some(code) = service_request.get("code") {
            facts.add_concept(code);
        }
        facts.postcode_district = service_request
            .pointer("/subject/reference")
            .and_then(Value::as_str)
            .and_then(resolve)
            .and_then(home_postcode)
            .and_then(|p| postcode_district(&p));
        facts
    }

    fn add_identifier(&mut self, (system, value): (Option<String>, String)) {
        match system.as_deref() {
            Some(ODS_SYSTEM) => self.performer_ods.push(value),
            Some(s) => self.performer_services.push(format!("{s}|{value}")),
            None => self.performer_services.push(value),
        }
    }

    fn add_concept(&mut self, concept: &Value) {
        for coding in concept
            .get("coding")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(code) = coding.get("code").and_then(Value::as_str) {
                let system = coding
                    .get("system")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                self.codes.push((system, code.to_string()));
            }
        }
    }
}

/// The home address postcode of a Patient (`use` home first, else the first address).
fn home_postcode(patient: &Value) -> Option<String> {
    let addresses = patient.get("address")?.as_array()?;
    addresses
        .iter()
        .find(|a| a.get("use").and_then(Value::as_str) == Some("home"))
        .or_else(|| addresses.first())
        .and_then(|a| a.get("postalCode"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Outward code of a UK postcode: `LS6 1AB` → `LS6`, `ls61ab` → `LS6`; a bare
/// district (`LS6`) is returned as is.
pub fn postcode_district(postcode: &str) -> Option<String> {
    let compact: String = postcode
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if compact.len() < 2 || !compact.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    if compact.len() >= 5 {
        // The inward code is always three characters.
        compact.get(..compact.len() - 3).map(str::to_string)
    } else {
        Some(compact)
    }
}
