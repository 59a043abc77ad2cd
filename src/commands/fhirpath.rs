//! `spbridge fhirpath 'EXPRESSION' FILE`: evaluates and prints the result collection.

use super::{read_json, DefinitionArgs};
use std::path::Path;
use std::process::ExitCode;

pub fn run(args: &DefinitionArgs, expression: &str, file: &Path) -> anyhow::Result<ExitCode> {
    let resource = read_json(file)?;
    let defs = args.load(false)?;
    match spbridge::fhirpath::evaluate_to_json(expression, &resource, &defs.model) {
        Ok(result) => {
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
