//! The compiled form of a StructureDefinition snapshot: an element tree the walker can follow
//! without string parsing (children, slices, types, fixed/pattern, bindings, constraints).
//!
//! Owns: `CompiledProfile`, `ElementDef` and their parts; building them from snapshot JSON.
//! Must not: resolve other profiles eagerly (types are resolved lazily through `TypeRef::resolved`)
//! or validate instances.

use super::invariant::{CompiledInvariant, JsonCheck};
use super::primitives::Primitive;
use crate::outcome::Severity;
use crate::terminology::Expansion;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

/// One profile (or base type / extension definition), compiled.
pub struct CompiledProfile {
    pub url: String,
    /// `StructureDefinition.type`, e.g. `Patient`, `Extension`, `Identifier`.
    pub type_name: String,
    /// `resource`, `complex-type`, `primitive-type`, `logical`.
    pub kind: String,
    /// `elements[0]` is the root.
    pub elements: Vec<ElementDef>,
}

/// One allowed type of an element.
pub struct TypeRef {
    pub code: String,
    /// The type as it appears as a choice suffix: `Quantity`, `String`, `DateTime`.
    pub json_suffix: String,
    pub primitive: Option<Primitive>,
    /// The code names a resource type (`Resource`, `Patient`…): validated as a nested resource.
    pub is_resource: bool,
    /// Value-level special handling chosen at compile time.
    pub special: SpecialType,
    /// `type.profile[0]` if any, else the base type's definition URL (None for primitives).
    pub profile: Option<String>,
    pub profile_is_explicit: bool,
    pub target_profiles: Vec<String>,
    /// Resource types the target profiles constrain (filled by the registry).
    pub target_types: Vec<String>,
    /// Lazily compiled `profile`.
    pub resolved: OnceLock<Weak<CompiledProfile>>,
}

/// Types with checks beyond their structure definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialType {
    None,
    Identifier,
    Coding,
    Reference,
    Extension,
}

/// `ElementDefinition.binding`.
pub struct BindingDef {
    pub strength: BindingStrength,
    pub value_set: String,
    /// Shared by every binding to this value set: one "not checked" note per validation.
    pub note_id: u32,
    pub expansion: OnceLock<Arc<Expansion>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingStrength {
    Required,
    Extensible,
    Preferred,
    Example,
}

/// One constraint, compiled (or the reason it is not evaluable).
pub struct ConstraintDef {
    /// Unique per (profile, key): used to deduplicate "not evaluated" notes per validation.
    pub note_id: u32,
    pub key: String,
    pub severity: Severity,
    pub human: String,
    pub compiled: Result<Arc<dyn CompiledInvariant>, String>,
    /// The engine's JSON-only form of `compiled` (ele-1, ext-1…), called without a context.
    pub json_check: Option<JsonCheck>,
    /// On a choice element: the datatype this constraint belongs to (it is skipped for
    /// values of the other types).
    pub for_type: Option<String>,
    /// Prebuilt diagnostics for the "not evaluated" information issue (empty when compiled).
    pub not_evaluated: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlicingRules {
    Open,
    Closed,
    OpenAtEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscriminatorKind {
    Value,
    Pattern,
    Type,
    Profile,
    Exists,
}

/// `ElementDefinition.slicing`, with per-slice matchers precomputed.
pub struct SlicingDef {
    pub discriminators: Vec<(DiscriminatorKind, String)>,
    pub rules: SlicingRules,
    pub ordered: bool,
}

/// What one slice expects for one discriminator.
pub struct SliceTest {
    pub kind: DiscriminatorKind,
    /// Discriminator path split on `.` (`$this` = empty).
    pub path: Vec<String>,
    pub expected: Option<Value>,
    pub types: Vec<String>,
    pub profiles: Vec<String>,
    pub exists: Option<bool>,
}

/// One element of the snapshot.
pub struct ElementDef {
    pub id: String,
    pub path: String,
    /// `base.path` (where the element is first defined, e.g. `Extension.value[x]`).
    pub base_path: String,
    /// Last path segment, e.g. `identifier`, `value[x]`.
    pub name: String,
    /// `value` for `value[x]`.
    pub choice_base: Option<String>,
    /// `_identifier`, for primitive extensions.
    pub ext_name: String,
    pub min: u32,
    /// None = `*`.
    pub max: Option<u32>,
    /// JSON arrays are used when the base definition's max is not 1.
    pub is_array: bool,
    pub types: Vec<TypeRef>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    pub binding: Option<BindingDef>,
    pub constraints: Vec<ConstraintDef>,
    pub children: Vec<usize>,
    /// Non-choice children by JSON name, sorted for binary search: (name, position in `children`).
    pub child_names: Vec<(String, usize)>,
    /// Positions in `children` of choice (`[x]`) children.
    pub choice_children: Vec<usize>,
    /// Positions in `children` of children that are required (min > 0) or have a required slice.
    pub required_children: Vec<usize>,
    pub slicing: Option<SlicingDef>,
    pub slices: Vec<usize>,
    pub slice_name: Option<String>,
    pub slice_tests: Vec<SliceTest>,
    pub content_reference: Option<usize>,
    pub is_modifier: bool,
}

impl CompiledProfile {
    pub fn root(&self) -> &ElementDef {
        &self.elements[0]
    }
}

impl ElementDef {
    /// The element whose `children` apply to an instance of this element.
    pub fn children_owner(&self) -> Option<usize> {
        self.content_reference
    }
}

pub(crate) fn parse_max(v: Option<&Value>) -> Option<u32> {
    match v.and_then(Value::as_str) {
        Some("*") | None => None,
        Some(s) => s.parse().ok(),
    }
}

/// First value of a `fixed[x]` / `pattern[x]` key.
pub(crate) fn prefixed_value<'a>(
    e: &'a serde_json::Map<String, Value>,
    prefix: &str,
) -> Option<&'a Value> {
    e.iter()
        .find(|(k, _)| {
            k.starts_with(prefix)
                && k.len() > prefix.len()
                && k.as_bytes()[prefix.len()].is_ascii_uppercase()
        })
        .map(|(_, v)| v)
}

/// Parent id and the id of the element this one slices (if it is a slice entry).
pub(crate) fn split_id(id: &str) -> (Option<&str>, Option<String>) {
    let Some((parent, last)) = id.rsplit_once('.') else {
        return (None, None);
    };
    match last.split_once(':') {
        None => (Some(parent), None),
        Some((name, slice)) => {
            let base = match slice.rsplit_once('/') {
                Some((pre, _)) => format!("{parent}.{name}:{pre}"),
                None => format!("{parent}.{name}"),
            };
            (Some(parent), Some(base))
        }
    }
}

/// Builds the id → index map and links children and slices.
pub(crate) fn link_tree(elements: &mut [ElementDef]) {
    let index: HashMap<String, usize> = elements
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.clone(), i))
        .collect();
    for i in 1..elements.len() {
        let (parent, slice_of) = split_id(&elements[i].id);
        if let Some(base) = slice_of {
            if let Some(&b) = index.get(&base) {
                elements[b].slices.push(i);
            }
        } else if let Some(&p) = parent.and_then(|p| index.get(p)) {
            elements[p].children.push(i);
        }
    }
}

/// Builds the sorted child-name index of every element (after `link_tree`).
pub(crate) fn index_children(elements: &mut [ElementDef]) {
    for i in 0..elements.len() {
        let mut names = Vec::new();
        let mut choices = Vec::new();
        let mut required = Vec::new();
        for (pos, &k) in elements[i].children.iter().enumerate() {
            match elements[k].choice_base {
                Some(_) => choices.push(pos),
                None => names.push((elements[k].name.clone(), pos)),
            }
            if elements[k].min > 0 || elements[k].slices.iter().any(|&s| elements[s].min > 0) {
                required.push(pos);
            }
        }
        names.sort_by(|a, b| name_order(&a.0, &b.0));
        elements[i].child_names = names;
        elements[i].choice_children = choices;
        elements[i].required_children = required;
    }
}

/// The order of `child_names`: by length, then bytes (most comparisons end at the length).
#[inline]
pub(crate) fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Resolves `contentReference` (`#Questionnaire.item`) to an element index.
pub(crate) fn link_content_references(elements: &mut [ElementDef], refs: &[(usize, String)]) {
    for (i, target) in refs {
        let t = target.trim_start_matches('#');
        if let Some(j) = elements.iter().position(|e| e.id == t || e.path == t) {
            elements[*i].content_reference = Some(j);
        }
    }
}
