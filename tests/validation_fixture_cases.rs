//! The project's invalid-variant table (`fixtures/invalid/cases.json`, 117 JSON-Patch
//! mutations of valid fixtures) and the valid fixtures, validated the way spbridge does it:
//! R4 core + UK Core + spbridge's own profiles, snapshots generated, FHIRPath invariants on,
//! the JSON-schema layer on. Every expected issue (code, location, constraint key) must be
//! reported as an error, and no valid fixture may have an error.

use serde_json::Value;
use spbridge::definitions::{Definitions, DefinitionsConfig};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn package_dir() -> PathBuf {
    std::env::var_os("SPBRIDGE_FHIR_PACKAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/fhir-packages"))
}

fn definitions() -> &'static Definitions {
    static D: OnceLock<Definitions> = OnceLock::new();
    D.get_or_init(|| {
        let mut config = DefinitionsConfig::standard(package_dir(), Some(root().join("profiles")));
        config.json_schema = true;
        Definitions::load(&config).expect("definitions load")
    })
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn errors(outcome: &spbridge::outcome::OperationOutcome) -> Vec<String> {
    outcome
        .issues
        .iter()
        .filter(|i| i.severity.is_failure())
        .map(|i| {
            format!(
                "{} @ {}: {}",
                i.code.as_code(),
                i.expression.join(","),
                i.diagnostics
            )
        })
        .collect()
}

#[test]
fn every_invalid_variant_reports_its_expected_issues() {
    let fixtures = root().join("fixtures");
    let cases = read(&fixtures.join("invalid/cases.json"));
    let cases = cases.as_array().expect("array of cases");
    assert!(cases.len() >= 40, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let mut doc = read(&fixtures.join(case["base"].as_str().expect("base")));
        let patch: json_patch::Patch =
            serde_json::from_value(case["patch"].clone()).expect("patch");
        json_patch::patch(&mut doc, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        let outcome = definitions().validator.validate(&doc, None);
        for expect in case["expect"].as_array().expect("expect") {
            let code = expect["code"].as_str().expect("code");
            let expression = expect["expression"].as_str().expect("expression");
            let detail = expect.get("detail").and_then(Value::as_str);
            let found = outcome.issues.iter().any(|i| {
                i.severity.is_failure()
                    && i.code.as_code() == code
                    && i.expression.iter().any(|x| x == expression)
                    && detail.is_none_or(|d| i.detail_code.as_deref() == Some(d))
            });
            if !found {
                failures.push(format!(
                    "{name}: expected {code} @ {expression}{}; got {:#?}",
                    detail.map(|d| format!(" [{d}]")).unwrap_or_default(),
                    errors(&outcome)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} missing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_valid_fixture_has_no_errors() {
    let fixtures = root().join("fixtures");
    let mut files = Vec::new();
    for dir in [
        "",
        "referral",
        "referral/variants",
        "task-updates",
        "providers",
    ] {
        for entry in std::fs::read_dir(fixtures.join(dir)).expect("fixtures folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 20, "found {} fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let outcome = definitions().validator.validate(&read(path), None);
        if outcome.has_errors() {
            failures.push(format!("{}: {:#?}", path.display(), errors(&outcome)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_referral_without_the_referral_profile_is_checked_against_it_when_asked() {
    let fixtures = root().join("fixtures");
    let mut sr = read(&fixtures.join("referral/servicerequest.json"));
    sr.as_object_mut().expect("object").remove("meta");
    sr["code"]["coding"][0]["code"] = Value::from("306206005");
    let plain = definitions().validator.validate(&sr, None);
    assert!(!plain.has_errors(), "{:#?}", errors(&plain));
    let referral = definitions()
        .validator
        .validate(&sr, Some(spbridge::definitions::REFERRAL_PROFILE));
    assert!(
        referral
            .issues
            .iter()
            .any(|i| i.severity.is_failure()
                && i.expression.iter().any(|e| e == "ServiceRequest.code")),
        "{:#?}",
        errors(&referral)
    );
}
