//! End-to-end behaviour of the public API: profile choice, strict mode, Send + Sync, output shape.
#[path = "support/validation/mod.rs"]
mod common;
use common::*;
use serde_json::json;
use spbridge::outcome::{IssueType, Severity};
use spbridge::validation::Validator;

#[test]
fn validator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Validator>();
}

#[test]
fn referral_bundle_is_valid() {
    let o = validator().validate(&data("referral-bundle.json"), None);
    assert!(!o.has_errors(), "{:#?}", problems(&o));
    // SNOMED CT bindings are reported as not checked, never passed silently
    assert!(o
        .issues
        .iter()
        .any(|i| i.code == IssueType::NotSupported && i.diagnostics.contains("SNOMED CT")));
    assert_eq!(o.to_json()["resourceType"], "OperationOutcome");
}

#[test]
fn unknown_meta_profile_warns_or_errors_in_strict_mode() {
    let p = json!({"resourceType": "Patient", "meta": {"profile": ["https://example.org/StructureDefinition/Nope"]}, "gender": "male"});
    let o = validator().validate(&p, None);
    let i = o
        .issues
        .iter()
        .find(|i| i.expression == ["Patient.meta.profile"])
        .unwrap();
    assert_eq!(i.severity, Severity::Warning);
    let strict = Validator::builder(conformance())
        .strict_profiles(true)
        .build()
        .unwrap();
    let o = strict.validate(&p, None);
    assert!(o
        .issues
        .iter()
        .any(|i| i.expression == ["Patient.meta.profile"] && i.severity == Severity::Error));
}

#[test]
fn default_profile_and_explicit_profile_are_used() {
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    let v = Validator::builder(conformance())
        .default_profile(
            "Observation",
            "http://hl7.org/fhir/StructureDefinition/vitalsigns",
        )
        .build()
        .unwrap();
    let o = v.validate(&obs, None);
    assert!(
        o.issues
            .iter()
            .any(|i| i.code == IssueType::Required && i.expression == ["Observation.subject"]),
        "{:#?}",
        problems(&o)
    );
    assert!(!validator().validate(&obs, None).has_errors());
    let o = validator().validate(
        &obs,
        Some("http://hl7.org/fhir/StructureDefinition/vitalsigns"),
    );
    assert!(o.has_errors());
}

#[test]
fn nhs_number_is_never_echoed() {
    let p = json!({"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}]});
    let o = validator().validate(&p, None);
    assert!(o.has_errors());
    assert!(o
        .issues
        .iter()
        .all(|i| !i.diagnostics.contains("9434765918")));
    assert!(!serde_json::to_string(&o.to_json())
        .unwrap()
        .contains("943476591"));
}

#[test]
fn garbage_input_never_panics() {
    for v in [
        json!(null),
        json!(1),
        json!([]),
        json!({}),
        json!({"resourceType": 5}),
        json!({"resourceType": "Bundle", "entry": [null, 1, {"resource": []}]}),
        json!({"resourceType": "Patient", "name": [[[]]], "_birthDate": [1], "extension": [{}], "contained": [{"resourceType": "Patient", "contained": [1]}]}),
    ] {
        let o = validator().validate(&v, None);
        assert!(o.has_errors(), "{v}");
    }
}
