//! The `spbridge` command line: the binary edge, the only place `anyhow` is used.
//!
//! Each sub-command lives in `src/commands/` and calls into the library; this file only
//! parses arguments and turns results into exit codes.

mod commands;

/// mimalloc rather than the system allocator: a referral's request, validation and store
/// work allocate many short-lived JSON values across threads, where glibc malloc spent
/// about 16 % of the intake path's CPU (BENCHMARKS.md, "Intake end to end").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the FHIR REST intake and the outbox relay to RabbitMQ.
    Serve {
        /// Configuration file (TOML); SPBRIDGE_<SECTION>__<KEY> variables override it.
        #[arg(long, env = "SPBRIDGE_CONFIG", default_value = "spbridge.toml")]
        config: PathBuf,
    },
    /// Start the service on a temporary SQLite store, post the fixture referrals over HTTP
    /// and show them arriving in the provider queues of the local RabbitMQ.
    Demo {
        /// Optional configuration (broker URL, routing); store and listener are replaced.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Fixtures folder (referral/, providers/, *-bundle.json).
        #[arg(long, env = "SPBRIDGE_FIXTURES", default_value = "fixtures")]
        fixtures: PathBuf,
    },
    /// The provider inbox: receive referrals from your queue, record each as received,
    /// and print a summary.
    Inbox {
        #[command(flatten)]
        provider: commands::provider::ProviderArgs,
        /// Stop after this many referrals (default: run until interrupted).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Send a provider's update to a referral's Task (accept, reject, start, complete, note).
    Task {
        /// The Task id (shown by `spbridge inbox`).
        id: String,
        #[command(flatten)]
        provider: commands::provider::ProviderArgs,
        #[command(subcommand)]
        action: commands::provider::TaskCommand,
    },
    /// Load and check a configuration file, then exit.
    CheckConfig {
        #[arg(long, env = "SPBRIDGE_CONFIG", default_value = "spbridge.toml")]
        config: PathBuf,
    },
    /// Fetch an access token (SMART Backend Services: a signed client assertion sent to
    /// `<url>/oauth2/token`), or print a key's public JWK Set with --jwks.
    Token(commands::token::TokenArgs),
    /// Validate the fixture referral set, valid documents and invalid variants, and show
    /// what the validator finds in each.
    CheckFixtures {
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
        Command::CheckFixtures { fixtures } => {
            commands::check_fixtures::run(&cli.definitions, &fixtures)
        }
        Command::Serve { config } => commands::serve::serve(&cli.definitions, &config),
        Command::Demo { config, fixtures } => {
            commands::serve::demo(&cli.definitions, config.as_deref(), &fixtures)
        }
        Command::CheckConfig { config } => commands::serve::check_config(&config),
        Command::Inbox { provider, count } => commands::provider::inbox(&provider, count),
        Command::Task {
            id,
            provider,
            action,
        } => commands::provider::task(&provider, &id, action),
        Command::Token(args) => commands::token::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
