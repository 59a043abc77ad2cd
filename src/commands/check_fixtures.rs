//! `spbridge check-fixtures`: loads the definitions, validates every fixture referral (valid ones and
//! the invalid variants) and reports what the validator found and how fast it started.

use super::validate::print_text;
use super::DefinitionArgs;
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(args: &DefinitionArgs, fixtures: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let defs = args.load(false)?;
    defs.precompile_standard_profiles()?;
    println!(
        "loaded FHIR definitions and compiled the referral profiles in {:?} ({:?})",
        started.elapsed(),
        defs.timings
    );
    let mut failures = 0;
    for name in [
        "referral-transaction-bundle.json",
        "referral-message-bundle.json",
        "referral/servicerequest.json",
        "referral/patient.json",
        "referral/task.json",
    ] {
        let path = fixtures.join(name);
        let doc = super::read_json(&path)?;
        let outcome = defs.validator.validate(&doc, None);
        failures += usize::from(outcome.has_errors());
        print_text(name, &outcome);
    }
    let cases_path = fixtures.join("invalid/cases.json");
    let cases = super::read_json(&cases_path)?;
    let cases = cases.as_array().context("invalid/cases.json is an array")?;
    println!(
        "\n{} invalid variants (fixtures/invalid/cases.json), first issue of each:",
        cases.len()
    );
    let mut caught = 0;
    for case in cases {
        let doc = apply_case(fixtures, case)?;
        let outcome = defs.validator.validate(&doc, None);
        if outcome.has_errors() {
            caught += 1;
        }
        let first = outcome.issues.iter().find(|i| i.severity.is_failure());
        println!(
            "  {:<48} {}",
            case["name"].as_str().unwrap_or("?"),
            first
                .map(|i| format!("{} at {}", i.code.as_code(), i.expression.join(", ")))
                .unwrap_or_else(|| "NOT CAUGHT".into())
        );
    }
    println!(
        "\n{caught} of {} invalid variants refused; {failures} valid fixtures refused",
        cases.len()
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Applies one case of `fixtures/invalid/cases.json`: its JSON Patch on its base document.
fn apply_case(fixtures: &Path, case: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let base = case["base"].as_str().context("case without base")?;
    let mut doc = super::read_json(&fixtures.join(base))?;
    let patch: json_patch::Patch = serde_json::from_value(case["patch"].clone())
        .with_context(|| format!("patch of case {}", case["name"]))?;
    json_patch::patch(&mut doc, &patch).with_context(|| format!("case {}", case["name"]))?;
    Ok(doc)
}
