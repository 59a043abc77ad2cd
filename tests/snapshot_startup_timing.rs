//! Start-up figure for the snapshot part: load R4 core + UK Core STU3 (every
//! resource file, as start-up does) and generate every missing snapshot.
//! Prints the timings; asserts nothing about speed (debug builds are slow).

#[path = "support/snapshot.rs"]
mod common;

use common::*;
use spbridge::conformance::Conformance;
use std::time::Instant;

#[test]
fn load_and_generate_all_ukcore_stu3_snapshots() {
    let start = Instant::now();
    let resolver = resolver(&[STU3]);
    let loaded = start.elapsed();
    let conf = Conformance::new(resolver.clone());
    let t = Instant::now();
    let report = conf.generate_all();
    let generated = t.elapsed();
    // The machine is shared: also give the best of three fresh generations.
    let best = (0..3)
        .map(|_| {
            let fresh = Conformance::new(resolver.clone());
            let t = Instant::now();
            fresh.generate_all();
            t.elapsed()
        })
        .min()
        .unwrap_or_default();
    let elements: usize = report
        .generated
        .iter()
        .map(|u| {
            conf.structure_definition(u).unwrap()["snapshot"]["element"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    println!(
        "start-up ({}): load all resources {loaded:?}; generate {} snapshots ({elements} elements) {generated:?} (best of 3 fresh runs {best:?}); total {:?}",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        report.generated.len(),
        start.elapsed()
    );
    assert_eq!(report.generated.len(), 153);
}
