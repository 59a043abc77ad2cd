//! FHIRPath (N1, as used by FHIR R4) engine over FHIR JSON.
//!
//! Owns: the public API — `Expression` (compiled once, cheap to clone, `Send + Sync`),
//! `ExpressionCache`, evaluation entry points (`Expression::evaluate*`, `evaluate_to_json`),
//! invariant checking (`Expression::check_invariant`), and re-exports of the model, environment
//! and error types.
//! Must not: depend on other spbridge modules (the validator adapts to this API, not the reverse).
//!
//! Adapter sketch for the validator's `InvariantEngine` (see CONTRACTS.md):
//! ```ignore
//! struct FhirPathInvariants { model: Arc<ModelInfo>, cache: ExpressionCache }
//! impl InvariantEngine for FhirPathInvariants {
//!     fn compile(&self, _key: &str, expr: &str) -> Result<Arc<dyn CompiledInvariant>, String> {
//!         let e = self.cache.get_or_compile(expr).map_err(|e| e.to_string())?;
//!         Ok(Arc::new(Compiled { expr: e, model: self.model.clone() }))
//!     }
//! }
//! impl CompiledInvariant for Compiled {
//!     fn evaluate(&self, ctx: &InvariantContext<'_>) -> InvariantResult {
//!         let input = InvariantInput { node: ctx.node, node_extension: ctx.node_extension,
//!             node_type: ctx.node_type, resource: ctx.resource, root_resource: ctx.root_resource,
//!             bundle: ctx.bundle };
//!         match self.expr.check_invariant(&self.model, &input, Hooks::default()) {
//!             InvariantOutcome::Satisfied => InvariantResult::Satisfied,
//!             InvariantOutcome::Violated => InvariantResult::Violated,
//!             InvariantOutcome::CannotEvaluate(r) => InvariantResult::CannotEvaluate(r),
//!         }
//!     }
//! }
//! ```

mod ast;
mod datetime;
mod env;
mod error;
mod eval;
mod fast;
mod fast_typed;
mod functions;
mod lexer;
mod model;
mod operators;
mod parser;
mod quantity;
mod value;

pub use env::{EvalEnv, HookResult, ProfileHook, TerminologyHook};
pub use error::{FhirPathError, ParseError};
pub use fast::JsonFn;
pub use model::{ElementInfo, ModelInfo, TypeId, TypeInfo, TypeKind, ValueKind};
pub use value::{Collection, Item, JsonMember, NodeRef};

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

struct Compiled {
    text: String,
    ast: ast::Node,
    fast: Option<fast::FastPath>,
    typed_fast: Option<fast_typed::TypedFast>,
}

/// A compiled FHIRPath expression. Clone is an `Arc` bump; share freely across threads.
#[derive(Clone)]
pub struct Expression {
    inner: Arc<Compiled>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.inner.text).finish()
    }
}

/// Optional hooks for `memberOf()` and `conformsTo()`.
#[derive(Clone, Copy, Default)]
pub struct Hooks<'a> {
    pub terminology: Option<&'a dyn TerminologyHook>,
    pub profiles: Option<&'a dyn ProfileHook>,
}

/// What the validator knows about an element occurrence (mirrors `InvariantContext`).
#[derive(Clone, Copy)]
pub struct InvariantInput<'a> {
    pub node: &'a Value,
    pub node_extension: Option<&'a Value>,
    /// FHIR type name (`Identifier`, `string`, `Patient`) or, for backbone elements, the
    /// element path (`Patient.contact`) so that children are typed too.
    pub node_type: &'a str,
    pub resource: &'a Value,
    pub root_resource: &'a Value,
    pub bundle: Option<&'a Value>,
}

/// Outcome of an invariant (mirrors `InvariantResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvariantOutcome {
    Satisfied,
    Violated,
    CannotEvaluate(String),
}

impl Expression {
    /// Parses and compiles an expression (function names and arities checked).
    pub fn compile(text: &str) -> Result<Expression, ParseError> {
        let ast = parser::parse(text)?;
        Ok(Expression {
            inner: Arc::new(Compiled {
                text: text.to_string(),
                fast: fast::detect(text),
                typed_fast: fast_typed::detect(&fast::normalise(text)),
                ast,
            }),
        })
    }

    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// Evaluates against a focus collection.
    pub fn evaluate_items<'a>(
        &self,
        env: &EvalEnv<'a>,
        focus: Collection<'a>,
    ) -> Result<Collection<'a>, FhirPathError> {
        let ev = eval::Evaluator { env, root: &focus };
        ev.eval(&self.inner.ast, &focus, eval::Vars::default())
    }

    /// Evaluates against one focus node.
    pub fn evaluate<'a>(
        &self,
        env: &EvalEnv<'a>,
        focus: NodeRef<'a>,
    ) -> Result<Collection<'a>, FhirPathError> {
        self.evaluate_items(env, smallvec::smallvec![Item::Node(focus)])
    }

    /// Evaluates as a boolean the way FHIR invariants are read: `None` for an empty result,
    /// the value of a single boolean, `true` for any other non-empty result.
    pub fn evaluate_boolean<'a>(
        &self,
        env: &EvalEnv<'a>,
        focus: NodeRef<'a>,
    ) -> Result<Option<bool>, FhirPathError> {
        if let Some(f) = &self.inner.fast {
            if let Some(b) = f.eval(env.model, focus) {
                return Ok(Some(b));
            }
        }
        self.evaluate_boolean_general(env, focus)
    }

    /// `evaluate_boolean` without native fast paths (used to prove they agree).
    pub fn evaluate_boolean_general<'a>(
        &self,
        env: &EvalEnv<'a>,
        focus: NodeRef<'a>,
    ) -> Result<Option<bool>, FhirPathError> {
        let r = self.evaluate(env, focus)?;
        Ok(match r.as_slice() {
            [] => None,
            [Item::Bool(b)] => Some(*b),
            [Item::Node(n)] if n.value.is_boolean() => n.value.as_bool(),
            _ => Some(true),
        })
    }

    /// Checks an invariant at one element occurrence. `true` (or any non-empty, non-boolean
    /// result) is satisfied, `false` is violated, and an empty result counts as satisfied: the
    /// data the constraint talks about is absent (e.g. ref-1 on a Reference with only an
    /// identifier, bdl-8 on an entry without fullUrl). Errors and hooks that cannot decide give
    /// `CannotEvaluate`.
    pub fn check_invariant(
        &self,
        model: &ModelInfo,
        input: &InvariantInput<'_>,
        hooks: Hooks<'_>,
    ) -> InvariantOutcome {
        // ele-1, ext-1, dom-2..5 look at the JSON only: no environment or focus type needed.
        if let Some(f) = &self.inner.fast {
            let raw = NodeRef {
                value: input.node,
                ext: input.node_extension,
                ty: model::TypeId::NONE,
            };
            if let Some(b) = f.eval(model, raw) {
                return satisfied_if(b);
            }
        }
        let env = invariant_env(model, input, hooks);
        let focus = env.typed_node(input.node, input.node_extension, input.node_type);
        if let Some(t) = &self.inner.typed_fast {
            if let Some(b) = t.eval(model, focus, input) {
                #[cfg(debug_assertions)]
                {
                    let general = self.general_outcome(&env, focus);
                    debug_assert_eq!(
                        general,
                        satisfied_if(b),
                        "native fast path disagrees with the general evaluator for `{}` at {}",
                        self.inner.text,
                        input.node
                    );
                }
                return satisfied_if(b);
            }
        }
        self.general_outcome(&env, focus)
    }

    fn general_outcome(&self, env: &EvalEnv<'_>, focus: NodeRef<'_>) -> InvariantOutcome {
        match self.evaluate_boolean_general(env, focus) {
            Ok(Some(true)) | Ok(None) => InvariantOutcome::Satisfied,
            Ok(Some(false)) => InvariantOutcome::Violated,
            Err(FhirPathError::CannotEvaluate(r)) => InvariantOutcome::CannotEvaluate(r),
            Err(e) => InvariantOutcome::CannotEvaluate(e.to_string()),
        }
    }

    /// `check_invariant` without any native fast path (tests prove the two agree).
    pub fn check_invariant_general(
        &self,
        model: &ModelInfo,
        input: &InvariantInput<'_>,
        hooks: Hooks<'_>,
    ) -> InvariantOutcome {
        let env = invariant_env(model, input, hooks);
        let focus = env.typed_node(input.node, input.node_extension, input.node_type);
        self.general_outcome(&env, focus)
    }

    /// The native check of this expression when it needs only the node's JSON and `_field`
    /// sibling (ele-1, ext-1, dom-2..5): `Some(result)` decides, `None` = evaluate normally.
    pub fn json_check(&self) -> Option<JsonFn> {
        self.inner.fast.map(fast::FastPath::json_fn)
    }

    /// True when a native fast path knows this expression.
    pub fn has_fast_path(&self) -> bool {
        self.inner.fast.is_some() || self.inner.typed_fast.is_some()
    }
}

/// The evaluation environment of an invariant on one node of a resource.
fn invariant_env<'a>(
    model: &'a ModelInfo,
    input: &InvariantInput<'a>,
    hooks: Hooks<'a>,
) -> EvalEnv<'a> {
    EvalEnv {
        model,
        resource: Some(input.resource),
        root_resource: Some(input.root_resource),
        context: None,
        bundle: input.bundle,
        terminology: hooks.terminology,
        profiles: hooks.profiles,
        strict: false,
    }
}

fn satisfied_if(b: bool) -> InvariantOutcome {
    if b {
        InvariantOutcome::Satisfied
    } else {
        InvariantOutcome::Violated
    }
}

/// Thread-safe cache of compiled expressions keyed by their text.
#[derive(Default)]
pub struct ExpressionCache {
    map: RwLock<HashMap<String, Expression>>,
}

impl ExpressionCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get_or_compile(&self, text: &str) -> Result<Expression, ParseError> {
        if let Ok(m) = self.map.read() {
            if let Some(e) = m.get(text) {
                return Ok(e.clone());
            }
        }
        let e = Expression::compile(text)?;
        if let Ok(mut m) = self.map.write() {
            m.insert(text.to_string(), e.clone());
        }
        Ok(e)
    }

    pub fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Evaluates `expr` against a resource and renders the result as a JSON array (primitives as
/// JSON values, complex types as FHIR JSON). Used by `spbridge fhirpath 'EXPR' FILE`.
pub fn evaluate_to_json(
    expr: &str,
    resource: &Value,
    model: &ModelInfo,
) -> Result<Value, FhirPathError> {
    let e = Expression::compile(expr)?;
    let env = EvalEnv::for_resource(model, resource);
    let focus = env.resource_node(resource);
    let out = e.evaluate(&env, focus)?;
    Ok(Value::Array(out.iter().map(|i| i.to_json(model)).collect()))
}

/// JSON rendering of one result item (for tools that evaluate with their own environment).
pub fn item_to_json(item: &Item<'_>, model: &ModelInfo) -> Value {
    item.to_json(model)
}

/// FHIRPath type name of an item as the test suite reports it (`string`, `integer`, `Quantity`, …).
pub fn item_type_name(item: &Item<'_>, model: &ModelInfo) -> String {
    match item {
        Item::Node(_) => item.fhir_type_name(model).unwrap_or("Element").to_string(),
        Item::Bool(_) => "boolean".into(),
        Item::Int(_) => "integer".into(),
        Item::Dec(_) => "decimal".into(),
        Item::Str(_) => "string".into(),
        Item::Date(_) => "date".into(),
        Item::DateTime(_) => "dateTime".into(),
        Item::Time(_) => "time".into(),
        Item::Quantity(_) => "Quantity".into(),
        Item::Object(_) => "Object".into(),
    }
}

/// FHIRPath literal-style rendering of an item (`@2014-01-01`, `1.5 'mg'`, `true`).
pub fn item_to_fhirpath_string(item: &Item<'_>, model: &ModelInfo) -> String {
    use value::Prim;
    match item.prim(model) {
        Prim::Bool(b) => b.to_string(),
        Prim::Int(i) => i.to_string(),
        Prim::Dec(d) => d.to_string(),
        Prim::Str(s) => s.to_string(),
        Prim::Date(d) => format!("@{}", d.format_date()),
        Prim::DateTime(d) => format!("@{}", d.format_datetime()),
        Prim::Time(t) => format!("@T{}", t.format_time()),
        Prim::Quantity(q) => q.format(),
        Prim::Complex => item.to_json(model).to_string(),
    }
}
