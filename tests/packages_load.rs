//! Loading the shared packages (R4 core, UK Core STU3 current build, separately STU2) and
//! resolving canonicals from them.

#[path = "support/packages.rs"]
mod common;

use std::time::Instant;

use common::*;
use serde_json::json;
use spbridge::packages::{
    CanonicalResolver, LoadOptions, PackageDir, PackageError, PackageRef, PackageSet, PackageSource,
};

const UK_PATIENT: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient";
const UK_TASK: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Task";
const R4_PATIENT: &str = "http://hl7.org/fhir/StructureDefinition/Patient";

fn r(s: &str) -> PackageRef {
    s.parse().unwrap()
}

fn ids(set: &PackageSet) -> Vec<String> {
    set.packages()
        .iter()
        .map(|p| p.reference.to_string())
        .collect()
}

#[test]
fn uk_core_stu3_loads_with_r4_core_dependency() {
    let t = Instant::now();
    let set = PackageSet::load(&shared_dir(), &[r(UK_STU3)]).unwrap();
    eprintln!("lazy load of R4 core + UK Core STU3: {:?}", t.elapsed());
    assert_eq!(ids(&set), vec![R4_CORE, UK_STU3]);
    assert!(set.packages().iter().all(|p| p.indexed));
    assert_eq!(set.packages()[0].resource_count, 4581);
    assert_eq!(set.packages()[1].resource_count, 379);
    assert_eq!(set.len(), 4581 + 379);
    assert!(set.conflicts().is_empty());

    let patient = set.resolve(UK_PATIENT).unwrap();
    assert_eq!(patient["type"], "Patient");
    assert_eq!(patient["version"], "2.6.1");
    assert!(set.resolve(UK_TASK).is_some());
    let base = set.resolve(R4_PATIENT).unwrap();
    assert!(base["snapshot"]["element"].as_array().unwrap().len() > 10);
    assert!(set
        .resolve("http://hl7.org/fhir/ValueSet/administrative-gender")
        .is_some());
    assert!(set
        .resolve("http://hl7.org/fhir/administrative-gender")
        .is_some());
    assert!(set.resolve("http://example.org/nothing").is_none());

    // The same Arc comes back from the cache.
    let again = set.resolve(UK_PATIENT).unwrap();
    assert!(std::sync::Arc::ptr_eq(&patient, &again));

    let source = set.source(UK_PATIENT).unwrap();
    assert_eq!(source.package.to_string(), UK_STU3);
    assert!(source
        .file
        .ends_with("package/StructureDefinition-UKCore-Patient.json"));
}

#[test]
fn uk_core_stu2_loads_separately() {
    let set = PackageSet::load(&shared_dir(), &[r(UK_STU2)]).unwrap();
    assert_eq!(ids(&set), vec![R4_CORE, UK_STU2]);
    assert_eq!(set.resolve(UK_PATIENT).unwrap()["version"], "2.5.0");
    assert!(
        set.resolve(UK_TASK).is_none(),
        "UKCore-Task exists only in STU3"
    );
}

#[test]
fn canonical_with_version() {
    let set = PackageSet::load(&shared_dir(), &[r(UK_STU3)]).unwrap();
    assert!(set.resolve(&format!("{R4_PATIENT}|4.0.1")).is_some());
    assert!(set.resolve(&format!("{R4_PATIENT}|4.0")).is_some());
    assert!(set.resolve(&format!("{R4_PATIENT}|4.0.x")).is_some());
    assert!(set.resolve(&format!("{R4_PATIENT}|4.0.0")).is_none());
    assert!(set.resolve(&format!("{R4_PATIENT}|")).is_some());
    assert_eq!(
        set.resolve(&format!("{UK_PATIENT}|2.6.1")).unwrap()["version"],
        "2.6.1"
    );
    assert!(set.resolve(&format!("{UK_PATIENT}|2.5.0")).is_none());
}

#[test]
fn both_uk_core_builds_later_wins_and_conflicts_are_noted() {
    let set = PackageSet::load(&shared_dir(), &[r(UK_STU2), r(UK_STU3)]).unwrap();
    assert_eq!(ids(&set), vec![R4_CORE, UK_STU2, UK_STU3]);
    assert_eq!(set.resolve(UK_PATIENT).unwrap()["version"], "2.6.1");
    assert_eq!(
        set.resolve(&format!("{UK_PATIENT}|2.5.0")).unwrap()["version"],
        "2.5.0"
    );
    let conflict = set
        .conflicts()
        .iter()
        .find(|c| c.url == UK_PATIENT)
        .unwrap();
    assert_eq!(conflict.winner.package.to_string(), UK_STU3);
    assert_eq!(conflict.shadowed[0].package.to_string(), UK_STU2);
    // all_of_type lists only the winner of a shared url.
    let patients: Vec<_> = set
        .all_of_type("StructureDefinition")
        .into_iter()
        .filter(|sd| sd["url"] == UK_PATIENT)
        .collect();
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["version"], "2.6.1");
    // Requested the other way round, STU2 wins.
    let set = PackageSet::load(&shared_dir(), &[r(UK_STU3), r(UK_STU2)]).unwrap();
    assert_eq!(set.resolve(UK_PATIENT).unwrap()["version"], "2.5.0");
}

#[test]
fn all_of_type_and_full_parse_are_consistent_with_the_indexes() {
    let set = PackageSet::load(&shared_dir(), &[r(UK_STU3)]).unwrap();
    let t = Instant::now();
    let sds = set.all_of_type("StructureDefinition");
    eprintln!(
        "all_of_type(StructureDefinition): {} in {:?}",
        sds.len(),
        t.elapsed()
    );
    assert_eq!(sds.len(), 658 + 153);
    assert_eq!(set.all_of_type("ValueSet").len(), 1316 + 134);
    assert!(set.all_of_type("Nothing").is_empty());
    // Every indexed file parses and agrees with its index row (type and url).
    let t = Instant::now();
    assert_eq!(set.parse_all().unwrap(), 4581 + 379);
    eprintln!("parse_all rest: {:?}", t.elapsed());
    assert!(set.errors().is_empty());
}

#[test]
fn version_rules_in_the_package_directory() {
    let dir = shared_dir();
    for (request, expected) in [
        ("hl7.fhir.r4.core#4.0.x", R4_CORE),
        ("hl7.fhir.r4.core#4.x", R4_CORE),
        ("hl7.fhir.r4.core#current", R4_CORE),
        ("hl7.fhir.r4.core", R4_CORE),
        ("fhir.r4.ukcore.stu3.currentbuild#dev", UK_STU3),
        ("fhir.r4.ukcore.stu2#2.0", UK_STU2),
    ] {
        let found = dir.find(&r(request)).unwrap().unwrap();
        assert_eq!(found.to_string(), expected, "{request}");
    }
    assert!(dir.find(&r("hl7.fhir.r4.core#4.0.0")).unwrap().is_none());
    assert!(dir.find(&r("hl7.fhir.r5.core#5.0.0")).unwrap().is_none());
    let listed: Vec<String> = dir.list().unwrap().iter().map(|p| p.to_string()).collect();
    assert_eq!(listed, vec![UK_STU2, UK_STU3, R4_CORE]);
}

#[test]
fn uk_core_examples() {
    let set = PackageSet::load(&shared_dir(), &[r(UK_STU3)]).unwrap();
    let examples: Vec<_> = set
        .examples("fhir.r4.ukcore.stu3.currentbuild")
        .unwrap()
        .collect();
    assert_eq!(examples.len(), 215);
    assert!(examples
        .iter()
        .all(|(_, v)| v["resourceType"].as_str().is_some()));
    assert!(examples
        .iter()
        .any(|(name, v)| name.starts_with("Patient-") && v["resourceType"] == "Patient"));
    assert_eq!(set.examples(UK_STU3).unwrap().count(), 215);
    assert_eq!(set.examples("hl7.fhir.r4.core").unwrap().count(), 0);
    match set.examples("fhir.r4.ukcore.stu2") {
        Err(e @ PackageError::NotLoaded { .. }) => assert!(e.to_string().contains(UK_STU3)),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("STU2 is not loaded"),
    }
    let stu2 = PackageSet::load(&shared_dir(), &[r(UK_STU2)]).unwrap();
    assert_eq!(stu2.examples("fhir.r4.ukcore.stu2").unwrap().count(), 140);
}

#[test]
fn eager_load_parses_everything() {
    let options = LoadOptions { eager: true };
    let t = Instant::now();
    let set =
        PackageSet::load_sources(&shared_dir(), &[PackageSource::Cache(r(UK_STU2))], &options)
            .unwrap();
    eprintln!("eager load of R4 core + UK Core STU2: {:?}", t.elapsed());
    assert!(set.errors().is_empty());
    assert!(set.resolve(UK_PATIENT).is_some());
}

#[test]
fn a_project_package_folder_without_index_loads_with_its_dependencies() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    write_json(
        &profiles.join("package.json"),
        &json!({"name": "spbridge.fhir", "version": "0.1.0",
                "dependencies": {"fhir.r4.ukcore.stu3.currentbuild": "0.22.0-main.55dd5f7e"}}),
    );
    let url = "https://fhir.spbridge.org/StructureDefinition/SPBridge-ProviderTaskUpdate";
    let mut sd = resource(
        "StructureDefinition",
        "SPBridge-ProviderTaskUpdate",
        url,
        "0.1.0",
    );
    sd["baseDefinition"] = json!(UK_TASK);
    write_json(
        &profiles.join("StructureDefinition-SPBridge-ProviderTaskUpdate.json"),
        &sd,
    );
    // Not a resource: ignored, not an error.
    write_json(
        &profiles.join("notes.json"),
        &json!({"comment": "not a resource"}),
    );

    let set = PackageSet::load_sources(
        &shared_dir(),
        &[PackageSource::Folder(profiles)],
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(ids(&set), vec![R4_CORE, UK_STU3, "spbridge.fhir#0.1.0"]);
    assert!(!set.packages()[2].indexed);
    assert_eq!(set.packages()[2].resource_count, 1);
    let profile = set.resolve(url).unwrap();
    assert_eq!(profile["baseDefinition"], UK_TASK);
    assert!(set
        .resolve(profile["baseDefinition"].as_str().unwrap())
        .is_some());
}

#[test]
fn missing_package_lists_what_is_there() {
    let err = PackageSet::load(&shared_dir(), &[r("uk.nhsdigital.r4#2.0.0")]).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PackageError::MissingPackage { .. }), "{text}");
    assert!(text.contains("uk.nhsdigital.r4#2.0.0"), "{text}");
    assert!(text.contains(R4_CORE) && text.contains(UK_STU3), "{text}");
    let empty = tempfile::tempdir().unwrap();
    let err =
        PackageSet::load(&PackageDir::new(empty.path().join("none")), &[r(R4_CORE)]).unwrap_err();
    assert!(err.to_string().contains("present: none"), "{err}");
}

#[test]
fn package_dir_configuration() {
    assert_eq!(
        PackageDir::configured(Some(std::path::Path::new("/x/y"))).path(),
        std::path::Path::new("/x/y")
    );
    assert!(PackageDir::user_cache().ends_with(".fhir/packages"));
}
