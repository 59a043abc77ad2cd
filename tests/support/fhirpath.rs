//! Shared test helpers: locating the shared FHIR packages and test suite, and a model built once.

#![allow(dead_code)]

use serde_json::Value;
use spbridge::fhirpath::ModelInfo;
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn packages_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SPBRIDGE_FHIR_PACKAGES") {
        return PathBuf::from(p);
    }
    let rel = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir-packages");
    if rel.is_dir() {
        return rel;
    }
    PathBuf::from("/work/shared/fhir-packages")
}

pub fn suite_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SPBRIDGE_FHIRPATH_TESTS") {
        return PathBuf::from(p);
    }
    let rel = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fhirpath-tests");
    if rel.is_dir() {
        return rel;
    }
    PathBuf::from("/work/shared/fhirpath-tests")
}

pub fn r4_dir() -> PathBuf {
    packages_dir().join("hl7.fhir.r4.core#4.0.1/package")
}

pub fn ukcore_dir() -> PathBuf {
    packages_dir().join("fhir.r4.ukcore.stu3.currentbuild#0.22.0-main.55dd5f7e/package")
}

pub fn model() -> &'static ModelInfo {
    static MODEL: OnceLock<ModelInfo> = OnceLock::new();
    MODEL.get_or_init(|| ModelInfo::from_package_dir(&r4_dir()).expect("R4 core package"))
}

pub fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every StructureDefinition JSON in a package folder.
pub fn structure_definitions(dir: &std::path::Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("package dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if !name.ends_with(".json") {
            continue;
        }
        let v = read_json(&path);
        if v.get("resourceType").and_then(Value::as_str) == Some("StructureDefinition") {
            out.push((name, v));
        }
    }
    out
}
