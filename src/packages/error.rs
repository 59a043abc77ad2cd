//! Errors of the package module: every variant names the package and, where there is one, the file.
//!
//! Owns: `PackageError` and its messages. Must not: decide policy (what is fatal is the caller's
//! choice) or carry resource content (messages name files, URLs and versions, never values).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A list of names rendered as `a, b, c` (or `none`), for "what is there instead" messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

impl fmt::Display for NameList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&self.0.join(", "))
    }
}

/// Everything that can go wrong reading, resolving or installing FHIR packages.
///
/// `package` is always the package concerned as `id#version` (or the id/request as given when no
/// version is known yet); `file` is the full path of the file concerned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PackageError {
    /// A package reference (`id#version`) could not be parsed.
    #[error("invalid package reference `{text}`: {reason}")]
    InvalidReference { text: String, reason: String },

    /// The package directory itself is missing or unreadable.
    #[error("package directory {dir} cannot be read: {source}")]
    UnreadableDir {
        dir: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// No folder in the package directory satisfies the request.
    #[error("package {package} is not in {dir} (present: {available}); install it with `spbridge packages install {package}`")]
    MissingPackage {
        package: String,
        dir: PathBuf,
        available: NameList,
    },

    /// A dependency declared in a package's `package.json` is not in the package directory.
    #[error("package {package} depends on {dependency} (declared in {file}), which is not in {dir} (present: {available})")]
    MissingDependency {
        package: String,
        dependency: String,
        file: PathBuf,
        dir: PathBuf,
        available: NameList,
    },

    /// A file of a package could not be read (missing, permissions, I/O).
    #[error("package {package}: cannot read {file}: {source}")]
    Unreadable {
        package: String,
        file: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// A file of a package is not valid JSON.
    #[error(
        "package {package}: invalid JSON in {file} at line {line}, column {column}: {message}"
    )]
    InvalidJson {
        package: String,
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A package contradicts itself: manifest vs folder name, index vs files, index vs content.
    #[error("package {package} is inconsistent: {file}: {problem}")]
    Inconsistent {
        package: String,
        file: PathBuf,
        problem: String,
    },

    /// No registry could deliver the package (HTTP status, network, unknown version).
    #[error("package {package}: cannot download from the registry: {details}")]
    Registry { package: String, details: NameList },

    /// The downloaded tarball does not match the checksum the registry published.
    #[error("package {package}: tarball from {url} failed its {algorithm} check (expected {expected}, got {actual}); nothing installed")]
    Integrity {
        package: String,
        url: String,
        algorithm: String,
        expected: String,
        actual: String,
    },

    /// The tarball is unreadable or holds something that must not be extracted.
    #[error("package {package}: refused tarball from {url}: {problem}; nothing installed")]
    BadTarball {
        package: String,
        url: String,
        problem: String,
    },

    /// Writing into the package directory failed during install.
    #[error("package {package}: cannot write {path}: {source}")]
    Write {
        package: String,
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The package set has no package with that id (e.g. asking for its examples).
    #[error("package {package} is not loaded (loaded: {loaded})")]
    NotLoaded { package: String, loaded: NameList },
}

impl PackageError {
    pub(crate) fn unreadable(
        package: impl Into<String>,
        file: impl Into<PathBuf>,
        e: std::io::Error,
    ) -> Self {
        PackageError::Unreadable {
            package: package.into(),
            file: file.into(),
            source: Arc::new(e),
        }
    }

    pub(crate) fn json(
        package: impl Into<String>,
        file: impl Into<PathBuf>,
        e: &serde_json::Error,
    ) -> Self {
        PackageError::InvalidJson {
            package: package.into(),
            file: file.into(),
            line: e.line(),
            column: e.column(),
            message: json_message(e),
        }
    }

    pub(crate) fn inconsistent(
        package: impl Into<String>,
        file: impl Into<PathBuf>,
        problem: impl Into<String>,
    ) -> Self {
        PackageError::Inconsistent {
            package: package.into(),
            file: file.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn write(
        package: impl Into<String>,
        path: impl Into<PathBuf>,
        e: std::io::Error,
    ) -> Self {
        PackageError::Write {
            package: package.into(),
            path: path.into(),
            source: Arc::new(e),
        }
    }

    /// The package (`id#version`, or the request as given) this error is about, if any.
    pub fn package(&self) -> Option<&str> {
        match self {
            PackageError::InvalidReference { .. } | PackageError::UnreadableDir { .. } => None,
            PackageError::MissingPackage { package, .. }
            | PackageError::MissingDependency { package, .. }
            | PackageError::Unreadable { package, .. }
            | PackageError::InvalidJson { package, .. }
            | PackageError::Inconsistent { package, .. }
            | PackageError::Registry { package, .. }
            | PackageError::Integrity { package, .. }
            | PackageError::BadTarball { package, .. }
            | PackageError::Write { package, .. }
            | PackageError::NotLoaded { package, .. } => Some(package),
        }
    }

    /// The file this error is about, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            PackageError::MissingDependency { file, .. }
            | PackageError::Unreadable { file, .. }
            | PackageError::InvalidJson { file, .. }
            | PackageError::Inconsistent { file, .. } => Some(file),
            PackageError::Write { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// serde_json's message without its trailing " at line L column C" (we print our own).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}
