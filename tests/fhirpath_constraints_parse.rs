//! Every constraint expression in the R4 core and UK Core (STU3 current build)
//! StructureDefinitions compiles.

#[path = "support/fhirpath.rs"]
mod common;

use serde_json::Value;
use spbridge::fhirpath::Expression;

fn collect(dir: &std::path::Path, out: &mut Vec<(String, String, String)>) {
    for (file, sd) in common::structure_definitions(dir) {
        for part in ["snapshot", "differential"] {
            let Some(elements) = sd
                .pointer(&format!("/{part}/element"))
                .and_then(Value::as_array)
            else {
                continue;
            };
            for el in elements {
                for c in el
                    .get("constraint")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(expr) = c.get("expression").and_then(Value::as_str) {
                        let key = c
                            .get("key")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_string();
                        out.push((file.clone(), key, expr.to_string()));
                    }
                }
            }
        }
    }
}

#[test]
fn every_r4_and_uk_core_constraint_parses() {
    let mut all = Vec::new();
    collect(&common::r4_dir(), &mut all);
    let r4 = all.len();
    collect(&common::ukcore_dir(), &mut all);
    let mut distinct: Vec<&str> = all.iter().map(|(_, _, e)| e.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let mut failures = Vec::new();
    for (file, key, expr) in &all {
        if let Err(e) = Expression::compile(expr) {
            failures.push(format!("{file} {key}: {e} — `{expr}`"));
        }
    }
    println!(
        "constraint expressions: {} (R4 core {r4}, UK Core {}), {} distinct; failures: {}",
        all.len(),
        all.len() - r4,
        distinct.len(),
        failures.len()
    );
    for f in &failures {
        println!("  {f}");
    }
    assert!(
        all.len() > 1000,
        "expected the packages to hold many constraints"
    );
    assert!(
        failures.is_empty(),
        "{} constraint(s) failed to parse",
        failures.len()
    );
}
