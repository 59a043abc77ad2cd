//! FHIR-specific functions: `extension(url)`, `hasValue()`, `getValue()`, `resolve()` (contained,
//! the resource itself, the enclosing Bundle), `htmlChecks()`, and `conformsTo()` / `memberOf()`
//! through the environment's hooks.
//!
//! Owns: the FHIR additions to FHIRPath for R4.
//! Must not: do terminology or profile validation itself (hooks do).

use super::{boolean, single, Call};
use crate::fhirpath::ast::Func;
use crate::fhirpath::error::{eval_err, FhirPathError};
use crate::fhirpath::eval::EvalResult;
use crate::fhirpath::value::{Collection, Item, Prim};
use serde_json::Value;

pub fn call<'a>(cx: &Call<'_, '_, 'a>, func: Func, input: Collection<'a>) -> EvalResult<'a> {
    let model = cx.ev.env.model;
    match func {
        Func::Extension => {
            let Some(url) = cx.str_arg(0)? else {
                return Ok(Collection::new());
            };
            let mut exts = Collection::new();
            for item in &input {
                cx.ev.child(item, "extension", &mut exts);
            }
            Ok(exts
                .into_iter()
                .filter(|e| matches!(e, Item::Node(n) if n.value.get("url").and_then(Value::as_str) == Some(url.as_str())))
                .collect())
        }
        Func::HasValue => Ok(boolean(match input.as_slice() {
            [Item::Node(n)] => !n.value.is_null() && !n.value.is_object() && !n.value.is_array(),
            [Item::Object(_)] => false,
            [_] => true,
            _ => false,
        })),
        Func::GetValue => Ok(match input.as_slice() {
            [Item::Node(n)] if !n.value.is_null() && !n.value.is_object() => {
                match input[0].prim(model) {
                    Prim::Bool(b) => smallvec::smallvec![Item::Bool(b)],
                    Prim::Int(i) => smallvec::smallvec![Item::Int(i)],
                    Prim::Dec(d) => smallvec::smallvec![Item::Dec(d)],
                    Prim::Date(d) => smallvec::smallvec![Item::Date(d)],
                    Prim::DateTime(d) => smallvec::smallvec![Item::DateTime(d)],
                    Prim::Time(d) => smallvec::smallvec![Item::Time(d)],
                    _ => match n.value {
                        Value::String(s) => smallvec::smallvec![Item::Str(
                            crate::fhirpath::value::Text::Borrowed(s)
                        )],
                        _ => Collection::new(),
                    },
                }
            }
            _ => Collection::new(),
        }),
        Func::Resolve => {
            let mut out = Collection::new();
            for item in &input {
                let reference = match item {
                    Item::Node(n) => match n.value {
                        Value::Object(o) => o.get("reference").and_then(Value::as_str),
                        Value::String(s) => Some(s.as_str()),
                        _ => None,
                    },
                    _ => None,
                };
                let owned;
                let reference = match (reference, item) {
                    (Some(r), _) => r,
                    (None, Item::Str(_)) => match item.prim(model) {
                        Prim::Str(s) => {
                            owned = s.to_string();
                            owned.as_str()
                        }
                        _ => continue,
                    },
                    _ => continue,
                };
                if let Some(v) = resolve_reference(cx, reference) {
                    out.push(Item::Node(cx.ev.env.resource_node(v)));
                }
            }
            Ok(out)
        }
        Func::HtmlChecks | Func::HtmlChecks2 => {
            let Some(item) = single(&input, "htmlChecks")? else {
                return Ok(boolean(false));
            };
            match item.prim(model) {
                Prim::Str(s) => Ok(boolean(html_ok(s))),
                _ => Ok(boolean(false)),
            }
        }
        Func::ConformsTo => {
            let Some(url) = cx.str_arg(0)? else {
                return Ok(Collection::new());
            };
            let mut out = Collection::new();
            for item in &input {
                let Item::Node(n) = item else {
                    return eval_err("conformsTo() expects FHIR content");
                };
                let tname = item.fhir_type_name(model);
                let ans = match cx.ev.env.profiles {
                    Some(h) => h
                        .conforms_to(n.value, tname, &url)
                        .map_err(FhirPathError::CannotEvaluate)?,
                    None => {
                        let Some(t) = url.strip_prefix("http://hl7.org/fhir/StructureDefinition/")
                        else {
                            return Err(FhirPathError::CannotEvaluate(format!(
                                "no profile source to check conformance to {url}"
                            )));
                        };
                        let target = model.type_id(t);
                        if !target.is_known() {
                            return Err(FhirPathError::CannotEvaluate(format!(
                                "unknown profile {url}"
                            )));
                        }
                        model.is_subtype(n.ty, target)
                    }
                };
                out.push(Item::Bool(ans));
            }
            Ok(out)
        }
        Func::MemberOf => {
            let Some(vs) = cx.str_arg(0)? else {
                return Ok(Collection::new());
            };
            let Some(item) = single(&input, "memberOf")? else {
                return Ok(Collection::new());
            };
            let Some(hook) = cx.ev.env.terminology else {
                return Err(FhirPathError::CannotEvaluate(format!(
                    "memberOf({vs}) needs terminology"
                )));
            };
            let value = match item {
                Item::Node(n) => n.value.clone(),
                other => other.to_json(model),
            };
            let ans = hook
                .member_of(&value, item.fhir_type_name(model), &vs)
                .map_err(FhirPathError::CannotEvaluate)?;
            Ok(boolean(ans))
        }
        _ => Err(FhirPathError::CannotEvaluate(format!(
            "{}() is not supported",
            func.name()
        ))),
    }
}

/// Finds the resource a reference points to: `#id` in contained resources (or `#` for the
/// container), the root resource itself, or an entry of the enclosing Bundle.
fn resolve_reference<'a>(cx: &Call<'_, '_, 'a>, reference: &str) -> Option<&'a Value> {
    let env = cx.ev.env;
    let containers = [env.resource, env.root_resource];
    if let Some(id) = reference.strip_prefix('#') {
        for c in containers.into_iter().flatten() {
            if id.is_empty() {
                return Some(c);
            }
            if let Some(found) = c.get("contained").and_then(Value::as_array).and_then(|cs| {
                cs.iter()
                    .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
            }) {
                return Some(found);
            }
        }
        return None;
    }
    let (ty, id) = {
        let mut parts = reference.rsplit('/');
        let id = parts.next()?;
        let ty = parts.next().unwrap_or("");
        // `Type/id/_history/n`
        if ty == "_history" {
            let mut p = reference.rsplitn(4, '/');
            let _ = p.next();
            let _ = p.next();
            let id = p.next()?;
            let ty = p.next().and_then(|s| s.rsplit('/').next()).unwrap_or("");
            (ty, id)
        } else {
            (ty, id)
        }
    };
    let matches = |r: &Value| {
        r.get("resourceType").and_then(Value::as_str) == Some(ty)
            && r.get("id").and_then(Value::as_str) == Some(id)
    };
    if let Some(bundle) = env.bundle {
        if let Some(entries) = bundle.get("entry").and_then(Value::as_array) {
            for e in entries {
                if e.get("fullUrl").and_then(Value::as_str) == Some(reference) {
                    return e.get("resource");
                }
            }
            for e in entries {
                if let Some(r) = e.get("resource") {
                    if matches(r) {
                        return Some(r);
                    }
                }
            }
        }
    }
    for c in containers.into_iter().flatten() {
        if matches(c) {
            return Some(c);
        }
        if let Some(found) = c
            .get("contained")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|r| matches(r)))
        {
            return Some(found);
        }
    }
    None
}

/// FHIR narrative rules: an XHTML `div`, no scripts, forms, frames, objects, head/body,
/// external stylesheets or event attributes, and some content.
pub fn html_ok(div: &str) -> bool {
    let t = div.trim_start();
    if !t.starts_with("<div") {
        return false;
    }
    let lower = div.to_ascii_lowercase();
    const FORBIDDEN: [&str; 12] = [
        "<script", "<form", "<iframe", "<frame", "<object", "<embed", "<applet", "<base", "<link",
        "<head", "<body", "<meta",
    ];
    if FORBIDDEN.iter().any(|f| {
        lower.match_indices(f).any(|(i, _)| {
            let next = lower.as_bytes().get(i + f.len()).copied().unwrap_or(b'>');
            !next.is_ascii_alphanumeric()
        })
    }) {
        return false;
    }
    // event attributes: whitespace, "on", letters, optional spaces, '=' inside a tag
    let bytes = lower.as_bytes();
    let mut in_tag = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => in_tag = true,
            b'>' => in_tag = false,
            b' ' | b'\t' | b'\n' | b'\r' if in_tag && lower[i + 1..].starts_with("on") => {
                let rest = &lower[i + 3..];
                let n = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
                if n > 0 && rest[n..].trim_start().starts_with('=') {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    // some content: text outside tags, or an image
    let mut depth = 0;
    let mut has_text = false;
    for c in div.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            c if depth == 0 && !c.is_whitespace() => {
                has_text = true;
                break;
            }
            _ => {}
        }
    }
    has_text || lower.contains("<img")
}
