//! Replays every input the fuzzers found troublesome (kept under `fuzz/regressions/<target>/`)
//! and a handful of hostile classics through the same code the fuzz targets drive
//! (`fuzz/src/lib.rs`), on stable, in every test run. Each must return normally.

#[path = "../fuzz/src/lib.rs"]
mod fuzz_inputs;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut count = 0;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths.iter().filter(|p| p.is_file()) {
            if path.file_name().is_some_and(|n| n == ".gitkeep") {
                continue;
            }
            let data = std::fs::read(path).unwrap();
            eprintln!("replaying {}", path.display());
            run(&data);
            count += 1;
        }
    }
    count
}

/// Inputs every target gets besides its regressions.
const CLASSICS: &[&[u8]] = &[
    b"",
    b"\xff\xfe\x00",
    b"{}",
    b"[]",
    b"null",
    b"{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Bundle\"}}]}",
    b"{\"resourceType\":\"Task\",\"resourceType\":\"Patient\"}",
    b"{\"resourceType\":\"Patient\",\"birthDate\":1e400}",
];

fn deep(open: &str, close: &str, depth: usize) -> Vec<u8> {
    format!("{}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

#[test]
fn fhir_json_regressions() {
    for c in CLASSICS {
        fuzz_inputs::fhir_json(c);
    }
    fuzz_inputs::fhir_json(&deep("[", "]", 100));
    fuzz_inputs::fhir_json(&deep(
        "{\"resourceType\":\"Patient\",\"extension\":[",
        "]}",
        60,
    ));
    replay("fhir_json", fuzz_inputs::fhir_json);
}

#[test]
fn fhirpath_regressions() {
    for c in CLASSICS {
        fuzz_inputs::fhirpath(c);
    }
    for expr in [
        "((((((((((((((((((((1))))))))))))))))))))",
        "repeat(children())",
        "descendants().descendants().count()",
        "'x' * 9223372036854775807",
        "9223372036854775807 + 1",
        "@2026-13-45T99:99:99Z",
        "(1 | 2 | 3).aggregate($total + $this, 0)",
        "%resource.identifier.where(value.matches('(a+)+$'))",
    ] {
        fuzz_inputs::fhirpath(expr.as_bytes());
    }
    fuzz_inputs::fhirpath(&deep("(", ")", 500));
    replay("fhirpath", fuzz_inputs::fhirpath);
}

#[test]
fn task_update_regressions() {
    for c in CLASSICS {
        fuzz_inputs::task_update(c);
    }
    fuzz_inputs::task_update(
        b"provider.8kx42\n{\"resourceType\":\"Task\",\"status\":\"completed\"}",
    );
    fuzz_inputs::task_update(b"provider.\n{\"resourceType\":\"Task\"}");
    replay("task_update", fuzz_inputs::task_update);
}

#[test]
fn token_assertion_regressions() {
    for c in CLASSICS {
        fuzz_inputs::token_assertion(c);
    }
    for token in [
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJncC1hODEwMDEifQ.",
        "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJncC1hODEwMDEifQ.AAAA",
        "....",
    ] {
        fuzz_inputs::token_assertion(token.as_bytes());
    }
    replay("token_assertion", fuzz_inputs::token_assertion);
}
