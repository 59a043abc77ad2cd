//! `spbridge validate`: validates files and prints one OperationOutcome per file.

use super::{read_json, DefinitionArgs};
use spbridge::outcome::{Issue, IssueType, OperationOutcome};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Json,
    Text,
}

pub fn run(
    args: &DefinitionArgs,
    profile: Option<&str>,
    format: Format,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let defs = args.load(true)?;
    let mut any_errors = false;
    let mut io_problem = false;
    let mut outcomes = Vec::new();
    for file in files {
        let outcome = match read_json(file) {
            Ok(doc) => defs.validator.validate(&doc, profile),
            Err(e) => {
                io_problem = true;
                OperationOutcome::from_issue(Issue::error(IssueType::Exception, format!("{e:#}")))
            }
        };
        any_errors |= outcome.has_errors();
        outcomes.push((file, outcome));
    }
    match format {
        Format::Json if outcomes.len() == 1 => {
            println!(
                "{}",
                serde_json::to_string_pretty(&outcomes[0].1.to_json())?
            );
        }
        Format::Json => {
            let all: Vec<_> = outcomes
                .iter()
                .map(|(f, o)| serde_json::json!({"file": f.display().to_string(), "outcome": o.to_json()}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        Format::Text => {
            for (file, outcome) in &outcomes {
                print_text(&file.display().to_string(), outcome);
            }
        }
    }
    Ok(if io_problem {
        ExitCode::from(2)
    } else if any_errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per issue, most severe first.
pub fn print_text(name: &str, outcome: &OperationOutcome) {
    use spbridge::outcome::Severity;
    println!(
        "{name}: {} error(s), {} warning(s), {} information",
        outcome.count(Severity::Error) + outcome.count(Severity::Fatal),
        outcome.count(Severity::Warning),
        outcome.count(Severity::Information)
    );
    let mut issues: Vec<_> = outcome.issues.iter().collect();
    issues.sort_by_key(|i| i.severity);
    for i in issues {
        println!(
            "  {:<11} {:<13} {} {}{}",
            i.severity.as_code(),
            i.code.as_code(),
            i.expression.join(", "),
            i.detail_code
                .as_deref()
                .map(|d| format!("[{d}] "))
                .unwrap_or_default(),
            i.diagnostics
        );
    }
}
