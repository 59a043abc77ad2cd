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

/// Profiling mode (no criterion): `SPBRIDGE_BENCH_ITERS=N [SPBRIDGE_BENCH_VARIANT=on|off|schema|baseline]
/// target/release/deps/validation-*` validates the Bundle N times with one variant and exits, so
/// `valgrind --tool=callgrind` gives repeatable instruction counts on a busy machine.
fn profile_mode() -> bool {
    let Some(n) = std::env::var("SPBRIDGE_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return false;
    };
    let variant = std::env::var("SPBRIDGE_BENCH_VARIANT").unwrap_or_else(|_| "on".into());
    let doc = fixture();
    if variant == "baseline" {
        let baseline = baseline_validator();
        let t = Instant::now();
        let mut ok = 0;
        for _ in 0..n {
            ok += usize::from(black_box(baseline.is_valid(black_box(&doc))));
        }
        let per = t.elapsed() / n.max(1) as u32;
        eprintln!("baseline: {n} validations, {per:?} each, {ok} valid");
        return true;
    }
    let d = match variant.as_str() {
        "off" => load(false, false),
        "schema" => load(true, true),
        _ => load(true, false),
    };
    let t = Instant::now();
    let mut issues = 0;
    for _ in 0..n {
        issues += black_box(d.validator.validate(black_box(&doc), None))
            .issues
            .len();
    }
    let per = t.elapsed() / n.max(1) as u32;
    eprintln!(
        "{variant}: {n} validations, {per:?} each, {} issues each",
        issues / n.max(1)
    );
    true
}

/// jsonschema-rs with the published R4 JSON schema (structure only).
fn baseline_validator() -> jsonschema::Validator {
    let schema_path = package_dir()
        .join(R4_CORE)
        .join("package/other/fhir.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("schema")).expect("json");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft6)
        .build(&schema)
        .expect("baseline")
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/referral-transaction-bundle.json"))
        .expect("fixture")
}

fn bench(c: &mut Criterion) {
    if profile_mode() {
        return;
    }
    let doc = fixture();
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
    let baseline = baseline_validator();
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
