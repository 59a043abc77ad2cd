//! Snapshot generation for one StructureDefinition from its differential and
//! its base definition's snapshot (FHIR R4 "profiling: snapshot generation"):
//! locate or create every differential element in the inherited element tree
//! (pass 1: structure: slices, type dives, renamed choices), then constrain each
//! (pass 2: merge), then add implied slicing and pull in profiled extensions.
//! Must not: cache, resolve canonicals itself (it asks a `DefinitionSource`),
//! or validate instances.
//!
//! Choices made where tools differ (see the tests for each):
//! - A new slice starts from the sliced element *as this profile constrained
//!   it* (Firely/Forge semantics; UK Core is authored in Forge and relies on it,
//!   e.g. BloodPressure's `component:SystolicBP.code.coding:loinc.system`), but
//!   with the inherited `min`/`max`, not the whole element's.
//! - A renamed choice (`valueQuantity`) becomes the type slice
//!   `value[x]:valueQuantity` as the HL7 publisher writes it, and `value[x]` is
//!   restricted to the renamed types with closed `type`/`$this` slicing.
//! - Every element typed as an Extension with one profile gets the extension's
//!   own snapshot as children (fixed `url`, `value[x]` types, nested slices);
//!   HAPI does this only when the differential dives in. `SnapshotOptions` can
//!   switch it off (the R4 comparison test does).
//! - An element using a profiled type takes the profile root's definition,
//!   short, comment, requirements, alias, mapping and (if smaller) max first.
//! - Slices with no slicing anywhere are kept (warning), as the publisher does;
//!   an id whose slice disagrees with its `sliceName` follows the sliceName.

pub mod merge;
mod slicing;
pub mod tree;
mod types;

use crate::conformance::element_path::{id_from_path, parse_id};
use crate::conformance::error::SnapshotError;
use serde_json::{Map, Value};
use std::sync::Arc;
use tree::{NodeId, Tree};

pub use types::type_definition_url;

/// Where the generator gets other definitions (base, datatypes, profiles of
/// types), each with a complete snapshot.
pub trait DefinitionSource {
    fn snapshot_of(&self, canonical: &str) -> Result<Arc<Value>, SnapshotError>;
}

/// Knobs of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Give every element typed `Extension` with a profile the extension's own
    /// snapshot as children (HAPI only does so when the differential dives in).
    pub expand_profiled_extensions: bool,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            expand_profiled_extensions: true,
        }
    }
}

/// The outcome of generating one snapshot.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The StructureDefinition with `snapshot.element` filled in.
    pub definition: Value,
    /// Non-fatal findings (unresolvable extension profile, widened cardinality…).
    pub warnings: Vec<String>,
}

pub(crate) struct Generator<'a> {
    profile_url: String,
    tree: Tree,
    /// The base definition's snapshot, for contentReference targets.
    base: Arc<Value>,
    deps: &'a dyn DefinitionSource,
    warnings: Vec<String>,
}

/// Generate the snapshot of `sd` (its own snapshot, if any, is ignored).
pub fn generate(
    sd: &Value,
    deps: &dyn DefinitionSource,
    options: SnapshotOptions,
) -> Result<Generated, SnapshotError> {
    let profile_url = sd
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("(no url)")
        .to_string();
    let invalid = |reason: &str| SnapshotError::Invalid {
        profile: profile_url.clone(),
        reason: reason.to_string(),
    };
    if sd.get("resourceType").and_then(Value::as_str) != Some("StructureDefinition") {
        return Err(invalid("not a StructureDefinition"));
    }
    let base_url = sd
        .get("baseDefinition")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no baseDefinition and no snapshot"))?;
    if sd.get("derivation").and_then(Value::as_str) == Some("specialization") {
        return Err(invalid(
            "a specialization without a snapshot cannot be generated from its base",
        ));
    }
    let diff = sd
        .pointer("/differential/element")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("no differential and no snapshot"))?;
    let base = deps
        .snapshot_of(base_url)
        .map_err(|e| SnapshotError::Dependency {
            profile: profile_url.clone(),
            dependency: base_url.to_string(),
            source: Box::new(e),
        })?;
    let base_elements = base
        .pointer("/snapshot/element")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("base definition has no snapshot"))?;
    let tree = Tree::from_elements(base_elements).map_err(|e| SnapshotError::Element {
        profile: profile_url.clone(),
        element: e.element,
        reason: format!("base snapshot: {}", e.reason),
    })?;
    let mut generator = Generator {
        profile_url: profile_url.clone(),
        base: base.clone(),
        tree,
        deps,
        warnings: Vec::new(),
    };
    generator.apply_differential(diff)?;
    if sd.get("type").and_then(Value::as_str) == Some("Extension") {
        generator.fix_extension_url(&profile_url);
    }
    if options.expand_profiled_extensions {
        generator.expand_profiled_extensions();
    }
    let mut snapshot = Map::new();
    let warnings = std::mem::take(&mut generator.warnings);
    snapshot.insert(
        "element".into(),
        Value::Array(generator.tree.into_elements()),
    );
    let definition = with_snapshot(sd, Value::Object(snapshot));
    Ok(Generated {
        definition,
        warnings,
    })
}

/// `sd` with `snapshot` placed where FHIR puts it: just before `differential`.
fn with_snapshot(sd: &Value, snapshot: Value) -> Value {
    let Some(obj) = sd.as_object() else {
        return sd.clone();
    };
    let mut out = Map::with_capacity(obj.len() + 1);
    let mut snapshot = Some(snapshot);
    for (k, v) in obj {
        if k == "snapshot" {
            continue;
        }
        if k == "differential" {
            if let Some(s) = snapshot.take() {
                out.insert("snapshot".into(), s);
            }
        }
        out.insert(k.clone(), v.clone());
    }
    if let Some(s) = snapshot {
        out.insert("snapshot".into(), s);
    }
    Value::Object(out)
}

impl Generator<'_> {
    pub(crate) fn element_error(&self, element: &str, reason: String) -> SnapshotError {
        SnapshotError::Element {
            profile: self.profile_url.clone(),
            element: element.to_string(),
            reason,
        }
    }

    pub(crate) fn dependency_error(&self, dependency: &str, e: SnapshotError) -> SnapshotError {
        SnapshotError::Dependency {
            profile: self.profile_url.clone(),
            dependency: dependency.to_string(),
            source: Box::new(e),
        }
    }

    fn apply_differential(&mut self, diff: &[Value]) -> Result<(), SnapshotError> {
        // One pass in differential order: the sliced element (and its children)
        // is constrained before its slices are created from it, so slices
        // inherit what the profile says about the element as a whole.
        let mut seen: Vec<(String, String)> = Vec::with_capacity(diff.len());
        let mut renames: Vec<(String, String)> = Vec::new();
        for d in diff {
            let Some(d) = d.as_object() else {
                return Err(self.element_error("?", "differential element is not an object".into()));
            };
            let path = d.get("path").and_then(Value::as_str).unwrap_or("");
            let id = match d.get("id").and_then(Value::as_str) {
                Some(id) => id.to_string(),
                None => id_from_path(path, d.get("sliceName").and_then(Value::as_str), &seen),
            };
            let id =
                self.consistent_id(id, d.get("sliceName").and_then(Value::as_str), &mut renames);
            seen.push((path.to_string(), id.clone()));
            let node = self.locate(&id)?;
            self.constrain(node, d);
        }
        self.add_implied_slicing()
    }

    /// An id whose last slice disagrees with the element's `sliceName`
    /// (`extension:CollectorR5` with sliceName `collectorR5`) is rewritten to
    /// follow the sliceName, as are the ids of its descendants; `sliceName` wins
    /// as it does in HAPI, which regenerates ids.
    fn consistent_id(
        &mut self,
        id: String,
        slice_name: Option<&str>,
        renames: &mut Vec<(String, String)>,
    ) -> String {
        let mut id = id;
        for (old, new) in renames.iter() {
            if let Some(rest) = id.strip_prefix(old.as_str()) {
                if rest.is_empty() || rest.starts_with('.') || rest.starts_with(':') {
                    id = format!("{new}{rest}");
                    break;
                }
            }
        }
        let Some(slice_name) = slice_name else {
            return id;
        };
        let last_start = id.rfind('.').map_or(0, |i| i + 1);
        let colon = id[last_start..].find(':').map(|i| last_start + i);
        if colon.is_some_and(|c| &id[c + 1..] == slice_name) {
            return id;
        }
        let fixed = format!("{}:{slice_name}", &id[..colon.unwrap_or(id.len())]);
        self.warnings.push(format!(
            "{id}: element id does not match its sliceName {slice_name}; using {fixed}"
        ));
        renames.push((id, fixed.clone()));
        fixed
    }

    /// Find (creating slices, diving into types) the node an element id names.
    fn locate(&mut self, id: &str) -> Result<NodeId, SnapshotError> {
        let segs = parse_id(id);
        let root_name = self.tree.node(0).path().to_string();
        match segs.first() {
            Some(first) if first.name == root_name && first.slice.is_none() => {}
            _ => {
                return Err(
                    self.element_error(id, format!("element is not under the root {root_name}"))
                );
            }
        }
        let mut cur: NodeId = 0;
        for seg in &segs[1..] {
            self.expand(cur).map_err(|e| match e {
                SnapshotError::Element {
                    profile,
                    element,
                    reason,
                } if element == self.tree.node(cur).id() => SnapshotError::Element {
                    profile,
                    element: id.to_string(),
                    reason: format!("at {element}: {reason}"),
                },
                other => other,
            })?;
            cur = match self.tree.child_named(cur, &seg.name) {
                Some(c) => c,
                None => match self.renamed_choice(cur, &seg.name)? {
                    Some(c) => c,
                    None => {
                        let parent = self.tree.node(cur).id().to_string();
                        return Err(self.element_error(
                            id,
                            format!("{parent} has no child element named {}", seg.name),
                        ));
                    }
                },
            };
            if let Some(slice) = &seg.slice {
                cur = self.find_or_create_slice(cur, slice)?;
            }
        }
        Ok(cur)
    }

    /// Pass 2 for one element: profile root documentation, then the differential.
    fn constrain(&mut self, node: NodeId, d: &Map<String, Value>) {
        if let Some(profile) = types::single_profile(d.get("type")) {
            let inherited = types::single_profile(self.tree.node(node).elem.get("type"));
            if inherited.as_deref() != Some(profile.as_str()) {
                match self.deps.snapshot_of(&profile) {
                    Ok(sd) => {
                        if let Some(root) =
                            sd.pointer("/snapshot/element/0").and_then(Value::as_object)
                        {
                            let elem = &mut self.tree.node_mut(node).elem;
                            merge::take_profile_root_doc(elem, root);
                            // A profile's root may limit how often it can be used.
                            let (root_max, max) = (root.get("max"), elem.get("max"));
                            if merge::max_value(root_max) < merge::max_value(max) {
                                if let Some(m) = root_max {
                                    elem.insert("max".into(), m.clone());
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let id = self.tree.node(node).id().to_string();
                        self.warnings
                            .push(format!("{id}: type profile {profile} unavailable: {e}"));
                    }
                }
            }
        }
        let url = self.profile_url.clone();
        let n = self.tree.node_mut(node);
        if n.inherited_cardinality.is_none() {
            n.inherited_cardinality =
                Some((n.elem.get("min").cloned(), n.elem.get("max").cloned()));
        }
        let w = merge::merge_element(&mut n.elem, d, &url);
        self.warnings.extend(w);
    }

    /// An extension definition's `Extension.url` is fixed to its canonical.
    fn fix_extension_url(&mut self, url: &str) {
        if let Some(u) = self.tree.child_named(0, "url") {
            let elem = &mut self.tree.node_mut(u).elem;
            if !elem.contains_key("fixedUri") {
                elem.insert("fixedUri".into(), Value::String(url.to_string()));
            }
        }
    }
}
