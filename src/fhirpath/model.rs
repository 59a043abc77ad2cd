//! FHIR type information (`ModelInfo`) built from R4 StructureDefinition snapshots.
//!
//! Owns: the type table (primitive, complex, resource and backbone-element types), base-type
//! hierarchy, element → type(s) for every path, choice-type expansions (`value` →
//! `valueQuantity`…), and contentReference resolution.
//! Must not: evaluate expressions or read anything but the StructureDefinition JSON given to it
//! (except the convenience loader `from_package_dir`).

use serde_json::Value;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a: element names are short, so this beats SipHash on the navigation hot path.
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A map keyed by names, hashed with `NameHasher`.
pub type NameMap<V> = HashMap<String, V, BuildHasherDefault<NameHasher>>;

/// Index of a type in a `ModelInfo`. `TypeId::NONE` means "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeId(pub u32);

impl TypeId {
    pub const NONE: TypeId = TypeId(u32::MAX);
    pub fn is_known(self) -> bool {
        self != TypeId::NONE
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    Primitive,
    Complex,
    Resource,
    /// A backbone element defined inline (`Patient.contact`).
    Backbone,
}

#[derive(Debug, Clone)]
pub struct ElementInfo {
    /// True for `value[x]`-style elements.
    pub choice: bool,
    /// (JSON property name, type). One entry unless `choice`.
    pub types: Vec<(String, TypeId)>,
    /// max != 1
    pub many: bool,
}

/// How a node of a type turns into a System value (precomputed so the hot path does no string
/// comparisons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueKind {
    #[default]
    Other,
    Boolean,
    Integer,
    Decimal,
    Date,
    DateTime,
    Time,
    Quantity,
}

#[derive(Debug, Clone)]
pub struct TypeInfo {
    pub name: String,
    pub kind: TypeKind,
    pub value_kind: ValueKind,
    pub base: TypeId,
    pub elements: NameMap<ElementInfo>,
}

/// FHIR type information. Build once (it is `Send + Sync`), share by reference or `Arc`.
#[derive(Debug, Default, Clone)]
pub struct ModelInfo {
    types: Vec<TypeInfo>,
    by_name: NameMap<TypeId>,
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn type_code(t: &Value) -> Option<&str> {
    let code = t.get("code")?.as_str()?;
    let fhir_type =
        t.get("extension")
            .and_then(Value::as_array)
            .and_then(|exts| {
                exts.iter()
                    .find(|e| {
                        e.get("url").and_then(Value::as_str)
                    == Some("http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type")
                    })
                    .and_then(|e| e.get("valueUrl").or_else(|| e.get("valueUri")))
                    .and_then(Value::as_str)
            });
    if let Some(t) = fhir_type {
        return Some(t);
    }
    Some(match code.strip_prefix("http://hl7.org/fhirpath/System.") {
        Some("String") => "string",
        Some("Boolean") => "boolean",
        Some("Integer") => "integer",
        Some("Decimal") => "decimal",
        Some("Date") => "date",
        Some("DateTime") => "dateTime",
        Some("Time") => "time",
        Some(_) => "string",
        None => code,
    })
}

impl ModelInfo {
    /// An empty model: navigation still works on JSON alone, type checks only know System types.
    pub fn empty() -> Self {
        Self::default()
    }

    fn intern(&mut self, name: &str, kind: TypeKind) -> TypeId {
        if let Some(id) = self.by_name.get(name) {
            if let Some(t) = self.types.get_mut(id.0 as usize) {
                t.kind = kind;
            }
            return *id;
        }
        let id = TypeId(self.types.len() as u32);
        self.types.push(TypeInfo {
            name: name.to_string(),
            kind,
            value_kind: ValueKind::Other,
            base: TypeId::NONE,
            elements: NameMap::default(),
        });
        self.by_name.insert(name.to_string(), id);
        id
    }

    fn id_or_new(&mut self, name: &str) -> TypeId {
        match self.by_name.get(name) {
            Some(id) => *id,
            None => self.intern(name, TypeKind::Complex),
        }
    }

    /// Builds from StructureDefinitions (R4 core snapshots). Profiles on resources and
    /// extension definitions are skipped; constrained data types (Age, Duration…) become
    /// subtypes of their base.
    pub fn from_structure_definitions<'a>(sds: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut m = ModelInfo::default();
        let mut content_refs: Vec<(TypeId, String, String, bool)> = Vec::new();
        let sds: Vec<&Value> = sds
            .into_iter()
            .filter(|sd| {
                sd.get("resourceType").and_then(Value::as_str) == Some("StructureDefinition")
            })
            .collect();
        for sd in &sds {
            let kind = sd.get("kind").and_then(Value::as_str).unwrap_or("");
            let derivation = sd.get("derivation").and_then(Value::as_str).unwrap_or("");
            let ty = sd.get("type").and_then(Value::as_str).unwrap_or("");
            let id = sd.get("id").and_then(Value::as_str).unwrap_or("");
            let base = sd
                .get("baseDefinition")
                .and_then(Value::as_str)
                .and_then(|b| b.rsplit('/').next())
                .unwrap_or("");
            let kind = match kind {
                "primitive-type" => TypeKind::Primitive,
                "complex-type" => TypeKind::Complex,
                "resource" => TypeKind::Resource,
                _ => continue,
            };
            if derivation == "constraint" {
                if kind != TypeKind::Complex
                    || ty == "Extension"
                    || id.is_empty()
                    || id.contains('-')
                {
                    continue;
                }
                let t = m.intern(id, kind);
                let b = m.id_or_new(base);
                m.types[t.0 as usize].base = b;
                continue;
            }
            if ty.is_empty() || ty.contains('/') {
                continue;
            }
            let t = m.intern(ty, kind);
            if !base.is_empty() {
                let b = m.id_or_new(base);
                m.types[t.0 as usize].base = b;
            }
            let Some(elements) = sd.pointer("/snapshot/element").and_then(Value::as_array) else {
                continue;
            };
            for el in elements {
                let Some(path) = el.get("path").and_then(Value::as_str) else {
                    continue;
                };
                let Some((parent, name)) = path.rsplit_once('.') else {
                    continue;
                };
                let parent_id = if parent == ty {
                    t
                } else {
                    m.intern(parent, TypeKind::Backbone)
                };
                let many = el
                    .get("max")
                    .and_then(Value::as_str)
                    .is_some_and(|mx| mx != "1" && mx != "0");
                if let Some(cr) = el.get("contentReference").and_then(Value::as_str) {
                    let target = cr
                        .trim_start_matches('#')
                        .rsplit_once('#')
                        .map_or(cr.trim_start_matches('#'), |x| x.1);
                    content_refs.push((parent_id, name.to_string(), target.to_string(), many));
                    continue;
                }
                let mut codes: Vec<&str> = el
                    .get("type")
                    .and_then(Value::as_array)
                    .map(|ts| ts.iter().filter_map(type_code).collect())
                    .unwrap_or_default();
                // R4 snapshots type Resource.id as string; FHIRPath engines report `id`
                if kind == TypeKind::Resource && parent == ty && name == "id" {
                    codes = vec!["id"];
                }
                let info = if let Some(stem) = name.strip_suffix("[x]") {
                    let mut types = Vec::new();
                    for c in &codes {
                        let tid = m.id_or_new(c);
                        types.push((format!("{stem}{}", capitalise(c)), tid));
                    }
                    (
                        stem.to_string(),
                        ElementInfo {
                            choice: true,
                            types,
                            many,
                        },
                    )
                } else {
                    let tid = match codes.first() {
                        Some(&c)
                            if c == "BackboneElement" || (c == "Element" && ty != "Element") =>
                        {
                            let b = m.intern(path, TypeKind::Backbone);
                            let base = m.id_or_new(c);
                            m.types[b.0 as usize].base = base;
                            b
                        }
                        Some(&c) => m.id_or_new(c),
                        None => TypeId::NONE,
                    };
                    (
                        name.to_string(),
                        ElementInfo {
                            choice: false,
                            types: vec![(name.to_string(), tid)],
                            many,
                        },
                    )
                };
                m.types[parent_id.0 as usize]
                    .elements
                    .insert(info.0, info.1);
            }
        }
        let quantity = m.type_id("Quantity");
        for i in 0..m.types.len() {
            let id = TypeId(i as u32);
            let vk = match m.types[i].name.as_str() {
                "boolean" => ValueKind::Boolean,
                "integer" | "positiveInt" | "unsignedInt" | "integer64" => ValueKind::Integer,
                "decimal" => ValueKind::Decimal,
                "date" => ValueKind::Date,
                "dateTime" | "instant" => ValueKind::DateTime,
                "time" => ValueKind::Time,
                _ if quantity.is_known() && m.is_subtype(id, quantity) => ValueKind::Quantity,
                _ => ValueKind::Other,
            };
            m.types[i].value_kind = vk;
        }
        for (parent, name, target, many) in content_refs {
            let tid = m.by_name.get(&target).copied().unwrap_or(TypeId::NONE);
            if let Some(p) = m.types.get_mut(parent.0 as usize) {
                p.elements.insert(
                    name.clone(),
                    ElementInfo {
                        choice: false,
                        types: vec![(name, tid)],
                        many,
                    },
                );
            }
        }
        m
    }

    /// Loads every `StructureDefinition-*.json` of an unpacked package folder.
    pub fn from_package_dir(dir: &std::path::Path) -> std::io::Result<Self> {
        let mut sds = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let is_sd = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("StructureDefinition-") && n.ends_with(".json"));
            if !is_sd {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            sds.push(v);
        }
        Ok(Self::from_structure_definitions(sds.iter()))
    }

    /// Loads a package folder once per process and shares the result (later calls with the
    /// same folder return the same `Arc`).
    pub fn cached_from_package_dir(
        dir: &std::path::Path,
    ) -> std::io::Result<std::sync::Arc<ModelInfo>> {
        use std::sync::{Arc, Mutex, OnceLock};
        static CACHE: OnceLock<Mutex<HashMap<std::path::PathBuf, Arc<ModelInfo>>>> =
            OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(m) = cache.lock().ok().and_then(|c| c.get(dir).cloned()) {
            return Ok(m);
        }
        let m = Arc::new(Self::from_package_dir(dir)?);
        if let Ok(mut c) = cache.lock() {
            c.insert(dir.to_path_buf(), m.clone());
        }
        Ok(m)
    }

    /// The type of an element path (`Patient.contact.name` → HumanName, `Patient.contact` → the
    /// backbone type, `Observation.value` → NONE because it is a choice).
    pub fn path_type(&self, path: &str) -> TypeId {
        let mut parts = path.split('.');
        let mut cur = match parts.next() {
            Some(root) => self.type_id(root),
            None => return TypeId::NONE,
        };
        for p in parts {
            match self.element(cur, p) {
                Some(e) if !e.choice && e.types.len() == 1 => cur = e.types[0].1,
                _ => return TypeId::NONE,
            }
        }
        cur
    }

    pub fn type_id(&self, name: &str) -> TypeId {
        self.by_name.get(name).copied().unwrap_or(TypeId::NONE)
    }

    pub fn info(&self, id: TypeId) -> Option<&TypeInfo> {
        self.types.get(id.0 as usize)
    }

    pub fn name(&self, id: TypeId) -> Option<&str> {
        self.info(id).map(|t| t.name.as_str())
    }

    pub fn value_kind(&self, id: TypeId) -> ValueKind {
        self.info(id).map_or(ValueKind::Other, |t| t.value_kind)
    }

    pub fn kind(&self, id: TypeId) -> Option<TypeKind> {
        self.info(id).map(|t| t.kind)
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The element `name` of type `id`, looked up through the base types.
    pub fn element(&self, id: TypeId, name: &str) -> Option<&ElementInfo> {
        let mut cur = id;
        for _ in 0..16 {
            let t = self.info(cur)?;
            if let Some(e) = t.elements.get(name) {
                return Some(e);
            }
            cur = t.base;
        }
        None
    }

    /// If `name` is a concrete choice name (`valueQuantity`) of an element of `id`, the stem.
    pub fn choice_stem_of(&self, id: TypeId, name: &str) -> Option<&str> {
        let t = self.info(id)?;
        t.elements
            .iter()
            .find(|(_, e)| e.choice && e.types.iter().any(|(k, _)| k == name))
            .map(|(stem, _)| stem.as_str())
    }

    /// Is `id` the type `ancestor` or derived from it?
    pub fn is_subtype(&self, id: TypeId, ancestor: TypeId) -> bool {
        let mut cur = id;
        for _ in 0..16 {
            if cur == ancestor {
                return true;
            }
            match self.info(cur) {
                Some(t) => cur = t.base,
                None => return false,
            }
        }
        false
    }

    /// The FHIR type name that a backbone element reports (`BackboneElement`), else its own name.
    pub fn public_name(&self, id: TypeId) -> Option<&str> {
        let t = self.info(id)?;
        if t.kind == TypeKind::Backbone {
            return self.name(t.base);
        }
        Some(t.name.as_str())
    }
}
