//! FHIR R4 / UK Core validation: compile once, validate many.
//!
//! Owns: the public API (`Validator`, `ValidatorBuilder`, `ValidationOptions`, `ValidatorError`,
//! the invariant plug-in traits) and the wiring of the structure (JSON schema) layer, the profile
//! walk and terminology. Must not: load packages or generate snapshots (`crate::packages`,
//! `crate::conformance`), evaluate FHIRPath (plugged in via `InvariantEngine`), or do I/O on the
//! validate path.

mod checks;
mod constraints;
mod fhirpath_invariants;
pub mod invariant;
pub mod model;
pub mod primitives;
pub mod registry;
mod resource;
pub mod schema;
mod slicing;
mod walker;

pub use checks::{nhs_number_valid, ods_code_valid, pattern_matches};
pub use fhirpath_invariants::FhirPathInvariants;
pub use invariant::{
    CompiledInvariant, InvariantContext, InvariantEngine, InvariantResult, JsonCheck,
};

use crate::conformance::Conformance;
use crate::fhirpath::JsonMember;
use crate::outcome::{Issue, OperationOutcome};
use primitives::PrimitiveRules;
use registry::Registry;
use schema::SchemaLayer;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// How the validator behaves; fixed at build time.
#[derive(Clone, Default)]
pub struct ValidationOptions {
    /// A `meta.profile` that is not loaded is an error (default: warning).
    pub strict_profiles: bool,
    /// resourceType → profile URL used when a resource has no (loaded) `meta.profile`.
    pub default_profiles: HashMap<String, String>,
    /// FHIRPath engine for constraints; None → every constraint reported as not evaluated.
    pub invariants: Option<Arc<dyn InvariantEngine>>,
    /// The parsed R4 `fhir.schema.json` for the structure layer; None → profile walk only.
    pub json_schema: Option<Arc<Value>>,
}

/// Errors building a validator.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("cannot read JSON schema {path}: {source}")]
    SchemaIo {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("JSON schema {path} is not valid JSON: {source}")]
    SchemaJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("JSON schema has no definitions")]
    SchemaShape,
    #[error("profile {url} cannot be compiled: {reason}")]
    Profile { url: String, reason: String },
}

/// Builder for [`Validator`].
pub struct ValidatorBuilder {
    conformance: Arc<Conformance>,
    options: ValidationOptions,
    precompile: Vec<String>,
}

impl ValidatorBuilder {
    pub fn strict_profiles(mut self, yes: bool) -> Self {
        self.options.strict_profiles = yes;
        self
    }

    pub fn default_profile(mut self, resource_type: &str, url: &str) -> Self {
        self.options
            .default_profiles
            .insert(resource_type.into(), url.into());
        self
    }

    pub fn invariants(mut self, engine: Arc<dyn InvariantEngine>) -> Self {
        self.options.invariants = Some(engine);
        self
    }

    pub fn json_schema(mut self, schema: Arc<Value>) -> Self {
        self.options.json_schema = Some(schema);
        self
    }

    /// Reads `fhir.schema.json` (e.g. `<packages>/hl7.fhir.r4.core#4.0.1/package/other/fhir.schema.json`).
    pub fn json_schema_file(self, path: &Path) -> Result<Self, ValidatorError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ValidatorError::SchemaIo {
            path: p.clone(),
            source,
        })?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|source| ValidatorError::SchemaJson { path: p, source })?;
        Ok(self.json_schema(Arc::new(v)))
    }

    pub fn precompile(mut self, urls: &[&str]) -> Self {
        self.precompile.extend(urls.iter().map(|u| u.to_string()));
        self
    }

    pub fn build(self) -> Result<Validator, ValidatorError> {
        let v = Validator::new(self.conformance, self.options)?;
        let urls: Vec<&str> = self.precompile.iter().map(String::as_str).collect();
        v.precompile(&urls)?;
        Ok(v)
    }
}

/// A compiled, reusable validator (`Send + Sync`; share it through an `Arc`).
pub struct Validator {
    pub(crate) registry: Registry,
    pub(crate) schema: Option<SchemaLayer>,
    pub(crate) options: ValidationOptions,
    pub(crate) rules: PrimitiveRules,
}

impl Validator {
    pub fn builder(conformance: Arc<Conformance>) -> ValidatorBuilder {
        ValidatorBuilder {
            conformance,
            options: ValidationOptions::default(),
            precompile: Vec::new(),
        }
    }

    pub fn new(
        conformance: Arc<Conformance>,
        options: ValidationOptions,
    ) -> Result<Self, ValidatorError> {
        let schema = match &options.json_schema {
            Some(s) => Some(SchemaLayer::new(s).ok_or(ValidatorError::SchemaShape)?),
            None => None,
        };
        Ok(Validator {
            registry: Registry::new(conformance, options.invariants.clone()),
            schema,
            options,
            rules: PrimitiveRules::new(),
        })
    }

    /// Compiles profiles (and their resource type's JSON schema) ahead of the first validation.
    pub fn precompile(&self, urls: &[&str]) -> Result<(), ValidatorError> {
        for url in urls {
            let p = self
                .registry
                .profile(url)
                .map_err(|reason| ValidatorError::Profile {
                    url: url.to_string(),
                    reason,
                })?;
            if let Some(s) = &self.schema {
                if p.kind == "resource" {
                    s.for_type(&p.type_name);
                }
            }
        }
        Ok(())
    }

    /// Validates a resource (Bundles: every entry as its own resource) against `profile`, or its
    /// `meta.profile`, or the configured default profile for its type, or base R4.
    pub fn validate(&self, resource: &Value, profile: Option<&str>) -> OperationOutcome {
        let mut walk = walker::Walk::new(self, resource);
        walk.path.push_str(
            resource
                .member("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("Resource"),
        );
        walk.resource(resource, profile, true);
        let multi = walk.multi_profile;
        let mut issues = walk.issues;
        if multi {
            dedup(&mut issues);
        }
        OperationOutcome { issues }
    }

    /// True when `v` validates against `profile` without errors (used by profile discriminators).
    pub(crate) fn conforms(&self, v: &Value, profile: &str) -> bool {
        if v.member("resourceType").is_some() {
            return !self.validate(v, Some(profile)).has_errors();
        }
        let Ok(p) = self.registry.profile(profile) else {
            return false;
        };
        let Some(obj) = v.as_object() else {
            return false;
        };
        let mut walk = walker::Walk::new(self, v);
        walk.children(obj, &p, 0, false);
        !walk.issues.iter().any(|i| i.severity.is_failure())
    }
}

/// Drops exact duplicates (several profiles reporting the same base-structure problem).
fn dedup(issues: &mut Vec<Issue>) {
    if issues.len() < 2 {
        return;
    }
    let mut i = 1;
    while i < issues.len() {
        if issues[..i].contains(&issues[i]) {
            issues.remove(i);
        } else {
            i += 1;
        }
    }
}
