//! The `spbridge packages …` sub-commands (`install`, `list`), argument parsing included.
//!
//! Owns: turning command-line words into calls of this module and printing results.
//! Must not: hold package logic; the binary decides how it is wired (it passes the words after
//! `packages`). Exit codes: 0 success, 1 failure, 2 usage.

use std::io::Write;
use std::path::PathBuf;

use super::cache::PackageDir;
use super::install::{install, InstallOutcome};
use super::registry::RegistryConfig;
use super::version::PackageRef;

pub const USAGE: &str = "\
usage: spbridge packages install [--packages DIR] [--registry URL]... ID#VERSION...
       spbridge packages list [--packages DIR]

--packages DIR   package directory (default: $SPBRIDGE_FHIR_PACKAGES, else ~/.fhir/packages)
--registry URL   registry base URL, repeatable (default: $SPBRIDGE_FHIR_REGISTRY, comma
                 separated, else https://packages.fhir.org then https://packages2.fhir.org/packages)";

/// Runs `packages <args>`; returns the process exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match run_inner(args, out) {
        Ok(()) => 0,
        Err(Failure::Usage(message)) => {
            let _ = writeln!(err, "error: {message}\n\n{USAGE}");
            2
        }
        Err(Failure::Failed(message)) => {
            let _ = writeln!(err, "error: {message}");
            1
        }
    }
}

enum Failure {
    Usage(String),
    Failed(String),
}

struct Parsed {
    packages: Option<PathBuf>,
    registries: Vec<String>,
    positional: Vec<String>,
}

fn parse(args: &[String]) -> Result<Parsed, Failure> {
    let mut parsed = Parsed {
        packages: None,
        registries: Vec::new(),
        positional: Vec::new(),
    };
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (word.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, Failure> {
            inline
                .clone()
                .or_else(|| words.next().cloned())
                .ok_or_else(|| Failure::Usage(format!("{name} needs a value")))
        };
        match flag {
            "--packages" => parsed.packages = Some(PathBuf::from(value("--packages")?)),
            "--registry" => parsed.registries.push(value("--registry")?),
            "-h" | "--help" => return Err(Failure::Usage("help requested".to_string())),
            f if f.starts_with('-') => return Err(Failure::Usage(format!("unknown option {f}"))),
            _ => parsed.positional.push(word.clone()),
        }
    }
    Ok(parsed)
}

fn run_inner(args: &[String], out: &mut dyn Write) -> Result<(), Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage("missing sub-command".to_string()));
    };
    let parsed = parse(rest)?;
    let dir = PackageDir::configured(parsed.packages.as_deref());
    let failed = |e: super::error::PackageError| Failure::Failed(e.to_string());
    let io = |e: std::io::Error| Failure::Failed(format!("cannot write output: {e}"));
    match command.as_str() {
        "install" => {
            if parsed.positional.is_empty() {
                return Err(Failure::Usage(
                    "install needs at least one ID#VERSION".to_string(),
                ));
            }
            let requests = parsed
                .positional
                .iter()
                .map(|p| p.parse::<PackageRef>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let registry = if parsed.registries.is_empty() {
                RegistryConfig::from_env_or_default()
            } else {
                RegistryConfig::new(parsed.registries)
            };
            let done = install(&dir, &registry, &requests).map_err(failed)?;
            for p in done {
                match p.outcome {
                    InstallOutcome::Downloaded { url } => {
                        writeln!(out, "installed {} from {url}", p.package).map_err(io)?
                    }
                    InstallOutcome::AlreadyInstalled => {
                        writeln!(out, "already installed {}", p.package).map_err(io)?
                    }
                }
            }
            writeln!(out, "package directory: {}", dir.path().display()).map_err(io)?;
            Ok(())
        }
        "list" => {
            if !parsed.positional.is_empty() {
                return Err(Failure::Usage("list takes no package names".to_string()));
            }
            for p in dir.list().map_err(failed)? {
                writeln!(out, "{p}").map_err(io)?;
            }
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown sub-command {other}"))),
    }
}
