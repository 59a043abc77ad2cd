//! Slices: finding or creating `element:slice` (and re-slices `:a/b`) as copies
//! of the inherited sliced element, type slices for renamed choices
//! (`valueQuantity` -> `value[x]:valueQuantity`), and the slicing a profile
//! implies without stating it (extensions by url, choices by type).
//! Must not: apply differential constraints or expand datatypes.

use super::tree::NodeId;
use super::types::type_codes;
use super::Generator;
use crate::conformance::element_path::{choice_suffix, last_name, type_matches_suffix};
use crate::conformance::error::SnapshotError;
use serde_json::{json, Value};

impl Generator<'_> {
    /// The slice `slice` (`a` or `a/b`) of `entry`, created from the inherited
    /// element when the base has no such slice.
    pub(crate) fn find_or_create_slice(
        &mut self,
        entry: NodeId,
        slice: &str,
    ) -> Result<NodeId, SnapshotError> {
        let container = match slice.rsplit_once('/') {
            Some((parent, _)) => self.find_or_create_slice(entry, parent)?,
            None => entry,
        };
        if let Some(s) = self.tree.slice_named(container, slice) {
            return Ok(s);
        }
        let entry_id = self.tree.node(entry).id().to_string();
        let new_id = format!("{entry_id}:{slice}");
        let inherited = self.tree.node(container).inherited_cardinality.clone();
        let s = self.tree.copy_subtree(container, &new_id, false);
        let node = self.tree.node_mut(s);
        node.elem.remove("slicing");
        node.inherited_cardinality = None;
        if let Some((min, max)) = inherited {
            for (key, value) in [("min", min), ("max", max)] {
                match value {
                    Some(v) => node.elem.insert(key.into(), v),
                    None => node.elem.remove(key),
                };
            }
        }
        // Keep key order readable: id, path, sliceName first.
        let mut elem = serde_json::Map::new();
        for key in ["id", "extension", "path"] {
            if let Some(v) = node.elem.remove(key) {
                elem.insert(key.into(), v);
            }
        }
        elem.insert("sliceName".into(), Value::String(slice.to_string()));
        elem.append(&mut node.elem);
        node.elem = elem;
        // A choice slice named like `valueQuantity` is a type slice.
        let path = self.tree.node(entry).path().to_string();
        let choice = last_name(&path).to_string();
        if let Some(suffix) = choice_suffix(&choice, last_segment(slice)) {
            self.restrict_to_suffix(s, suffix)?;
            self.tree.node_mut(s).choice_rename = true;
        }
        self.tree.node_mut(container).slices.push(s);
        Ok(s)
    }

    /// `valueQuantity` under `parent`: the type slice of `value[x]` for Quantity.
    pub(crate) fn renamed_choice(
        &mut self,
        parent: NodeId,
        name: &str,
    ) -> Result<Option<NodeId>, SnapshotError> {
        let children = self.tree.node(parent).children.clone();
        for c in children {
            let path = self.tree.node(c).path().to_string();
            let choice = last_name(&path);
            if choice_suffix(choice, name).is_some() {
                return self.find_or_create_slice(c, name).map(Some);
            }
        }
        Ok(None)
    }

    fn restrict_to_suffix(&mut self, node: NodeId, suffix: &str) -> Result<(), SnapshotError> {
        let n = self.tree.node_mut(node);
        let types = n
            .elem
            .get("type")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let kept: Vec<Value> = types
            .into_iter()
            .filter(|t| {
                t.get("code")
                    .and_then(Value::as_str)
                    .is_some_and(|c| type_matches_suffix(c, suffix))
            })
            .collect();
        if kept.is_empty() {
            let id = n.id().to_string();
            return Err(self.element_error(
                &id,
                format!("type {suffix} is not allowed by the base element"),
            ));
        }
        n.elem.insert("type".into(), Value::Array(kept));
        Ok(())
    }

    /// Add the slicing a profile implies: extensions are sliced by url, choice
    /// elements by type (and then restricted to the sliced types).
    pub(crate) fn add_implied_slicing(&mut self) -> Result<(), SnapshotError> {
        for id in self.tree.walk() {
            let n = self.tree.node(id);
            if n.slices.is_empty() {
                continue;
            }
            let name = last_name(n.path()).to_string();
            let all_type_slices = n.slices.iter().all(|&s| self.tree.node(s).choice_rename);
            if name.ends_with("[x]") && all_type_slices {
                let mut codes: Vec<String> = Vec::new();
                for &s in &n.slices {
                    for c in type_codes(self.tree.node(s).elem.get("type")) {
                        if !codes.contains(&c) {
                            codes.push(c);
                        }
                    }
                }
                let node = self.tree.node_mut(id);
                if !node.elem.contains_key("slicing") {
                    node.elem.insert(
                        "slicing".into(),
                        json!({"discriminator": [{"type": "type", "path": "$this"}], "ordered": false, "rules": "closed"}),
                    );
                }
                if let Some(Value::Array(types)) = node.elem.get_mut("type") {
                    types.retain(|t| {
                        t.get("code")
                            .and_then(Value::as_str)
                            .is_some_and(|c| codes.iter().any(|k| k == c))
                    });
                }
                continue;
            }
            if n.elem.contains_key("slicing") {
                continue;
            }
            if name == "extension" || name == "modifierExtension" {
                self.tree.node_mut(id).elem.insert(
                    "slicing".into(),
                    json!({"discriminator": [{"type": "value", "path": "url"}], "ordered": false, "rules": "open"}),
                );
            } else if n.elem.get("sliceName").is_none() {
                // Re-slices inherit their slice's slicing. Slices with no slicing
                // anywhere are kept as the HL7 publisher keeps them, with a warning.
                let msg = format!(
                    "{}: slices are defined but the element has no slicing",
                    n.id()
                );
                self.warnings.push(msg);
            }
        }
        Ok(())
    }
}

fn last_segment(slice: &str) -> &str {
    slice.rsplit('/').next().unwrap_or(slice)
}
