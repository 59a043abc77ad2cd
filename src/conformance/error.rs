//! Errors of snapshot generation. Every variant names the profile URL and,
//! where one is involved, the element id that failed.
//! Must not: carry instance data (this is about definitions only).

/// Why a StructureDefinition's snapshot could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("StructureDefinition {url} is not loaded")]
    NotFound { url: String },
    #[error("{profile}: {reason}")]
    Invalid { profile: String, reason: String },
    #[error("{profile}: element {element}: {reason}")]
    Element {
        profile: String,
        element: String,
        reason: String,
    },
    #[error("{profile}: circular dependency between definitions: {chain}")]
    Cycle { profile: String, chain: String },
    #[error("{profile}: needs {dependency}, which failed: {source}")]
    Dependency {
        profile: String,
        dependency: String,
        #[source]
        source: Box<SnapshotError>,
    },
}

impl SnapshotError {
    /// The innermost error of a dependency chain.
    pub fn root_cause(&self) -> &SnapshotError {
        match self {
            SnapshotError::Dependency { source, .. } => source.root_cause(),
            other => other,
        }
    }
}
