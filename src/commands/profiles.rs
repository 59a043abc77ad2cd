//! `spbridge profiles snapshot URL`: prints a StructureDefinition with its snapshot.

use super::DefinitionArgs;
use std::process::ExitCode;

pub fn snapshot(args: &DefinitionArgs, url: &str) -> anyhow::Result<ExitCode> {
    let defs = args.load(false)?;
    match defs.conformance.snapshot_json(url) {
        Ok(sd) => {
            println!("{}", serde_json::to_string_pretty(&sd)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
