//! Single-thread validation throughput of the fixture referral transaction Bundle
//! (ServiceRequest on the spbridge referral profile, Patient, Practitioner, PractitionerRole,
//! Organizations; UK Core profiles by default) with a reused compiled validator:
//!
//! * spbridge with FHIRPath invariants on (what intake runs),
//! * spbridge with invariants off (same run, to show their cost),
//! * spbridge with the JSON-schema confirming layer as well (what `spbridge validate` runs),
//! * the baseline: jsonschema-rs structure-only validation of the same document against the
//!   published R4 JSON schema.
//!
//! Run: `cargo bench --bench validation`. Figures go to BENCHMARKS.md.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use spbridge::definitions::{Definitions, DefinitionsConfig, R4_CORE};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

fn package_dir() -> PathBuf {
    std::env::var_os("SPBRIDGE_FHIR_PACKAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/fhir-packages"
            ))
        })
}

fn load(invariants: bool, json_schema: bool) -> Definitions {
    let mut config = DefinitionsConfig::standard(
        package_dir(),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/profiles"
        ))),
    );
    config.invariants = invariants;
    config.json_schema = json_schema;
    let t = Instant::now();
    let defs = Definitions::load(&config).expect("definitions");
    defs.precompile_standard_profiles().expect("precompile");
    eprintln!(
        "start-up (invariants {invariants}, schema {json_schema}): {:?} ({:?})",
        t.elapsed(),
        defs.timings
    );
    defs
}

fn bench(c: &mut Criterion) {
    let doc: Value =
        serde_json::from_str(include_str!("../fixtures/referral-transaction-bundle.json"))
            .expect("fixture");
    let with_invariants = load(true, false);
    let without_invariants = load(false, false);
    let with_schema = load(true, true);
    for (name, d) in [
        ("invariants on", &with_invariants),
        ("invariants off", &without_invariants),
        ("schema layer", &with_schema),
    ] {
        let outcome = d.validator.validate(&doc, None);
        assert!(!outcome.has_errors(), "{name}: {:?}", outcome.to_json());
    }
    let schema_path = package_dir()
        .join(R4_CORE)
        .join("package/other/fhir.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("schema")).expect("json");
    let baseline = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft6)
        .build(&schema)
        .expect("baseline");
    assert!(baseline.is_valid(&doc));

    let mut g = c.benchmark_group("referral-bundle");
    g.throughput(Throughput::Elements(1));
    g.bench_function("spbridge, invariants on", |b| {
        b.iter(|| black_box(with_invariants.validator.validate(black_box(&doc), None)))
    });
    g.bench_function("spbridge, invariants off", |b| {
        b.iter(|| black_box(without_invariants.validator.validate(black_box(&doc), None)))
    });
    g.bench_function("spbridge, invariants on + schema layer", |b| {
        b.iter(|| black_box(with_schema.validator.validate(black_box(&doc), None)))
    });
    g.bench_function("baseline: jsonschema-rs, R4 JSON schema", |b| {
        b.iter(|| black_box(baseline.is_valid(black_box(&doc))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
