//! Every StructureDefinition of both UK Core builds (each with R4 core) gets a
//! snapshot; counts, failures and warnings are printed.

#[path = "support/snapshot.rs"]
mod common;

use common::*;
use std::time::Instant;

fn run(package: &str) -> (usize, usize) {
    let start = Instant::now();
    let conf = conformance(package);
    let loaded = start.elapsed();
    let report = conf.generate_all();
    let total = start.elapsed();
    println!(
        "{package}: generated {} failed {} (shipped {}, skipped {}); load {:?}, load+generate {:?}",
        report.generated.len(),
        report.failed.len(),
        report.shipped.len(),
        report.skipped.len(),
        loaded,
        total
    );
    for url in &report.skipped {
        println!(
            "  skipped {url}: no snapshot and no baseDefinition (as in the official R4 package)"
        );
    }
    for (url, e) in &report.failed {
        println!("  FAILED {url}: {e}");
    }
    let uk_failed = report.failed.len();
    for url in &report.generated {
        let sd = conf.structure_definition(url).unwrap();
        assert_well_formed(&sd);
        for w in conf.warnings(url) {
            println!("  warning {url}: {w}");
        }
    }
    (report.generated.len(), uk_failed)
}

#[test]
fn every_ukcore_stu3_definition_gets_a_snapshot() {
    let (ok, failed) = run(STU3);
    assert!(ok >= 150);
    assert_eq!(failed, 0);
}

#[test]
fn every_ukcore_stu2_definition_gets_a_snapshot() {
    let (ok, failed) = run(STU2);
    assert!(ok >= 75);
    assert_eq!(failed, 0);
}
