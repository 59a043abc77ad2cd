//! Compiles StructureDefinition snapshots into `CompiledProfile`s (once, cached) and resolves the
//! lazily linked parts: type profiles, ValueSet expansions, constraint compilation.
//!
//! Owns: the profile cache, the constraint compile cache, the resource-type list.
//! Must not: validate instances or generate snapshots (`crate::conformance` does that).

use super::invariant::{CompiledInvariant, InvariantEngine};
use super::model::*;
use super::primitives::Primitive;
use crate::conformance::Conformance;
use crate::outcome::Severity;
use crate::terminology::{Expansion, FastHash, Terminology};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

const CORE: &str = "http://hl7.org/fhir/StructureDefinition/";
const FHIR_TYPE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";

type CompiledResult = Result<Arc<dyn CompiledInvariant>, String>;

/// Profile compilation and caches shared by all validations.
pub struct Registry {
    conformance: Arc<Conformance>,
    pub terminology: Terminology,
    invariants: Option<Arc<dyn InvariantEngine>>,
    profiles: RwLock<HashMap<String, Result<Arc<CompiledProfile>, String>, FastHash>>,
    /// resourceType → base R4 profile, so profile choice needs no URL formatting.
    base_profiles: RwLock<HashMap<String, Result<Arc<CompiledProfile>, String>, FastHash>>,
    constraint_cache: Mutex<HashMap<(String, String), CompiledResult>>,
    note_ids: AtomicU32,
    value_set_notes: Mutex<HashMap<String, u32>>,
    resource_types: HashSet<String, FastHash>,
}

/// Base definition URL of a type code.
pub fn type_url(code: &str) -> String {
    if code.contains(':') {
        code.to_string()
    } else {
        format!("{CORE}{code}")
    }
}

impl Registry {
    pub fn new(
        conformance: Arc<Conformance>,
        invariants: Option<Arc<dyn InvariantEngine>>,
    ) -> Self {
        let resource_types = conformance
            .resolver()
            .all_of_type("StructureDefinition")
            .iter()
            .filter(|sd| {
                sd.get("kind").and_then(Value::as_str) == Some("resource")
                    && sd.get("derivation").and_then(Value::as_str) != Some("constraint")
            })
            .filter_map(|sd| sd.get("type").and_then(Value::as_str).map(str::to_string))
            .collect();
        Registry {
            terminology: Terminology::new(Arc::from(conformance_resolver(&conformance))),
            conformance,
            invariants,
            profiles: RwLock::new(HashMap::default()),
            base_profiles: RwLock::new(HashMap::default()),
            constraint_cache: Mutex::new(HashMap::new()),
            note_ids: AtomicU32::new(0),
            value_set_notes: Mutex::new(HashMap::new()),
            resource_types,
        }
    }

    pub fn conformance(&self) -> &Conformance {
        &self.conformance
    }

    pub fn is_resource_type(&self, code: &str) -> bool {
        code == "Resource" || code == "DomainResource" || self.resource_types.contains(code)
    }

    /// The compiled profile for a canonical URL (compiled on first use, then cached).
    pub fn profile(&self, url: &str) -> Result<Arc<CompiledProfile>, String> {
        if let Ok(map) = self.profiles.read() {
            if let Some(r) = map.get(url) {
                return r.clone();
            }
        }
        let compiled = self.compile(url).map(Arc::new);
        if let Ok(mut map) = self.profiles.write() {
            return map.entry(url.to_string()).or_insert(compiled).clone();
        }
        compiled
    }

    /// How many note ids exist so far (sizes the per-validation "already reported" bitset).
    pub fn note_count(&self) -> usize {
        self.note_ids.load(Ordering::Relaxed) as usize
    }

    /// The base R4 definition of a resource type (cached by type name).
    pub fn base_profile(&self, type_name: &str) -> Result<Arc<CompiledProfile>, String> {
        if let Ok(map) = self.base_profiles.read() {
            if let Some(r) = map.get(type_name) {
                return r.clone();
            }
        }
        let r = self.profile(&type_url(type_name));
        if let Ok(mut map) = self.base_profiles.write() {
            map.insert(type_name.to_string(), r.clone());
        }
        r
    }

    /// The compiled definition a `TypeRef` points at (its profile, or the base type).
    pub fn type_profile(&self, t: &TypeRef) -> Option<Arc<CompiledProfile>> {
        let weak = t.resolved.get_or_init(|| match &t.profile {
            Some(url) => self
                .profile(url)
                .map(|p| Arc::downgrade(&p))
                .unwrap_or_default(),
            None => Default::default(),
        });
        weak.upgrade()
    }

    /// The (cached) expansion behind a binding.
    pub fn expansion<'b>(&self, b: &'b BindingDef) -> &'b Arc<Expansion> {
        b.expansion
            .get_or_init(|| self.terminology.expand(&b.value_set))
    }

    /// On a choice element (`rate[x]`: Ratio | Quantity), a constraint that one of the
    /// datatypes declares on itself (`rat-1` of Ratio) applies only when the value has that
    /// type; R4 snapshots copy such constraints onto the choice element.
    fn constraint_owner_type(
        &self,
        e: &serde_json::Map<String, Value>,
        key: &str,
    ) -> Option<String> {
        let types = e.get("type").and_then(Value::as_array)?;
        if types.len() < 2 {
            return None;
        }
        types
            .iter()
            .filter_map(|t| t.get("code").and_then(Value::as_str))
            .find(|code| {
                let url = format!("http://hl7.org/fhir/StructureDefinition/{code}");
                self.conformance
                    .structure_definition(&url)
                    .ok()
                    .and_then(|sd| {
                        sd["snapshot"]["element"][0]["constraint"]
                            .as_array()
                            .map(|cs| cs.iter().any(|c| c["key"] == key))
                    })
                    .unwrap_or(false)
            })
            .map(str::to_string)
    }

    fn compile_constraint(&self, key: &str, expression: Option<&str>) -> CompiledResult {
        let Some(expr) = expression else {
            return Err("the constraint has no FHIRPath expression".into());
        };
        let Some(engine) = &self.invariants else {
            return Err("no FHIRPath engine is configured".into());
        };
        let cache_key = (key.to_string(), expr.to_string());
        if let Ok(cache) = self.constraint_cache.lock() {
            if let Some(r) = cache.get(&cache_key) {
                return r.clone();
            }
        }
        let r = engine.compile(key, expr);
        if let Ok(mut cache) = self.constraint_cache.lock() {
            cache.insert(cache_key, r.clone());
        }
        r
    }

    fn compile(&self, url: &str) -> Result<CompiledProfile, String> {
        let sd = self
            .conformance
            .structure_definition(url)
            .map_err(|e| e.to_string())?;
        let raw = sd
            .pointer("/snapshot/element")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{url} has no snapshot elements"))?;
        let mut note_ids: HashMap<String, u32> = HashMap::new();
        let mut elements = Vec::with_capacity(raw.len());
        let mut content_refs = Vec::new();
        for (i, e) in raw.iter().enumerate() {
            let Some(e) = e.as_object() else { continue };
            if let Some(cr) = e.get("contentReference").and_then(Value::as_str) {
                content_refs.push((i, cr.to_string()));
            }
            elements.push(self.element(url, e, &mut note_ids));
        }
        if elements.is_empty() {
            return Err(format!("{url} has an empty snapshot"));
        }
        link_tree(&mut elements);
        index_children(&mut elements);
        link_content_references(&mut elements, &content_refs);
        let tests: Vec<(usize, Vec<SliceTest>)> = (0..elements.len())
            .filter(|&i| elements[i].slicing.is_some())
            .flat_map(|i| {
                let els = &elements;
                els[i]
                    .slices
                    .iter()
                    .map(move |&s| (s, slice_tests(els, i, s)))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (s, t) in tests {
            elements[s].slice_tests = t;
        }
        Ok(CompiledProfile {
            url: url.to_string(),
            type_name: str_of(&sd, "type").to_string(),
            kind: str_of(&sd, "kind").to_string(),
            elements,
        })
    }

    fn element(
        &self,
        url: &str,
        e: &Map<String, Value>,
        note_ids: &mut HashMap<String, u32>,
    ) -> ElementDef {
        let path = e
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let id = e
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(&path)
            .to_string();
        let name = path.rsplit('.').next().unwrap_or("").to_string();
        let choice_base = name.strip_suffix("[x]").map(str::to_string);
        let base_path = e
            .get("base")
            .and_then(|b| b.get("path"))
            .and_then(Value::as_str);
        let base_max = e
            .get("base")
            .and_then(|b| b.get("max"))
            .or_else(|| e.get("max"));
        let is_array = base_max
            .and_then(Value::as_str)
            .is_some_and(|m| m != "1" && m != "0");
        let types = e
            .get("type")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| self.type_ref(t, base_path))
            .collect();
        let binding = e.get("binding").and_then(|b| {
            let strength = match b.get("strength").and_then(Value::as_str)? {
                "required" => BindingStrength::Required,
                "extensible" => BindingStrength::Extensible,
                "preferred" => BindingStrength::Preferred,
                _ => BindingStrength::Example,
            };
            let vs = b.get("valueSet").and_then(Value::as_str)?;
            let value_set = vs.split('|').next().unwrap_or(vs).to_string();
            let note_id = match self.value_set_notes.lock() {
                Ok(mut m) => *m
                    .entry(value_set.clone())
                    .or_insert_with(|| self.note_ids.fetch_add(1, Ordering::Relaxed)),
                Err(_) => self.note_ids.fetch_add(1, Ordering::Relaxed),
            };
            Some(BindingDef {
                strength,
                note_id,
                value_set,
                expansion: OnceLock::new(),
            })
        });
        let constraints = e
            .get("constraint")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let key = c.get("key").and_then(Value::as_str)?.to_string();
                let next = &self.note_ids;
                let note_id = *note_ids
                    .entry(key.clone())
                    .or_insert_with(|| next.fetch_add(1, Ordering::Relaxed));
                let compiled =
                    self.compile_constraint(&key, c.get("expression").and_then(Value::as_str));
                let human = c
                    .get("human")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let not_evaluated = match &compiled {
                    Ok(_) => String::new(),
                    Err(reason) => {
                        format!("Constraint {key} of {url} not evaluated: {reason} ({human})")
                    }
                };
                let for_type = self.constraint_owner_type(e, &key);
                Some(ConstraintDef {
                    json_check: compiled.as_ref().ok().and_then(|c| c.json_check()),
                    not_evaluated,
                    note_id,
                    severity: match c.get("severity").and_then(Value::as_str) {
                        Some("error") => Severity::Error,
                        _ => Severity::Warning,
                    },
                    human,
                    compiled,
                    for_type,
                    key,
                })
            })
            .collect();
        let slicing = e.get("slicing").map(|s| SlicingDef {
            discriminators: s
                .get("discriminator")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    let kind = match d.get("type").and_then(Value::as_str)? {
                        "value" => DiscriminatorKind::Value,
                        "pattern" => DiscriminatorKind::Pattern,
                        "type" => DiscriminatorKind::Type,
                        "profile" => DiscriminatorKind::Profile,
                        _ => DiscriminatorKind::Exists,
                    };
                    Some((kind, d.get("path").and_then(Value::as_str)?.to_string()))
                })
                .collect(),
            rules: match s.get("rules").and_then(Value::as_str) {
                Some("closed") => SlicingRules::Closed,
                Some("openAtEnd") => SlicingRules::OpenAtEnd,
                _ => SlicingRules::Open,
            },
            ordered: s.get("ordered").and_then(Value::as_bool).unwrap_or(false),
        });
        ElementDef {
            ext_name: format!("_{}", choice_base.as_deref().unwrap_or(&name)),
            id,
            base_path: base_path.unwrap_or(&path).to_string(),
            path,
            choice_base,
            name,
            min: e.get("min").and_then(Value::as_u64).unwrap_or(0) as u32,
            max: parse_max(e.get("max")),
            is_array,
            types,
            fixed: prefixed_value(e, "fixed").cloned(),
            pattern: prefixed_value(e, "pattern").cloned(),
            binding,
            constraints,
            children: Vec::new(),
            child_names: Vec::new(),
            choice_children: Vec::new(),
            required_children: Vec::new(),
            slicing,
            slices: Vec::new(),
            slice_name: e
                .get("sliceName")
                .and_then(Value::as_str)
                .map(str::to_string),
            slice_tests: Vec::new(),
            content_reference: None,
            is_modifier: e
                .get("isModifier")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    fn type_ref(&self, t: &Value, base_path: Option<&str>) -> TypeRef {
        let mut code = t
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if code.starts_with("http://hl7.org/fhirpath/System.") {
            if let Some(fhir) = t
                .get("extension")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|x| x.get("url").and_then(Value::as_str) == Some(FHIR_TYPE_EXT))
                .and_then(|x| x.get("valueUrl").or_else(|| x.get("valueUri")))
                .and_then(Value::as_str)
            {
                code = fhir.to_string();
            }
        }
        // R4 snapshots type Resource.id as System.String/"string"; the spec says `id`.
        if base_path == Some("Resource.id") {
            code = "id".to_string();
        }
        let primitive = Primitive::from_code(&code);
        let explicit = t
            .get("profile")
            .and_then(Value::as_array)
            .and_then(|p| p.first())
            .and_then(Value::as_str)
            .map(str::to_string);
        let target_profiles: Vec<String> = t
            .get("targetProfile")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let target_types = target_profiles
            .iter()
            .filter_map(|p| match p.strip_prefix(CORE) {
                Some(t) if !t.contains('/') => Some(t.to_string()),
                _ => self
                    .conformance
                    .resolver()
                    .resolve(p)
                    .and_then(|sd| sd.get("type").and_then(Value::as_str).map(str::to_string)),
            })
            .collect();
        let mut suffix = String::with_capacity(code.len());
        let mut chars = code.chars();
        if let Some(c) = chars.next() {
            suffix.extend(c.to_uppercase());
            suffix.push_str(chars.as_str());
        }
        TypeRef {
            is_resource: primitive.is_none() && self.is_resource_type(&code),
            special: match code.as_str() {
                "Identifier" => SpecialType::Identifier,
                "Coding" => SpecialType::Coding,
                "Reference" => SpecialType::Reference,
                "Extension" => SpecialType::Extension,
                _ => SpecialType::None,
            },
            profile_is_explicit: explicit.is_some(),
            profile: explicit.or_else(|| primitive.is_none().then(|| type_url(&code))),
            json_suffix: suffix,
            primitive,
            code,
            target_profiles,
            target_types,
            resolved: OnceLock::new(),
        }
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A resolver handle for the terminology module (shares the conformance resolver).
fn conformance_resolver(c: &Arc<Conformance>) -> Box<dyn crate::packages::CanonicalResolver> {
    Box::new(ConformanceResolver(c.clone()))
}

struct ConformanceResolver(Arc<Conformance>);

impl crate::packages::CanonicalResolver for ConformanceResolver {
    fn resolve(&self, canonical: &str) -> Option<Arc<Value>> {
        self.0.resolver().resolve(canonical)
    }
    fn all_of_type(&self, resource_type: &str) -> Vec<Arc<Value>> {
        self.0.resolver().all_of_type(resource_type)
    }
}

/// Precomputes what slice `s` of element `base` expects for each discriminator.
fn slice_tests(els: &[ElementDef], base: usize, s: usize) -> Vec<SliceTest> {
    let Some(slicing) = &els[base].slicing else {
        return Vec::new();
    };
    let slice = &els[s];
    slicing
        .discriminators
        .iter()
        .map(|(kind, path)| {
            let p = path.trim_start_matches("$this").trim_start_matches('.');
            let target = if p.is_empty() {
                Some(slice)
            } else {
                discriminator_target(els, slice, p.replace("resolve()", "").trim_end_matches('.'))
            };
            let mut expected = target.and_then(|t| t.fixed.clone().or_else(|| t.pattern.clone()));
            if expected.is_none() && p == "url" {
                expected = slice
                    .types
                    .iter()
                    .find(|t| t.profile_is_explicit)
                    .and_then(|t| t.profile.clone())
                    .map(Value::String);
            }
            let types_of = target.map(|t| &t.types[..]).unwrap_or(&[]);
            let resolves = p.ends_with("resolve()");
            SliceTest {
                kind: *kind,
                path: p
                    .split('.')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect(),
                expected,
                types: if resolves {
                    types_of
                        .iter()
                        .flat_map(|t| t.target_types.clone())
                        .collect()
                } else {
                    types_of.iter().map(|t| t.code.clone()).collect()
                },
                profiles: types_of
                    .iter()
                    .flat_map(|t| {
                        if resolves {
                            t.target_profiles.clone()
                        } else {
                            t.profile
                                .iter()
                                .filter(|_| t.profile_is_explicit)
                                .cloned()
                                .collect()
                        }
                    })
                    .collect(),
                exists: target.and_then(|t| {
                    if t.max == Some(0) {
                        Some(false)
                    } else if t.min >= 1 {
                        Some(true)
                    } else {
                        None
                    }
                }),
            }
        })
        .collect()
}

/// The element at discriminator path `p` below `slice`, looking through intermediate slices
/// (`component:SystolicBP.code.coding:SBPCode.code` for `code.coding.code`); prefers one that
/// carries a fixed or pattern value.
fn discriminator_target<'e>(
    els: &'e [ElementDef],
    slice: &ElementDef,
    p: &str,
) -> Option<&'e ElementDef> {
    let prefix = format!("{}.", slice.id);
    let mut first = None;
    for e in els {
        let Some(rest) = e.id.strip_prefix(&prefix) else {
            continue;
        };
        let stripped = rest
            .split('.')
            .map(|seg| seg.split(':').next().unwrap_or(seg))
            .collect::<Vec<_>>()
            .join(".");
        if stripped != p {
            continue;
        }
        if e.fixed.is_some() || e.pattern.is_some() {
            return Some(e);
        }
        first.get_or_insert(e);
    }
    first
}
