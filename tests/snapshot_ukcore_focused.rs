//! Focused checks on UK Core snapshots: the NHS number identifier slice,
//! extension slices pulled from their definitions, complex extensions,
//! profiles on profiles, choice renames, contentReference, errors, caching.

#[path = "support/snapshot.rs"]
mod common;

use common::*;
use serde_json::{json, Value};
use spbridge::conformance::{Conformance, SnapshotError};
use std::sync::{Arc, OnceLock};

fn stu3() -> &'static Conformance {
    static CONF: OnceLock<Conformance> = OnceLock::new();
    CONF.get_or_init(|| conformance(STU3))
}

fn uk(name: &str) -> Arc<Value> {
    let sd = stu3()
        .structure_definition(&format!("{UKCORE}{name}"))
        .unwrap();
    assert_well_formed(&sd);
    sd
}

#[test]
fn patient_nhs_number_identifier_slice() {
    let sd = uk("UKCore-Patient");
    let identifier = element(&sd, "Patient.identifier");
    assert_eq!(
        identifier["slicing"]["discriminator"][0],
        json!({"type": "value", "path": "system"})
    );
    assert_eq!(identifier["mustSupport"], true);
    let slice = element(&sd, "Patient.identifier:nhsNumber");
    assert_eq!(slice["sliceName"], "nhsNumber");
    assert_eq!(slice["max"], "1");
    assert_eq!(slice["base"]["path"], "Patient.identifier");
    let system = element(&sd, "Patient.identifier:nhsNumber.system");
    assert_eq!(system["path"], "Patient.identifier.system");
    assert_eq!(system["min"], 1);
    assert_eq!(system["fixedUri"], "https://fhir.nhs.uk/Id/nhs-number");
    assert_eq!(
        system["base"],
        json!({"path": "Identifier.system", "min": 0, "max": "1"})
    );
    assert_eq!(element(&sd, "Patient.identifier:nhsNumber.value")["min"], 1);
    // The verification-status extension on the identifier, with its own url.
    let status_url = element(
        &sd,
        "Patient.identifier:nhsNumber.extension:nhsNumberVerificationStatus.url",
    );
    assert_eq!(
        status_url["fixedUri"],
        format!("{UKCORE}Extension-UKCore-NHSNumberVerificationStatus")
    );
}

#[test]
fn patient_extension_slices_come_from_their_definitions() {
    let sd = uk("UKCore-Patient");
    let ext_url = format!("{UKCORE}Extension-UKCore-EthnicCategory");
    let ext = stu3().structure_definition(&ext_url).unwrap();
    let slice = element(&sd, "Patient.extension:ethnicCategory");
    assert_eq!(slice["max"], "1");
    assert_eq!(slice["type"][0]["profile"][0], ext_url.as_str());
    assert_eq!(slice["short"], "The ethnicity of the subject.");
    // Not in the differential: taken from the extension's root element.
    assert_eq!(
        slice["definition"],
        element(&ext, "Extension")["definition"]
    );
    assert_eq!(
        element(&sd, "Patient.extension:ethnicCategory.url")["fixedUri"],
        ext_url.as_str()
    );
    let value = element(&sd, "Patient.extension:ethnicCategory.value[x]");
    assert_eq!(type_codes(value), ["CodeableConcept"]);
    assert_eq!(
        value["binding"],
        element(&ext, "Extension.value[x]")["binding"]
    );
    assert!(value["binding"]["valueSet"].is_string());
    // A differential that dives into a profiled extension keeps its own text.
    let birth_place = element(&sd, "Patient.extension:birthPlace.value[x]");
    assert_eq!(type_codes(birth_place), ["Address"]);
    assert_eq!(
        birth_place["short"],
        "The registered place of birth of the patient."
    );
    // Nested extension of an R4 core complex extension, constrained in the differential.
    let level = element(
        &sd,
        "Patient.communication.extension:proficiency.extension:level.value[x]",
    );
    assert_eq!(type_codes(level), ["Coding"]);
    assert_eq!(
        level["short"],
        "The proficiency level for the communication"
    );
    assert_eq!(
        element(
            &sd,
            "Patient.communication.extension:proficiency.extension:level.url"
        )["fixedUri"],
        "level"
    );
    // Extension on a primitive (birthDate) expands the primitive's children.
    assert_eq!(
        element(&sd, "Patient.birthDate.value")["base"]["path"],
        "date.value"
    );
    assert_eq!(
        type_codes(element(
            &sd,
            "Patient.birthDate.extension:birthTime.value[x]"
        )),
        ["dateTime"]
    );
}

#[test]
fn complex_extension_with_nested_extensions() {
    let url = format!("{UKCORE}Extension-UKCore-AddressKey");
    let sd = stu3().structure_definition(&url).unwrap();
    assert_well_formed(&sd);
    assert_eq!(element(&sd, "Extension.url")["fixedUri"], url.as_str());
    assert_eq!(element(&sd, "Extension.value[x]")["max"], "0");
    let ext = element(&sd, "Extension.extension");
    assert_eq!(ext["slicing"]["discriminator"][0]["path"], "url");
    assert_eq!(element(&sd, "Extension.extension:type")["min"], 1);
    assert_eq!(
        element(&sd, "Extension.extension:type.url")["fixedUri"],
        "type"
    );
    assert_eq!(
        type_codes(element(&sd, "Extension.extension:type.value[x]")),
        ["CodeableConcept"]
    );
    assert_eq!(
        type_codes(element(&sd, "Extension.extension:value.value[x]")),
        ["string"]
    );
    // Used in a profile, the whole structure is pulled in under the slice.
    let patient = uk("UKCore-Patient");
    assert_eq!(
        element(
            &patient,
            "Patient.address.extension:addressKey.extension:type.url"
        )["fixedUri"],
        "type"
    );
}

#[test]
fn service_request() {
    let sd = uk("UKCore-ServiceRequest");
    let category = element(&sd, "ServiceRequest.category");
    assert_eq!(
        category["slicing"]["discriminator"][0]["path"],
        "coding.system"
    );
    assert_eq!(
        element(
            &sd,
            "ServiceRequest.category:genomicsWholeCaseSequencing.coding.system"
        )["fixedUri"],
        "https://fhir.hl7.org.uk/CodeSystem/UKCore-GenomeSequencingCategory"
    );
    assert_eq!(
        element(&sd, "ServiceRequest.extension:sourceOfServiceRequest")["max"],
        "1"
    );
    assert_eq!(
        element(&sd, "ServiceRequest.priority.extension:priorityReason.url")["fixedUri"],
        format!("{UKCORE}Extension-UKCore-PriorityReason")
    );
    let code = element(&sd, "ServiceRequest.code");
    assert_eq!(code["binding"]["strength"], "preferred");
    assert_eq!(code["mustSupport"], true);
    let subject = element(&sd, "ServiceRequest.subject");
    assert_eq!(subject["min"], 1);
    assert_eq!(subject["mustSupport"], true);
    // Inherited constraints survive with their source.
    let root = element(&sd, "ServiceRequest");
    let keys: Vec<&str> = root["constraint"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["key"].as_str())
        .collect();
    assert!(keys.contains(&"prr-1"), "{keys:?}");
    // bodySite: the differential gives only a strength; the base value set stays.
    let body_site = element(&sd, "ServiceRequest.bodySite");
    assert_eq!(body_site["binding"]["strength"], "preferred");
    assert!(body_site["binding"]["valueSet"].is_string());
}

#[test]
fn task_message_header_bundle() {
    let task = uk("UKCore-Task");
    assert_eq!(
        element(&task, "Task.restriction.period")["mustSupport"],
        true
    );
    assert_eq!(element(&task, "Task.status")["min"], 1);
    assert_eq!(type_codes(element(&task, "Task.input.value[x]")).len(), 50);
    let mh = uk("UKCore-MessageHeader");
    let event = element(&mh, "MessageHeader.event[x]");
    assert_eq!(event["mustSupport"], true);
    assert_eq!(type_codes(event), ["Coding", "uri"]);
    assert_eq!(element(&mh, "MessageHeader.source.endpoint")["min"], 1);
    let bundle = uk("UKCore-Bundle");
    assert_eq!(element(&bundle, "Bundle.entry")["mustSupport"], true);
    assert_eq!(
        type_codes(element(&bundle, "Bundle.entry.resource")),
        ["Resource"]
    );
    assert_eq!(
        element(&bundle, "Bundle.entry.link")["contentReference"],
        "#Bundle.link"
    );
}

#[test]
fn profile_on_profile_on_profile() {
    // UKCore-Observation <- UKCore-Observation-VitalSigns <- ...-BloodPressure
    let bp = uk("UKCore-Observation-VitalSigns-BloodPressure");
    // From UKCore-Observation.
    assert!(has_element(
        &bp,
        "Observation.extension:triggeredByR5.extension:reason.value[x]"
    ));
    assert_eq!(element(&bp, "Observation.performer")["mustSupport"], true);
    // From UKCore-Observation-VitalSigns.
    assert_eq!(element(&bp, "Observation.status")["fixedCode"], "final");
    assert_eq!(
        element(&bp, "Observation.category.coding.code")["fixedCode"],
        "vital-signs"
    );
    let root_keys: Vec<String> = element(&bp, "Observation")["constraint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}@{}",
                c["key"].as_str().unwrap(),
                c["source"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        root_keys.contains(&format!(
            "ukcore-obs-vs-001@{UKCORE}UKCore-Observation-VitalSigns"
        )),
        "{root_keys:?}"
    );
    // Its own component slices; slices start from the constrained sliced element.
    assert_eq!(
        element(&bp, "Observation.component")["slicing"]["rules"],
        "closed"
    );
    let sys = "Observation.component:SystolicBP.code.coding:loinc";
    assert_eq!(element(&bp, &format!("{sys}.code"))["fixedCode"], "8480-6");
    assert_eq!(
        element(&bp, &format!("{sys}.system"))["fixedUri"],
        "http://loinc.org"
    );
    assert_eq!(element(&bp, "Observation.component:DiastolicBP")["min"], 0);
    assert_eq!(
        type_codes(element(&bp, "Observation.component:SystolicBP.value[x]")),
        ["Quantity"]
    );
    assert_eq!(
        element(&bp, "Observation.component:SystolicBP.value[x].code")["fixedCode"],
        "mm[Hg]"
    );
}

fn test_profile(url: &str, base: &str, ty: &str, diff: Value) -> Value {
    json!({
        "resourceType": "StructureDefinition", "url": url, "name": "Test", "status": "draft",
        "kind": "resource", "abstract": false, "type": ty, "baseDefinition": base,
        "derivation": "constraint", "differential": {"element": diff}
    })
}

fn overlay(resources: Vec<Value>) -> Conformance {
    Conformance::new(Arc::new(Overlay::new(resolver(&[STU3, R4]), resources)))
}

#[test]
fn own_profile_on_uk_core_with_choice_rename_reslice_and_constraint() {
    let url = "https://example.org/StructureDefinition/Referral";
    let sd = test_profile(
        url,
        &format!("{UKCORE}UKCore-ServiceRequest"),
        "ServiceRequest",
        json!([
            {"id": "ServiceRequest", "path": "ServiceRequest",
             "constraint": [{"key": "ref-1", "severity": "error", "human": "x", "expression": "true"}]},
            {"id": "ServiceRequest.category:genomicsWholeCaseSequencing", "path": "ServiceRequest.category",
             "sliceName": "genomicsWholeCaseSequencing",
             "slicing": {"discriminator": [{"type": "value", "path": "coding.code"}], "rules": "open"}},
            {"id": "ServiceRequest.category:genomicsWholeCaseSequencing/wgs", "path": "ServiceRequest.category",
             "sliceName": "genomicsWholeCaseSequencing/wgs", "max": "1"},
            {"id": "ServiceRequest.category:genomicsWholeCaseSequencing/wgs.coding.code", "path": "ServiceRequest.category.coding.code",
             "fixedCode": "wgs"},
            {"id": "ServiceRequest.code", "path": "ServiceRequest.code", "min": 1,
             "patternCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "871731000000106"}]}},
            {"id": "ServiceRequest.occurrenceDateTime", "path": "ServiceRequest.occurrenceDateTime", "min": 1},
            {"id": "ServiceRequest.requester", "path": "ServiceRequest.requester", "min": 1,
             "type": [{"code": "Reference", "targetProfile": [format!("{UKCORE}UKCore-PractitionerRole")]}]},
            {"id": "ServiceRequest.reasonCode", "path": "ServiceRequest.reasonCode", "min": 1}
        ]),
    );
    let conf = overlay(vec![sd]);
    let out = conf.structure_definition(url).unwrap();
    assert_well_formed(&out);
    // Inherited from UKCore-ServiceRequest.
    assert_eq!(element(&out, "ServiceRequest.subject")["min"], 1);
    assert_eq!(
        element(
            &out,
            "ServiceRequest.category:genomicsWholeCaseSequencing/wgs.coding.system"
        )["fixedUri"],
        "https://fhir.hl7.org.uk/CodeSystem/UKCore-GenomeSequencingCategory"
    );
    assert_eq!(
        element(
            &out,
            "ServiceRequest.category:genomicsWholeCaseSequencing/wgs.coding.code"
        )["fixedCode"],
        "wgs"
    );
    let root = element(&out, "ServiceRequest");
    let added = root["constraint"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "ref-1")
        .unwrap();
    assert_eq!(added["source"], url);
    assert!(element(&out, "ServiceRequest.code")["patternCodeableConcept"].is_object());
    // Renamed choice: a type slice, and the choice restricted to that type.
    let occurrence = element(&out, "ServiceRequest.occurrence[x]");
    assert_eq!(type_codes(occurrence), ["dateTime"]);
    assert_eq!(
        occurrence["slicing"]["discriminator"][0],
        json!({"type": "type", "path": "$this"})
    );
    let slice = element(&out, "ServiceRequest.occurrence[x]:occurrenceDateTime");
    assert_eq!(slice["min"], 1);
    assert_eq!(type_codes(slice), ["dateTime"]);
    let requester = element(&out, "ServiceRequest.requester");
    assert_eq!(
        requester["type"][0]["targetProfile"][0],
        format!("{UKCORE}UKCore-PractitionerRole")
    );
    // Cached: the same Arc comes back.
    let again = conf.structure_definition(url).unwrap();
    assert!(Arc::ptr_eq(&out, &again));
    assert_eq!(conf.snapshot_json(url).unwrap(), *out);
}

#[test]
fn content_reference_is_expanded_when_constrained() {
    let url = "https://example.org/StructureDefinition/Q";
    let sd = test_profile(
        url,
        "http://hl7.org/fhir/StructureDefinition/Questionnaire",
        "Questionnaire",
        json!([{"id": "Questionnaire.item.item.linkId", "path": "Questionnaire.item.item.linkId", "maxLength": 10}]),
    );
    let conf = overlay(vec![sd]);
    let out = conf.structure_definition(url).unwrap();
    assert_well_formed(&out);
    let link = element(&out, "Questionnaire.item.item.linkId");
    assert_eq!(link["maxLength"], 10);
    assert_eq!(link["base"]["path"], "Questionnaire.item.linkId");
    assert_eq!(
        element(&out, "Questionnaire.item.item")["contentReference"],
        "#Questionnaire.item"
    );
}

#[test]
fn errors_name_profile_and_element() {
    let url = "https://example.org/StructureDefinition/Bad";
    let sd = test_profile(
        url,
        "http://hl7.org/fhir/StructureDefinition/Patient",
        "Patient",
        json!([{"id": "Patient.nonsense.value", "path": "Patient.nonsense.value", "min": 1}]),
    );
    let conf = overlay(vec![sd]);
    match conf.structure_definition(url) {
        Err(SnapshotError::Element {
            profile, element, ..
        }) => {
            assert_eq!(profile, url);
            assert_eq!(element, "Patient.nonsense.value");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Diving into a multi-typed choice without choosing a type is an error too.
    let url2 = "https://example.org/StructureDefinition/Bad2";
    let sd2 = test_profile(
        url2,
        "http://hl7.org/fhir/StructureDefinition/Patient",
        "Patient",
        json!([{"id": "Patient.deceased[x].id", "path": "Patient.deceased[x].id", "max": "0"}]),
    );
    let conf = overlay(vec![sd2]);
    let err = conf.structure_definition(url2).unwrap_err();
    assert!(
        err.to_string().contains(url2) && err.to_string().contains("Patient.deceased[x].id"),
        "{err}"
    );
    assert!(matches!(
        conf.structure_definition("https://example.org/missing"),
        Err(SnapshotError::NotFound { .. })
    ));
}

#[test]
fn cycles_are_detected() {
    let a = "https://example.org/StructureDefinition/A";
    let b = "https://example.org/StructureDefinition/B";
    let conf = overlay(vec![
        test_profile(a, b, "Patient", json!([])),
        test_profile(b, a, "Patient", json!([])),
    ]);
    let err = conf.structure_definition(a).unwrap_err();
    assert!(
        matches!(err.root_cause(), SnapshotError::Cycle { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("circular"), "{err}");
}

#[test]
fn conformance_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Conformance>();
    let conf = Arc::new(conformance(STU3));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let conf = conf.clone();
            std::thread::spawn(move || {
                conf.structure_definition(&format!("{UKCORE}UKCore-Encounter"))
                    .map(|sd| sd["snapshot"]["element"].as_array().map(Vec::len))
            })
        })
        .collect();
    let sizes: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(sizes[0], sizes[1]);
}

#[test]
fn stu2_patient_has_the_same_nhs_number_slice() {
    let conf = conformance(STU2);
    let sd = conf
        .structure_definition(&format!("{UKCORE}UKCore-Patient"))
        .unwrap();
    assert_well_formed(&sd);
    assert_eq!(
        element(&sd, "Patient.identifier:nhsNumber.system")["fixedUri"],
        "https://fhir.nhs.uk/Id/nhs-number"
    );
    assert_eq!(
        element(&sd, "Patient.extension:ethnicCategory.url")["fixedUri"],
        format!("{UKCORE}Extension-UKCore-EthnicCategory")
    );
}
