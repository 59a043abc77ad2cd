//! Routing: which provider receives a referral.
//!
//! Owns: the provider list (config + provider directory of Organization /
//! HealthcareService resources), and the decision order — a known `performer`
//! (ODS code or HealthcareService identifier) first, then the configured rules on
//! category/code/reasonCode and the patient's postcode district, then the triage
//! provider. A referral is never dropped for want of a route.
//! Must not: do I/O (the caller loads directory files and resolves references).

mod facts;

use crate::config::RoutingConfig;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

pub use facts::{postcode_district, ReferralFacts, ODS_SYSTEM};

/// Identifier system a directory resource uses to name its spbridge provider id.
pub const PROVIDER_ID_SYSTEM: &str = "https://fhir.spbridge.org/Id/provider";

/// Why the provider directory or routing table is unusable.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RoutingError {
    #[error("routing rule {index} names unknown provider {provider:?}")]
    UnknownRuleProvider { index: usize, provider: String },
    #[error("directory resource {0} has an invalid provider id (expected [a-z0-9-])")]
    InvalidProviderId(String),
}

/// A provider that can receive referrals.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub id: String,
    pub name: String,
    /// ODS code of the provider organisation, if known (used as `Task.owner`).
    pub ods_code: Option<String>,
}

/// How a provider was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteReason {
    Performer,
    Rule(usize),
    Triage,
}

/// The routing decision for one referral.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteDecision {
    pub provider: Provider,
    pub reason: RouteReason,
}

#[derive(Debug, Clone)]
struct Rule {
    provider: String,
    codes: Vec<String>,
    districts: Vec<String>,
}

/// The compiled routing table; immutable and shared.
#[derive(Debug, Clone)]
pub struct Router {
    providers: BTreeMap<String, Provider>,
    by_ods: HashMap<String, String>,
    by_service: HashMap<String, String>,
    rules: Vec<Rule>,
    triage: String,
    /// Directory resources by `Type/id`, for resolving performer references.
    directory: HashMap<String, Value>,
}

impl Router {
    /// Build from configuration and the provider directory's resources.
    pub fn new(config: &RoutingConfig, directory: &[Value]) -> Result<Router, RoutingError> {
        let mut router = Router {
            providers: BTreeMap::new(),
            by_ods: HashMap::new(),
            by_service: HashMap::new(),
            rules: Vec::new(),
            triage: config.triage_provider.clone(),
            directory: HashMap::new(),
        };
        for p in &config.providers {
            router.add_provider(&p.id, &p.name, p.ods_codes.first().cloned());
            for ods in &p.ods_codes {
                router.by_ods.insert(ods.to_ascii_uppercase(), p.id.clone());
            }
            for s in &p.service_identifiers {
                router.by_service.insert(s.clone(), p.id.clone());
            }
        }
        router.add_provider(&config.triage_provider, "Triage", None);
        router.load_directory(directory)?;
        for (index, r) in config.rules.iter().enumerate() {
            if !router.providers.contains_key(&r.provider) {
                return Err(RoutingError::UnknownRuleProvider {
                    index,
                    provider: r.provider.clone(),
                });
            }
            router.rules.push(Rule {
                provider: r.provider.clone(),
                codes: r.codes.clone(),
                districts: r
                    .postcode_districts
                    .iter()
                    .map(|d| d.trim().to_ascii_uppercase())
                    .collect(),
            });
        }
        Ok(router)
    }

    fn add_provider(&mut self, id: &str, name: &str, ods: Option<String>) {
        let entry = self
            .providers
            .entry(id.to_string())
            .or_insert_with(|| Provider {
                id: id.to_string(),
                name: name.to_string(),
                ods_code: None,
            });
        if entry.ods_code.is_none() {
            entry.ods_code = ods.map(|o| o.to_ascii_uppercase());
        }
    }

    fn load_directory(&mut self, directory: &[Value]) -> Result<(), RoutingError> {
        // Organizations first so that services can inherit their provider via providedBy.
        let mut org_provider: HashMap<String, String> = HashMap::new();
        for kind in ["Organization", "HealthcareService"] {
            for res in directory
                .iter()
                .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(kind))
            {
                let rid = res.get("id").and_then(Value::as_str).unwrap_or_default();
                if !rid.is_empty() {
                    self.directory.insert(format!("{kind}/{rid}"), res.clone());
                }
                let idents = facts::identifiers(res);
                let explicit = idents
                    .iter()
                    .find(|(s, _)| s.as_deref() == Some(PROVIDER_ID_SYSTEM))
                    .map(|(_, v)| v.clone());
                let ods = idents
                    .iter()
                    .find(|(s, _)| s.as_deref() == Some(ODS_SYSTEM))
                    .map(|(_, v)| v.to_ascii_uppercase());
                let inherited = res
                    .pointer("/providedBy/reference")
                    .and_then(Value::as_str)
                    .and_then(|r| org_provider.get(r).cloned());
                let known = ods.as_ref().and_then(|o| self.by_ods.get(o).cloned());
                // Otherwise an Organization's ODS code, lower-cased, names the provider.
                let from_ods = ods.as_ref().map(|o| o.to_ascii_lowercase());
                let Some(pid) = explicit.or(known).or(inherited).or(from_ods) else {
                    continue;
                };
                if pid.is_empty()
                    || pid.len() > 64
                    || !pid
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    return Err(RoutingError::InvalidProviderId(format!("{kind}/{rid}")));
                }
                let name = res.get("name").and_then(Value::as_str).unwrap_or(&pid);
                let provider_ods = if kind == "Organization" {
                    ods.clone()
                } else {
                    None
                };
                self.add_provider(&pid, name, provider_ods);
                if kind == "Organization" {
                    org_provider.insert(format!("Organization/{rid}"), pid.clone());
                    if let Some(o) = ods {
                        self.by_ods.insert(o, pid.clone());
                    }
                } else {
                    for (system, value) in idents {
                        if let Some(system) = system.filter(|s| s != PROVIDER_ID_SYSTEM) {
                            self.by_service
                                .insert(format!("{system}|{value}"), pid.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every provider id (each gets a queue).
    pub fn provider_ids(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    /// A provider-directory resource by `Type/id`.
    pub fn directory_resource(&self, reference: &str) -> Option<&Value> {
        self.directory.get(reference)
    }

    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.get(id)
    }

    /// The provider a `Task.owner` identifier names: an ODS code or a provider id.
    pub fn provider_for_owner(&self, system: Option<&str>, value: &str) -> Option<&Provider> {
        match system {
            Some(ODS_SYSTEM) => self
                .by_ods
                .get(&value.to_ascii_uppercase())
                .and_then(|id| self.providers.get(id)),
            Some(PROVIDER_ID_SYSTEM) => self.providers.get(value),
            _ => self.providers.get(value).or_else(|| {
                self.by_ods
                    .get(&value.to_ascii_uppercase())
                    .and_then(|id| self.providers.get(id))
            }),
        }
    }

    /// Choose the provider for a referral. Always returns one.
    pub fn route(&self, facts: &ReferralFacts) -> RouteDecision {
        let found = |id: &String| self.providers.get(id).cloned();
        for ods in &facts.performer_ods {
            if let Some(p) = self.by_ods.get(&ods.to_ascii_uppercase()).and_then(found) {
                return RouteDecision {
                    provider: p,
                    reason: RouteReason::Performer,
                };
            }
        }
        for service in &facts.performer_services {
            if let Some(p) = self.by_service.get(service).and_then(found) {
                return RouteDecision {
                    provider: p,
                    reason: RouteReason::Performer,
                };
            }
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if rule_matches(rule, facts) {
                if let Some(p) = found(&rule.provider) {
                    return RouteDecision {
                        provider: p,
                        reason: RouteReason::Rule(index),
                    };
                }
            }
        }
        let provider = self
            .providers
            .get(&self.triage)
            .cloned()
            .unwrap_or(Provider {
                id: self.triage.clone(),
                name: "Triage".into(),
                ods_code: None,
            });
        RouteDecision {
            provider,
            reason: RouteReason::Triage,
        }
    }
}

fn rule_matches(rule: &Rule, facts: &ReferralFacts) -> bool {
    let codes_ok = rule.codes.is_empty()
        || rule.codes.iter().any(|want| {
            facts
                .codes
                .iter()
                .any(|(system, code)| match want.split_once('|') {
                    Some((s, c)) => system.as_deref() == Some(s) && code == c,
                    None => code == want,
                })
        });
    let district_ok = rule.districts.is_empty()
        || facts
            .postcode_district
            .as_ref()
            .is_some_and(|d| rule.districts.contains(d));
    codes_ok && district_ok
}

#[cfg(test)]
mod tests;
