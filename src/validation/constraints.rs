//! Constraint (invariant) evaluation at one element instance through the pluggable
//! `InvariantEngine`; anything not evaluated becomes an information issue, once per
//! (key, profile) per validation — never silently skipped.
//!
//! Owns: turning `ConstraintDef`s into issues. Must not: parse or evaluate FHIRPath itself.

use super::invariant::{InvariantContext, InvariantResult};
use super::model::{CompiledProfile, ConstraintDef, ElementDef};
use super::walker::Walk;
use crate::outcome::{Issue, IssueType, Severity};
use serde_json::Value;

impl<'a> Walk<'a> {
    pub(crate) fn constraints(
        &mut self,
        prof: &CompiledProfile,
        el: &ElementDef,
        node: &'a Value,
        ext: Option<&'a Value>,
        node_type: &str,
    ) {
        self.constraints_except(prof, el, node, ext, node_type, None);
    }

    /// As `constraints`, skipping keys the element itself already declares (type-level constraints
    /// are copied into element definitions by snapshot generation, e.g. `ref-1`, `cpt-2`).
    pub(crate) fn constraints_except(
        &mut self,
        prof: &CompiledProfile,
        el: &ElementDef,
        node: &'a Value,
        ext: Option<&'a Value>,
        node_type: &str,
        skip: Option<&ElementDef>,
    ) {
        for c in &el.constraints {
            if c.for_type.as_deref().is_some_and(|t| t != node_type) {
                continue;
            }
            if c.compiled.is_err() && self.note_seen(c.note_id) {
                continue;
            }
            if skip.is_some_and(|s| s.constraints.iter().any(|x| x.key == c.key)) {
                continue;
            }
            if let Some(check) = c.json_check {
                match check(node, ext) {
                    Some(true) => continue,
                    Some(false) => {
                        self.violated(c);
                        continue;
                    }
                    None => {}
                }
            }
            let engine = match &c.compiled {
                Ok(e) => e,
                Err(_) => {
                    if self.first_note(c.note_id) {
                        let i =
                            Issue::information(IssueType::Informational, c.not_evaluated.clone())
                                .at(self.path.clone())
                                .with_detail(c.key.clone());
                        self.issues.push(i);
                    }
                    continue;
                }
            };
            let ctx = InvariantContext {
                node,
                node_extension: ext,
                node_type,
                resource: self.resource,
                root_resource: self.root,
                bundle: self.bundle,
            };
            match engine.evaluate(&ctx) {
                InvariantResult::Satisfied => {}
                InvariantResult::Violated => self.violated(c),
                InvariantResult::CannotEvaluate(reason) => {
                    if self.first_note(c.note_id) {
                        let i = Issue::information(
                            IssueType::Informational,
                            format!(
                                "Constraint {} of {} not evaluated: {reason}",
                                c.key, prof.url
                            ),
                        )
                        .at(self.path.clone())
                        .with_detail(c.key.clone());
                        self.issues.push(i);
                    }
                }
            }
        }
    }

    fn violated(&mut self, c: &ConstraintDef) {
        let sev = if c.severity == Severity::Error {
            Severity::Error
        } else {
            Severity::Warning
        };
        let i = Issue::new(
            sev,
            IssueType::Invariant,
            format!("Constraint failed: {}: {}", c.key, c.human),
        )
        .at(self.path.clone())
        .with_detail(c.key.clone());
        self.issues.push(i);
    }
}
