//! `packages install` against a registry served on 127.0.0.1 from tarballs built in the test
//! (UK Core STU3 from the shared packages plus a small synthetic R4 core). No other network.

#[path = "support/packages.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use spbridge::packages::{
    install, CanonicalResolver, InstallOutcome, PackageDir, PackageError, PackageRef, PackageSet,
    RegistryConfig,
};

fn r(s: &str) -> PackageRef {
    s.parse().unwrap()
}

fn registry(bases: &[&str]) -> RegistryConfig {
    RegistryConfig {
        timeout: Duration::from_secs(30),
        ..RegistryConfig::new(bases.iter().copied())
    }
}

/// A small stand-in for `hl7.fhir.r4.core#4.0.1`: its real package.json and a few resources,
/// no `.index.json` (so install has to build one).
fn synthetic_r4_core(work: &Path) -> PathBuf {
    let real = shared_package(R4_CORE);
    let root = work.join("r4-src").join("package");
    std::fs::create_dir_all(&root).unwrap();
    for f in [
        "package.json",
        "StructureDefinition-Patient.json",
        "StructureDefinition-Task.json",
        "ValueSet-administrative-gender.json",
    ] {
        std::fs::copy(real.join(f), root.join(f)).unwrap();
    }
    root
}

/// Installed package folders and leftovers in `dir`.
fn entries_of(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PackageDir,
    server: TestRegistry,
    uk_tgz: Vec<u8>,
    r4_tgz: Vec<u8>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let uk_tgz = tgz_of_folder(&shared_package(UK_STU3));
    let r4_tgz = tgz_of_folder(&synthetic_r4_core(tmp.path()));
    eprintln!(
        "built tarballs ({} + {} bytes) in {:?}",
        uk_tgz.len(),
        r4_tgz.len(),
        t.elapsed()
    );
    let dir = PackageDir::new(tmp.path().join("cache"));
    Fixture {
        _tmp: tmp,
        dir,
        server: TestRegistry::start(),
        uk_tgz,
        r4_tgz,
    }
}

#[test]
fn installs_a_package_and_its_dependency_then_skips_them() {
    let f = fixture();
    f.server.publish(
        "fhir.r4.ukcore.stu3.currentbuild",
        &[("0.22.0-main.55dd5f7e", &f.uk_tgz, true)],
    );
    f.server
        .publish("hl7.fhir.r4.core", &[("4.0.1", &f.r4_tgz, true)]);
    let config = registry(&[&f.server.base]);

    let done = install(&f.dir, &config, &[r(UK_STU3)]).unwrap();
    let got: Vec<(String, bool)> = done
        .iter()
        .map(|p| {
            (
                p.package.to_string(),
                matches!(p.outcome, InstallOutcome::Downloaded { .. }),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(UK_STU3.to_string(), true), (R4_CORE.to_string(), true)]
    );
    assert_eq!(entries_of(f.dir.path()), vec![UK_STU3, R4_CORE]);
    let r4_root = f.dir.package_path(&r(R4_CORE)).join("package");
    assert!(
        r4_root.join(".index.json").is_file(),
        "install writes a missing index"
    );
    let uk_root = f.dir.package_path(&r(UK_STU3)).join("package");
    assert_eq!(
        std::fs::read(uk_root.join(".index.json")).unwrap(),
        std::fs::read(shared_package(UK_STU3).join(".index.json")).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(uk_root.join("examples")).unwrap().count(),
        216
    );

    // What was installed loads and resolves across both packages.
    let set = PackageSet::load(&f.dir, &[r(UK_STU3)]).unwrap();
    let task = set
        .resolve("https://fhir.hl7.org.uk/StructureDefinition/UKCore-Task")
        .unwrap();
    assert!(set
        .resolve(task["baseDefinition"].as_str().unwrap())
        .is_some());
    assert!(set.packages()[0].indexed);

    // Second run: nothing downloaded.
    let before = f.server.hits().len();
    let again = install(&f.dir, &config, &[r(UK_STU3)]).unwrap();
    assert!(again
        .iter()
        .all(|p| p.outcome == InstallOutcome::AlreadyInstalled));
    assert_eq!(again.len(), 2);
    assert_eq!(f.server.hits().len(), before);
}

#[test]
fn corrupted_tarball_is_refused_and_nothing_is_installed() {
    let f = fixture();
    let mut corrupted = f.uk_tgz.clone();
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0xff;
    // Metadata carries the checksums of the good tarball; the tarball served is corrupted.
    f.server.publish(
        "fhir.r4.ukcore.stu3.currentbuild",
        &[("0.22.0-main.55dd5f7e", &f.uk_tgz, true)],
    );
    f.server.serve(
        "/tarballs/fhir.r4.ukcore.stu3.currentbuild-0.22.0-main.55dd5f7e.tgz",
        200,
        corrupted,
    );
    let err = install(&f.dir, &registry(&[&f.server.base]), &[r(UK_STU3)]).unwrap_err();
    assert!(matches!(err, PackageError::Integrity { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(UK_STU3) && text.contains("sha1"), "{text}");
    assert!(
        entries_of(f.dir.path()).is_empty(),
        "{:?}",
        entries_of(f.dir.path())
    );
}

#[test]
fn integrity_alone_is_checked_too() {
    let f = fixture();
    f.server
        .publish("hl7.fhir.r4.core", &[("4.0.1", &f.r4_tgz, false)]);
    let wrong = format!("sha512-{}", sri_sha512(b"something else"));
    let doc = json!({"versions": {"4.0.1": {"dist": {
        "tarball": format!("{}/tarballs/hl7.fhir.r4.core-4.0.1.tgz", f.server.base),
        "integrity": wrong}}}});
    f.server
        .serve("/hl7.fhir.r4.core", 200, serde_json::to_vec(&doc).unwrap());
    let err = install(&f.dir, &registry(&[&f.server.base]), &[r(R4_CORE)]).unwrap_err();
    assert!(err.to_string().contains("sha512 integrity"), "{err}");
    assert!(entries_of(f.dir.path()).is_empty());
}

#[test]
fn direct_tarball_url_when_there_is_no_metadata() {
    let f = fixture();
    f.server
        .serve("/hl7.fhir.r4.core/4.0.1", 200, f.r4_tgz.clone());
    let done = install(&f.dir, &registry(&[&f.server.base]), &[r(R4_CORE)]).unwrap();
    assert_eq!(
        done[0].outcome,
        InstallOutcome::Downloaded {
            url: format!("{}/hl7.fhir.r4.core/4.0.1", f.server.base)
        }
    );
    assert_eq!(
        f.server.hits(),
        vec!["/hl7.fhir.r4.core", "/hl7.fhir.r4.core/4.0.1"]
    );
    let set = PackageSet::load(&f.dir, &[r(R4_CORE)]).unwrap();
    assert_eq!(set.len(), 3);
}

#[test]
fn falls_back_to_the_next_registry_and_resolves_wildcards() {
    let f = fixture();
    let broken = TestRegistry::start();
    broken.serve("/hl7.fhir.r4.core", 500, b"down".to_vec());
    f.server.publish(
        "hl7.fhir.r4.core",
        &[("4.0.0", b"unused", true), ("4.0.1", &f.r4_tgz, true)],
    );
    let bases = [format!("{}/packages", broken.base), f.server.base.clone()];
    let config = registry(&[&bases[0], &bases[1]]);
    let done = install(&f.dir, &config, &[r("hl7.fhir.r4.core#4.0.x")]).unwrap();
    assert_eq!(done[0].package.to_string(), R4_CORE);
    assert!(broken
        .hits()
        .contains(&"/packages/hl7.fhir.r4.core".to_string()));
    assert!(!f.server.hits().iter().any(|h| h.contains("4.0.0")));
}

#[test]
fn unknown_package_lists_every_registry_tried() {
    let f = fixture();
    let config = registry(&[&f.server.base, &format!("{}/second", f.server.base)]);
    let err = install(&f.dir, &config, &[r("no.such.package#1.0.0")]).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PackageError::Registry { .. }), "{text}");
    assert!(text.contains("no.such.package#1.0.0"), "{text}");
    assert!(
        text.contains("HTTP 404") && text.contains("/second/no.such.package"),
        "{text}"
    );

    f.server
        .publish("hl7.fhir.r4.core", &[("4.0.1", &f.r4_tgz, true)]);
    let err = install(
        &f.dir,
        &registry(&[&f.server.base]),
        &[r("hl7.fhir.r4.core#5.0.0")],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no version matching 5.0.0 (has: 4.0.1)"),
        "{err}"
    );
}

#[test]
fn tarball_escaping_the_target_is_refused() {
    let f = fixture();
    let manifest = br#"{"name":"test.evil","version":"1.0.0"}"#;
    let tgz = tgz_raw(&[
        RawEntry::File("package/package.json", manifest),
        RawEntry::File("package/../../escaped.json", b"{}"),
    ]);
    f.server.publish("test.evil", &[("1.0.0", &tgz, true)]);
    let err = install(
        &f.dir,
        &registry(&[&f.server.base]),
        &[r("test.evil#1.0.0")],
    )
    .unwrap_err();
    assert!(matches!(err, PackageError::BadTarball { .. }), "{err}");
    assert!(err.to_string().contains("escapes"), "{err}");
    assert!(entries_of(f.dir.path()).is_empty());
    assert!(!f.dir.path().parent().unwrap().join("escaped.json").exists());

    let tgz = tgz_raw(&[
        RawEntry::File("package/package.json", manifest),
        RawEntry::Symlink("package/link.json", "/etc/passwd"),
    ]);
    f.server.publish("test.evil", &[("1.0.0", &tgz, true)]);
    let err = install(
        &f.dir,
        &registry(&[&f.server.base]),
        &[r("test.evil#1.0.0")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("link"), "{err}");
    assert!(entries_of(f.dir.path()).is_empty());
}

#[test]
fn tarball_of_another_package_is_refused() {
    let f = fixture();
    // Served as UK Core STU3 but it is the R4 core tarball.
    f.server.publish(
        "fhir.r4.ukcore.stu3.currentbuild",
        &[("0.22.0-main.55dd5f7e", &f.r4_tgz, true)],
    );
    let err = install(&f.dir, &registry(&[&f.server.base]), &[r(UK_STU3)]).unwrap_err();
    assert!(matches!(err, PackageError::BadTarball { .. }), "{err}");
    assert!(err.to_string().contains("hl7.fhir.r4.core#4.0.1"), "{err}");
    assert!(entries_of(f.dir.path()).is_empty());

    f.server.serve(
        "/tarballs/fhir.r4.ukcore.stu3.currentbuild-0.22.0-main.55dd5f7e.tgz",
        200,
        b"not gzip at all".to_vec(),
    );
    let doc = json!({"versions": {"0.22.0-main.55dd5f7e": {}}});
    f.server.serve(
        "/fhir.r4.ukcore.stu3.currentbuild",
        200,
        serde_json::to_vec(&doc).unwrap(),
    );
    f.server.serve(
        "/fhir.r4.ukcore.stu3.currentbuild/0.22.0-main.55dd5f7e",
        200,
        b"not gzip at all".to_vec(),
    );
    let err = install(&f.dir, &registry(&[&f.server.base]), &[r(UK_STU3)]).unwrap_err();
    assert!(matches!(err, PackageError::BadTarball { .. }), "{err}");
    assert!(entries_of(f.dir.path()).is_empty());
}

#[test]
fn cli_install_and_list() {
    let f = fixture();
    f.server
        .publish("hl7.fhir.r4.core", &[("4.0.1", &f.r4_tgz, true)]);
    let dir = f.dir.path().to_string_lossy().into_owned();
    let args: Vec<String> = [
        "install",
        "--packages",
        &dir,
        "--registry",
        &f.server.base,
        R4_CORE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = spbridge::packages::cli::run(&args, &mut out, &mut err);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert!(
        out.contains("installed hl7.fhir.r4.core#4.0.1 from"),
        "{out}"
    );

    let args: Vec<String> = ["list", "--packages", &dir]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut out = Vec::new();
    assert_eq!(
        spbridge::packages::cli::run(&args, &mut out, &mut Vec::new()),
        0
    );
    assert_eq!(String::from_utf8(out).unwrap(), format!("{R4_CORE}\n"));

    let mut err = Vec::new();
    let args = vec!["install".to_string(), "--packages".to_string(), dir.clone()];
    assert_eq!(
        spbridge::packages::cli::run(&args, &mut Vec::new(), &mut err),
        2
    );
    let args = vec![
        "install".to_string(),
        "--packages".to_string(),
        dir,
        "--registry".to_string(),
        f.server.base.clone(),
        "no.such#1.0.0".to_string(),
    ];
    let mut err = Vec::new();
    assert_eq!(
        spbridge::packages::cli::run(&args, &mut Vec::new(), &mut err),
        1
    );
    assert!(String::from_utf8(err).unwrap().contains("no.such#1.0.0"));
}

/// The real R4 core package (~50 MB of JSON) through a tarball: index kept, every file there.
#[test]
fn installs_the_full_r4_core_package() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let tgz = tgz_of_folder(&shared_package(R4_CORE));
    eprintln!("R4 core tarball: {} bytes in {:?}", tgz.len(), t.elapsed());
    let server = TestRegistry::start();
    server.publish("hl7.fhir.r4.core", &[("4.0.1", &tgz, true)]);
    let dir = PackageDir::new(tmp.path());
    let t = Instant::now();
    install(&dir, &registry(&[&server.base]), &[r(R4_CORE)]).unwrap();
    eprintln!("R4 core install: {:?}", t.elapsed());
    let set = PackageSet::load(&dir, &[r(R4_CORE)]).unwrap();
    assert_eq!(set.len(), 4581);
    assert!(set.packages()[0].indexed);
    assert!(set
        .resolve("http://hl7.org/fhir/StructureDefinition/Bundle")
        .is_some());
    assert!(dir
        .package_path(&r(R4_CORE))
        .join("package/other/fhir.schema.json")
        .is_file());
}
