//! spbridge's own profiles (in /work/main/profiles when present, or
//! $SPBRIDGE_PROFILES) get snapshots on top of UK Core STU3.

#[path = "support/snapshot.rs"]
mod common;

use common::*;
use serde_json::Value;
use spbridge::conformance::Conformance;
use std::path::PathBuf;
use std::sync::Arc;

#[test]
fn spbridge_profiles_generate() {
    let dir = std::env::var_os("SPBRIDGE_PROFILES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles")));
    let entries = std::fs::read_dir(&dir).expect("the profiles/ folder");
    let mut sds: Vec<Value> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("StructureDefinition-") && name.ends_with(".json") {
            let text = std::fs::read(e.path()).unwrap();
            sds.push(serde_json::from_slice(&text).unwrap());
        }
    }
    let urls: Vec<String> = sds
        .iter()
        .filter_map(|s| s["url"].as_str().map(str::to_string))
        .collect();
    let conf = Conformance::new(Arc::new(Overlay::new(resolver(&[STU3, R4]), sds)));
    for url in &urls {
        match conf.structure_definition(url) {
            Ok(sd) => {
                assert_well_formed(&sd);
                println!(
                    "{url}: {} elements, warnings {:?}",
                    sd["snapshot"]["element"].as_array().map_or(0, Vec::len),
                    conf.warnings(url)
                );
            }
            Err(e) => panic!("{url}: {e}"),
        }
    }
}
