//! The invariant (FHIRPath constraint) plug-in interface, exactly as in CONTRACTS.md.
//!
//! Owns: `InvariantEngine`, `CompiledInvariant`, `InvariantContext`, `InvariantResult`.
//! Must not: evaluate FHIRPath itself — the FHIRPath stream provides an engine behind this trait.

use serde_json::Value;
use std::sync::Arc;

/// Compiles constraint expressions once, at profile-compile time.
pub trait InvariantEngine: Send + Sync {
    /// Compile once at validator-build time. Err(reason) => reported as an information issue naming the key.
    fn compile(&self, key: &str, expression: &str) -> Result<Arc<dyn CompiledInvariant>, String>;
}

/// A compiled constraint, evaluated for every occurrence of its element.
pub trait CompiledInvariant: Send + Sync {
    fn evaluate(&self, ctx: &InvariantContext<'_>) -> InvariantResult;

    /// A native check of the same constraint that needs only the node's JSON and its `_field`
    /// sibling (e.g. ele-1, ext-1), if the engine has one: the walker calls it directly on every
    /// occurrence. `Some(holds)` decides; `None` falls back to `evaluate`.
    fn json_check(&self) -> Option<JsonCheck> {
        None
    }
}

/// See [`CompiledInvariant::json_check`].
pub type JsonCheck = fn(&Value, Option<&Value>) -> Option<bool>;

/// Where a constraint is evaluated.
pub struct InvariantContext<'a> {
    /// The element instance (for primitives: the JSON primitive).
    pub node: &'a Value,
    /// The `_field` sibling for primitives, if any.
    pub node_extension: Option<&'a Value>,
    /// FHIR type of the node, e.g. "Identifier", "string", "Patient".
    pub node_type: &'a str,
    /// %resource (nearest resource, incl. contained / entry).
    pub resource: &'a Value,
    /// %rootResource (container resource).
    pub root_resource: &'a Value,
    /// Enclosing Bundle (for resolve()).
    pub bundle: Option<&'a Value>,
}

/// Outcome of evaluating one constraint at one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvariantResult {
    Satisfied,
    Violated,
    CannotEvaluate(String),
}
