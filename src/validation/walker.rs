//! The profile walk: one pass over a resource following its compiled profile — element names,
//! JSON shapes, primitives, cardinality, choice types, `_field` extensions, nested resources.
//!
//! Owns: `Walk` (per-validation state: issues, the current FHIRPath location, resource context)
//! and the object/element traversal. Value-level checks live in `checks`, slicing in `slicing`,
//! constraints in `constraints`. Must not: do I/O or mutate shared state except the lazy caches.

use super::model::{CompiledProfile, ElementDef, SpecialType, TypeRef};
use super::primitives::PrimitiveError;
use super::Validator;
use crate::fhirpath::JsonMember;
use crate::outcome::{Issue, IssueType, Severity};
use serde_json::{Map, Value};

/// Per-validation state.
pub(crate) struct Walk<'a> {
    pub v: &'a Validator,
    pub issues: Vec<Issue>,
    /// Current FHIRPath location.
    pub path: String,
    /// Bitset of note ids already reported ("constraint not evaluated", binding notes).
    pub notes: Vec<u64>,
    pub bundle: Option<&'a Value>,
    pub root: &'a Value,
    pub resource: &'a Value,
    /// Some resource was checked against several profiles (issues may repeat).
    pub multi_profile: bool,
}

impl<'a> Walk<'a> {
    pub fn new(v: &'a Validator, top: &'a Value) -> Self {
        Walk {
            v,
            issues: Vec::with_capacity(32),
            path: String::with_capacity(128),
            notes: vec![0; v.registry.note_count() / 64 + 1],
            bundle: None,
            root: top,
            resource: top,
            multi_profile: false,
        }
    }

    pub fn error(&mut self, code: IssueType, msg: impl Into<String>) {
        let i = Issue::error(code, msg).at(self.path.clone());
        self.issues.push(i);
    }

    pub fn issue(&mut self, severity: Severity, code: IssueType, msg: impl Into<String>) {
        let i = Issue::new(severity, code, msg).at(self.path.clone());
        self.issues.push(i);
    }

    /// True when a note id was already reported in this validation.
    pub fn note_seen(&self, id: u32) -> bool {
        self.notes
            .get((id / 64) as usize)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// Records a note id; false when it was already reported in this validation.
    pub fn first_note(&mut self, id: u32) -> bool {
        let (w, b) = ((id / 64) as usize, id % 64);
        if self.notes.len() <= w {
            self.notes.resize(w + 1, 0);
        }
        let fresh = self.notes[w] & (1 << b) == 0;
        self.notes[w] |= 1 << b;
        fresh
    }

    /// Checks the members of a JSON object against the children of `prof.elements[owner]`.
    pub fn children(
        &mut self,
        obj: &'a Map<String, Value>,
        prof: &CompiledProfile,
        owner: usize,
        is_resource: bool,
    ) {
        let owner_el = &prof.elements[owner];
        let kids_owner = owner_el.children_owner().unwrap_or(owner);
        let kids = &prof.elements[kids_owner].children;
        let mut seen = [0u8; 128];
        let mut seen_big = Vec::new();
        let seen: &mut [u8] = if kids.len() <= seen.len() {
            &mut seen[..]
        } else {
            seen_big.resize(kids.len(), 0u8);
            &mut seen_big[..]
        };
        let base_len = self.path.len();
        for (key, val) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (is_ext, name) = match key.strip_prefix('_') {
                Some(n) => (true, n),
                None => (false, key.as_str()),
            };
            let kids_el = &prof.elements[kids_owner];
            let found = match kids_el
                .child_names
                .binary_search_by(|(n, _)| super::model::name_order(n, name))
            {
                Ok(i) => {
                    let pos = kids_el.child_names[i].1;
                    Some((pos, kids[pos], None))
                }
                Err(_) => kids_el.choice_children.iter().find_map(|&pos| {
                    let e = &prof.elements[kids[pos]];
                    let base = e.choice_base.as_deref()?;
                    let suffix = name.strip_prefix(base)?;
                    let t = e.types.iter().position(|t| t.json_suffix == suffix)?;
                    Some((pos, kids[pos], Some(t)))
                }),
            };
            let Some((pos, k, choice)) = found else {
                self.unknown_member(prof, kids, name, key);
                self.path.truncate(base_len);
                continue;
            };
            let el = &prof.elements[k];
            self.push_name(el, choice.map(|t| &el.types[t]));
            if is_ext {
                self.primitive_extension(obj, name, val, el, choice);
            } else {
                if seen[pos] & 1 == 1 && choice.is_some() {
                    let here = self.path.len();
                    self.path.truncate(base_len);
                    self.path.push('.');
                    self.path
                        .push_str(el.choice_base.as_deref().unwrap_or(&el.name));
                    self.error(
                        IssueType::Structure,
                        format!("Only one form of {} is allowed; found several", el.name),
                    );
                    self.path.truncate(here);
                }
                seen[pos] |= 1;
                self.element_value(obj, key, val, prof, k, choice);
            }
            seen[pos] |= 2;
            self.path.truncate(base_len);
        }
        for &pos in &prof.elements[kids_owner].required_children {
            let el = &prof.elements[kids[pos]];
            if seen[pos] & 2 != 0 {
                continue;
            }
            if el.min > 0 {
                self.path.push('.');
                self.path
                    .push_str(el.choice_base.as_deref().unwrap_or(&el.name));
                self.error(
                    IssueType::Required,
                    format!(
                        "{} is required (minimum {}) but is missing",
                        el.path, el.min
                    ),
                );
                self.path.truncate(base_len);
            } else if let Some(s) = el
                .slices
                .iter()
                .map(|&s| &prof.elements[s])
                .find(|s| s.min > 0)
            {
                self.path.push('.');
                self.path.push_str(&el.name);
                self.error(
                    IssueType::Required,
                    format!(
                        "Slice {}:{} requires at least {} but found 0",
                        el.path,
                        s.slice_name.as_deref().unwrap_or("?"),
                        s.min
                    ),
                );
                self.path.truncate(base_len);
            }
        }
    }

    /// A JSON member with no element: unknown, or a choice type the profile (not the base) forbids.
    fn unknown_member(&mut self, prof: &CompiledProfile, kids: &[usize], name: &str, key: &str) {
        for &k in kids {
            let el = &prof.elements[k];
            let Some(base) = &el.choice_base else {
                continue;
            };
            let Some(suffix) = name.strip_prefix(base.as_str()) else {
                continue;
            };
            let root_type = el.base_path.split('.').next().unwrap_or("");
            let Ok(core) = self
                .v
                .registry
                .profile(&super::registry::type_url(root_type))
            else {
                continue;
            };
            let allowed_in_base = core
                .elements
                .iter()
                .find(|e| e.path == el.base_path)
                .and_then(|e| e.types.iter().find(|t| t.json_suffix == suffix));
            if let Some(t) = allowed_in_base {
                self.path.push('.');
                self.path.push_str(base);
                self.path.push_str(".ofType(");
                self.path.push_str(&t.code);
                self.path.push(')');
                let allowed: Vec<&str> = el.types.iter().map(|t| t.code.as_str()).collect();
                self.error(
                    IssueType::Structure,
                    format!(
                        "{} of type {} is not allowed by profile {}: allowed types are {}",
                        el.path,
                        t.code,
                        prof.url,
                        allowed.join(", ")
                    ),
                );
                return;
            }
        }
        self.path.push('.');
        self.path.push_str(name);
        self.error(
            IssueType::Structure,
            format!("Unrecognised element '{key}'"),
        );
    }

    fn push_name(&mut self, el: &ElementDef, choice: Option<&TypeRef>) {
        self.path.push('.');
        match (&el.choice_base, choice) {
            (Some(base), Some(t)) => {
                self.path.push_str(base);
                self.path.push_str(".ofType(");
                self.path.push_str(&t.code);
                self.path.push(')');
            }
            _ => self.path.push_str(&el.name),
        }
    }

    /// One JSON member that maps to element `k` (array or single).
    fn element_value(
        &mut self,
        obj: &'a Map<String, Value>,
        key: &str,
        val: &'a Value,
        prof: &CompiledProfile,
        k: usize,
        choice: Option<usize>,
    ) {
        let el = &prof.elements[k];
        // The `_key` sibling, found without allocating (only primitives can have one).
        let ext_sibling = if el.types.iter().any(|t| t.primitive.is_some()) {
            obj.iter()
                .find(|(k, _)| k.len() == key.len() + 1 && k.starts_with('_') && k.ends_with(key))
                .map(|(_, v)| v)
        } else {
            None
        };
        match (val, el.is_array) {
            (Value::Array(items), true) => {
                if items.is_empty() {
                    self.error(
                        IssueType::Structure,
                        "Arrays must not be empty: omit the element instead",
                    );
                    return;
                }
                if let Some(max) = el.max {
                    if items.len() as u64 > u64::from(max) {
                        let base_len = self.path.len();
                        push_index(&mut self.path, max as usize);
                        self.error(
                            IssueType::Structure,
                            format!("{} allows at most {max} but has {}", el.path, items.len()),
                        );
                        self.path.truncate(base_len);
                    }
                }
                if el.min as usize > items.len() {
                    self.error(
                        IssueType::Required,
                        format!(
                            "{} requires at least {} but has {}",
                            el.path,
                            el.min,
                            items.len()
                        ),
                    );
                }
                let assigned = if el.slicing.is_some() || !el.slices.is_empty() {
                    Some(self.assign_slices(prof, k, items))
                } else {
                    None
                };
                let base_len = self.path.len();
                for (i, item) in items.iter().enumerate() {
                    push_index(&mut self.path, i);
                    let ext = ext_sibling.and_then(|e| e.get(i)).filter(|e| !e.is_null());
                    let target = assigned.as_ref().and_then(|a| a[i]).unwrap_or(k);
                    if item.is_null() {
                        if ext.is_none() || el.types.iter().all(|t| t.primitive.is_none()) {
                            self.error(IssueType::Structure, "null is only allowed in a primitive array when the matching _ entry is present");
                        }
                    } else {
                        self.item(item, ext, prof, target, choice);
                    }
                    self.path.truncate(base_len);
                }
            }
            (Value::Array(_), false) => {
                self.error(
                    IssueType::Structure,
                    format!(
                        "{} is a single element and must not be a JSON array",
                        el.path
                    ),
                );
            }
            (_, true) => {
                self.error(
                    IssueType::Structure,
                    format!("{} repeats and must be a JSON array", el.path),
                );
            }
            (Value::Null, false) => {
                self.error(
                    IssueType::Structure,
                    "null is not allowed: omit the element instead",
                );
            }
            (_, false) => {
                let ext = ext_sibling;
                let target = if el.slices.is_empty() || el.choice_base.is_none() {
                    k
                } else {
                    // Choice slices (`value[x]:valueQuantity`): pick the slice for the chosen type.
                    let code = choice.map(|c| el.types[c].code.as_str());
                    el.slices
                        .iter()
                        .copied()
                        .find(|&s| {
                            prof.elements[s]
                                .types
                                .iter()
                                .any(|t| Some(t.code.as_str()) == code)
                        })
                        .unwrap_or(k)
                };
                if prof.elements[target].max == Some(0) {
                    self.error(
                        IssueType::Structure,
                        format!(
                            "{} is not allowed here (maximum 0)",
                            prof.elements[target].path
                        ),
                    );
                    return;
                }
                let choice = if target == k {
                    choice
                } else {
                    let code = choice.map(|c| el.types[c].code.as_str());
                    prof.elements[target]
                        .types
                        .iter()
                        .position(|t| Some(t.code.as_str()) == code)
                };
                self.item(val, ext, prof, target, choice);
            }
        }
    }

    /// `_field`: the id/extensions of a primitive.
    fn primitive_extension(
        &mut self,
        obj: &'a Map<String, Value>,
        name: &str,
        val: &'a Value,
        el: &ElementDef,
        choice: Option<usize>,
    ) {
        let ty = match choice {
            Some(c) => el.types.get(c),
            None => el.types.first(),
        };
        let Some(ty) = ty.filter(|t| t.primitive.is_some()) else {
            self.error(
                IssueType::Structure,
                format!("_{name} is only allowed for primitive elements"),
            );
            return;
        };
        let Some(tp) = self
            .v
            .registry
            .profile(&super::registry::type_url(&ty.code))
            .ok()
        else {
            return;
        };
        let check_one = |w: &mut Walk<'a>, v: &'a Value| match v.as_object() {
            Some(o) => w.children(o, &tp, 0, false),
            None => w.error(
                IssueType::Structure,
                format!("_{name} must be a JSON object"),
            ),
        };
        match (val, obj.get(name)) {
            (Value::Array(items), Some(Value::Array(values))) if el.is_array => {
                if items.len() != values.len() {
                    self.error(
                        IssueType::Structure,
                        format!("_{name} must have as many entries as {name}"),
                    );
                }
                let base_len = self.path.len();
                for (i, item) in items.iter().enumerate() {
                    if item.is_null() {
                        continue;
                    }
                    push_index(&mut self.path, i);
                    check_one(self, item);
                    self.path.truncate(base_len);
                }
            }
            (Value::Array(items), None) if el.is_array => {
                let base_len = self.path.len();
                for (i, item) in items.iter().enumerate() {
                    push_index(&mut self.path, i);
                    check_one(self, item);
                    self.path.truncate(base_len);
                }
            }
            (Value::Array(_), _) | (_, Some(Value::Array(_))) => {
                self.error(
                    IssueType::Structure,
                    format!("_{name} must have the same JSON shape as {name}"),
                );
            }
            _ => check_one(self, val),
        }
    }

    /// One instance of element `k` (array entries one by one).
    pub fn item(
        &mut self,
        v: &'a Value,
        ext: Option<&'a Value>,
        prof: &CompiledProfile,
        k: usize,
        choice: Option<usize>,
    ) {
        let el = &prof.elements[k];
        let ty = match choice {
            Some(c) => el.types.get(c),
            None if el.types.len() == 1 => el.types.first(),
            None => None,
        };
        let Some(ty) = ty else {
            if el.content_reference.is_some() || el.types.is_empty() {
                self.complex(v, prof, k, None);
            }
            return;
        };
        if let Some(p) = ty.primitive {
            if let Err(e) = self.v.rules.check(p, v) {
                match e {
                    PrimitiveError::JsonType(want) => self.error(
                        IssueType::Structure,
                        format!("{} ({}) must be {want}", el.path, p.name()),
                    ),
                    PrimitiveError::Format(why) => self.error(
                        IssueType::Value,
                        format!("{} ({}): {why}", el.path, p.name()),
                    ),
                }
                return;
            }
            self.fixed_pattern(v, el);
            self.binding(v, el, &ty.code);
            self.constraints(prof, el, v, ext, &ty.code);
            return;
        }
        if ty.is_resource {
            // Bundle entries are their own %rootResource; contained resources keep the container's.
            let is_entry =
                el.path == "Bundle.entry.resource" || el.path.ends_with("parameter.resource");
            let profile = ty.profile.as_deref().filter(|_| ty.profile_is_explicit);
            self.resource(v, profile, is_entry);
            return;
        }
        self.complex(v, prof, k, Some(ty));
    }

    fn complex(&mut self, v: &'a Value, prof: &CompiledProfile, k: usize, ty: Option<&TypeRef>) {
        let el = &prof.elements[k];
        let Some(obj) = v.as_object() else {
            self.error(
                IssueType::Structure,
                format!("{} must be a JSON object", el.path),
            );
            return;
        };
        if obj.is_empty() {
            self.error(
                IssueType::Structure,
                format!("{} is an empty object: omit it instead", el.path),
            );
            return;
        }
        let code = ty.map(|t| t.code.as_str()).unwrap_or("BackboneElement");
        self.fixed_pattern(v, el);
        self.binding(v, el, code);
        let special = ty.map(|t| t.special).unwrap_or(SpecialType::None);
        match (special, ty) {
            (SpecialType::Identifier, _) => self.nhs_identifier(obj),
            (SpecialType::Coding, _) => self.coding_in_code_system(obj),
            (SpecialType::Reference, Some(t)) => self.reference(obj, t),
            _ => {}
        }
        // Backbone elements have no type name of their own: FHIRPath types their children
        // through the element path (`Patient.contact`).
        let node_type = if matches!(code, "BackboneElement" | "Element") {
            el.path.as_str()
        } else {
            code
        };
        self.constraints(prof, el, v, None, node_type);
        let has_children = !el.children.is_empty() || el.content_reference.is_some();
        if has_children {
            self.children(obj, prof, k, false);
            return;
        }
        let Some(t) = ty else { return };
        // Extensions without a profile on the element: use the extension's own definition.
        if special == SpecialType::Extension && !t.profile_is_explicit {
            self.extension(v, obj, el.name == "modifierExtension");
            return;
        }
        match self.v.registry.type_profile(t) {
            Some(tp) => {
                self.constraints_except(&tp, &tp.elements[0], v, None, code, Some(el));
                self.children(obj, &tp, 0, false);
            }
            None => self.issue(
                Severity::Warning,
                IssueType::NotSupported,
                format!(
                    "Definition {} for {} is not available; content not checked",
                    t.profile.as_deref().unwrap_or(code),
                    el.path
                ),
            ),
        }
    }

    /// An extension checked against the definition named by its `url`.
    fn extension(&mut self, v: &'a Value, obj: &'a Map<String, Value>, modifier: bool) {
        let url = obj.member("url").and_then(Value::as_str).unwrap_or("");
        let known = if url.is_empty() {
            Err(String::from("no url"))
        } else {
            self.v.registry.profile(url)
        };
        let def = match known {
            Ok(p) if p.type_name == "Extension" => p,
            other => {
                let why = match other {
                    Ok(p) => format!("{url} defines a {}, not an Extension", p.type_name),
                    Err(e) => e,
                };
                if modifier {
                    self.error(IssueType::NotSupported, format!("Unknown modifier extension {url}: it cannot be ignored, so the resource cannot be processed ({why})"));
                } else if !url.is_empty() {
                    self.issue(Severity::Warning, IssueType::Extension, format!("Extension {url} could not be checked against its definition ({why}); only the base Extension rules were applied"));
                }
                match self
                    .v
                    .registry
                    .profile(&super::registry::type_url("Extension"))
                {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        self.constraints(&def, &def.elements[0], v, None, "Extension");
        self.children(obj, &def, 0, false);
    }
}

pub(crate) fn push_index(path: &mut String, i: usize) {
    path.push('[');
    if i < 10 {
        path.push(char::from(b'0' + i as u8));
    } else {
        use std::fmt::Write;
        let _ = write!(path, "{i}");
    }
    path.push(']');
}
