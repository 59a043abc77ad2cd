//! Loading packages into a [`PackageSet`]: requests → folders, dependencies, per-package index.
//!
//! Owns: dependency resolution from `package.json` (dependencies before dependents), the checks
//! of a package's consistency (manifest vs folder, index vs files) and turning `.index.json`
//! rows, or a scan when there is no index, into resource entries. Must not: resolve canonicals
//! (that is `canonical.rs`) or download anything.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::cache::{PackageDir, PackageFolder};
use super::canonical::{LoadedPackage, PackageSet, ResourceEntry};
use super::error::PackageError;
use super::manifest::{IndexEntry, PackageIndex, PackageManifest};
use super::parse::{parallel_map, read_json};
use super::version::PackageRef;

/// What to load: a package from the package directory, or a package folder elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSource {
    /// `id#version` (version rules as in [`VersionSpec`](super::VersionSpec)).
    Cache(PackageRef),
    /// A folder holding `package.json` (or `package/package.json`), e.g. a project's `profiles/`.
    Folder(PathBuf),
}

/// How to load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Parse every resource during load (on several threads) instead of on first use.
    pub eager: bool,
}

impl PackageSet {
    /// Loads the requested packages from `dir` and, recursively, their dependencies.
    pub fn load(dir: &PackageDir, requests: &[PackageRef]) -> Result<PackageSet, PackageError> {
        let sources: Vec<PackageSource> =
            requests.iter().cloned().map(PackageSource::Cache).collect();
        PackageSet::load_sources(dir, &sources, &LoadOptions::default())
    }

    /// Loads packages from the cache or from loose folders; dependencies come from `dir`.
    /// Order: each package after its dependencies, otherwise as requested.
    pub fn load_sources(
        dir: &PackageDir,
        sources: &[PackageSource],
        options: &LoadOptions,
    ) -> Result<PackageSet, PackageError> {
        let mut order = DependencyOrder {
            dir,
            done: Vec::new(),
            visiting: HashSet::new(),
        };
        for source in sources {
            let (folder, manifest) = match source {
                PackageSource::Cache(r) => {
                    let folder = dir.locate(r)?;
                    let manifest = folder.read_manifest()?;
                    (folder, manifest)
                }
                PackageSource::Folder(path) => PackageFolder::open(path)?,
            };
            order.visit(folder, manifest)?;
        }
        let mut packages = Vec::new();
        let mut entries = Vec::new();
        for (i, (folder, manifest)) in order.done.into_iter().enumerate() {
            let (mut found, indexed) = index_package(i, &folder)?;
            packages.push(LoadedPackage {
                reference: folder.reference,
                root: folder.root,
                manifest,
                resource_count: found.len(),
                indexed,
            });
            entries.append(&mut found);
        }
        let set = PackageSet::assemble(packages, entries);
        if options.eager {
            set.parse_all()?;
        }
        Ok(set)
    }
}

/// Depth-first walk putting dependencies before their dependents, each package once.
struct DependencyOrder<'a> {
    dir: &'a PackageDir,
    done: Vec<(PackageFolder, PackageManifest)>,
    visiting: HashSet<PackageRef>,
}

impl DependencyOrder<'_> {
    fn visit(
        &mut self,
        folder: PackageFolder,
        manifest: PackageManifest,
    ) -> Result<(), PackageError> {
        let key = folder.reference.clone();
        if self.visiting.contains(&key) || self.done.iter().any(|(f, _)| f.reference == key) {
            return Ok(()); // already loaded, or a dependency cycle
        }
        self.visiting.insert(key.clone());
        for (id, spec) in &manifest.dependencies {
            let dep = PackageRef::new(id, spec).map_err(|e| {
                PackageError::inconsistent(key.to_string(), folder.manifest_path(), e.to_string())
            })?;
            if self.already_satisfied(&dep) {
                continue;
            }
            let found = self
                .dir
                .find(&dep)?
                .ok_or_else(|| match self.dir.available() {
                    Ok(available) => PackageError::MissingDependency {
                        package: key.to_string(),
                        dependency: dep.to_string(),
                        file: folder.manifest_path(),
                        dir: self.dir.path().to_path_buf(),
                        available,
                    },
                    Err(e) => e,
                })?;
            let dep_folder = PackageFolder {
                root: self.dir.package_path(&found).join("package"),
                reference: found,
            };
            let dep_manifest = dep_folder.read_manifest()?;
            self.visit(dep_folder, dep_manifest)?;
        }
        self.visiting.remove(&key);
        self.done.push((folder, manifest));
        Ok(())
    }

    /// A package with that id already loaded (or being loaded) in a matching version.
    fn already_satisfied(&self, dep: &PackageRef) -> bool {
        let spec = dep.spec();
        self.done
            .iter()
            .map(|(f, _)| &f.reference)
            .chain(self.visiting.iter())
            .any(|r| r.id == dep.id && spec.matches(&r.version))
    }
}

/// Entries of one package: `.index.json` rows (checked against the files present), plus a scan
/// of files the index does not list (all files when there is no index). Returns whether an
/// index was used.
fn index_package(
    package: usize,
    folder: &PackageFolder,
) -> Result<(Vec<ResourceEntry>, bool), PackageError> {
    let label = folder.reference.to_string();
    let files = folder.json_files(&folder.root)?;
    let index_file = folder.root.join(".index.json");
    let index = PackageIndex::read_if_present(&label, &index_file)?;
    let mut entries = Vec::with_capacity(files.len());
    let mut listed: HashSet<&str> = HashSet::new();
    let present: HashSet<&str> = files.iter().map(String::as_str).collect();
    let indexed = index.is_some();
    if let Some(index) = &index {
        for row in &index.files {
            if !present.contains(row.filename.as_str()) {
                return Err(PackageError::inconsistent(
                    &label,
                    &index_file,
                    format!(
                        "lists {}, which is not in the package",
                        folder.root.join(&row.filename).display()
                    ),
                ));
            }
            if !listed.insert(row.filename.as_str()) {
                continue;
            }
            entries.push(entry_from_row(package, folder, row, OnceLock::new()));
        }
    }
    let unlisted: Vec<&String> = files
        .iter()
        .filter(|f| !listed.contains(f.as_str()))
        .collect();
    let scanned = parallel_map(&unlisted, |name| read_json(&label, &folder.root.join(name)));
    for (name, result) in unlisted.iter().zip(scanned) {
        let value = result?;
        // JSON that is not a resource (no resourceType) is not indexed, as FHIR tools do.
        if let Some(row) = IndexEntry::describe(name, &value) {
            let cell = OnceLock::new();
            let _ = cell.set(Ok(Arc::new(value)));
            entries.push(entry_from_row(package, folder, &row, cell));
        }
    }
    Ok((entries, indexed))
}

fn entry_from_row(
    package: usize,
    folder: &PackageFolder,
    row: &IndexEntry,
    parsed: OnceLock<Result<Arc<serde_json::Value>, PackageError>>,
) -> ResourceEntry {
    ResourceEntry {
        package,
        file: folder.root.join(&row.filename),
        resource_type: row.resource_type.clone(),
        url: row.url.clone().filter(|u| !u.is_empty()),
        version: row.version.clone(),
        parsed,
    }
}
