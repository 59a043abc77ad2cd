//! Every example shipped in the UK Core STU3 current build validates against its own profile
//! (its `meta.profile`, else the UK Core default for its type) without errors. The known
//! exceptions are listed with the reason; the test fails if one of them starts passing, so
//! the list stays true.

use spbridge::definitions::{Definitions, DefinitionsConfig, UK_CORE};
use std::path::{Path, PathBuf};

/// Examples that are wrong in the published package itself.
const KNOWN_BAD_EXAMPLES: &[(&str, &str)] = &[
    (
        "Patient-UKCore-Patient-BabyPatient-Example.json",
        "its NHS number fails the Modulus 11 check digit",
    ),
    (
        "Condition-Extension-UKCore-ConditionEpisode-Example.json",
        "gives the ConditionEpisode extension a valueCode; the extension allows only CodeableConcept",
    ),
];

#[test]
fn ukcore_examples_validate_against_their_own_profiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let package_dir = std::env::var_os("SPBRIDGE_FHIR_PACKAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/fhir-packages"));
    let mut config = DefinitionsConfig::standard(package_dir, None);
    config.json_schema = true;
    let defs = Definitions::load(&config).expect("definitions");
    let examples: Vec<_> = defs.packages.examples(UK_CORE).expect("examples").collect();
    assert!(examples.len() > 200, "{} examples", examples.len());
    let mut unexpected = Vec::new();
    let mut known = 0;
    for (file, example) in &examples {
        let outcome = defs.validator.validate(example, None);
        let is_known = KNOWN_BAD_EXAMPLES.iter().any(|(f, _)| f == file);
        match (outcome.has_errors(), is_known) {
            (false, false) => {}
            (true, true) => known += 1,
            (false, true) => unexpected.push(format!("{file}: listed as bad but now passes")),
            (true, false) => unexpected.push(format!(
                "{file}: {:#?}",
                outcome
                    .issues
                    .iter()
                    .filter(|i| i.severity.is_failure())
                    .map(|i| format!(
                        "{} @ {}: {}",
                        i.code.as_code(),
                        i.expression.join(","),
                        i.diagnostics
                    ))
                    .collect::<Vec<_>>()
            )),
        }
    }
    println!(
        "{} UK Core examples: {} valid, {known} known-bad",
        examples.len(),
        examples.len() - known
    );
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
}
