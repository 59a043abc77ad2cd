//! Evaluates every R4 core invariant of a resource type at every element occurrence of the UK
//! Core example resources: nothing panics, the native fast paths (ele-1, ext-1) agree with the
//! general evaluator, and valid examples satisfy the invariants.

#[path = "support/fhirpath.rs"]
mod common;

use serde_json::Value;
use spbridge::fhirpath::{EvalEnv, Expression, FhirPathError, Item};
use std::collections::HashMap;

struct Constraint {
    key: String,
    expr: Expression,
}

/// (element path, constraints) per resource type, from the R4 core snapshots.
fn constraints_by_type() -> HashMap<String, Vec<(Expression, Vec<Constraint>)>> {
    let mut out: HashMap<String, Vec<(Expression, Vec<Constraint>)>> = HashMap::new();
    for (_, sd) in common::structure_definitions(&common::r4_dir()) {
        if sd.get("kind").and_then(Value::as_str) != Some("resource")
            || sd.get("derivation").and_then(Value::as_str) != Some("specialization")
        {
            continue;
        }
        let ty = sd["type"].as_str().unwrap_or("").to_string();
        for el in sd
            .pointer("/snapshot/element")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let path = el["path"].as_str().unwrap_or("");
            if path.contains("[x]") {
                continue;
            }
            let cs: Vec<Constraint> = el
                .get("constraint")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some(Constraint {
                        key: c.get("key")?.as_str()?.to_string(),
                        expr: Expression::compile(c.get("expression")?.as_str()?).ok()?,
                    })
                })
                .collect();
            if !cs.is_empty() {
                out.entry(ty.clone())
                    .or_default()
                    .push((Expression::compile(path).expect("path"), cs));
            }
        }
    }
    out
}

#[test]
fn r4_invariants_hold_on_uk_core_examples() {
    let model = common::model();
    let table = constraints_by_type();
    let dir = common::ukcore_dir().join("examples");
    let mut evaluations = 0usize;
    let mut cannot = 0usize;
    let mut violations = Vec::new();
    let mut errors = Vec::new();
    let mut fast_checked = 0usize;
    for entry in std::fs::read_dir(&dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let res = common::read_json(&path);
        let Some(rt) = res.get("resourceType").and_then(Value::as_str) else {
            continue;
        };
        let Some(elements) = table.get(rt) else {
            continue;
        };
        let env = EvalEnv::for_resource(model, &res);
        let root = env.resource_node(&res);
        for (path_expr, cs) in elements {
            let nodes = path_expr.evaluate(&env, root).expect("element path");
            for node in &nodes {
                let Item::Node(n) = node else { continue };
                for c in cs {
                    evaluations += 1;
                    let general = c.expr.evaluate_boolean_general(&env, *n);
                    let fast = c.expr.evaluate_boolean(&env, *n);
                    if matches!(
                        c.key.as_str(),
                        "ele-1" | "ext-1" | "dom-2" | "dom-3" | "dom-4" | "dom-5"
                    ) {
                        fast_checked += 1;
                        assert_eq!(
                            fast.as_ref().ok().map(|f| f.unwrap_or(false)),
                            general.as_ref().ok().map(|g| g.unwrap_or(false)),
                            "fast path for {} disagrees at {} in {}",
                            c.key,
                            path_expr.text(),
                            path.display()
                        );
                    }
                    match general {
                        Ok(Some(true)) | Ok(None) => {}
                        Ok(_) => violations.push(format!(
                            "{}: {} at {}",
                            path.file_name().and_then(|f| f.to_str()).unwrap_or(""),
                            c.key,
                            path_expr.text()
                        )),
                        Err(FhirPathError::CannotEvaluate(_)) => cannot += 1,
                        Err(e) => errors.push(format!("{} {}: {e}", c.key, c.expr.text())),
                    }
                }
            }
        }
    }
    println!(
        "invariant evaluations: {evaluations}, fast-path cross-checks: {fast_checked}, cannot evaluate: {cannot}, violations: {}, errors: {}",
        violations.len(),
        errors.len()
    );
    for v in violations.iter().take(50) {
        println!("  violation {v}");
    }
    for e in errors.iter().take(50) {
        println!("  error {e}");
    }
    assert!(evaluations > 1000);
    assert!(fast_checked > 100);
    assert!(errors.is_empty(), "evaluation errors");
    // the only invariants these valid examples break are best-practice warnings (narrative)
    assert!(
        violations.iter().all(|v| v.contains(": dom-6 at ")),
        "unexpected violations: {violations:?}"
    );
}
