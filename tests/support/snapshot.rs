//! Shared test set-up: the package directory and resolvers for R4 core plus
//! one UK Core build.
#![allow(dead_code)]

use spbridge::conformance::Conformance;
use spbridge::packages::{PackageDir, PackageRef, PackageSet};
use std::path::PathBuf;
use std::sync::Arc;

pub const R4: &str = "hl7.fhir.r4.core#4.0.1";
pub const STU2: &str = "fhir.r4.ukcore.stu2#2.0.2";
pub const STU3: &str = "fhir.r4.ukcore.stu3.currentbuild#0.22.0-main.55dd5f7e";
pub const UKCORE: &str = "https://fhir.hl7.org.uk/StructureDefinition/";

pub fn package_dir() -> PathBuf {
    std::env::var_os("SPBRIDGE_FHIR_PACKAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/fhir-packages"
            ))
        })
}

/// The real package loader over the given packages (and their dependencies).
pub fn resolver(packages: &[&str]) -> Arc<PackageSet> {
    let refs: Vec<PackageRef> = packages.iter().map(|p| p.parse().unwrap()).collect();
    Arc::new(PackageSet::load(&PackageDir::new(package_dir()), &refs).unwrap())
}

pub fn conformance(uk: &str) -> Conformance {
    Conformance::new(resolver(&[uk, R4]))
}

use serde_json::Value;
use spbridge::packages::CanonicalResolver;
use std::collections::HashMap;

/// Extra in-memory resources in front of a package resolver.
pub struct Overlay {
    pub extra: HashMap<String, Arc<Value>>,
    pub inner: Arc<PackageSet>,
}

impl Overlay {
    pub fn new(inner: Arc<PackageSet>, resources: Vec<Value>) -> Self {
        let extra = resources
            .into_iter()
            .map(|r| (r["url"].as_str().unwrap_or("").to_string(), Arc::new(r)))
            .collect();
        Overlay { extra, inner }
    }
}

impl CanonicalResolver for Overlay {
    fn resolve(&self, canonical: &str) -> Option<Arc<Value>> {
        self.extra
            .get(canonical)
            .cloned()
            .or_else(|| self.inner.resolve(canonical))
    }

    fn all_of_type(&self, resource_type: &str) -> Vec<Arc<Value>> {
        let mut all = self.inner.all_of_type(resource_type);
        all.extend(
            self.extra
                .values()
                .filter(|r| r["resourceType"] == resource_type)
                .cloned(),
        );
        all
    }
}

/// The snapshot element with this id (panics with the id when missing).
pub fn element<'a>(sd: &'a Value, id: &str) -> &'a Value {
    sd["snapshot"]["element"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == id))
        .unwrap_or_else(|| panic!("no element {id} in {}", sd["url"]))
}

pub fn has_element(sd: &Value, id: &str) -> bool {
    sd["snapshot"]["element"]
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["id"] == id))
}

pub fn type_codes(e: &Value) -> Vec<String> {
    e["type"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["code"].as_str().map(str::to_string))
        .collect()
}

/// Structural sanity every generated snapshot must have: unique ids, a path
/// equal to the id without slice names, sliceName matching the id, a `base`
/// and a `source` on every constraint.
pub fn assert_well_formed(sd: &Value) {
    let url = sd["url"].as_str().unwrap_or("");
    let elements = sd["snapshot"]["element"].as_array().expect("snapshot");
    let mut ids = std::collections::HashSet::new();
    for e in elements {
        let id = e["id"].as_str().expect("id");
        assert!(ids.insert(id.to_string()), "{url}: duplicate id {id}");
        let path: Vec<&str> = id
            .split('.')
            .map(|seg| seg.split(':').next().unwrap_or(seg))
            .collect();
        assert_eq!(e["path"], path.join("."), "{url}: path of {id}");
        let last = id.rsplit('.').next().unwrap_or("");
        match last.split_once(':') {
            Some((_, slice)) => assert_eq!(e["sliceName"], slice, "{url}: sliceName of {id}"),
            None => assert!(e.get("sliceName").is_none(), "{url}: {id} has a sliceName"),
        }
        assert!(e["base"]["path"].is_string(), "{url}: {id} has no base");
        for c in e["constraint"].as_array().into_iter().flatten() {
            assert!(
                c["source"].is_string(),
                "{url}: {id} constraint {} has no source",
                c["key"]
            );
        }
    }
}
