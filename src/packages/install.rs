//! `packages install`: packages and their dependencies from a registry into the package directory.
//!
//! Owns: the install queue (requests, then `package.json` dependencies, each package once),
//! skipping what is installed, and the atomic hand-over: extract into a hidden temporary folder
//! in the package directory, check it, write `.index.json` if the tarball had none, then rename
//! it to `<id>#<version>`. Must not: speak HTTP (that is `registry.rs`) or parse tar
//! (that is `tarball.rs`).

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::cache::{list_json_files, PackageDir, PackageFolder};
use super::error::PackageError;
use super::manifest::{IndexEntry, PackageIndex, PackageManifest};
use super::parse::{parallel_map, read_json};
use super::registry::{Download, RegistryClient, RegistryConfig};
use super::tarball;
use super::version::PackageRef;

/// What `install` did for one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    /// Downloaded from `url` and extracted.
    Downloaded { url: String },
    /// A matching version was already in the package directory.
    AlreadyInstalled,
}

/// One package of an install run (requested or pulled in as a dependency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    /// Exact `id#version`.
    pub package: PackageRef,
    /// `<dir>/<id>#<version>`.
    pub path: PathBuf,
    pub outcome: InstallOutcome,
}

/// Installs `requests` and, recursively, their dependencies into `dir`.
///
/// A request or dependency already satisfied by an installed version is not downloaded again
/// (version rules as for loading; `latest`/`current` are satisfied by any installed version).
/// Each tarball is checked (registry `shasum`/`integrity`, safe paths, `package.json` naming
/// the expected package) before it is moved into place; on error nothing of that package is
/// left behind, and packages installed before the error stay installed.
pub fn install(
    dir: &PackageDir,
    registry: &RegistryConfig,
    requests: &[PackageRef],
) -> Result<Vec<InstalledPackage>, PackageError> {
    std::fs::create_dir_all(dir.path())
        .map_err(|e| PackageError::write("(package directory)", dir.path(), e))?;
    let client = RegistryClient::new(registry);
    let mut queue: VecDeque<PackageRef> = requests.iter().cloned().collect();
    let mut seen_requests: HashSet<PackageRef> = HashSet::new();
    let mut done: Vec<InstalledPackage> = Vec::new();
    while let Some(request) = queue.pop_front() {
        if !seen_requests.insert(request.clone()) {
            continue;
        }
        let spec = request.spec();
        if done
            .iter()
            .any(|d| d.package.id == request.id && spec.matches(&d.package.version))
        {
            continue;
        }
        let (package, outcome) = match dir.find(&request)? {
            Some(found) => (found, InstallOutcome::AlreadyInstalled),
            None => {
                let download = client.download(&request)?;
                let url = download.url.clone();
                let package = download.package.clone();
                place(dir, registry, &download)?;
                (package, InstallOutcome::Downloaded { url })
            }
        };
        let folder = PackageFolder {
            root: dir.package_path(&package).join("package"),
            reference: package.clone(),
        };
        let manifest = folder.read_manifest()?;
        for (id, version) in &manifest.dependencies {
            let dep = PackageRef::new(id, version).map_err(|e| {
                PackageError::inconsistent(
                    package.to_string(),
                    folder.manifest_path(),
                    e.to_string(),
                )
            })?;
            queue.push_back(dep);
        }
        done.push(InstalledPackage {
            path: dir.package_path(&package),
            package,
            outcome,
        });
    }
    Ok(done)
}

/// Removes the temporary folder unless it was moved into place.
struct TempFolder(Option<PathBuf>);

impl Drop for TempFolder {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Verifies, extracts and renames one downloaded package into `<dir>/<id>#<version>`.
fn place(
    dir: &PackageDir,
    registry: &RegistryConfig,
    download: &Download,
) -> Result<(), PackageError> {
    let label = download.package.to_string();
    tarball::verify(
        &label,
        &download.url,
        &download.bytes,
        download.shasum.as_deref(),
        download.integrity.as_deref(),
    )?;
    let temp_path = dir.path().join(format!(
        ".install-{}-{}-{}",
        download.package.folder_name(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&temp_path).map_err(|e| PackageError::write(&label, &temp_path, e))?;
    let mut temp = TempFolder(Some(temp_path.clone()));
    tarball::extract(
        &label,
        &download.url,
        &download.bytes,
        &temp_path,
        registry.max_tarball_bytes,
    )?;
    let root = temp_path.join("package");
    check_manifest(&label, &download.url, &root, &download.package)?;
    if !root.join(".index.json").is_file() {
        write_index(&label, &root)?;
    }
    let target = dir.package_path(&download.package);
    if target.exists() {
        return Ok(()); // installed meanwhile by someone else; the temp folder is dropped
    }
    match std::fs::rename(&temp_path, &target) {
        Ok(()) => {
            temp.0 = None;
            Ok(())
        }
        Err(_) if target.join("package").is_dir() => Ok(()),
        Err(e) => Err(PackageError::write(&label, &target, e)),
    }
}

/// The extracted `package/package.json` must name exactly the package requested.
fn check_manifest(
    label: &str,
    url: &str,
    root: &Path,
    expected: &PackageRef,
) -> Result<(), PackageError> {
    let file = root.join("package.json");
    if !file.is_file() {
        return Err(PackageError::BadTarball {
            package: label.to_string(),
            url: url.to_string(),
            problem: "it has no package/package.json".to_string(),
        });
    }
    let manifest = PackageManifest::read(label, &file)?;
    if manifest.name != expected.id || manifest.version != expected.version {
        return Err(PackageError::BadTarball {
            package: label.to_string(),
            url: url.to_string(),
            problem: format!(
                "its package.json says {}#{}",
                manifest.name, manifest.version
            ),
        });
    }
    Ok(())
}

/// Builds `.index.json` for a freshly extracted package that shipped without one.
fn write_index(label: &str, root: &Path) -> Result<(), PackageError> {
    let names = list_json_files(label, root)?;
    let rows = parallel_map(&names, |name| {
        read_json(label, &root.join(name)).map(|v| IndexEntry::describe(name, &v))
    });
    let mut files = Vec::new();
    for row in rows {
        if let Some(row) = row? {
            files.push(row);
        }
    }
    PackageIndex {
        index_version: 1,
        files,
    }
    .write(label, root)
}
