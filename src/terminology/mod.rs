//! Local terminology: ValueSet expansion from loaded ValueSets and CodeSystems, cached.
//!
//! Owns: `Terminology`, `Expansion`. Must not: call a terminology server — anything that
//! needs one (SNOMED CT, dm+d, code systems not loaded, unsupported filters) is `Incomplete`
//! with a reason, so callers can report it instead of passing silently.

mod expand;
mod hash;

pub use hash::FastHash;

use crate::packages::CanonicalResolver;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// A ValueSet expansion, or why it cannot be computed locally.
#[derive(Debug)]
pub enum Expansion {
    Complete(CodeSet),
    Incomplete(String),
}

/// The (system, code) pairs of an expansion.
#[derive(Debug, Default, Clone)]
pub struct CodeSet {
    pub pairs: HashSet<(String, String)>,
    /// code → systems that define it in this set (lookup without allocating).
    pub codes: HashMap<String, Vec<String>, FastHash>,
}

impl CodeSet {
    pub fn insert(&mut self, system: &str, code: &str) {
        self.pairs.insert((system.to_string(), code.to_string()));
        self.codes
            .entry(code.to_string())
            .or_default()
            .push(system.to_string());
    }

    pub fn contains(&self, system: &str, code: &str) -> bool {
        self.codes
            .get(code)
            .is_some_and(|systems| systems.iter().any(|s| s == system))
    }

    pub fn contains_code(&self, code: &str) -> bool {
        self.codes.contains_key(code)
    }

    pub(crate) fn rebuild_codes(&mut self) {
        self.codes.clear();
        for (s, c) in &self.pairs {
            self.codes.entry(c.clone()).or_default().push(s.clone());
        }
    }
}

/// Expands ValueSets and CodeSystems found through a resolver; results are cached.
pub struct Terminology {
    resolver: Arc<dyn CanonicalResolver>,
    cache: RwLock<HashMap<String, Arc<Expansion>>>,
    systems: RwLock<HashMap<String, Arc<Expansion>, FastHash>>,
}

impl Terminology {
    pub fn new(resolver: Arc<dyn CanonicalResolver>) -> Self {
        Terminology {
            resolver,
            cache: RwLock::new(HashMap::new()),
            systems: RwLock::new(HashMap::default()),
        }
    }

    /// The expansion of a ValueSet (canonical, `|version` ignored), cached.
    pub fn expand(&self, value_set: &str) -> Arc<Expansion> {
        let url = value_set.split('|').next().unwrap_or(value_set);
        self.cached(url, |t| expand::expand_value_set(t, url, 0))
    }

    /// All codes of a CodeSystem when it is loaded with `content = complete`.
    pub fn code_system(&self, system: &str) -> Arc<Expansion> {
        if let Ok(c) = self.systems.read() {
            if let Some(e) = c.get(system) {
                return e.clone();
            }
        }
        let e = Arc::new(expand::expand_code_system(self, system));
        if let Ok(mut c) = self.systems.write() {
            c.insert(system.to_string(), e.clone());
        }
        e
    }

    fn cached(&self, key: &str, f: impl FnOnce(&Terminology) -> Expansion) -> Arc<Expansion> {
        if let Ok(c) = self.cache.read() {
            if let Some(e) = c.get(key) {
                return e.clone();
            }
        }
        let e = Arc::new(f(self));
        if let Ok(mut c) = self.cache.write() {
            c.insert(key.to_string(), e.clone());
        }
        e
    }

    pub(crate) fn resolver(&self) -> &dyn CanonicalResolver {
        self.resolver.as_ref()
    }
}

#[cfg(test)]
mod tests;
