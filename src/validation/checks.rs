//! Value-level checks on one element instance: fixed[x]/pattern[x], terminology bindings,
//! reference targets, and the NHS identifier rules (NHS Number Modulus 11, ODS code shape).
//!
//! Owns: those checks as `Walk` methods. Must not: traverse children (the walker does) or echo
//! patient data — NHS numbers and other identifier values never appear in diagnostics.

use super::model::{BindingStrength, ElementDef, TypeRef};
use super::walker::Walk;
use crate::fhirpath::JsonMember;
use crate::outcome::{IssueType, Severity};
use crate::terminology::Expansion;
use serde_json::{Map, Value};

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS_ORG_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const ODS_SITE_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-site-code";

/// NHS Number: 10 digits, Modulus 11 check digit (weights 10..2; 11 → 0; 10 → invalid).
pub fn nhs_number_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..9]
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * (10 - i as u32))
        .sum();
    let check = match 11 - (sum % 11) {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == u32::from(b[9] - b'0')
}

/// ODS code shape: 3 to 10 upper-case letters or digits (organisations are 3 characters such as
/// `RR8`, GP practices a letter and 5 digits such as `A81001`, sites and VCS organisations 5 such as
/// `RR801` / `8HK93`). Regex: `^[A-Z0-9]{3,10}$`.
pub fn ods_code_valid(s: &str) -> bool {
    (3..=10).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Deep "pattern" match: every member of `pattern` is present in `v`; arrays match item-wise
/// (each pattern item matches some instance item).
pub fn pattern_matches(pattern: &Value, v: &Value) -> bool {
    match (pattern, v) {
        (Value::Object(p), Value::Object(o)) => p
            .iter()
            .all(|(k, pv)| o.get(k).is_some_and(|ov| pattern_matches(pv, ov))),
        (Value::Array(p), Value::Array(o)) => p
            .iter()
            .all(|pv| o.iter().any(|ov| pattern_matches(pv, ov))),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => pattern == v,
    }
}

fn fixed_matches(fixed: &Value, v: &Value) -> bool {
    match (fixed, v) {
        (Value::Object(f), Value::Object(o)) => {
            f.len() == o.len()
                && f.iter()
                    .all(|(k, fv)| o.get(k).is_some_and(|ov| fixed_matches(fv, ov)))
        }
        (Value::Array(f), Value::Array(o)) => {
            f.len() == o.len() && f.iter().zip(o).all(|(a, b)| fixed_matches(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => fixed == v,
    }
}

impl<'a> Walk<'a> {
    pub(crate) fn fixed_pattern(&mut self, v: &Value, el: &ElementDef) {
        if let Some(f) = &el.fixed {
            if !fixed_matches(f, v) {
                self.error(
                    IssueType::Value,
                    format!("{} must have the fixed value {f}", el.path),
                );
            }
        }
        if let Some(p) = &el.pattern {
            if !pattern_matches(p, v) {
                self.error(
                    IssueType::Value,
                    format!("{} must match the pattern {p}", el.path),
                );
            }
        }
    }

    pub(crate) fn binding<'v>(&mut self, v: &'v Value, el: &ElementDef, type_code: &str) {
        let Some(b) = &el.binding else { return };
        // (system, code) pairs to test; system None = code-only primitive.
        let mut codes: [(Option<&str>, &str); 8] = [(None, ""); 8];
        let mut n = 0usize;
        let mut push = |s: Option<&'v str>, c: &'v str| {
            if n < codes.len() {
                codes[n] = (s, c);
                n += 1;
            }
        };
        match type_code {
            "code" | "string" | "uri" => match v.as_str() {
                Some(c) => push(None, c),
                None => return,
            },
            "Coding" | "Quantity" => match coding(v) {
                Some((s, c)) => push(s, c),
                None => return,
            },
            "CodeableConcept" => {
                for c in v
                    .member("coding")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some((s, code)) = coding(c) {
                        push(s, code);
                    }
                }
            }
            _ => return,
        }
        let exp = self.v.registry.expansion(b).clone();
        match &*exp {
            Expansion::Incomplete(reason) => {
                if b.strength == BindingStrength::Required {
                    self.issue(
                        Severity::Warning,
                        IssueType::NotSupported,
                        format!("{}: the required value set {} cannot be checked locally ({reason}); code not validated", el.path, b.value_set),
                    );
                } else {
                    let id = b.note_id;
                    if self.first_note(id) {
                        self.issue(
                            Severity::Information,
                            IssueType::NotSupported,
                            format!(
                                "Codes bound to value set {} were not checked: {reason}",
                                b.value_set
                            ),
                        );
                    }
                }
            }
            Expansion::Complete(set) => {
                let codes = &codes[..n];
                let ok = codes.iter().any(|(s, c)| match s {
                    Some(s) => set.contains(s, c),
                    None => set.contains_code(c),
                });
                if ok {
                    return;
                }
                let (sev, what) = match b.strength {
                    BindingStrength::Required => (Severity::Error, "required"),
                    BindingStrength::Extensible => (Severity::Warning, "extensible"),
                    BindingStrength::Preferred => (Severity::Information, "preferred"),
                    BindingStrength::Example => return,
                };
                let found = match codes.first() {
                    None => "no code".to_string(),
                    Some((Some(s), c)) => format!("code '{c}' (system {s})"),
                    Some((None, c)) => format!("code '{c}'"),
                };
                let code = if codes.is_empty() {
                    IssueType::Required
                } else {
                    IssueType::CodeInvalid
                };
                self.issue(
                    sev,
                    code,
                    format!(
                        "{}: {found} is not in the {what} value set {}",
                        el.path, b.value_set
                    ),
                );
            }
        }
    }

    pub(crate) fn nhs_identifier(&mut self, obj: &Map<String, Value>) {
        let Some(system) = obj.member("system").and_then(Value::as_str) else {
            return;
        };
        let value = obj.member("value").and_then(Value::as_str);
        let base_len = self.path.len();
        self.path.push_str(".value");
        match (system, value) {
            (NHS_NUMBER_SYSTEM, Some(v)) if !nhs_number_valid(v) => self.error(
                IssueType::Value,
                "Identifier.value is not a valid NHS Number: it must be 10 digits with a correct Modulus 11 check digit",
            ),
            (ODS_ORG_SYSTEM | ODS_SITE_SYSTEM, Some(v)) if !ods_code_valid(v) => self.error(
                IssueType::Value,
                format!("Identifier.value is not a valid ODS code for {system}: expected 3-10 upper-case letters or digits (^[A-Z0-9]{{3,10}}$)"),
            ),
            _ => {}
        }
        self.path.truncate(base_len);
    }

    pub(crate) fn reference(&mut self, obj: &'a Map<String, Value>, ty: &TypeRef) {
        if ty.target_types.is_empty() || ty.target_types.iter().any(|t| t == "Resource") {
            return;
        }
        let Some(r) = obj.member("reference").and_then(Value::as_str) else {
            if let Some(t) = obj.member("type").and_then(Value::as_str) {
                if !ty.target_types.iter().any(|x| x == t) {
                    self.at_child(
                        "",
                        format!(
                            "Reference.type {t} is not an allowed target ({})",
                            ty.target_types.join(", ")
                        ),
                    );
                }
            }
            return;
        };
        let Some(found) = self.referenced_type(r) else {
            return;
        };
        if !ty.target_types.iter().any(|t| t == found) {
            self.at_child(
                "",
                format!(
                    "Reference points to a {found}, but only {} are allowed here",
                    ty.target_types.join(", ")
                ),
            );
        }
    }

    /// Rules of `Bundle` the profile walk cannot see: a transaction/batch POST or PUT entry must
    /// carry a resource.
    pub(crate) fn bundle_rules(&mut self, obj: &Map<String, Value>) {
        let ty = obj.member("type").and_then(Value::as_str);
        if !matches!(ty, Some("transaction" | "batch")) {
            return;
        }
        let entries = obj.member("entry").and_then(Value::as_array);
        for (i, e) in entries.into_iter().flatten().enumerate() {
            let method = e
                .member("request")
                .and_then(|r| r.member("method"))
                .and_then(Value::as_str);
            if matches!(method, Some("POST" | "PUT")) && e.member("resource").is_none() {
                let base_len = self.path.len();
                super::walker::push_index(&mut self.path, i);
                self.path.insert_str(base_len, ".entry");
                self.path.push_str(".resource");
                self.error(
                    IssueType::Required,
                    format!(
                        "A {} entry of a {} Bundle must carry a resource",
                        method.unwrap_or(""),
                        ty.unwrap_or("")
                    ),
                );
                self.path.truncate(base_len);
            }
        }
    }

    /// A Coding whose system is a CodeSystem loaded with `content = complete` must use one of its
    /// codes (as the HL7 validator does), whatever the binding strength.
    pub(crate) fn coding_in_code_system(&mut self, obj: &Map<String, Value>) {
        let (Some(system), Some(code)) = (
            obj.member("system").and_then(Value::as_str),
            obj.member("code").and_then(Value::as_str),
        ) else {
            return;
        };
        if let Expansion::Complete(set) = &*self.v.registry.terminology.code_system(system) {
            if !set.contains_code(code) {
                let base_len = self.path.len();
                self.path.push_str(".code");
                self.error(
                    IssueType::CodeInvalid,
                    format!("Unknown code '{code}' in CodeSystem {system}"),
                );
                self.path.truncate(base_len);
            }
        }
    }

    fn at_child(&mut self, child: &str, msg: String) {
        let base_len = self.path.len();
        self.path.push_str(child);
        self.error(IssueType::Structure, msg);
        self.path.truncate(base_len);
    }

    /// The resource type a reference points at: contained (`#id`), Bundle entry (fullUrl), or the
    /// `Type/id` shape of relative and absolute RESTful references.
    pub(crate) fn referenced_type(&self, r: &'a str) -> Option<&'a str> {
        if let Some(id) = r.strip_prefix('#') {
            let contained = self.root.member("contained").and_then(Value::as_array)?;
            return contained
                .iter()
                .find(|c| c.member("id").and_then(Value::as_str) == Some(id))
                .and_then(|c| c.member("resourceType").and_then(Value::as_str));
        }
        if let Some(b) = self.bundle {
            let hit = b
                .member("entry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|e| e.member("fullUrl").and_then(Value::as_str) == Some(r));
            if let Some(e) = hit {
                return e
                    .member("resource")
                    .and_then(|r| r.member("resourceType"))
                    .and_then(Value::as_str);
            }
        }
        if r.starts_with("urn:") {
            return None;
        }
        // RESTful shape only: `Type/id[/_history/vid]`, optionally after an http(s) base.
        let absolute = r.starts_with("http://") || r.starts_with("https://");
        let segs: Vec<&str> = r.split('/').collect();
        let tail = match segs.len() {
            n if n >= 4 && segs[n - 2] == "_history" => &segs[..n - 2],
            _ => &segs[..],
        };
        if !absolute && tail.len() != 2 {
            return None;
        }
        let (ty, id) = match tail {
            [.., ty, id] => (*ty, *id),
            _ => return None,
        };
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        (id_ok && self.v.registry.is_resource_type(ty)).then_some(ty)
    }
}

fn coding(v: &Value) -> Option<(Option<&str>, &str)> {
    let code = v.member("code").and_then(Value::as_str)?;
    Some((v.member("system").and_then(Value::as_str), code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nhs_numbers() {
        assert!(nhs_number_valid("9434765919"));
        assert!(!nhs_number_valid("9434765918"));
        assert!(!nhs_number_valid("943476591"));
        assert!(ods_code_valid("A81001"));
        assert!(!ods_code_valid("a81001"));
    }

    #[test]
    fn patterns() {
        let p = json!({"coding":[{"system":"s","code":"c"}]});
        assert!(pattern_matches(
            &p,
            &json!({"coding":[{"system":"x","code":"y"},{"system":"s","code":"c","display":"d"}],"text":"t"})
        ));
        assert!(!pattern_matches(
            &p,
            &json!({"coding":[{"system":"s","code":"d"}]})
        ));
    }
}
