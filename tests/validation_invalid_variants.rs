//! Table-driven invalid variants (same format as `fixtures/invalid/cases.json`) built on documents
//! that validate against base R4 and R4 core profiles (`tests/data/`), so every row runs with the
//! stand-in conformance module.
#[path = "support/validation/mod.rs"]
mod common;
use common::*;
use std::path::PathBuf;

#[test]
fn own_invalid_variants() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let results = run_cases(validator(), &cases, &dir);
    assert!(results.len() >= 40);
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !r.missing.is_empty())
        .map(|r| format!("{}: missing {:?}\n   got {:#?}", r.name, r.missing, r.got))
        .collect();
    eprintln!("{} cases, {} failing", results.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bases_are_valid() {
    for f in ["referral-bundle.json", "bp.json", "patient-ext.json"] {
        let o = validator().validate(&data(f), None);
        assert!(!o.has_errors(), "{f}: {:#?}", problems(&o));
    }
}
