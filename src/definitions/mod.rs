//! The FHIR definitions spbridge validates against, loaded once at start-up.
//!
//! Owns: turning configuration (package directory, which packages, spbridge's own
//! `profiles/` package, strictness) into the immutable, shared artefacts the rest of the
//! service uses: the [`PackageSet`], the snapshot cache ([`Conformance`]), the FHIRPath
//! [`ModelInfo`] and the compiled [`Validator`] with FHIRPath invariants plugged in.
//! Must not: validate anything itself, or do I/O after [`Definitions::load`] returns.

mod r4_types;

pub use r4_types::{R4_BASE_TYPES, R4_RESOURCE_TYPES};

use crate::conformance::Conformance;
use crate::fhirpath::ModelInfo;
use crate::packages::{
    CanonicalResolver, LoadOptions, PackageDir, PackageError, PackageRef, PackageSet, PackageSource,
};
use crate::validation::{FhirPathInvariants, Validator, ValidatorError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// R4 core, the package every other one builds on.
pub const R4_CORE: &str = "hl7.fhir.r4.core#4.0.1";
/// UK Core: the STU3 current build, the only build with UKCore-Task, -MessageHeader and -Bundle.
pub const UK_CORE: &str = "fhir.r4.ukcore.stu3.currentbuild#0.22.0-main.55dd5f7e";
/// Canonical base of UK Core profiles.
pub const UK_CORE_PROFILE_BASE: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-";
/// spbridge's social-prescribing referral profile (on UKCore-ServiceRequest).
pub const REFERRAL_PROFILE: &str =
    "https://fhir.spbridge.org/StructureDefinition/SPBridge-SocialPrescribingReferral";
/// spbridge's provider status-update profile (on UKCore-Task).
pub const TASK_UPDATE_PROFILE: &str =
    "https://fhir.spbridge.org/StructureDefinition/SPBridge-ProviderTaskUpdate";

/// What to load.
#[derive(Debug, Clone)]
pub struct DefinitionsConfig {
    /// The FHIR package cache folder (`<id>#<version>/package/…`).
    pub package_dir: PathBuf,
    /// Packages to load from the cache, each with its dependencies.
    pub packages: Vec<PackageRef>,
    /// Package folders outside the cache (spbridge's own `profiles/`).
    pub extra_package_folders: Vec<PathBuf>,
    /// Run the R4 JSON Schema as a confirming structure layer (slower; the profile walk
    /// already checks structure). On for `spbridge validate`, off on the intake hot path.
    pub json_schema: bool,
    /// An unknown `meta.profile` is an error instead of a warning.
    pub strict_profiles: bool,
    /// Evaluate FHIRPath invariants (on unless measuring their cost).
    pub invariants: bool,
}

impl DefinitionsConfig {
    /// R4 core + UK Core (STU3 current build) + the `profiles/` folder when given.
    pub fn standard(package_dir: PathBuf, own_profiles: Option<PathBuf>) -> Self {
        let packages = [R4_CORE, UK_CORE]
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        DefinitionsConfig {
            package_dir,
            packages,
            extra_package_folders: own_profiles.into_iter().collect(),
            json_schema: false,
            strict_profiles: false,
            invariants: true,
        }
    }
}

/// Why the definitions could not be loaded; each names the package, file or profile.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    #[error(transparent)]
    Package(#[from] Box<PackageError>),
    #[error(
        "the R4 base type {0} is not in the loaded packages (is hl7.fhir.r4.core#4.0.1 loaded?)"
    )]
    MissingBaseType(String),
    #[error(
        "the R4 JSON schema (package/other/fhir.schema.json of {package}) cannot be used: {reason}"
    )]
    Schema { package: String, reason: String },
    #[error(transparent)]
    Validator(#[from] ValidatorError),
}

/// How long each start-up step took.
#[derive(Debug, Clone, Default)]
pub struct LoadTimings {
    pub packages: Duration,
    pub model: Duration,
    pub validator: Duration,
}

/// Everything loaded and compiled; cheap to share (`Arc` inside).
pub struct Definitions {
    pub packages: Arc<PackageSet>,
    pub conformance: Arc<Conformance>,
    pub model: Arc<ModelInfo>,
    pub validator: Arc<Validator>,
    pub timings: LoadTimings,
}

impl Definitions {
    /// Loads packages, builds the FHIRPath model and the validator. Profiles compile lazily
    /// on first use; call [`Definitions::precompile_standard_profiles`] to pay that at start-up.
    pub fn load(config: &DefinitionsConfig) -> Result<Definitions, DefinitionsError> {
        let started = Instant::now();
        let dir = PackageDir::new(config.package_dir.clone());
        let mut sources: Vec<PackageSource> = config
            .packages
            .iter()
            .cloned()
            .map(PackageSource::Cache)
            .collect();
        sources.extend(
            config
                .extra_package_folders
                .iter()
                .cloned()
                .map(PackageSource::Folder),
        );
        let packages = Arc::new(
            PackageSet::load_sources(&dir, &sources, &LoadOptions::default()).map_err(Box::new)?,
        );
        let packages_done = started.elapsed();

        let t = Instant::now();
        let mut base = Vec::with_capacity(R4_BASE_TYPES.len());
        for name in R4_BASE_TYPES {
            let url = format!("http://hl7.org/fhir/StructureDefinition/{name}");
            let sd = packages
                .resolve(&url)
                .ok_or_else(|| DefinitionsError::MissingBaseType(name.to_string()))?;
            base.push(sd);
        }
        let model = Arc::new(ModelInfo::from_structure_definitions(
            base.iter().map(|sd| sd.as_ref()),
        ));
        let model_done = t.elapsed();

        let t = Instant::now();
        let conformance = Arc::new(Conformance::new(packages.clone()));
        let mut builder =
            Validator::builder(conformance.clone()).strict_profiles(config.strict_profiles);
        for resource_type in R4_RESOURCE_TYPES {
            let url = format!("{UK_CORE_PROFILE_BASE}{resource_type}");
            let is_profile_of_type = packages
                .resolve(&url)
                .is_some_and(|sd| sd["type"].as_str() == Some(resource_type));
            if is_profile_of_type {
                builder = builder.default_profile(resource_type, &url);
            }
        }
        if config.invariants {
            builder = builder.invariants(Arc::new(FhirPathInvariants::new(model.clone())));
        }
        if config.json_schema {
            let r4_ref: PackageRef = R4_CORE.parse().map_err(Box::new)?;
            let r4 = dir.locate(&r4_ref).map_err(Box::new)?;
            let path = r4.root.join("other").join("fhir.schema.json");
            builder = builder.json_schema_file(&path)?;
        }
        let validator = Arc::new(builder.build()?);
        let validator_done = t.elapsed();

        Ok(Definitions {
            packages,
            conformance,
            model,
            validator,
            timings: LoadTimings {
                packages: packages_done,
                model: model_done,
                validator: validator_done,
            },
        })
    }

    /// Compiles the profiles intake uses (and their UK Core bases) now rather than on the
    /// first request.
    pub fn precompile_standard_profiles(&self) -> Result<(), ValidatorError> {
        let mut urls = vec![
            REFERRAL_PROFILE.to_string(),
            TASK_UPDATE_PROFILE.to_string(),
        ];
        for t in [
            "Patient",
            "Practitioner",
            "PractitionerRole",
            "Organization",
            "HealthcareService",
            "MessageHeader",
            "Bundle",
            "Task",
            "ServiceRequest",
        ] {
            urls.push(format!("{UK_CORE_PROFILE_BASE}{t}"));
        }
        let refs: Vec<&str> = urls
            .iter()
            .map(String::as_str)
            .filter(|u| self.packages.resolve(u).is_some())
            .collect();
        self.validator.precompile(&refs)
    }
}
