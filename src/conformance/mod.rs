//! Conformance resources with complete snapshots. Owns `Conformance` (the
//! resolver plus a thread-safe cache of generated snapshots), recursion through
//! base definitions and type profiles with cycle detection, and the public
//! snapshot API (`structure_definition`, `snapshot_json`).
//! Must not: load packages (that is `crate::packages`) or validate instances.

pub mod element_path;
mod error;
pub mod snapshot;

pub use error::SnapshotError;
pub use snapshot::{Generated, SnapshotOptions};

use crate::packages::CanonicalResolver;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Generated snapshot and its warnings, per canonical URL.
#[derive(Clone)]
struct Entry {
    definition: Arc<Value>,
    warnings: Arc<Vec<String>>,
}

/// Resolver plus cache of StructureDefinitions with complete snapshots.
pub struct Conformance {
    resolver: Arc<dyn CanonicalResolver>,
    options: SnapshotOptions,
    cache: RwLock<HashMap<String, Entry>>,
}

/// Outcome of generating every loaded StructureDefinition (`generate_all`).
#[derive(Debug, Default)]
pub struct BulkReport {
    /// URLs whose snapshot was already shipped in their package.
    pub shipped: Vec<String>,
    /// URLs whose snapshot was generated.
    pub generated: Vec<String>,
    /// URLs that failed, with the reason.
    pub failed: Vec<(String, SnapshotError)>,
    /// URLs that cannot have a snapshot at all (no snapshot and no
    /// baseDefinition: R4 core's abstract logical patterns such as `Event`).
    pub skipped: Vec<String>,
}

impl Conformance {
    pub fn new(resolver: Arc<dyn CanonicalResolver>) -> Self {
        Self::with_options(resolver, SnapshotOptions::default())
    }

    pub fn with_options(resolver: Arc<dyn CanonicalResolver>, options: SnapshotOptions) -> Self {
        Conformance {
            resolver,
            options,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub fn resolver(&self) -> &dyn CanonicalResolver {
        self.resolver.as_ref()
    }

    /// The StructureDefinition with a complete `snapshot` (generated from the
    /// differential and the base's snapshot if missing; cached; recursive for
    /// profiles on profiles).
    pub fn structure_definition(&self, canonical: &str) -> Result<Arc<Value>, SnapshotError> {
        let ctx = Ctx {
            conformance: self,
            stack: RefCell::new(Vec::new()),
        };
        ctx.get(canonical).map(|e| e.definition)
    }

    /// A copy of the StructureDefinition with its snapshot, for printing
    /// (`spbridge profiles snapshot URL`).
    pub fn snapshot_json(&self, canonical: &str) -> Result<Value, SnapshotError> {
        self.structure_definition(canonical).map(|sd| (*sd).clone())
    }

    /// Non-fatal findings of the generation of `canonical` (empty when the
    /// snapshot was shipped or has not been generated yet).
    pub fn warnings(&self, canonical: &str) -> Vec<String> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache
            .get(canonical)
            .map(|e| e.warnings.as_ref().clone())
            .unwrap_or_default()
    }

    /// Generate `sd`'s snapshot from its differential even when it ships one
    /// (for comparing against shipped snapshots); dependencies come from the cache.
    pub fn regenerate(&self, sd: &Value) -> Result<Generated, SnapshotError> {
        let ctx = Ctx {
            conformance: self,
            stack: RefCell::new(Vec::new()),
        };
        snapshot::generate(sd, &ctx, self.options)
    }

    /// Make sure every loaded StructureDefinition has a snapshot (start-up).
    pub fn generate_all(&self) -> BulkReport {
        let mut report = BulkReport::default();
        for sd in self.resolver.all_of_type("StructureDefinition") {
            let Some(url) = sd.get("url").and_then(Value::as_str) else {
                continue;
            };
            if has_snapshot(&sd) {
                report.shipped.push(url.to_string());
                continue;
            }
            if sd.get("baseDefinition").is_none() {
                report.skipped.push(url.to_string());
                continue;
            }
            match self.structure_definition(url) {
                Ok(_) => report.generated.push(url.to_string()),
                Err(e) => report.failed.push((url.to_string(), e)),
            }
        }
        report
    }
}

fn has_snapshot(sd: &Value) -> bool {
    sd.pointer("/snapshot/element")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// Longest chain of definitions generated for one request (base on base,
/// type profiles inside) before giving up.
const MAX_DEPTH: usize = 64;

/// One top-level request: the chain of definitions being generated, for
/// cycle detection.
struct Ctx<'a> {
    conformance: &'a Conformance,
    stack: RefCell<Vec<String>>,
}

impl Ctx<'_> {
    fn get(&self, canonical: &str) -> Result<Entry, SnapshotError> {
        let conf = self.conformance;
        if let Some(e) = conf
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(canonical)
        {
            return Ok(e.clone());
        }
        let sd = conf
            .resolver
            .resolve(canonical)
            .ok_or_else(|| SnapshotError::NotFound {
                url: canonical.to_string(),
            })?;
        let url = sd
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or(canonical)
            .to_string();
        let entry = if has_snapshot(&sd) {
            Entry {
                definition: sd,
                warnings: Arc::new(Vec::new()),
            }
        } else {
            if self.stack.borrow().len() >= MAX_DEPTH {
                return Err(SnapshotError::Invalid {
                    profile: url,
                    reason: format!("definitions nest deeper than {MAX_DEPTH} levels"),
                });
            }
            if self.stack.borrow().contains(&url) {
                let mut chain = self.stack.borrow().clone();
                chain.push(url.clone());
                return Err(SnapshotError::Cycle {
                    profile: url,
                    chain: chain.join(" -> "),
                });
            }
            self.stack.borrow_mut().push(url.clone());
            let generated = snapshot::generate(&sd, self, conf.options);
            self.stack.borrow_mut().pop();
            let generated = generated?;
            Entry {
                definition: Arc::new(generated.definition),
                warnings: Arc::new(generated.warnings),
            }
        };
        let mut cache = conf.cache.write().unwrap_or_else(|e| e.into_inner());
        let stored = cache.entry(url.clone()).or_insert(entry).clone();
        if canonical != url {
            cache.insert(canonical.to_string(), stored.clone());
        }
        Ok(stored)
    }
}

impl snapshot::DefinitionSource for Ctx<'_> {
    fn snapshot_of(&self, canonical: &str) -> Result<Arc<Value>, SnapshotError> {
        self.get(canonical).map(|e| e.definition)
    }
}
