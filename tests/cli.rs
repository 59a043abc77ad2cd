//! The `spbridge` command line from the outside: `validate` exit codes and output,
//! `fhirpath` results, `profiles snapshot`.

use serde_json::Value;
use std::process::{Command, Output};

fn spbridge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spbridge"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env(
            "SPBRIDGE_FHIR_PACKAGES",
            std::env::var_os("SPBRIDGE_FHIR_PACKAGES").unwrap_or_else(|| {
                concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-packages").into()
            }),
        )
        .args(args)
        .output()
        .expect("spbridge runs")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn validate_a_valid_referral_exits_0_with_an_operation_outcome() {
    let out = spbridge(&["validate", "fixtures/referral-transaction-bundle.json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome = stdout_json(&out);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["severity"] != "error"));
}

#[test]
fn validate_an_invalid_referral_exits_1_and_names_the_element() {
    let dir = tempfile::tempdir().unwrap();
    let mut sr: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/referral/servicerequest.json"
        ))
        .unwrap(),
    )
    .unwrap();
    sr["authoredOn"] = Value::from("25/11/2026");
    let path = dir.path().join("bad.json");
    std::fs::write(&path, serde_json::to_vec(&sr).unwrap()).unwrap();
    let out = spbridge(&["validate", "--format", "text", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ServiceRequest.authoredOn"), "{text}");
}

#[test]
fn validate_a_missing_file_exits_2() {
    let out = spbridge(&["validate", "no-such-file.json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn fhirpath_prints_the_result_collection_as_json() {
    let out = spbridge(&[
        "fhirpath",
        "identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').exists() and birthDate < @2000-01-01",
        "fixtures/referral/patient.json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out), serde_json::json!([true]));
}

#[test]
fn fhirpath_reports_a_syntax_error_with_its_position() {
    let out = spbridge(&["fhirpath", "name.where(", "fixtures/referral/patient.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error"), "{err}");
}

#[test]
fn profiles_snapshot_prints_a_generated_snapshot() {
    let out = spbridge(&[
        "profiles",
        "snapshot",
        "https://fhir.spbridge.org/StructureDefinition/SPBridge-SocialPrescribingReferral",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sd = stdout_json(&out);
    let elements = sd["snapshot"]["element"].as_array().unwrap();
    assert!(elements.iter().any(|e| e["id"] == "ServiceRequest.code"));
}
