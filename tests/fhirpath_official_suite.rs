//! Runs the official FHIRPath R4 test suite (../shared/fhirpath-tests) and prints the pass rate
//! per group plus every failing case with its reason.

#[path = "support/fhirpath.rs"]
mod common;

use serde_json::Value;
use spbridge::fhirpath::{
    item_to_fhirpath_string, item_type_name, Collection, EvalEnv, Expression, FhirPathError,
};
use std::collections::{BTreeMap, HashMap};

struct Outcome {
    group: String,
    name: String,
    pass: bool,
    reason: String,
}

fn run_case(t: &Value, inputs: &HashMap<String, Value>) -> (bool, String) {
    let model = common::model();
    let expr_text = t["expression"].as_str().unwrap_or("");
    let invalid = t["invalid"].as_str();
    let empty = Value::Object(Default::default());
    let resource = t["inputfileJson"]
        .as_str()
        .and_then(|f| inputs.get(f))
        .unwrap_or(&empty);
    let expr = match Expression::compile(expr_text) {
        Ok(e) => e,
        Err(e) => {
            return if invalid.is_some() {
                (true, String::new())
            } else {
                (false, format!("parse error: {e}"))
            }
        }
    };
    let mut env = EvalEnv::for_resource(model, resource);
    env.strict = t["mode"].as_str() == Some("strict");
    let focus = env.resource_node(resource);
    let result = expr.evaluate(&env, focus);
    let items: Collection = match result {
        Err(e) => {
            return if invalid.is_some() {
                (true, String::new())
            } else {
                (false, format!("evaluation error: {e}"))
            }
        }
        Ok(items) => items,
    };
    if let Some(kind) = invalid {
        return (
            false,
            format!("expected a {kind} error, got {} item(s)", items.len()),
        );
    }
    let got: Vec<(String, String)> = items
        .iter()
        .map(|i| (item_type_name(i, model), item_to_fhirpath_string(i, model)))
        .collect();
    let expected: Vec<(Option<String>, String)> = t["outputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    (
                        o["type"].as_str().map(str::to_string),
                        o["value"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if t["predicate"].as_bool() == Some(true) {
        let b = !items.is_empty();
        let want = expected.first().map(|e| e.1.as_str()) == Some("true");
        return (b == want, format!("predicate {b}"));
    }
    let render = |g: &[(String, String)]| {
        g.iter()
            .map(|(t, v)| format!("{v}:{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if got.len() != expected.len() {
        return (
            false,
            format!(
                "expected {} item(s), got [{}]",
                expected.len(),
                render(&got)
            ),
        );
    }
    let unordered = t["ordered"].as_bool() == Some(false);
    let matches = |(et, ev): &(Option<String>, String), (gt, gv): &(String, String)| {
        let value_ok = ev == gv
            || (ev.strip_prefix('@').is_some()
                && ev.trim_start_matches('@') == gv.trim_start_matches('@'))
            || (et.as_deref() == Some("Quantity") && ev.replace(' ', "") == gv.replace(' ', ""));
        let type_ok = match et.as_deref() {
            None => true,
            Some(t) => t == gt || (t == "Quantity" && gt == "Quantity"),
        };
        value_ok && type_ok
    };
    let ok = if unordered {
        expected.iter().all(|e| got.iter().any(|g| matches(e, g)))
    } else {
        expected.iter().zip(&got).all(|(e, g)| matches(e, g))
    };
    if ok {
        (true, String::new())
    } else {
        let exp = expected
            .iter()
            .map(|(t, v)| format!("{v}:{}", t.as_deref().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ");
        (false, format!("expected [{exp}], got [{}]", render(&got)))
    }
}

/// Groups whose functions the R4 core and UK Core invariants use: these must pass completely.
const INVARIANT_GROUPS: [&str; 22] = [
    "testBasics",
    "testExists",
    "testWhere",
    "testSelect",
    "testAll",
    "testCount",
    "testEmpty",
    "testBooleanLogicAnd",
    "testBooleanLogicOr",
    "testBooleanImplies",
    "testBooleanLogicXOr",
    "testStartsWith",
    "testContainsString",
    "testMatches",
    "testLength",
    "testExtension",
    "testInheritance",
    "testObservations",
    "testIif",
    "testUnion",
    "testDistinct",
    "testRepeat",
];

/// Cases in the invariant groups that conflict with what the R4 invariants need, with reasons.
const KNOWN_CONFLICTS: [(&str, &str); 1] = [(
    "testFHIRPathAsFunction21",
    "expects as() on several items to fail, but R4 dom-3 (on every DomainResource) applies \
     `descendants().as(canonical)` to collections; as() filters like ofType() outside strict mode",
)];

#[test]
fn official_fhirpath_r4_suite() {
    let dir = common::suite_dir();
    let suite = common::read_json(&dir.join("tests-fhir-r4.json"));
    let mut inputs = HashMap::new();
    for t in suite.as_array().expect("array") {
        if let Some(f) = t["inputfileJson"].as_str() {
            inputs
                .entry(f.to_string())
                .or_insert_with(|| common::read_json(&dir.join("input").join(f)));
        }
    }
    let mut outcomes = Vec::new();
    for t in suite.as_array().expect("array") {
        let (pass, reason) =
            std::panic::catch_unwind(|| run_case(t, &inputs)).unwrap_or((false, "PANIC".into()));
        outcomes.push(Outcome {
            group: t["group"].as_str().unwrap_or("").to_string(),
            name: format!("{} (#{})", t["name"].as_str().unwrap_or(""), t["index"]),
            pass,
            reason: format!(
                "{reason} — `{}`",
                t["expression"].as_str().unwrap_or("").replace('\n', " ")
            ),
        });
    }
    let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for o in &outcomes {
        let g = groups.entry(o.group.as_str()).or_default();
        g.1 += 1;
        if o.pass {
            g.0 += 1;
        }
    }
    println!("\n| group | passed | total | % |\n|---|---|---|---|");
    for (g, (p, n)) in &groups {
        println!("| {g} | {p} | {n} | {:.0} |", 100.0 * *p as f64 / *n as f64);
    }
    let passed = outcomes.iter().filter(|o| o.pass).count();
    let total = outcomes.len();
    let rate = 100.0 * passed as f64 / total as f64;
    println!("\nOVERALL: {passed}/{total} = {rate:.1} %\n\nFailing cases:");
    for o in outcomes.iter().filter(|o| !o.pass) {
        println!("- [{}] {}: {}", o.group, o.name, o.reason);
    }
    let _ = FhirPathError::Evaluation(String::new());
    println!("\nKnown conflicts (invariant semantics win):");
    for (name, why) in KNOWN_CONFLICTS {
        println!("- {name}: {why}");
    }
    for o in outcomes.iter().filter(|o| !o.pass) {
        let conflict = KNOWN_CONFLICTS
            .iter()
            .any(|(n, _)| o.name.starts_with(&format!("{n} ")));
        assert!(
            !INVARIANT_GROUPS.contains(&o.group.as_str()) || conflict,
            "group {} is used by invariants and must pass completely: {} {}",
            o.group,
            o.name,
            o.reason
        );
    }
    assert!(rate >= 99.5, "overall pass rate {rate:.1} % below floor");
}
