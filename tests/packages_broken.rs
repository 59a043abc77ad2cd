//! Broken package directories built in a temp dir: every error names the package and the file.

#[path = "support/packages.rs"]
mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use spbridge::packages::{CanonicalResolver, PackageDir, PackageError, PackageRef, PackageSet};

fn r(s: &str) -> PackageRef {
    s.parse().unwrap()
}

/// `test.base#1.0.0` with two indexed resources.
fn base_package(dir: &Path) -> std::path::PathBuf {
    let root = make_package(dir, "test.base", "1.0.0", &[]);
    write_json(
        &root.join("StructureDefinition-a.json"),
        &resource("StructureDefinition", "a", "http://test/sd/a", "1.0.0"),
    );
    write_json(
        &root.join("ValueSet-b.json"),
        &resource("ValueSet", "b", "http://test/vs/b", "1.0.0"),
    );
    write_index(&root, &["StructureDefinition-a.json", "ValueSet-b.json"]);
    root
}

fn assert_names(err: &PackageError, package: &str, file: &str) {
    let text = err.to_string();
    assert!(
        text.contains(package),
        "package {package} not named in: {text}"
    );
    assert!(text.contains(file), "file {file} not named in: {text}");
    assert_eq!(
        err.package().map(|p| p.contains(package)),
        Some(true),
        "{text}"
    );
}

#[test]
fn a_sound_synthetic_package_loads() {
    let tmp = tempfile::tempdir().unwrap();
    base_package(tmp.path());
    let set = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.base#1.0.0")]).unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.resolve("http://test/sd/a|1.0.0").is_some());
    assert_eq!(set.all_of_type("ValueSet").len(), 1);
}

#[test]
fn index_listing_a_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = base_package(tmp.path());
    std::fs::remove_file(root.join("ValueSet-b.json")).unwrap();
    let err = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.base#1.0.0")]).unwrap_err();
    assert!(matches!(err, PackageError::Inconsistent { .. }), "{err}");
    assert_names(&err, "test.base#1.0.0", ".index.json");
    assert!(err.to_string().contains("ValueSet-b.json"), "{err}");
    assert!(err.file().unwrap().ends_with("package/.index.json"));
}

#[test]
fn invalid_json_found_by_scan_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let root = base_package(tmp.path());
    std::fs::remove_file(root.join(".index.json")).unwrap();
    std::fs::write(
        root.join("CodeSystem-c.json"),
        b"{\n  \"resourceType\": \"CodeSystem\",\n  \"id\": \n}",
    )
    .unwrap();
    let err = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.base#1.0.0")]).unwrap_err();
    match &err {
        PackageError::InvalidJson { line, column, .. } => assert_eq!((*line, *column), (4, 1)),
        other => panic!("{other}"),
    }
    assert_names(&err, "test.base#1.0.0", "CodeSystem-c.json");
    assert!(err.to_string().contains("line 4, column 1"), "{err}");
}

#[test]
fn invalid_json_found_lazily_through_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let root = base_package(tmp.path());
    std::fs::write(
        root.join("ValueSet-b.json"),
        b"{\"resourceType\": \"ValueSet\", ",
    )
    .unwrap();
    let set = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.base#1.0.0")]).unwrap();
    assert!(set.resolve("http://test/vs/b").is_none());
    let err = set.try_resolve("http://test/vs/b").unwrap_err();
    assert!(matches!(err, PackageError::InvalidJson { .. }), "{err}");
    assert_names(&err, "test.base#1.0.0", "ValueSet-b.json");
    assert_eq!(set.errors().len(), 1);
    assert!(set.parse_all().is_err());
    assert!(set.all_of_type("ValueSet").is_empty());
    assert!(set.resolve("http://test/sd/a").is_some());
}

#[test]
fn index_disagreeing_with_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = base_package(tmp.path());
    write_json(
        &root.join("ValueSet-b.json"),
        &resource("ValueSet", "b", "http://test/vs/renamed", "1.0.0"),
    );
    let set = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.base#1.0.0")]).unwrap();
    let err = set.try_resolve("http://test/vs/b").unwrap_err();
    assert!(matches!(err, PackageError::Inconsistent { .. }), "{err}");
    assert_names(&err, "test.base#1.0.0", "ValueSet-b.json");
    assert!(err.to_string().contains("http://test/vs/renamed"), "{err}");
}

#[test]
fn package_json_not_matching_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = base_package(tmp.path());
    write_json(
        &root.join("package.json"),
        &json!({"name": "test.base", "version": "1.0.1"}),
    );
    let err = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.base#1.0.0")]).unwrap_err();
    assert!(matches!(err, PackageError::Inconsistent { .. }), "{err}");
    assert_names(&err, "test.base#1.0.0", "package.json");
    assert!(err.to_string().contains("test.base#1.0.1"), "{err}");
}

#[test]
fn package_json_missing_or_without_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = base_package(tmp.path());
    std::fs::remove_file(root.join("package.json")).unwrap();
    let err = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.base#1.0.0")]).unwrap_err();
    assert!(matches!(err, PackageError::Unreadable { .. }), "{err}");
    assert_names(&err, "test.base#1.0.0", "package.json");

    write_json(&root.join("package.json"), &json!({"version": "1.0.0"}));
    let err = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.base#1.0.0")]).unwrap_err();
    assert_names(&err, "test.base#1.0.0", "package.json");
    assert!(err.to_string().contains("`name` is missing"), "{err}");
}

#[test]
fn missing_dependency() {
    let tmp = tempfile::tempdir().unwrap();
    base_package(tmp.path());
    make_package(
        tmp.path(),
        "test.app",
        "2.0.0",
        &[("test.base", "1.0.0"), ("test.gone", "3.0.x")],
    );
    let err = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.app#2.0.0")]).unwrap_err();
    match &err {
        PackageError::MissingDependency {
            dependency,
            available,
            ..
        } => {
            assert_eq!(dependency, "test.gone#3.0.x");
            assert_eq!(available.0, vec!["test.app#2.0.0", "test.base#1.0.0"]);
        }
        other => panic!("{other}"),
    }
    assert_names(&err, "test.app#2.0.0", "package.json");
    assert!(err
        .file()
        .unwrap()
        .ends_with("test.app#2.0.0/package/package.json"));
}

#[test]
fn dependency_versions_order_and_precedence() {
    let tmp = tempfile::tempdir().unwrap();
    base_package(tmp.path());
    let newer = make_package(tmp.path(), "test.base", "1.0.2", &[]);
    write_json(
        &newer.join("StructureDefinition-a.json"),
        &resource("StructureDefinition", "a", "http://test/sd/a", "1.0.2"),
    );
    let app = make_package(tmp.path(), "test.app", "2.0.0", &[("test.base", "1.0.x")]);
    // The app redefines a url of its dependency: the app wins, the base stays reachable by version.
    write_json(
        &app.join("StructureDefinition-a.json"),
        &resource("StructureDefinition", "a", "http://test/sd/a", "2.0.0"),
    );
    let set = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.app#2.0.0")]).unwrap();
    let loaded: Vec<String> = set
        .packages()
        .iter()
        .map(|p| p.reference.to_string())
        .collect();
    assert_eq!(loaded, vec!["test.base#1.0.2", "test.app#2.0.0"]);
    assert_eq!(set.resolve("http://test/sd/a").unwrap()["version"], "2.0.0");
    assert_eq!(
        set.resolve("http://test/sd/a|1.0.2").unwrap()["version"],
        "1.0.2"
    );
    assert_eq!(
        set.resolve("http://test/sd/a|1.x").unwrap()["version"],
        "1.0.2"
    );
    assert!(set.resolve("http://test/sd/a|1.0.0").is_none());
    assert_eq!(set.conflicts().len(), 1);
    assert_eq!(
        set.conflicts()[0].winner.package.to_string(),
        "test.app#2.0.0"
    );
    assert_eq!(set.all_of_type("StructureDefinition").len(), 1);
    // Asking for the exact older base too: loaded, both noted.
    let set = PackageSet::load(
        &PackageDir::new(tmp.path()),
        &[r("test.base#1.0.0"), r("test.app#2.0.0")],
    )
    .unwrap();
    let loaded: Vec<String> = set
        .packages()
        .iter()
        .map(|p| p.reference.to_string())
        .collect();
    assert_eq!(
        loaded,
        vec!["test.base#1.0.0", "test.app#2.0.0"],
        "1.0.0 already satisfies 1.0.x"
    );
}

#[test]
fn dependency_cycle_terminates() {
    let tmp = tempfile::tempdir().unwrap();
    make_package(tmp.path(), "test.x", "1.0.0", &[("test.y", "1.0.0")]);
    make_package(tmp.path(), "test.y", "1.0.0", &[("test.x", "1.0.0")]);
    let set = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.x#1.0.0")]).unwrap();
    assert_eq!(set.packages().len(), 2);
}

#[test]
fn examples_with_bad_json_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = base_package(tmp.path());
    write_json(
        &root.join("examples/Patient-ok.json"),
        &json!({"resourceType": "Patient", "id": "ok"}),
    );
    std::fs::write(root.join("examples/Patient-bad.json"), b"[1,").unwrap();
    let set = PackageSet::load(&PackageDir::new(tmp.path()), &[r("test.base#1.0.0")]).unwrap();
    let err = set.examples("test.base").err().unwrap();
    assert_names(&err, "test.base#1.0.0", "examples/Patient-bad.json");
    std::fs::remove_file(root.join("examples/Patient-bad.json")).unwrap();
    let names: Vec<String> = set.examples("test.base").unwrap().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["Patient-ok.json"]);
}

#[test]
fn bad_references_are_refused() {
    for bad in ["", "#1.0.0", "../../etc#1", "a#1/../../x"] {
        let err = bad.parse::<PackageRef>().unwrap_err();
        assert!(
            matches!(err, PackageError::InvalidReference { .. }),
            "{bad}: {err}"
        );
    }
}
