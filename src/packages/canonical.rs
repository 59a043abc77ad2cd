//! The loaded package set: canonical URL index, lazy parsing with a cache, `CanonicalResolver`.
//!
//! Owns: lookup by `url` / `url|version` / resource type, precedence between packages, the parse
//! cache and the examples of a package. Must not: decide which packages to load or find them on
//! disk (that is `load.rs`), or know about snapshots and validation.
//!
//! Precedence: packages are loaded dependencies first, then in the order requested; when several
//! resources share a `url`, the one loaded last wins for `url` lookups and `all_of_type`, the
//! others stay reachable by `url|version` and are listed in [`PackageSet::conflicts`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::cache::list_json_files;
use super::error::{NameList, PackageError};
use super::manifest::{PackageIndex, PackageManifest};
use super::parse::{parallel_map, read_json};
use super::version::{canonical_version_matches, PackageRef};

/// Anything that finds conformance resources by canonical URL (`url` or `url|version`).
pub trait CanonicalResolver: Send + Sync {
    fn resolve(&self, canonical: &str) -> Option<Arc<Value>>;
    /// All loaded resources of a type (e.g. every StructureDefinition), for bulk work.
    fn all_of_type(&self, resource_type: &str) -> Vec<Arc<Value>>;
}

/// A package as loaded into a [`PackageSet`].
#[derive(Debug, Clone)]
pub struct LoadedPackage {
    /// Exact `id#version`.
    pub reference: PackageRef,
    /// The `package/` folder.
    pub root: PathBuf,
    pub manifest: PackageManifest,
    /// Resource files found (index rows plus scanned files).
    pub resource_count: usize,
    /// Whether `.index.json` was used (else every file was parsed to index it).
    pub indexed: bool,
}

/// Where a resource comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSource {
    pub package: PackageRef,
    pub file: PathBuf,
    pub resource_type: String,
    pub url: Option<String>,
    pub version: Option<String>,
}

/// Several loaded resources with the same `url`: the winner and the ones it hides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalConflict {
    pub url: String,
    pub winner: ResourceSource,
    pub shadowed: Vec<ResourceSource>,
}

/// One resource file known from an index row or a scan; parsed on first use.
#[derive(Debug)]
pub(crate) struct ResourceEntry {
    pub(crate) package: usize,
    pub(crate) file: PathBuf,
    pub(crate) resource_type: String,
    pub(crate) url: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) parsed: OnceLock<Result<Arc<Value>, PackageError>>,
}

/// FHIR packages loaded together (with their dependencies) and indexed by canonical URL.
#[derive(Debug)]
pub struct PackageSet {
    pub(crate) packages: Vec<LoadedPackage>,
    pub(crate) entries: Vec<ResourceEntry>,
    pub(crate) by_url: HashMap<String, Vec<usize>>,
    pub(crate) by_type: HashMap<String, Vec<usize>>,
    pub(crate) conflicts: Vec<CanonicalConflict>,
}

impl PackageSet {
    /// Builds the lookup tables from entries in load order.
    pub(crate) fn assemble(packages: Vec<LoadedPackage>, entries: Vec<ResourceEntry>) -> Self {
        let mut by_url: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_type: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(url) = &e.url {
                by_url.entry(url.clone()).or_default().push(i);
            }
            by_type.entry(e.resource_type.clone()).or_default().push(i);
        }
        let mut set = PackageSet {
            packages,
            entries,
            by_url,
            by_type,
            conflicts: Vec::new(),
        };
        let mut conflicts: Vec<CanonicalConflict> = set
            .by_url
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .filter_map(|(url, ids)| {
                let (last, rest) = ids.split_last()?;
                Some(CanonicalConflict {
                    url: url.clone(),
                    winner: set.source_of(*last),
                    shadowed: rest.iter().map(|i| set.source_of(*i)).collect(),
                })
            })
            .collect();
        conflicts.sort_by(|a, b| a.url.cmp(&b.url));
        set.conflicts = conflicts;
        set
    }

    /// The loaded packages, in load order (dependencies first).
    pub fn packages(&self) -> &[LoadedPackage] {
        &self.packages
    }

    /// Number of resource files indexed (examples not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// URLs defined more than once, with the winning and the shadowed definitions.
    pub fn conflicts(&self) -> &[CanonicalConflict] {
        &self.conflicts
    }

    /// Resolves `url` or `url|version`, reporting a file that cannot be read or parsed.
    /// `Ok(None)`: nothing loaded has that canonical.
    pub fn try_resolve(&self, canonical: &str) -> Result<Option<Arc<Value>>, PackageError> {
        match self.find(canonical) {
            Some(i) => self.parsed(i).map(Some),
            None => Ok(None),
        }
    }

    /// Which package and file provide `url` / `url|version`, without parsing it.
    pub fn source(&self, canonical: &str) -> Option<ResourceSource> {
        self.find(canonical).map(|i| self.source_of(i))
    }

    /// Parses every indexed resource now (on several threads) and returns how many there are;
    /// the first unreadable or inconsistent file is the error.
    pub fn parse_all(&self) -> Result<usize, PackageError> {
        let ids: Vec<usize> = (0..self.entries.len()).collect();
        let results = parallel_map(&ids, |i| self.parsed(*i));
        for r in results {
            r?;
        }
        Ok(self.entries.len())
    }

    /// Every failure met so far while parsing lazily (resolution returned `None` for these).
    pub fn errors(&self) -> Vec<PackageError> {
        self.entries
            .iter()
            .filter_map(|e| match e.parsed.get() {
                Some(Err(err)) => Some(err.clone()),
                _ => None,
            })
            .collect()
    }

    /// The example resources of a loaded package (`id` or `id#version`), from
    /// `package/examples/`, as `(file name, resource)` sorted by file name. Parsed on each call.
    pub fn examples(
        &self,
        package: &str,
    ) -> Result<impl Iterator<Item = (String, Arc<Value>)>, PackageError> {
        let loaded = self
            .packages
            .iter()
            .rev()
            .find(|p| p.reference.id == package || p.reference.to_string() == package)
            .ok_or_else(|| PackageError::NotLoaded {
                package: package.to_string(),
                loaded: NameList(
                    self.packages
                        .iter()
                        .map(|p| p.reference.to_string())
                        .collect(),
                ),
            })?;
        let label = loaded.reference.to_string();
        let folder = loaded.root.join("examples");
        let mut names: Vec<String> = if folder.is_dir() {
            let index_file = folder.join(".index.json");
            match PackageIndex::read_if_present(&label, &index_file)? {
                Some(index) => index.files.into_iter().map(|f| f.filename).collect(),
                None => list_json_files(&label, &folder)?,
            }
        } else {
            Vec::new()
        };
        names.sort();
        names.dedup();
        let parsed = parallel_map(&names, |name| {
            read_json(&label, &folder.join(name)).map(|v| (name.clone(), Arc::new(v)))
        });
        let all = parsed.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(all.into_iter())
    }

    /// The entry answering `url` or `url|version`.
    fn find(&self, canonical: &str) -> Option<usize> {
        let (url, version) = match canonical.rsplit_once('|') {
            Some((u, v)) => (u, Some(v)),
            None => (canonical, None),
        };
        let ids = self.by_url.get(url)?;
        match version {
            None | Some("") => ids.last().copied(),
            Some(v) => ids.iter().rev().copied().find(|i| {
                self.entries[*i]
                    .version
                    .as_deref()
                    .is_some_and(|have| canonical_version_matches(v, have))
            }),
        }
    }

    /// Whether entry `i` is the one a plain `url` lookup answers (or has no url).
    fn is_visible(&self, i: usize) -> bool {
        match &self.entries[i].url {
            None => true,
            Some(url) => self.by_url.get(url).and_then(|ids| ids.last()) == Some(&i),
        }
    }

    fn source_of(&self, i: usize) -> ResourceSource {
        let e = &self.entries[i];
        ResourceSource {
            package: self.packages[e.package].reference.clone(),
            file: e.file.clone(),
            resource_type: e.resource_type.clone(),
            url: e.url.clone(),
            version: e.version.clone(),
        }
    }

    /// The parsed resource of entry `i` (parsed once; checked against its index row).
    fn parsed(&self, i: usize) -> Result<Arc<Value>, PackageError> {
        let e = &self.entries[i];
        e.parsed
            .get_or_init(|| {
                let label = self.packages[e.package].reference.to_string();
                let value = read_json(&label, &e.file)?;
                check_against_index(&label, e, &value)?;
                Ok(Arc::new(value))
            })
            .clone()
    }
}

fn check_against_index(label: &str, e: &ResourceEntry, value: &Value) -> Result<(), PackageError> {
    let actual_type = value.get("resourceType").and_then(Value::as_str);
    if actual_type != Some(e.resource_type.as_str()) {
        return Err(PackageError::inconsistent(
            label,
            &e.file,
            format!(
                ".index.json says resourceType {}, the file has {}",
                e.resource_type,
                actual_type.unwrap_or("none")
            ),
        ));
    }
    if let Some(url) = &e.url {
        let actual_url = value.get("url").and_then(Value::as_str);
        if actual_url != Some(url.as_str()) {
            return Err(PackageError::inconsistent(
                label,
                &e.file,
                format!(
                    ".index.json says url {url}, the file has {}",
                    actual_url.unwrap_or("none")
                ),
            ));
        }
    }
    Ok(())
}

impl CanonicalResolver for PackageSet {
    fn resolve(&self, canonical: &str) -> Option<Arc<Value>> {
        self.try_resolve(canonical).ok().flatten()
    }

    /// Resources of that type whose `url` is not shadowed by a later package (plus url-less
    /// ones), in load order; unparsable files are left out (see [`PackageSet::errors`]).
    fn all_of_type(&self, resource_type: &str) -> Vec<Arc<Value>> {
        let Some(ids) = self.by_type.get(resource_type) else {
            return Vec::new();
        };
        let visible: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|i| self.is_visible(*i))
            .collect();
        parallel_map(&visible, |i| self.parsed(*i).ok())
            .into_iter()
            .flatten()
            .collect()
    }
}
