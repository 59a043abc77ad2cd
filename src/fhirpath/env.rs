//! The evaluation environment: focus, `%resource`, `%rootResource`, `%context`, enclosing Bundle,
//! the model, and optional hooks for `memberOf()` and `conformsTo()`.
//!
//! Owns: `EvalEnv` (cheap to build on the stack per call: only references) and the hook traits.
//! Must not: own any JSON or allocate.

use super::model::{ModelInfo, TypeId};
use super::value::JsonMember;
use super::value::NodeRef;
use serde_json::Value;

/// Answer of a hook: `Ok(bool)`, or `Err(reason)` when it cannot decide (surfaces as
/// `FhirPathError::CannotEvaluate`).
pub type HookResult = Result<bool, String>;

/// Terminology for `memberOf(valueset)`. `code` is the JSON of the focus item (a code string,
/// a Coding or a CodeableConcept object); `type_name` its FHIR type when known.
pub trait TerminologyHook: Send + Sync {
    fn member_of(&self, code: &Value, type_name: Option<&str>, value_set: &str) -> HookResult;
}

/// Profile checks for `conformsTo(profile)`.
pub trait ProfileHook: Send + Sync {
    fn conforms_to(&self, node: &Value, type_name: Option<&str>, profile: &str) -> HookResult;
}

/// Everything an evaluation can see besides the expression. Build one per evaluation on the
/// stack (all fields are references).
#[derive(Clone, Copy)]
pub struct EvalEnv<'a> {
    pub model: &'a ModelInfo,
    /// `%resource`: the nearest resource containing the focus.
    pub resource: Option<&'a Value>,
    /// `%rootResource`: the container resource (differs from `%resource` for contained resources).
    pub root_resource: Option<&'a Value>,
    /// `%context`: the original focus (defaults to the focus given to `evaluate`).
    pub context: Option<NodeRef<'a>>,
    /// An enclosing Bundle for `resolve()` of `fullUrl` / `Type/id` references.
    pub bundle: Option<&'a Value>,
    pub terminology: Option<&'a dyn TerminologyHook>,
    pub profiles: Option<&'a dyn ProfileHook>,
    /// Strict mode: navigating to an element the model does not define on a typed node (e.g.
    /// `name.given1`, `Observation.valueQuantity`) is an error instead of an empty result.
    pub strict: bool,
}

impl<'a> EvalEnv<'a> {
    /// Environment for evaluating against a whole resource (focus = `%resource` = `%rootResource`).
    pub fn for_resource(model: &'a ModelInfo, resource: &'a Value) -> Self {
        EvalEnv {
            model,
            resource: Some(resource),
            root_resource: Some(resource),
            context: None,
            bundle: None,
            terminology: None,
            profiles: None,
            strict: false,
        }
    }

    /// The focus node for a resource (type from `resourceType`).
    pub fn resource_node(&self, resource: &'a Value) -> NodeRef<'a> {
        let ty = resource
            .member("resourceType")
            .and_then(Value::as_str)
            .map_or(TypeId::NONE, |t| self.model.type_id(t));
        NodeRef {
            value: resource,
            ext: None,
            ty,
        }
    }

    /// A focus node of a named FHIR type (e.g. the element an invariant is declared on). The
    /// name may also be an element path (`Patient.contact`, `Bundle.entry.request`).
    pub fn typed_node(
        &self,
        value: &'a Value,
        ext: Option<&'a Value>,
        type_name: &str,
    ) -> NodeRef<'a> {
        let mut ty = self.model.type_id(type_name);
        if !ty.is_known() && type_name.contains('.') {
            ty = self.model.path_type(type_name);
        }
        if !ty.is_known() {
            if let Some(rt) = value.member("resourceType").and_then(Value::as_str) {
                ty = self.model.type_id(rt);
            }
        }
        NodeRef { value, ext, ty }
    }
}
