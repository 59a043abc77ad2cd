//! The package directory (FHIR package cache layout) and the folders of single packages in it.
//!
//! Layout: `<dir>/<id>#<version>/package/` holding `package.json`, `.index.json` (optional),
//! one JSON file per resource and `examples/` (with its own `.index.json`).
//! Owns: where the directory is (flag > `SPBRIDGE_FHIR_PACKAGES` > `~/.fhir/packages`), what is
//! in it, and which folder satisfies a request. Must not: parse resources or download anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{NameList, PackageError};
use super::manifest::PackageManifest;
use super::version::PackageRef;

/// The package cache folder (e.g. `~/.fhir/packages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageDir {
    path: PathBuf,
}

impl PackageDir {
    /// Environment variable naming the package directory.
    pub const ENV: &'static str = "SPBRIDGE_FHIR_PACKAGES";

    pub fn new(path: impl Into<PathBuf>) -> Self {
        PackageDir { path: path.into() }
    }

    /// `$SPBRIDGE_FHIR_PACKAGES` when set and non-empty, else `default`.
    pub fn from_env_or(default: impl Into<PathBuf>) -> Self {
        match std::env::var_os(Self::ENV) {
            Some(v) if !v.is_empty() => PackageDir::new(v),
            _ => PackageDir::new(default),
        }
    }

    /// The directory a command line selects: `--packages DIR` (`flag`) if given, else
    /// `$SPBRIDGE_FHIR_PACKAGES`, else the user's FHIR cache `~/.fhir/packages`.
    pub fn configured(flag: Option<&Path>) -> Self {
        match flag {
            Some(p) => PackageDir::new(p),
            None => PackageDir::from_env_or(Self::user_cache()),
        }
    }

    /// `~/.fhir/packages` (`$HOME`, or `%USERPROFILE%`; `./.fhir/packages` if neither is set).
    pub fn user_cache() -> PathBuf {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".fhir").join("packages")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Folder of a package given by exact version: `<dir>/<id>#<version>`.
    pub fn package_path(&self, package: &PackageRef) -> PathBuf {
        self.path.join(package.folder_name())
    }

    /// Every installed package (`<id>#<version>` folders holding `package/`), sorted.
    /// A missing directory lists as empty.
    pub fn list(&self) -> Result<Vec<PackageRef>, PackageError> {
        let read = match std::fs::read_dir(&self.path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(PackageError::UnreadableDir {
                    dir: self.path.clone(),
                    source: Arc::new(e),
                })
            }
        };
        let mut found = BTreeSet::new();
        for entry in read.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !entry.path().join("package").is_dir() {
                continue;
            }
            if let Some((id, version)) = name.split_once('#') {
                if let Ok(r) = PackageRef::new(id, version) {
                    found.insert(r);
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// The installed package that satisfies `request` (see the version rules), if any.
    pub fn find(&self, request: &PackageRef) -> Result<Option<PackageRef>, PackageError> {
        let all = self.list()?;
        let spec = request.spec();
        let versions = all
            .iter()
            .filter(|r| r.id == request.id)
            .map(|r| r.version.as_str());
        Ok(spec.pick(versions).map(|v| PackageRef {
            id: request.id.clone(),
            version: v.to_string(),
        }))
    }

    /// Like [`find`](Self::find), but a missing package is an error listing what is there.
    pub fn locate(&self, request: &PackageRef) -> Result<PackageFolder, PackageError> {
        match self.find(request)? {
            Some(found) => Ok(PackageFolder {
                root: self.package_path(&found).join("package"),
                reference: found,
            }),
            None => Err(PackageError::MissingPackage {
                package: request.to_string(),
                dir: self.path.clone(),
                available: self.available()?,
            }),
        }
    }

    /// Names of the installed packages, for error messages.
    pub(crate) fn available(&self) -> Result<NameList, PackageError> {
        Ok(NameList(
            self.list()?.iter().map(|r| r.to_string()).collect(),
        ))
    }
}

/// One package's `package/` folder and the identity its location claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFolder {
    /// From the cache folder name (`id#version`), or from `package.json` for a loose folder.
    pub reference: PackageRef,
    /// The `package/` directory (holding `package.json`).
    pub root: PathBuf,
}

impl PackageFolder {
    /// A package folder outside the cache (e.g. a project's own `profiles/`): either the folder
    /// holding `package.json` or one holding `package/package.json`. Identity from the manifest.
    pub fn open(path: &Path) -> Result<(PackageFolder, PackageManifest), PackageError> {
        let root = if path.join("package").join("package.json").is_file() {
            path.join("package")
        } else {
            path.to_path_buf()
        };
        let label = path.display().to_string();
        let manifest = PackageManifest::read(&label, &root.join("package.json"))?;
        let reference = PackageRef::new(&manifest.name, &manifest.version).map_err(|e| {
            PackageError::inconsistent(&label, root.join("package.json"), e.to_string())
        })?;
        Ok((PackageFolder { reference, root }, manifest))
    }

    /// `package.json` of this folder.
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("package.json")
    }

    /// Reads `package.json` and checks its name/version against the folder name.
    pub fn read_manifest(&self) -> Result<PackageManifest, PackageError> {
        let label = self.reference.to_string();
        let file = self.manifest_path();
        let manifest = PackageManifest::read(&label, &file)?;
        if manifest.name != self.reference.id || manifest.version != self.reference.version {
            return Err(PackageError::inconsistent(
                label,
                file,
                format!(
                    "package.json says {}#{}, but the folder is {}",
                    manifest.name,
                    manifest.version,
                    self.reference.folder_name()
                ),
            ));
        }
        Ok(manifest)
    }

    /// The `*.json` files directly in `folder` except `package.json` and hidden files, sorted.
    pub fn json_files(&self, folder: &Path) -> Result<Vec<String>, PackageError> {
        list_json_files(&self.reference.to_string(), folder)
    }
}

/// The `*.json` files directly in `folder` except `package.json` and hidden files, sorted;
/// `package` labels errors.
pub(crate) fn list_json_files(package: &str, folder: &Path) -> Result<Vec<String>, PackageError> {
    let read =
        std::fs::read_dir(folder).map_err(|e| PackageError::unreadable(package, folder, e))?;
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| PackageError::unreadable(package, folder, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || name == "package.json" || !name.ends_with(".json") {
            continue;
        }
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}
