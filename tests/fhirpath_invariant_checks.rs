//! Invariant checking through the adapter-facing API (`Expression::check_invariant`): core
//! constraints satisfied and violated, resolve() in Bundles, hooks and CannotEvaluate.

#[path = "support/fhirpath.rs"]
mod common;

use serde_json::{json, Value};
use spbridge::fhirpath::{
    EvalEnv, Expression, ExpressionCache, FhirPathError, HookResult, Hooks, InvariantInput,
    InvariantOutcome, TerminologyHook,
};

const ELE_1: &str = "hasValue() or (children().count() > id.count())";
const EXT_1: &str = "extension.exists() != value.exists()";
const PAT_1: &str =
    "name.exists() or telecom.exists() or address.exists() or organization.exists()";
const PER_1: &str = "start.hasValue().not() or end.hasValue().not() or (start <= end)";
const REF_1: &str = "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))";
const DOM_2: &str = "contained.contained.empty()";
const DOM_3: &str = "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()";
const BDL_7: &str = "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()";
const TXT_1: &str = "htmlChecks()";

fn check(expr: &str, node: &Value, node_type: &str, resource: &Value) -> InvariantOutcome {
    let e = Expression::compile(expr).expect("compiles");
    let input = InvariantInput {
        node,
        node_extension: None,
        node_type,
        resource,
        root_resource: resource,
        bundle: None,
    };
    e.check_invariant(common::model(), &input, Hooks::default())
}

#[test]
fn ele_1_and_ext_1() {
    let r = json!({"resourceType": "Patient"});
    assert_eq!(
        check(ELE_1, &json!({"system": "x"}), "Identifier", &r),
        InvariantOutcome::Satisfied
    );
    assert_eq!(
        check(ELE_1, &json!({"id": "a"}), "Identifier", &r),
        InvariantOutcome::Violated
    );
    assert_eq!(
        check(ELE_1, &json!({}), "Identifier", &r),
        InvariantOutcome::Violated
    );
    let good = json!({"url": "http://x", "valueString": "a"});
    let both = json!({"url": "http://x", "valueString": "a", "extension": [{"url": "y", "valueBoolean": true}]});
    let neither = json!({"url": "http://x"});
    assert_eq!(
        check(EXT_1, &good, "Extension", &r),
        InvariantOutcome::Satisfied
    );
    assert_eq!(
        check(EXT_1, &both, "Extension", &r),
        InvariantOutcome::Violated
    );
    assert_eq!(
        check(EXT_1, &neither, "Extension", &r),
        InvariantOutcome::Violated
    );
}

#[test]
fn patient_contact_and_period() {
    let p = json!({"resourceType": "Patient", "contact": [{"gender": "male"}, {"name": {"family": "X"}}]});
    assert_eq!(
        check(PAT_1, &p["contact"][0], "Patient.contact", &p),
        InvariantOutcome::Violated
    );
    assert_eq!(
        check(PAT_1, &p["contact"][1], "Patient.contact", &p),
        InvariantOutcome::Satisfied
    );
    let bad = json!({"start": "2020-02-01", "end": "2020-01-01T10:00:00Z"});
    let ok = json!({"start": "2020-01-01", "end": "2020-01-01T10:00:00Z"});
    let open = json!({"start": "2020-01-01"});
    assert_eq!(check(PER_1, &bad, "Period", &p), InvariantOutcome::Violated);
    // same day at different precision: uncertain, so the constraint's comparison is empty → satisfied
    assert_eq!(check(PER_1, &ok, "Period", &p), InvariantOutcome::Satisfied);
    assert_eq!(
        check(PER_1, &open, "Period", &p),
        InvariantOutcome::Satisfied
    );
}

#[test]
fn references_and_contained() {
    let p = json!({
        "resourceType": "Patient",
        "contained": [{"resourceType": "Organization", "id": "org1", "name": "X"}],
        "managingOrganization": {"reference": "#org1"},
        "generalPractitioner": [{"reference": "#missing"}, {"identifier": {"value": "A1"}}]
    });
    assert_eq!(
        check(REF_1, &p["managingOrganization"], "Reference", &p),
        InvariantOutcome::Satisfied
    );
    assert_eq!(
        check(REF_1, &p["generalPractitioner"][0], "Reference", &p),
        InvariantOutcome::Violated
    );
    assert_eq!(
        check(REF_1, &p["generalPractitioner"][1], "Reference", &p),
        InvariantOutcome::Satisfied
    );
    assert_eq!(check(DOM_3, &p, "Patient", &p), InvariantOutcome::Satisfied);
    assert_eq!(check(DOM_2, &p, "Patient", &p), InvariantOutcome::Satisfied);
    let orphan = json!({
        "resourceType": "Patient",
        "contained": [{"resourceType": "Organization", "id": "org1", "contained": [{"resourceType": "Patient"}]}]
    });
    assert_eq!(
        check(DOM_3, &orphan, "Patient", &orphan),
        InvariantOutcome::Violated
    );
    assert_eq!(
        check(DOM_2, &orphan, "Patient", &orphan),
        InvariantOutcome::Violated
    );
    // resolve() on a contained reference
    let model = common::model();
    let env = EvalEnv::for_resource(model, &p);
    let e = Expression::compile("managingOrganization.resolve().name").unwrap();
    let out = e.evaluate(&env, env.resource_node(&p)).unwrap();
    assert_eq!(out.len(), 1);
    let e = Expression::compile("managingOrganization.resolve() is Organization").unwrap();
    assert_eq!(
        e.evaluate_boolean(&env, env.resource_node(&p)).unwrap(),
        Some(true)
    );
}

#[test]
fn bundle_resolve_and_bdl_7() {
    let b = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p1", "active": true}},
            {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "ServiceRequest", "subject": {"reference": "urn:uuid:1"}, "requester": {"reference": "Patient/p1"}}},
            {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Task"}}
        ]
    });
    assert_eq!(check(BDL_7, &b, "Bundle", &b), InvariantOutcome::Violated);
    let model = common::model();
    let sr = &b["entry"][1]["resource"];
    let mut env = EvalEnv::for_resource(model, sr);
    env.bundle = Some(&b);
    for expr in [
        "subject.resolve().active",
        "requester.resolve().active",
        "subject.resolve() is Patient",
    ] {
        let e = Expression::compile(expr).unwrap();
        assert_eq!(
            e.evaluate_boolean(&env, env.resource_node(sr)).unwrap(),
            Some(true),
            "{expr}"
        );
    }
}

#[test]
fn narrative_checks() {
    let r = json!({"resourceType": "Patient"});
    let ok = json!(r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Hi</p></div>"#);
    let script = json!(r#"<div xmlns="http://www.w3.org/1999/xhtml"><script>x()</script>Hi</div>"#);
    let onclick =
        json!(r#"<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">Hi</p></div>"#);
    let empty = json!(r#"<div xmlns="http://www.w3.org/1999/xhtml">  </div>"#);
    assert_eq!(check(TXT_1, &ok, "xhtml", &r), InvariantOutcome::Satisfied);
    assert_eq!(
        check(TXT_1, &script, "xhtml", &r),
        InvariantOutcome::Violated
    );
    assert_eq!(
        check(TXT_1, &onclick, "xhtml", &r),
        InvariantOutcome::Violated
    );
    assert_eq!(
        check(TXT_1, &empty, "xhtml", &r),
        InvariantOutcome::Violated
    );
}

struct LocalCodes;
impl TerminologyHook for LocalCodes {
    fn member_of(&self, code: &Value, _t: Option<&str>, vs: &str) -> HookResult {
        if vs == "http://example.org/vs/local" {
            Ok(code.as_str() == Some("male"))
        } else {
            Err(format!("{vs} needs a terminology server"))
        }
    }
}

#[test]
fn member_of_through_hooks() {
    let p = json!({"resourceType": "Patient", "gender": "male"});
    let input = InvariantInput {
        node: &p,
        node_extension: None,
        node_type: "Patient",
        resource: &p,
        root_resource: &p,
        bundle: None,
    };
    let model = common::model();
    let local = Expression::compile("gender.memberOf('http://example.org/vs/local')").unwrap();
    let remote = Expression::compile("gender.memberOf('http://snomed.info/sct?fhir_vs')").unwrap();
    // without a hook: cannot evaluate (never a silent pass)
    assert!(matches!(
        local.check_invariant(model, &input, Hooks::default()),
        InvariantOutcome::CannotEvaluate(_)
    ));
    let hooks = Hooks {
        terminology: Some(&LocalCodes),
        profiles: None,
    };
    assert_eq!(
        local.check_invariant(model, &input, hooks),
        InvariantOutcome::Satisfied
    );
    assert!(matches!(
        remote.check_invariant(model, &input, hooks),
        InvariantOutcome::CannotEvaluate(_)
    ));
    // the error kind is distinct
    let env = EvalEnv::for_resource(model, &p);
    let err = remote.evaluate(&env, env.resource_node(&p)).unwrap_err();
    assert!(matches!(err, FhirPathError::CannotEvaluate(_)));
}

#[test]
fn model_types_paths_and_hierarchy() {
    let m = common::model();
    let name = |t| m.name(t).map(str::to_string);
    assert_eq!(
        name(m.path_type("Patient.contact.name")).as_deref(),
        Some("HumanName")
    );
    assert_eq!(
        name(m.path_type("Patient.contact")).as_deref(),
        Some("Patient.contact")
    );
    assert_eq!(
        name(m.path_type("Bundle.entry.resource")).as_deref(),
        Some("Resource")
    );
    assert_eq!(
        name(m.path_type("Questionnaire.item.item")).as_deref(),
        Some("Questionnaire.item")
    );
    assert!(!m.path_type("Observation.value").is_known());
    let obs_value = m.element(m.type_id("Observation"), "value").unwrap();
    assert!(obs_value.choice && obs_value.types.iter().any(|(k, _)| k == "valueQuantity"));
    assert!(m.is_subtype(m.type_id("Patient"), m.type_id("DomainResource")));
    assert!(m.is_subtype(m.type_id("Patient"), m.type_id("Resource")));
    assert!(m.is_subtype(m.type_id("Age"), m.type_id("Quantity")));
    assert!(m.is_subtype(m.type_id("code"), m.type_id("string")));
    assert!(!m.is_subtype(m.type_id("Quantity"), m.type_id("Age")));
    // a backbone element given by path gets typed children (dates compared as dates)
    let p = json!({"resourceType": "Patient", "contact": [{"period": {"start": "2020-01-01T10:00:00+01:00", "end": "2020-01-01T09:30:00Z"}}]});
    let input = InvariantInput {
        node: &p["contact"][0],
        node_extension: None,
        node_type: "Patient.contact",
        resource: &p,
        root_resource: &p,
        bundle: None,
    };
    let e = Expression::compile("period.start <= period.end").unwrap();
    assert_eq!(
        e.check_invariant(m, &input, Hooks::default()),
        InvariantOutcome::Satisfied
    );
}

#[test]
fn cache_shares_compiled_expressions() {
    let cache = ExpressionCache::new();
    let a = cache.get_or_compile(ELE_1).unwrap();
    let b = cache.get_or_compile(ELE_1).unwrap();
    assert_eq!(a.text(), b.text());
    assert_eq!(cache.len(), 1);
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Expression>();
    assert_send_sync::<ExpressionCache>();
    assert_send_sync::<spbridge::fhirpath::ModelInfo>();
}

#[test]
fn primitive_extensions_and_choice_types() {
    let model = common::model();
    let p = json!({
        "resourceType": "Patient",
        "birthDate": "1970-01-01",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-01-01T10:00:00Z"}]},
        "deceasedBoolean": false,
        "name": [{"given": ["A", null], "_given": [null, {"extension": [{"url": "u", "valueString": "x"}]}]}]
    });
    let env = EvalEnv::for_resource(model, &p);
    let root = env.resource_node(&p);
    let cases = [
        (
            "birthDate.extension(%`ext-patient-birthTime`).value.exists()",
            true,
        ),
        (
            "deceased.exists() and deceased is boolean and deceased.ofType(boolean) = false",
            true,
        ),
        (
            "name.given.count() = 2 and name.given[1].hasValue().not()",
            true,
        ),
        ("Patient.birthDate < @2000-01-01", true),
        ("Patient.is(DomainResource) and Patient.is(Resource)", true),
    ];
    for (expr, want) in cases {
        let e = Expression::compile(expr).unwrap();
        assert_eq!(
            e.evaluate_boolean(&env, root).unwrap(),
            Some(want),
            "{expr}"
        );
    }
    let json = spbridge::fhirpath::evaluate_to_json("name.given | birthDate | deceased", &p, model)
        .unwrap();
    assert_eq!(
        json,
        json!(["A", {"extension": [{"url": "u", "valueString": "x"}]}, "1970-01-01", false])
    );
}

#[test]
fn more_core_and_uk_core_constraints() {
    use InvariantOutcome::{Satisfied as S, Violated as V};
    let dom_4 = "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()";
    let dom_5 = "contained.meta.security.empty()";
    let prr_1 = "orderDetail.empty() or code.exists()";
    let bdl_1 = "total.empty() or (type = 'searchset') or (type = 'history')";
    let bdl_3 = "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction' or %resource.type = 'history'))";
    let bdl_12 = "type = 'message' implies entry.first().resource.is(MessageHeader)";
    let imm_1 = "(status != 'not-done') or (status = 'not-done' and statusReason.exists())";
    let obs_vs_1 = "code.coding.where(system='http://loinc.org').exists()";
    let spec_1 = "collector.reference.empty() or collector.extension('http://hl7.org/fhir/5.0/StructureDefinition/extension-Specimen.collection.collector').empty()";
    let cases: Vec<(&str, Value, &str, InvariantOutcome)> = vec![
        (
            dom_4,
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "meta": {"versionId": "1"}}]}),
            "",
            V,
        ),
        (
            dom_4,
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"}]}),
            "",
            S,
        ),
        (
            dom_5,
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "meta": {"security": [{"code": "R"}]}}]}),
            "",
            V,
        ),
        (
            prr_1,
            json!({"resourceType": "ServiceRequest", "orderDetail": [{"text": "x"}]}),
            "",
            V,
        ),
        (
            prr_1,
            json!({"resourceType": "ServiceRequest", "orderDetail": [{"text": "x"}], "code": {"text": "y"}}),
            "",
            S,
        ),
        (
            bdl_1,
            json!({"resourceType": "Bundle", "type": "transaction", "total": 1}),
            "",
            V,
        ),
        (
            bdl_1,
            json!({"resourceType": "Bundle", "type": "searchset", "total": 1}),
            "",
            S,
        ),
        (
            bdl_3,
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]}),
            "",
            V,
        ),
        (
            bdl_3,
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Patient"}}]}),
            "",
            S,
        ),
        (
            bdl_12,
            json!({"resourceType": "Bundle", "type": "message", "entry": [{"resource": {"resourceType": "Patient"}}]}),
            "",
            V,
        ),
        (
            bdl_12,
            json!({"resourceType": "Bundle", "type": "message", "entry": [{"resource": {"resourceType": "MessageHeader"}}]}),
            "",
            S,
        ),
        (
            imm_1,
            json!({"resourceType": "Immunization", "status": "not-done"}),
            "",
            V,
        ),
        (
            imm_1,
            json!({"resourceType": "Immunization", "status": "completed"}),
            "",
            S,
        ),
        (
            obs_vs_1,
            json!({"resourceType": "Observation", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}}),
            "",
            V,
        ),
        (
            obs_vs_1,
            json!({"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}),
            "",
            S,
        ),
        (
            spec_1,
            json!({"resourceType": "Specimen", "collection": {"collector": {"reference": "Practitioner/1", "extension": [{"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Specimen.collection.collector", "valueReference": {"reference": "Device/1"}}]}}}),
            "Specimen.collection",
            V,
        ),
        (
            spec_1,
            json!({"resourceType": "Specimen", "collection": {"collector": {"reference": "Practitioner/1"}}}),
            "Specimen.collection",
            S,
        ),
    ];
    for (expr, res, path, want) in cases {
        let (node, ty) = if path.is_empty() {
            (&res, res["resourceType"].as_str().unwrap_or("").to_string())
        } else {
            (&res["collection"], path.to_string())
        };
        assert_eq!(check(expr, node, &ty, &res), want, "{expr} on {res}");
    }
}
