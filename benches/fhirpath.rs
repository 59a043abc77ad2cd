//! FHIRPath evaluation benchmarks: ele-1 (fast path and general evaluator) and typical R4
//! invariants over the FHIRPath suite's Patient example, plus a full pass of every R4 Patient
//! invariant at every element occurrence.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;
use spbridge::fhirpath::{EvalEnv, Expression, Item, ModelInfo, NodeRef};
use std::hint::black_box;
use std::path::PathBuf;

fn packages() -> PathBuf {
    std::env::var("SPBRIDGE_FHIR_PACKAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/fhir-packages"
            ))
        })
}

fn load(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json")
}

fn bench(c: &mut Criterion) {
    let r4 = packages().join("hl7.fhir.r4.core#4.0.1/package");
    let t0 = std::time::Instant::now();
    let model = ModelInfo::from_package_dir(&r4).expect("model");
    eprintln!(
        "ModelInfo from R4 core package folder (read + parse + build): {:?}",
        t0.elapsed()
    );
    let sds: Vec<Value> = std::fs::read_dir(&r4)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("StructureDefinition-"))
        })
        .map(load)
        .collect();
    let t1 = std::time::Instant::now();
    let rebuilt = ModelInfo::from_structure_definitions(sds.iter());
    eprintln!(
        "ModelInfo from already-parsed StructureDefinitions: {:?}",
        t1.elapsed()
    );
    drop(rebuilt);
    let tests = std::env::var("SPBRIDGE_FHIRPATH_TESTS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhirpath-tests").into()
    });
    let patient = load(PathBuf::from(tests).join("input/patient-example.json"));
    let env = EvalEnv::for_resource(&model, &patient);
    let root = env.resource_node(&patient);

    let ele1 = Expression::compile("hasValue() or (children().count() > id.count())").unwrap();
    let descendants = Expression::compile("descendants()").unwrap();
    let all_nodes: Vec<NodeRef> = descendants
        .evaluate(&env, root)
        .unwrap()
        .into_iter()
        .filter_map(|i| match i {
            Item::Node(n) => Some(n),
            _ => None,
        })
        .collect();
    c.bench_function(
        &format!("ele-1 fast path x{} nodes", all_nodes.len()),
        |b| {
            b.iter(|| {
                all_nodes
                    .iter()
                    .filter(|n| ele1.evaluate_boolean(&env, **n).unwrap() == Some(true))
                    .count()
            })
        },
    );
    c.bench_function(
        &format!("ele-1 general evaluator x{} nodes", all_nodes.len()),
        |b| {
            b.iter(|| {
                all_nodes
                    .iter()
                    .filter(|n| ele1.evaluate_boolean_general(&env, **n).unwrap() == Some(true))
                    .count()
            })
        },
    );

    let typical = [
        ("pat-1 on Patient.contact", "Patient.contact", "name.exists() or telecom.exists() or address.exists() or organization.exists()"),
        ("per-1 on Patient.name.period", "Patient.name.period", "start.hasValue().not() or end.hasValue().not() or (start <= end)"),
        ("dom-3 on Patient", "Patient", "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()"),
        ("ref-1 on Patient.managingOrganization", "Patient.managingOrganization", "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))"),
    ];
    for (name, path, expr) in typical {
        let e = Expression::compile(expr).unwrap();
        let path_expr = Expression::compile(path).unwrap();
        let nodes: Vec<NodeRef> = path_expr
            .evaluate(&env, root)
            .unwrap()
            .into_iter()
            .filter_map(|i| match i {
                Item::Node(n) => Some(n),
                _ => None,
            })
            .collect();
        c.bench_function(name, |b| {
            b.iter(|| {
                for n in &nodes {
                    black_box(e.evaluate_boolean(&env, *n).unwrap());
                }
            })
        });
    }

    // every R4 Patient invariant at every element occurrence (what the validator does per Patient)
    let sd = load(r4.join("StructureDefinition-Patient.json"));
    let paths_store: Vec<Expression> = sd["snapshot"]["element"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|el| el["path"].as_str())
        .filter(|p| !p.contains("[x]"))
        .map(|p| Expression::compile(p).unwrap())
        .collect();
    let mut work: Vec<(Expression, Vec<NodeRef>)> = Vec::new();
    let mut path_iter = paths_store.iter();
    for el in sd["snapshot"]["element"].as_array().unwrap() {
        let path = el["path"].as_str().unwrap();
        if path.contains("[x]") {
            continue;
        }
        let path_expr = path_iter.next().unwrap();
        let nodes: Vec<NodeRef> = path_expr
            .evaluate(&env, root)
            .unwrap()
            .into_iter()
            .filter_map(|i| match i {
                Item::Node(n) => Some(n),
                _ => None,
            })
            .collect();
        for c in el["constraint"].as_array().into_iter().flatten() {
            if let Some(x) = c["expression"].as_str() {
                work.push((Expression::compile(x).unwrap(), nodes.clone()));
            }
        }
    }
    let evaluations: usize = work.iter().map(|(_, n)| n.len()).sum();
    c.bench_function(
        &format!("all R4 Patient invariants ({evaluations} evaluations)"),
        |b| {
            b.iter(|| {
                for (e, nodes) in &work {
                    for n in nodes {
                        black_box(e.evaluate_boolean(&env, *n).unwrap());
                    }
                }
            })
        },
    );
}

/// What a validator does per referral Bundle: every R4 core constraint of each resource's
/// snapshot at every occurrence of its element (entry resources with the Bundle for resolve()),
/// plus ele-1 on every node (data-type internals).
fn bench_referral_bundle(c: &mut Criterion) {
    let r4 = packages().join("hl7.fhir.r4.core#4.0.1/package");
    let model = ModelInfo::cached_from_package_dir(&r4).expect("model");
    let bundle: Value =
        serde_json::from_str(include_str!("data/referral-bundle.json")).expect("bundle");
    let mut by_type: std::collections::HashMap<String, Vec<(Expression, Vec<Expression>)>> =
        Default::default();
    let mut resources: Vec<&Value> = vec![&bundle];
    for e in bundle["entry"].as_array().unwrap() {
        resources.push(&e["resource"]);
    }
    for r in &resources {
        let rt = r["resourceType"].as_str().unwrap().to_string();
        if by_type.contains_key(&rt) {
            continue;
        }
        let sd = load(r4.join(format!("StructureDefinition-{rt}.json")));
        let mut list = Vec::new();
        for el in sd["snapshot"]["element"].as_array().unwrap() {
            let path = el["path"].as_str().unwrap();
            let cs: Vec<Expression> = el["constraint"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["expression"].as_str())
                .map(|x| Expression::compile(x).unwrap())
                .collect();
            if !path.contains("[x]") && !cs.is_empty() {
                list.push((Expression::compile(path).unwrap(), cs));
            }
        }
        by_type.insert(rt, list);
    }
    let ele1 = Expression::compile("hasValue() or (children().count() > id.count())").unwrap();
    let descendants = Expression::compile("descendants()").unwrap();
    // (expression, focus, resource)
    let mut work: Vec<(&Expression, NodeRef, &Value)> = Vec::new();
    for r in &resources {
        let env = EvalEnv::for_resource(&model, r);
        let root = env.resource_node(r);
        for (path, cs) in &by_type[r["resourceType"].as_str().unwrap()] {
            for item in path.evaluate(&env, root).unwrap() {
                if let Item::Node(n) = item {
                    for c in cs {
                        work.push((c, n, *r));
                    }
                }
            }
        }
        // entries are also descendants of the Bundle: only walk each resource's own nodes once
        if !std::ptr::eq(*r, &bundle) {
            for item in descendants.evaluate(&env, root).unwrap() {
                if let Item::Node(n) = item {
                    work.push((&ele1, n, *r));
                }
            }
        }
    }
    let general = work
        .iter()
        .filter(|(e, _, _)| e.text() != ele1.text())
        .count();
    eprintln!(
        "referral Bundle: {} evaluations ({} of them not ele-1)",
        work.len(),
        general
    );
    c.bench_function(
        &format!(
            "referral Bundle: all R4 invariants ({} evaluations)",
            work.len()
        ),
        |b| {
            b.iter(|| {
                let mut ok = 0usize;
                for (e, n, r) in &work {
                    let env = EvalEnv {
                        model: &model,
                        resource: Some(*r),
                        root_resource: Some(*r),
                        context: None,
                        bundle: Some(&bundle),
                        terminology: None,
                        profiles: None,
                        strict: false,
                    };
                    if e.evaluate_boolean(&env, *n).unwrap_or(None) != Some(false) {
                        ok += 1;
                    }
                }
                black_box(ok)
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench, bench_referral_bundle
}
criterion_main!(benches);
