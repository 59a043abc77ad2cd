//! FHIR NPM packages: the package directory, loading packages with their dependencies, canonical
//! resolution, and installing packages from a FHIR package registry.
//!
//! Owns: everything about packages on disk and in registries, and the [`CanonicalResolver`]
//! trait other modules resolve conformance resources through. Must not: generate snapshots,
//! validate instances or know which profiles spbridge uses (that is configuration).
//!
//! - [`PackageDir`]: the cache folder (`<id>#<version>/package/*.json`); `--packages DIR`, else
//!   `SPBRIDGE_FHIR_PACKAGES`, else `~/.fhir/packages`.
//! - [`PackageSet::load`]: requested packages plus their `package.json` dependencies, each after
//!   its dependencies. `.index.json` is used when present (files not listed are scanned; a listed
//!   file that is missing is an error); resources are parsed on first use and cached.
//! - Version rules (packages and `url|version`): exact (`4.0.1`); wildcards `4.0.x`, `4.x`;
//!   a partial version `4.0` matches `4.0.*` when nothing equals it; `current`, `dev`, `latest`
//!   mean a folder with that literal version if there is one, else the only or highest version.
//! - Same `url` in several packages: the later-loaded (depending / later requested) one wins;
//!   see [`PackageSet::conflicts`].
//! - [`install`]: downloads from NPM-style registries with checksum checks, extracts atomically.

mod cache;
mod canonical;
pub mod cli;
mod error;
mod install;
mod load;
mod manifest;
mod parse;
mod registry;
mod tarball;
mod version;

pub use cache::{PackageDir, PackageFolder};
pub use canonical::{
    CanonicalConflict, CanonicalResolver, LoadedPackage, PackageSet, ResourceSource,
};
pub use error::{NameList, PackageError};
pub use install::{install, InstallOutcome, InstalledPackage};
pub use load::{LoadOptions, PackageSource};
pub use manifest::{IndexEntry, PackageIndex, PackageManifest};
pub use registry::RegistryConfig;
pub use version::{canonical_version_matches, compare_versions, PackageRef, VersionSpec};
