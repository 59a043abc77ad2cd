//! The invariant plug-in: results map to issues (error → error, warning → warning, compile failure
//! and CannotEvaluate → one information issue per (key, profile) per validation).
#[path = "support/validation/mod.rs"]
mod common;
use common::*;
use serde_json::json;
use spbridge::outcome::{IssueType, Severity};
use spbridge::validation::{
    CompiledInvariant, InvariantContext, InvariantEngine, InvariantResult, Validator,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Fixed(InvariantResult, Arc<AtomicUsize>);
impl CompiledInvariant for Fixed {
    fn evaluate(&self, ctx: &InvariantContext<'_>) -> InvariantResult {
        assert!(ctx.resource.get("resourceType").is_some());
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.clone()
    }
}

struct Mock(Arc<AtomicUsize>, Arc<AtomicUsize>);
impl InvariantEngine for Mock {
    fn compile(&self, key: &str, _expression: &str) -> Result<Arc<dyn CompiledInvariant>, String> {
        self.0.fetch_add(1, Ordering::Relaxed);
        let r = match key {
            "ele-1" => return Err("unsupported function hasValue()".into()),
            "dom-2" => InvariantResult::Violated,
            "dom-6" => InvariantResult::Violated,
            "dom-3" => InvariantResult::CannotEvaluate("needs resolve()".into()),
            _ => InvariantResult::Satisfied,
        };
        Ok(Arc::new(Fixed(r, self.1.clone())))
    }
}

#[test]
fn invariant_results_become_issues() {
    let compiles = Arc::new(AtomicUsize::new(0));
    let evals = Arc::new(AtomicUsize::new(0));
    let v = Validator::builder(conformance())
        .invariants(Arc::new(Mock(compiles.clone(), evals.clone())))
        .precompile(&["http://hl7.org/fhir/StructureDefinition/Patient"])
        .build()
        .unwrap();
    let after_build = compiles.load(Ordering::Relaxed);
    assert!(after_build > 0, "constraints compile at build time");
    let p = json!({"resourceType": "Patient", "name": [{"family": "X", "given": ["A", "B"]}], "gender": "other"});
    let o = v.validate(&p, None);
    let o2 = v.validate(&p, None);
    assert_eq!(o, o2);
    assert!(evals.load(Ordering::Relaxed) > 0);
    let find = |key: &str, sev: Severity| {
        o.issues
            .iter()
            .filter(|i| i.detail_code.as_deref() == Some(key) && i.severity == sev)
            .collect::<Vec<_>>()
    };
    let dom2 = find("dom-2", Severity::Error);
    assert_eq!(dom2.len(), 1);
    assert_eq!(dom2[0].code, IssueType::Invariant);
    assert_eq!(dom2[0].expression, ["Patient"]);
    assert!(
        dom2[0].diagnostics.contains("dom-2")
            && dom2[0]
                .diagnostics
                .contains("SHALL NOT contain nested Resources")
    );
    assert_eq!(
        find("dom-6", Severity::Warning).len(),
        1,
        "best-practice constraint is a warning"
    );
    assert_eq!(find("dom-3", Severity::Information).len(), 1);
    // ele-1 failed to compile: one information issue per profile that declares it, not per element
    let ele1 = find("ele-1", Severity::Information);
    let mut profiles: Vec<&str> = ele1
        .iter()
        .map(|i| {
            i.diagnostics
                .split(" of ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        })
        .collect();
    let n = profiles.len();
    profiles.dedup();
    assert_eq!(n, profiles.len(), "{ele1:#?}");
    assert!(ele1
        .iter()
        .all(|i| i.diagnostics.contains("unsupported function")));
}

#[test]
fn without_engine_every_constraint_is_reported_not_evaluated() {
    let o = validator().validate(&json!({"resourceType": "Patient", "gender": "other"}), None);
    let keys: Vec<&str> = o
        .issues
        .iter()
        .filter(|i| i.severity == Severity::Information)
        .filter_map(|i| i.detail_code.as_deref())
        .collect();
    for k in ["dom-2", "dom-3", "dom-4", "dom-5", "dom-6", "ele-1"] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert!(!o.has_errors());
}
