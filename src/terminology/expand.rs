//! ValueSet `compose` evaluation over local CodeSystems (include/exclude, enumerated concepts,
//! whole code systems, nested ValueSets, filters is-a / descendent-of / is-not-a / = / in).
//!
//! Owns: the expansion algorithm. Must not: cache (the parent module does) or touch the network.

use super::{CodeSet, Expansion, Terminology};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

const MAX_DEPTH: usize = 8;

/// Systems that are never loaded locally and always need a terminology server.
fn server_only(system: &str) -> Option<&'static str> {
    match system {
        "http://snomed.info/sct" => Some("SNOMED CT"),
        "https://dmd.nhs.uk" => Some("dm+d"),
        "http://loinc.org" => Some("LOINC"),
        "http://unitsofmeasure.org" => Some("UCUM"),
        "urn:ietf:bcp:47" => Some("BCP-47 language tags"),
        "urn:ietf:bcp:13" => Some("BCP-13 MIME types"),
        _ => None,
    }
}

pub(super) fn expand_value_set(t: &Terminology, url: &str, depth: usize) -> Expansion {
    if depth > MAX_DEPTH {
        return Expansion::Incomplete(format!("ValueSet {url} nests too deeply"));
    }
    let Some(vs) = t.resolver().resolve(url) else {
        return Expansion::Incomplete(format!("ValueSet {url} is not loaded"));
    };
    if vs.get("resourceType").and_then(Value::as_str) != Some("ValueSet") {
        return Expansion::Incomplete(format!("{url} is not a ValueSet"));
    }
    if let Some(compose) = vs.get("compose") {
        return match compose_set(t, compose, depth) {
            Ok(set) => Expansion::Complete(set),
            Err(reason) => Expansion::Incomplete(reason),
        };
    }
    if let Some(contains) = vs.pointer("/expansion/contains").and_then(Value::as_array) {
        let mut set = CodeSet::default();
        add_contains(&mut set, contains);
        return Expansion::Complete(set);
    }
    Expansion::Incomplete(format!("ValueSet {url} has neither compose nor expansion"))
}

fn add_contains(set: &mut CodeSet, contains: &[Value]) {
    for c in contains {
        if let (Some(s), Some(code)) = (
            c.get("system").and_then(Value::as_str),
            c.get("code").and_then(Value::as_str),
        ) {
            set.insert(s, code);
        }
        if let Some(nested) = c.get("contains").and_then(Value::as_array) {
            add_contains(set, nested);
        }
    }
}

fn compose_set(t: &Terminology, compose: &Value, depth: usize) -> Result<CodeSet, String> {
    let mut set = CodeSet::default();
    for inc in compose
        .get("include")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let part = include_set(t, inc, depth)?;
        set.pairs.extend(part.pairs);
    }
    for exc in compose
        .get("exclude")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let part = include_set(t, exc, depth)?;
        set.pairs.retain(|p| !part.pairs.contains(p));
    }
    set.rebuild_codes();
    Ok(set)
}

fn include_set(t: &Terminology, inc: &Value, depth: usize) -> Result<CodeSet, String> {
    let mut acc: Option<HashSet<(String, String)>> = None;
    for vs in inc
        .get("valueSet")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(url) = vs.as_str() else { continue };
        let url = url.split('|').next().unwrap_or(url);
        let pairs = match expand_value_set(t, url, depth + 1) {
            Expansion::Complete(s) => s.pairs,
            Expansion::Incomplete(r) => return Err(r),
        };
        acc = Some(match acc {
            None => pairs,
            Some(a) => a.intersection(&pairs).cloned().collect(),
        });
    }
    if let Some(system) = inc.get("system").and_then(Value::as_str) {
        let mut pairs = HashSet::new();
        if let Some(concepts) = inc.get("concept").and_then(Value::as_array) {
            for c in concepts {
                if let Some(code) = c.get("code").and_then(Value::as_str) {
                    pairs.insert((system.to_string(), code.to_string()));
                }
            }
        } else {
            let cs = load_code_system(t, system)?;
            let filters = inc.get("filter").and_then(Value::as_array);
            let codes = match filters {
                Some(fs) => apply_filters(&cs, fs, system)?,
                None => cs.concepts.keys().cloned().collect(),
            };
            pairs.extend(codes.into_iter().map(|c| (system.to_string(), c)));
        }
        acc = Some(match acc {
            None => pairs,
            Some(a) => a.intersection(&pairs).cloned().collect(),
        });
    }
    let mut set = CodeSet {
        pairs: acc.unwrap_or_default(),
        codes: HashMap::default(),
    };
    set.rebuild_codes();
    Ok(set)
}

/// A flattened CodeSystem: code → (parents, properties).
/// (parent codes, (property, value) pairs) of one concept.
type ConceptInfo = (Vec<String>, Vec<(String, String)>);

struct FlatCodeSystem {
    concepts: HashMap<String, ConceptInfo>,
}

impl FlatCodeSystem {
    fn descendants(&self, code: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut stack = vec![code.to_string()];
        while let Some(c) = stack.pop() {
            for (k, (parents, _)) in &self.concepts {
                if parents.contains(&c) && out.insert(k.clone()) {
                    stack.push(k.clone());
                }
            }
        }
        out
    }
}

fn load_code_system(t: &Terminology, system: &str) -> Result<FlatCodeSystem, String> {
    if let Some(name) = server_only(system) {
        return Err(format!("{name} ({system}) needs a terminology server"));
    }
    let cs = t
        .resolver()
        .resolve(system)
        .filter(|v| v.get("resourceType").and_then(Value::as_str) == Some("CodeSystem"))
        .ok_or_else(|| format!("CodeSystem {system} is not loaded (needs a terminology server)"))?;
    let content = cs.get("content").and_then(Value::as_str).unwrap_or("");
    if content != "complete" {
        return Err(format!(
            "CodeSystem {system} is loaded with content '{content}', not complete"
        ));
    }
    let mut flat = FlatCodeSystem {
        concepts: HashMap::new(),
    };
    flatten(&mut flat, cs.get("concept").and_then(Value::as_array), None);
    Ok(flat)
}

fn flatten(flat: &mut FlatCodeSystem, concepts: Option<&Vec<Value>>, parent: Option<&str>) {
    for c in concepts.into_iter().flatten() {
        let Some(code) = c.get("code").and_then(Value::as_str) else {
            continue;
        };
        let mut parents: Vec<String> = parent.map(str::to_string).into_iter().collect();
        let mut props = Vec::new();
        for p in c
            .get("property")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(pc) = p.get("code").and_then(Value::as_str) else {
                continue;
            };
            let val = [
                "valueCode",
                "valueString",
                "valueBoolean",
                "valueInteger",
                "valueCoding",
            ]
            .iter()
            .find_map(|k| p.get(*k))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                other => other.to_string(),
            })
            .unwrap_or_default();
            if pc == "parent" || pc == "subsumedBy" {
                parents.push(val.clone());
            }
            props.push((pc.to_string(), val));
        }
        flat.concepts.insert(code.to_string(), (parents, props));
        flatten(flat, c.get("concept").and_then(Value::as_array), Some(code));
    }
}

fn apply_filters(
    cs: &FlatCodeSystem,
    filters: &[Value],
    system: &str,
) -> Result<HashSet<String>, String> {
    let mut result: HashSet<String> = cs.concepts.keys().cloned().collect();
    for f in filters {
        let prop = f.get("property").and_then(Value::as_str).unwrap_or("");
        let op = f.get("op").and_then(Value::as_str).unwrap_or("");
        let value = f.get("value").and_then(Value::as_str).unwrap_or("");
        let selected: HashSet<String> = match (prop, op) {
            ("concept", "is-a") => {
                let mut d = cs.descendants(value);
                if cs.concepts.contains_key(value) {
                    d.insert(value.to_string());
                }
                d
            }
            ("concept", "descendent-of") => cs.descendants(value),
            ("concept", "is-not-a") => {
                let mut d = cs.descendants(value);
                d.insert(value.to_string());
                cs.concepts
                    .keys()
                    .filter(|k| !d.contains(*k))
                    .cloned()
                    .collect()
            }
            ("concept" | "code", "=") => cs
                .concepts
                .keys()
                .filter(|k| *k == value)
                .cloned()
                .collect(),
            ("concept" | "code", "in") => {
                let wanted: HashSet<&str> = value.split(',').map(str::trim).collect();
                cs.concepts
                    .keys()
                    .filter(|k| wanted.contains(k.as_str()))
                    .cloned()
                    .collect()
            }
            (p, "=") => cs
                .concepts
                .iter()
                .filter(|(_, (_, props))| props.iter().any(|(k, v)| k == p && v == value))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => {
                return Err(format!(
                    "filter '{prop} {op}' on {system} cannot be evaluated locally"
                ))
            }
        };
        result.retain(|c| selected.contains(c));
    }
    Ok(result)
}

pub(super) fn expand_code_system(t: &Terminology, system: &str) -> Expansion {
    match load_code_system(t, system) {
        Ok(cs) => {
            let mut set = CodeSet::default();
            for k in cs.concepts.keys() {
                set.insert(system, k);
            }
            Expansion::Complete(set)
        }
        Err(r) => Expansion::Incomplete(r),
    }
}
