//! Shared test set-up: one validator over R4 core (+ the R4 JSON schema) per test binary.
#![allow(dead_code)]

use serde_json::Value;
use spbridge::conformance::Conformance;
use spbridge::packages::{PackageDir, PackageRef, PackageSet};
use spbridge::validation::Validator;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub const R4: &str = "hl7.fhir.r4.core#4.0.1";
pub const UKCORE: &str = "fhir.r4.ukcore.stu3.currentbuild#0.22.0-main.55dd5f7e";

pub fn packages_dir() -> PathBuf {
    std::env::var_os("SPBRIDGE_FHIR_PACKAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/fhir-packages"
            ))
        })
}

pub fn conformance() -> Arc<Conformance> {
    static C: OnceLock<Arc<Conformance>> = OnceLock::new();
    C.get_or_init(|| {
        let refs: Vec<PackageRef> = [R4, UKCORE].iter().map(|p| p.parse().unwrap()).collect();
        let r = PackageSet::load(&PackageDir::new(packages_dir()), &refs).unwrap();
        Arc::new(Conformance::new(Arc::new(r)))
    })
    .clone()
}

pub fn schema() -> Arc<Value> {
    static S: OnceLock<Arc<Value>> = OnceLock::new();
    S.get_or_init(|| {
        let p = packages_dir()
            .join(R4)
            .join("package/other/fhir.schema.json");
        Arc::new(serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
    })
    .clone()
}

pub fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        Validator::builder(conformance())
            .json_schema(schema())
            .build()
            .unwrap()
    })
}

pub fn data(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Error and warning issues as `severity code expression: diagnostics` lines (information left out).
pub fn problems(o: &spbridge::outcome::OperationOutcome) -> Vec<String> {
    o.issues
        .iter()
        .filter(|i| i.severity != spbridge::outcome::Severity::Information)
        .map(|i| {
            format!(
                "{} {} {}: {}",
                i.severity.as_code(),
                i.code.as_code(),
                i.expression.join(","),
                i.diagnostics
            )
        })
        .collect()
}

pub mod patch;

/// One row of an invalid-variant table (the `fixtures/invalid/cases.json` format).
pub struct CaseResult {
    pub name: String,
    pub missing: Vec<String>,
    pub needs_invariants: bool,
    pub got: Vec<String>,
}

/// Runs every case of a table against `v`; `base_dir` holds the bases.
pub fn run_cases(v: &Validator, cases: &Value, base_dir: &std::path::Path) -> Vec<CaseResult> {
    let mut out = Vec::new();
    for c in cases.as_array().unwrap() {
        let base = c["base"].as_str().unwrap();
        let mut doc: Value =
            serde_json::from_str(&std::fs::read_to_string(base_dir.join(base)).unwrap()).unwrap();
        patch::apply(&mut doc, c["patch"].as_array().unwrap());
        let o = v.validate(&doc, None);
        let mut missing = Vec::new();
        let mut needs_invariants = false;
        for e in c["expect"].as_array().unwrap() {
            let code = e["code"].as_str().unwrap();
            let expr = e["expression"].as_str().unwrap();
            let detail = e.get("detail").and_then(Value::as_str);
            needs_invariants |= code == "invariant";
            let hit = o.issues.iter().any(|i| {
                i.severity.is_failure()
                    && i.code.as_code() == code
                    && i.expression.iter().any(|x| x == expr)
                    && detail.is_none_or(|d| {
                        i.detail_code.as_deref() == Some(d) && i.diagnostics.contains(d)
                    })
            });
            if !hit {
                missing.push(format!(
                    "{code} @ {expr}{}",
                    detail.map(|d| format!(" [{d}]")).unwrap_or_default()
                ));
            }
        }
        out.push(CaseResult {
            name: c["name"].as_str().unwrap().to_string(),
            missing,
            needs_invariants,
            got: problems(&o),
        });
    }
    out
}
