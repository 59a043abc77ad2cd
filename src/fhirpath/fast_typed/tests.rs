//! The native fast paths agree with the general evaluator: every recognised R4 constraint at
//! every occurrence of its element in the fixtures (valid and invalid) and the UK Core examples,
//! plus hand-made edge cases (absent, empty, `_field`, nulls, odd JSON types).

use super::super::{Expression, Hooks, InvariantInput, InvariantOutcome, Item, ModelInfo};
use super::{detect, TypedFast};
use crate::fhirpath::fast::normalise;
use crate::fhirpath::EvalEnv;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn packages() -> PathBuf {
    std::env::var_os("SPBRIDGE_FHIR_PACKAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/fhir-packages"))
}

fn r4() -> PathBuf {
    packages().join("hl7.fhir.r4.core#4.0.1/package")
}

fn model() -> Arc<ModelInfo> {
    ModelInfo::cached_from_package_dir(&r4()).expect("R4 core package")
}

fn read(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

/// Fast and general outcomes of one check; panics when they differ.
fn compare(
    model: &ModelInfo,
    e: &Expression,
    input: &InvariantInput<'_>,
) -> (bool, InvariantOutcome) {
    let general = e.check_invariant_general(model, input, Hooks::default());
    let env = EvalEnv {
        model,
        resource: Some(input.resource),
        root_resource: Some(input.root_resource),
        context: None,
        bundle: input.bundle,
        terminology: None,
        profiles: None,
        strict: false,
    };
    let focus = env.typed_node(input.node, input.node_extension, input.node_type);
    let fast = e
        .inner
        .typed_fast
        .as_ref()
        .and_then(|t| t.eval(model, focus, input));
    if let Some(b) = fast {
        let f = if b {
            InvariantOutcome::Satisfied
        } else {
            InvariantOutcome::Violated
        };
        assert_eq!(f, general, "`{}` at {}", e.text(), input.node);
    }
    (fast.is_some(), general)
}

/// (element path, expressions with a typed fast path) for a resource type's R4 snapshot.
fn fast_constraints(rt: &str) -> Vec<(Expression, Vec<Expression>)> {
    let Some(sd) = read(&r4().join(format!("StructureDefinition-{rt}.json"))) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for el in sd["snapshot"]["element"].as_array().into_iter().flatten() {
        let path = el["path"].as_str().unwrap_or("");
        if path.contains("[x]") {
            continue;
        }
        let cs: Vec<Expression> = el["constraint"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["expression"].as_str())
            .filter(|x| detect(&normalise(x)).is_some())
            .filter_map(|x| Expression::compile(x).ok())
            .collect();
        if !cs.is_empty() {
            if let Ok(p) = Expression::compile(path) {
                out.push((p, cs));
            }
        }
    }
    out
}

/// Checks every fast-path constraint of `res` (and, for Bundles, of each entry resource).
fn check_resource(
    model: &ModelInfo,
    res: &Value,
    root: &Value,
    bundle: Option<&Value>,
) -> (usize, usize) {
    let (mut answered, mut total) = (0, 0);
    let Some(rt) = res.get("resourceType").and_then(Value::as_str) else {
        return (0, 0);
    };
    let env = EvalEnv::for_resource(model, res);
    let node = env.resource_node(res);
    for (path, cs) in fast_constraints(rt) {
        let Ok(nodes) = path.evaluate(&env, node) else {
            continue;
        };
        for n in nodes {
            let Item::Node(n) = n else { continue };
            let Some(node_type) = model.name(n.ty) else {
                continue;
            };
            for c in &cs {
                let input = InvariantInput {
                    node: n.value,
                    node_extension: n.ext,
                    node_type,
                    resource: res,
                    root_resource: root,
                    bundle,
                };
                total += 1;
                answered += usize::from(compare(model, c, &input).0);
            }
        }
    }
    let bundle = if rt == "Bundle" { Some(res) } else { bundle };
    for e in res["entry"].as_array().into_iter().flatten() {
        if let Some(r) = e.get("resource") {
            let (a, t) = check_resource(model, r, r, bundle);
            answered += a;
            total += t;
        }
    }
    for c in res["contained"].as_array().into_iter().flatten() {
        let (a, t) = check_resource(model, c, root, bundle);
        answered += a;
        total += t;
    }
    (answered, total)
}

#[test]
fn agree_on_fixtures_and_uk_core_examples() {
    let model = model();
    let mut files = Vec::new();
    json_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        &mut files,
    );
    for pkg in std::fs::read_dir(packages()).expect("packages").flatten() {
        json_files(&pkg.path().join("package/examples"), &mut files);
    }
    let (mut answered, mut total) = (0, 0);
    for f in &files {
        let Some(v) = read(f) else { continue };
        let (a, t) = check_resource(&model, &v, &v, None);
        answered += a;
        total += t;
    }
    println!(
        "{} files: {answered} of {total} evaluations answered natively",
        files.len()
    );
    assert!(files.len() > 100);
    assert!(answered * 2 > total, "{answered} of {total}");
}

#[test]
fn detects_shapes() {
    assert_eq!(
        detect(&normalise(
            "name.exists() or telecom.exists() or address.exists() or organization.exists()"
        )),
        Some(TypedFast::AnyExists(vec![
            "name".into(),
            "telecom".into(),
            "address".into(),
            "organization".into()
        ]))
    );
    assert_eq!(
        detect(&normalise("value.empty() or system.exists()")),
        Some(TypedFast::EmptyOrExists("value".into(), "system".into()))
    );
    assert_eq!(detect(&normalise("value.exists()")), None);
    assert_eq!(
        detect(&normalise("value.empty() or system.exists().not()")),
        None
    );
    assert_eq!(detect(&normalise("where(use = 'home').empty()")), None);
    assert_eq!(detect(&normalise("a.b.exists() or c.exists()")), None);
}

fn bundle_case(model: &ModelInfo, b: &Value, expected_fast: bool) {
    let mut any = false;
    for (_, cs) in fast_constraints("Bundle") {
        for c in cs {
            let input = InvariantInput {
                node: b,
                node_extension: None,
                node_type: "Bundle",
                resource: b,
                root_resource: b,
                bundle: Some(b),
            };
            any |= compare(model, &c, &input).0;
            for e in b["entry"].as_array().into_iter().flatten() {
                let input = InvariantInput {
                    node: e,
                    node_type: "Bundle.entry",
                    ..input
                };
                compare(model, &c, &input);
            }
        }
    }
    assert_eq!(any, expected_fast, "{b}");
}

#[test]
fn bundle_edge_cases() {
    let model = model();
    let p = |id: &str| json!({"resourceType": "Patient", "id": id});
    let cases = [
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": p("a"), "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:1", "resource": p("b"), "request": {"method": "POST", "url": "Patient"}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": p("a")}]}),
        json!({"resourceType": "Bundle", "type": "collection", "total": 3, "entry": [
            {"fullUrl": "http://x/Patient/1/_history/2", "resource": p("a"), "search": {"mode": "match"}},
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "meta": {"versionId": "2"}}},
            {"fullUrl": "urn:uuid:12", "resource": {"resourceType": "Patient", "meta": {"versionId": ""}}},
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "meta": {"versionId": "2"}}},
            {"response": {"status": "200"}},
            {}]}),
        json!({"resourceType": "Bundle", "type": "history", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": p("a")},
            {"fullUrl": "urn:uuid:1", "resource": p("a"), "request": {"method": "GET", "url": "x"}}]}),
        json!({"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [
            {"fullUrl": "urn:uuid:1", "search": {"mode": "match"}, "response": {"status": "200"}}]}),
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "200"}}, {"resource": p("x")}]}),
        json!({"resourceType": "Bundle", "type": "message", "entry": [{"resource": p("x")}]}),
        json!({"resourceType": "Bundle", "entry": [{"fullUrl": "urn:uuid:1"}, {"fullUrl": "urn:uuid:1"}]}),
        json!({"resourceType": "Bundle", "type": "collection", "entry": []}),
        json!({"resourceType": "Bundle", "type": "collection", "entry": {"fullUrl": "a"}}),
        json!({"resourceType": "Bundle", "type": "collection", "entry": [null, {"fullUrl": "a"}]}),
        json!({"resourceType": "Bundle", "type": "collection", "_type": {"id": "t"}}),
        json!({"resourceType": "Bundle", "type": 3, "total": 1}),
        json!({"resourceType": "Bundle", "type": ["a", "b"]}),
        json!({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": 3}, {"_fullUrl": {"id": "x"}}, {"resource": 1}]}),
        json!({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "a", "resource": {"resourceType": "Nope", "meta": {"versionId": "1"}}}]}),
    ];
    for (i, b) in cases.iter().enumerate() {
        bundle_case(&model, b, !(11..=13).contains(&i));
    }
}

fn typed_case(
    model: &ModelInfo,
    expr: &str,
    node_type: &str,
    node: &Value,
    root: &Value,
) -> (bool, InvariantOutcome) {
    let e = Expression::compile(expr).expect("expression");
    let input = InvariantInput {
        node,
        node_extension: None,
        node_type,
        resource: root,
        root_resource: root,
        bundle: None,
    };
    compare(model, &e, &input)
}

#[test]
fn reference_and_shape_edge_cases() {
    let model = model();
    let ref1 = "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))";
    let root = json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o1"}, {"resourceType": "Practitioner"}]});
    let bad_root = json!({"resourceType": "Patient", "contained": {"resourceType": "Organization", "id": "o1"}});
    for (r, root, want) in [
        (
            json!({"reference": "#o1"}),
            &root,
            Some(InvariantOutcome::Satisfied),
        ),
        (
            json!({"reference": "#o2"}),
            &root,
            Some(InvariantOutcome::Violated),
        ),
        (
            json!({"reference": "Patient/1"}),
            &root,
            Some(InvariantOutcome::Satisfied),
        ),
        (
            json!({"display": "x"}),
            &root,
            Some(InvariantOutcome::Satisfied),
        ),
        (
            json!({"reference": "#o1"}),
            &json!({"resourceType": "Patient"}),
            Some(InvariantOutcome::Violated),
        ),
        (json!({"reference": "#"}), &root, None),
        (json!({"reference": "#o1"}), &bad_root, None),
        (
            json!({"reference": "#o1", "_reference": {"id": "x"}}),
            &root,
            None,
        ),
        (json!({"reference": 5}), &root, None),
    ] {
        let (fast, out) = typed_case(&model, ref1, "Reference", &r, root);
        assert_eq!(fast, want.is_some(), "{r}");
        if let Some(w) = want {
            assert_eq!(out, w, "{r}");
        }
    }
    let cpt2 = "value.empty() or system.exists()";
    for (c, fast) in [
        (json!({"value": "1"}), true),
        (json!({"value": "1", "system": "phone"}), true),
        (json!({"system": "phone"}), true),
        (json!({"value": "1", "system": null}), true),
        (json!({"_value": {"extension": []}}), false),
        (json!({"value": ["1", "2"]}), true),
        (json!({"value": [null]}), false),
        (json!({"value": []}), true),
    ] {
        assert_eq!(
            typed_case(&model, cpt2, "ContactPoint", &c, &c).0,
            fast,
            "{c}"
        );
    }
    let pat1 = "name.exists() or telecom.exists() or address.exists() or organization.exists()";
    for c in [
        json!({"gender": "male"}),
        json!({"name": {"text": "x"}}),
        json!({"organization": {"reference": "x"}}),
    ] {
        assert!(typed_case(&model, pat1, "Patient.contact", &c, &c).0, "{c}");
    }
    let org1 = "(identifier.count() + name.count()) > 0";
    for c in [
        json!({"resourceType": "Organization"}),
        json!({"resourceType": "Organization", "name": "x"}),
        json!({"resourceType": "Organization", "identifier": [{"value": "1"}, {"value": "2"}]}),
    ] {
        assert!(typed_case(&model, org1, "Organization", &c, &c).0, "{c}");
    }
    let dom6 = "text.`div`.exists()";
    for (c, fast) in [
        (json!({"resourceType": "Patient"}), true),
        (
            json!({"resourceType": "Patient", "text": {"status": "generated"}}),
            true,
        ),
        (
            json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div/>"}}),
            true,
        ),
        (json!({"resourceType": "Patient", "text": "x"}), false),
    ] {
        assert_eq!(typed_case(&model, dom6, "Patient", &c, &c).0, fast, "{c}");
    }
    // an untyped focus is left to the general evaluator
    assert!(
        !typed_case(
            &model,
            cpt2,
            "NoSuchType",
            &json!({"value": "1"}),
            &json!({})
        )
        .0
    );
}
