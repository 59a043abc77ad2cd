//! Sub-commands of the `spbridge` binary, one file each, and the options they share.
//!
//! Owns: reading files and standard input, printing, exit codes. Must not: hold FHIR logic;
//! everything here calls the library.

pub mod check_fixtures;
pub mod fhirpath;
pub mod profiles;
pub mod provider;
pub mod serve;
pub mod token;
pub mod validate;

use anyhow::Context;
use clap::Args;
use spbridge::definitions::{Definitions, DefinitionsConfig};
use spbridge::packages::PackageDir;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the FHIR definitions come from (shared by every sub-command).
#[derive(Args, Debug, Clone)]
pub struct DefinitionArgs {
    /// FHIR package directory (package-cache layout). Default: $SPBRIDGE_FHIR_PACKAGES, else
    /// ~/.fhir/packages.
    #[arg(long, global = true, env = "SPBRIDGE_FHIR_PACKAGES")]
    pub packages: Option<PathBuf>,
    /// Packages to load (ID#VERSION, repeatable). Default: hl7.fhir.r4.core#4.0.1 and
    /// fhir.r4.ukcore.stu3.currentbuild#0.22.0-main.55dd5f7e.
    #[arg(
        long = "load",
        global = true,
        env = "SPBRIDGE_LOAD_PACKAGES",
        value_delimiter = ','
    )]
    pub load: Vec<String>,
    /// spbridge's own profile package folder. Default: ./profiles when it exists.
    #[arg(long, global = true, env = "SPBRIDGE_PROFILES")]
    pub profiles: Option<PathBuf>,
    /// An unknown meta.profile is an error rather than a warning.
    #[arg(long, global = true)]
    pub strict: bool,
}

impl DefinitionArgs {
    pub fn config(&self, json_schema: bool) -> anyhow::Result<DefinitionsConfig> {
        let dir = PackageDir::configured(self.packages.as_deref());
        let profiles = self.profiles.clone().or_else(|| {
            Some(PathBuf::from("profiles")).filter(|p| p.join("package.json").is_file())
        });
        let mut config = DefinitionsConfig::standard(dir.path().to_path_buf(), profiles);
        if !self.load.is_empty() {
            config.packages = self
                .load
                .iter()
                .map(|p| p.parse().with_context(|| format!("--load {p}")))
                .collect::<anyhow::Result<_>>()?;
        }
        config.json_schema = json_schema;
        config.strict_profiles = self.strict;
        Ok(config)
    }

    pub fn load(&self, json_schema: bool) -> anyhow::Result<Definitions> {
        let config = self.config(json_schema)?;
        Definitions::load(&config).with_context(|| {
            format!(
                "loading FHIR packages from {} (install them with `spbridge packages install`)",
                config.package_dir.display()
            )
        })
    }
}

/// Reads a JSON document from a file, or standard input for `-`.
pub fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    spbridge::fhir_json::parse(text.as_bytes())
        .with_context(|| format!("{} is not valid FHIR JSON", path.display()))
}
