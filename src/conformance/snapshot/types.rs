//! Diving into elements the base does not expand: children of a complex
//! datatype (`identifier.system` from Identifier's snapshot), of a profiled
//! type (an extension's own definition), of a `contentReference`, and the
//! post-pass that pulls every profiled extension's definition into the slice.
//! Must not: apply differential constraints or decide slicing.

use super::tree::NodeId;
use super::Generator;
use crate::conformance::error::SnapshotError;
use serde_json::Value;

/// Canonical URL of the StructureDefinition that defines a type code.
pub fn type_definition_url(code: &str) -> String {
    if code.contains(':') {
        code.to_string()
    } else {
        format!("http://hl7.org/fhir/StructureDefinition/{code}")
    }
}

/// The single profile of a single-typed element, if it has exactly one.
pub fn single_profile(types: Option<&Value>) -> Option<String> {
    let types = types?.as_array()?;
    if types.len() != 1 {
        return None;
    }
    let profiles = types[0].get("profile")?.as_array()?;
    if profiles.len() != 1 {
        return None;
    }
    profiles[0].as_str().map(str::to_string)
}

pub fn type_codes(types: Option<&Value>) -> Vec<String> {
    types
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("code").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Generator<'_> {
    /// Give `node` its children: from its contentReference, its single type's
    /// profile, or its single type's definition.
    pub(crate) fn expand(&mut self, node: NodeId) -> Result<(), SnapshotError> {
        if !self.tree.node(node).children.is_empty() {
            return Ok(());
        }
        let elem_id = self.tree.node(node).id().to_string();
        if let Some(reference) = self
            .tree
            .node(node)
            .elem
            .get("contentReference")
            .and_then(Value::as_str)
        {
            let reference = reference.trim_start_matches('#').to_string();
            return self.expand_content_reference(node, &reference);
        }
        let types = self.tree.node(node).elem.get("type").cloned();
        let codes = type_codes(types.as_ref());
        if codes.len() != 1 {
            return Err(self.element_error(
                &elem_id,
                format!(
                    "cannot constrain children of an element with {} types ({}); constrain it to one type first",
                    codes.len(),
                    codes.join(", ")
                ),
            ));
        }
        let code = &codes[0];
        if let Some(profile) = single_profile(types.as_ref()) {
            match self.deps.snapshot_of(&profile) {
                Ok(sd) => return self.graft_snapshot(node, &sd, &elem_id),
                Err(e) if code == "Extension" || matches!(e, SnapshotError::NotFound { .. }) => {
                    self.warnings.push(format!(
                        "{elem_id}: profile {profile} unavailable ({e}); children taken from {code}"
                    ));
                }
                Err(e) => return Err(self.dependency_error(&profile, e)),
            }
        }
        let url = type_definition_url(code);
        let sd = self
            .deps
            .snapshot_of(&url)
            .map_err(|e| self.dependency_error(&url, e))?;
        self.graft_snapshot(node, &sd, &elem_id)
    }

    fn graft_snapshot(
        &mut self,
        node: NodeId,
        sd: &Value,
        elem_id: &str,
    ) -> Result<(), SnapshotError> {
        let elements = sd
            .pointer("/snapshot/element")
            .and_then(Value::as_array)
            .ok_or_else(|| self.element_error(elem_id, "type definition has no snapshot".into()))?;
        self.tree
            .graft(node, elements)
            .map_err(|e| self.element_error(&e.element, e.reason))
    }

    fn expand_content_reference(
        &mut self,
        node: NodeId,
        reference: &str,
    ) -> Result<(), SnapshotError> {
        let elem_id = self.tree.node(node).id().to_string();
        // The referenced element and its descendants, from the base snapshot
        // (unsliced: ids equal paths there).
        let base = self.base.clone();
        let all = base
            .pointer("/snapshot/element")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let prefix = format!("{reference}.");
        let elements: Vec<Value> = all
            .iter()
            .filter(|e| {
                e.get("id").and_then(Value::as_str).is_some_and(|id| {
                    (id == reference || id.starts_with(&prefix)) && !id.contains(':')
                })
            })
            .cloned()
            .collect();
        if elements.is_empty() {
            return Err(
                self.element_error(&elem_id, format!("contentReference #{reference} not found"))
            );
        }
        self.tree
            .graft(node, &elements)
            .map_err(|e| self.element_error(&e.element, e.reason))
    }

    /// Post-pass: every element typed as an Extension with one profile gets that
    /// extension's own snapshot elements (url fixed, value[x] restricted,
    /// nested extension slices) as its children, so a validator can check it.
    pub(crate) fn expand_profiled_extensions(&mut self) {
        for id in self.tree.walk() {
            let n = self.tree.node(id);
            if !n.children.is_empty() {
                continue;
            }
            let types = n.elem.get("type");
            if type_codes(types) != ["Extension"] {
                continue;
            }
            let Some(profile) = single_profile(types) else {
                continue;
            };
            let elem_id = n.id().to_string();
            match self.deps.snapshot_of(&profile) {
                Ok(sd) => {
                    if let Err(e) = self.graft_snapshot(id, &sd, &elem_id) {
                        self.warnings.push(format!("{elem_id}: {e}"));
                    }
                }
                Err(e) => self.warnings.push(format!(
                    "{elem_id}: extension definition {profile} unavailable: {e}"
                )),
            }
        }
    }
}
