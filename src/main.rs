//! The `spbridge` command line: the binary edge, the only place `anyhow` is used.
//!
//! Each sub-command lives in `src/commands/` and calls into the library; this file only
//! parses arguments and turns results into exit codes.

mod commands;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "spbridge",
    version,
    about = "FHIR R4 social-prescribing referral bridge"
)]
struct Cli {
    #[command(flatten)]
    definitions: commands::DefinitionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate FHIR JSON resources against R4, UK Core and spbridge's profiles; prints an
    /// OperationOutcome. Exit 0: no errors; 1: errors; 2: usage or I/O problems.
    Validate {
        /// Validate against this profile (canonical URL) instead of meta.profile / defaults.
        #[arg(long)]
        profile: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = commands::validate::Format::Json)]
        format: commands::validate::Format,
        /// Files to validate; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Evaluate a FHIRPath expression against a resource; prints the result as a JSON array.
    Fhirpath {
        expression: String,
        /// The resource (FHIR JSON); `-` reads standard input.
        file: PathBuf,
    },
    /// Inspect conformance resources.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// Install or list FHIR packages (`spbridge packages install ID#VERSION...`).
    #[command(disable_help_flag = true)]
    Packages {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Validate the fixture referral set and show what each check finds.
    Demo {
        /// The fixtures folder.
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProfilesCommand {
    /// Print a StructureDefinition with its (generated) snapshot.
    Snapshot { url: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate {
            profile,
            format,
            files,
        } => commands::validate::run(&cli.definitions, profile.as_deref(), format, &files),
        Command::Fhirpath { expression, file } => {
            commands::fhirpath::run(&cli.definitions, &expression, &file)
        }
        Command::Profiles {
            command: ProfilesCommand::Snapshot { url },
        } => commands::profiles::snapshot(&cli.definitions, &url),
        Command::Packages { args } => {
            let mut out = std::io::stdout();
            let mut err = std::io::stderr();
            let code = spbridge::packages::cli::run(&args, &mut out, &mut err);
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
        Command::Demo { fixtures } => commands::demo::run(&cli.definitions, &fixtures),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
