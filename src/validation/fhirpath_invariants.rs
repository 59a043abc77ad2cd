//! The FHIRPath engine behind the validator's [`InvariantEngine`] seam.
//!
//! Owns: compiling constraint expressions with [`crate::fhirpath`] (through a shared
//! [`ExpressionCache`], so each distinct expression is parsed once per process) and mapping
//! the engine's outcome onto [`InvariantResult`].
//! Must not: decide severities or issue wording (that is `constraints.rs`), or evaluate
//! anything not given to it by the walk.

use super::invariant::{CompiledInvariant, InvariantContext, InvariantEngine, InvariantResult};
use crate::fhirpath::{
    Expression, ExpressionCache, Hooks, InvariantInput, InvariantOutcome, ModelInfo,
};
use std::sync::Arc;

/// Evaluates profile constraints with spbridge's FHIRPath engine.
pub struct FhirPathInvariants {
    model: Arc<ModelInfo>,
    cache: ExpressionCache,
}

impl FhirPathInvariants {
    pub fn new(model: Arc<ModelInfo>) -> Self {
        FhirPathInvariants {
            model,
            cache: ExpressionCache::new(),
        }
    }
}

impl InvariantEngine for FhirPathInvariants {
    fn compile(&self, _key: &str, expression: &str) -> Result<Arc<dyn CompiledInvariant>, String> {
        let expr = self
            .cache
            .get_or_compile(expression)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(CompiledFhirPath {
            expr,
            model: self.model.clone(),
        }))
    }
}

struct CompiledFhirPath {
    expr: Expression,
    model: Arc<ModelInfo>,
}

impl CompiledInvariant for CompiledFhirPath {
    fn evaluate(&self, ctx: &InvariantContext<'_>) -> InvariantResult {
        let input = InvariantInput {
            node: ctx.node,
            node_extension: ctx.node_extension,
            node_type: ctx.node_type,
            resource: ctx.resource,
            root_resource: ctx.root_resource,
            bundle: ctx.bundle,
        };
        match self
            .expr
            .check_invariant(&self.model, &input, Hooks::default())
        {
            InvariantOutcome::Satisfied => InvariantResult::Satisfied,
            InvariantOutcome::Violated => InvariantResult::Violated,
            InvariantOutcome::CannotEvaluate(reason) => InvariantResult::CannotEvaluate(reason),
        }
    }

    fn json_check(&self) -> Option<super::invariant::JsonCheck> {
        self.expr.json_check()
    }
}
