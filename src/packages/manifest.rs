//! `package.json` (the package manifest) and `.index.json` (the file index) of a FHIR package.
//!
//! Owns: reading, checking and writing these two files. Must not: read resource files other than
//! to build a missing index from already-parsed resources (the caller parses).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::PackageError;
use super::parse::read_json;

/// The parts of `package.json` spbridge uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageManifest {
    pub name: String,
    pub version: String,
    /// `dependencies`, in declared order: package id → version (spec).
    pub dependencies: Vec<(String, String)>,
    /// `fhirVersions` (or the older `fhir-version-list`).
    pub fhir_versions: Vec<String>,
    pub canonical: Option<String>,
}

impl PackageManifest {
    /// Reads and checks `package.json`; `package` labels errors (`id#version` or the folder).
    pub fn read(package: &str, file: &Path) -> Result<PackageManifest, PackageError> {
        let value = read_json(package, file)?;
        PackageManifest::from_value(package, file, &value)
    }

    pub fn from_value(
        package: &str,
        file: &Path,
        value: &Value,
    ) -> Result<PackageManifest, PackageError> {
        let bad = |problem: String| PackageError::inconsistent(package, file, problem);
        let text = |key: &str| -> Result<String, PackageError> {
            match value.get(key) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Some(_) => Err(bad(format!("`{key}` is not a non-empty string"))),
                None => Err(bad(format!("`{key}` is missing"))),
            }
        };
        let name = text("name")?;
        let version = text("version")?;
        let mut dependencies = Vec::new();
        match value.get("dependencies") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (id, v) in map {
                    match v {
                        Value::String(s) => dependencies.push((id.clone(), s.trim().to_string())),
                        _ => {
                            return Err(bad(format!(
                                "dependency `{id}` has a version that is not a string"
                            )))
                        }
                    }
                }
            }
            Some(_) => return Err(bad("`dependencies` is not an object".to_string())),
        }
        let strings = |key: &str| -> Vec<String> {
            value
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut fhir_versions = strings("fhirVersions");
        if fhir_versions.is_empty() {
            fhir_versions = strings("fhir-version-list");
        }
        Ok(PackageManifest {
            name,
            version,
            dependencies,
            fhir_versions,
            canonical: value
                .get("canonical")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

/// One row of `.index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub filename: String,
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

impl IndexEntry {
    /// The index row describing a parsed resource; `None` when it has no `resourceType`.
    pub fn describe(filename: &str, resource: &Value) -> Option<IndexEntry> {
        let text = |key: &str| {
            resource
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(IndexEntry {
            filename: filename.to_string(),
            resource_type: text("resourceType")?,
            id: text("id"),
            url: text("url"),
            version: text("version"),
            kind: text("kind"),
            type_: text("type"),
        })
    }
}

/// `.index.json`: `{"index-version": 1|2, "files": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageIndex {
    #[serde(rename = "index-version", default = "default_index_version")]
    pub index_version: u32,
    pub files: Vec<IndexEntry>,
}

fn default_index_version() -> u32 {
    1
}

impl PackageIndex {
    /// Reads `.index.json` if present (`Ok(None)` when the file does not exist).
    pub fn read_if_present(
        package: &str,
        file: &Path,
    ) -> Result<Option<PackageIndex>, PackageError> {
        if !file.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(file).map_err(|e| PackageError::unreadable(package, file, e))?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let index: PackageIndex = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_data() {
                PackageError::inconsistent(package, file, format!("not a package index: {e}"))
            } else {
                PackageError::json(package, file, &e)
            }
        })?;
        for entry in &index.files {
            if !is_plain_file_name(&entry.filename) {
                return Err(PackageError::inconsistent(
                    package,
                    file,
                    format!(
                        "index lists `{}`, which is not a plain file name",
                        entry.filename
                    ),
                ));
            }
        }
        Ok(Some(index))
    }

    /// Writes the index as `.index.json` in `folder` (used after install when a tarball had none).
    pub fn write(&self, package: &str, folder: &Path) -> Result<(), PackageError> {
        let path = folder.join(".index.json");
        let text = serde_json::to_vec_pretty(self).map_err(|e| {
            PackageError::inconsistent(package, &path, format!("cannot serialise index: {e}"))
        })?;
        std::fs::write(&path, text).map_err(|e| PackageError::write(package, &path, e))
    }
}

/// A file name without any directory part (no `/`, `\`, `..`).
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}
