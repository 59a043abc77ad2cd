//! Native forms of common R4 invariants whose meaning depends on the focus type and the
//! invariant context (`%resource`, `%rootResource`): the Bundle rules (bdl-1/2/3/4/5/7/8/9/10/
//! 11/12), dom-6, ref-1, org-1, and the `a.exists() or b.exists() …` / `a.empty() or b.exists()`
//! shapes (pat-1, cpt-2, qty-3, att-1, prr-1, tim-*, UK Core ones).
//!
//! Owns: recognising those expressions by text and answering them natively for well-formed
//! input. Every path answers only when the focus is typed, every navigated name is a non-choice
//! element of its type and the JSON has the ordinary shape (no `_field` siblings, no nulls, the
//! expected JSON types); anything else returns `None` and the general evaluator decides. In debug
//! builds `Expression::check_invariant` re-evaluates every answer with the general evaluator and
//! asserts they agree, so every debug test run (fixtures, UK Core examples, invalid variants) is
//! an equivalence check; `tests` below adds edge cases.
//! Must not: answer anything whose result could differ from the general evaluator.

use super::eval::field;
use super::model::{ModelInfo, TypeId, TypeKind};
use super::value::JsonMember;
use super::value::NodeRef;
use super::InvariantInput;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedFast {
    /// `a.exists() or b.exists() or …`
    AnyExists(Vec<String>),
    /// `a.empty() or b.exists()`
    EmptyOrExists(String, String),
    /// org-1: `(identifier.count() + name.count()) > 0`
    CountSumPositive(String, String),
    Bdl1,
    Bdl2,
    Bdl3,
    Bdl4,
    Bdl7,
    /// bdl-8: `fullUrl.contains('/_history/').not()`
    Bdl8,
    /// bdl-9/10/11/12: `type = '<kind>' implies …` (answered only when the type differs)
    TypeImplies(&'static str),
    /// dom-6: ``text.`div`.exists()``
    Dom6,
    /// ref-1
    Ref1,
}

const BDL_1: &str = "total.empty()or(type='searchset')or(type='history')";
const BDL_2: &str = "entry.search.empty()or(type='searchset')";
const BDL_3: &str = "entry.all(request.exists()=(%resource.type='batch'or%resource.type='transaction'or%resource.type='history'))";
const BDL_4: &str = "entry.all(response.exists()=(%resource.type='batch-response'or%resource.type='transaction-response'or%resource.type='history'))";
const BDL_7: &str = "(type='history')orentry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()";
const BDL_8: &str = "fullUrl.contains('/_history/').not()";
const BDL_9: &str =
    "type='document'implies(identifier.system.exists()andidentifier.value.exists())";
const BDL_10: &str = "type='document'implies(timestamp.hasValue())";
const BDL_11: &str = "type='document'impliesentry.first().resource.is(Composition)";
const BDL_12: &str = "type='message'impliesentry.first().resource.is(MessageHeader)";
const DOM_6: &str = "text.`div`.exists()";
const REF_1: &str = "reference.startsWith('#').not()or(reference.substring(1).trace('url')in%rootResource.contained.id.trace('ids'))";
const ORG_1: &str = "(identifier.count()+name.count())>0";

fn ident(s: &str) -> Option<String> {
    let b = s.as_bytes();
    (!b.is_empty() && b[0].is_ascii_lowercase() && b.iter().all(u8::is_ascii_alphabetic))
        .then(|| s.to_string())
}

/// Recognises an expression (already stripped of whitespace outside quotes).
pub fn detect(norm: &str) -> Option<TypedFast> {
    Some(match norm {
        BDL_1 => TypedFast::Bdl1,
        BDL_2 => TypedFast::Bdl2,
        BDL_3 => TypedFast::Bdl3,
        BDL_4 => TypedFast::Bdl4,
        BDL_7 => TypedFast::Bdl7,
        BDL_8 => TypedFast::Bdl8,
        BDL_9 | BDL_10 | BDL_11 => TypedFast::TypeImplies("document"),
        BDL_12 => TypedFast::TypeImplies("message"),
        DOM_6 => TypedFast::Dom6,
        REF_1 => TypedFast::Ref1,
        ORG_1 => TypedFast::CountSumPositive("identifier".into(), "name".into()),
        _ => return detect_shape(norm),
    })
}

fn detect_shape(norm: &str) -> Option<TypedFast> {
    let terms: Vec<&str> = norm.split("()or").collect();
    let last = terms.len() - 1;
    let term = |i: usize, suffix: &str| -> Option<String> {
        let t = terms[i];
        let t = if i == last { t.strip_suffix("()")? } else { t };
        ident(t.strip_suffix(suffix)?)
    };
    if terms.len() == 2 {
        if let (Some(a), Some(b)) = (term(0, ".empty"), term(1, ".exists")) {
            return Some(TypedFast::EmptyOrExists(a, b));
        }
    }
    if terms.len() >= 2 {
        let names: Option<Vec<String>> = (0..terms.len()).map(|i| term(i, ".exists")).collect();
        return names.map(TypedFast::AnyExists);
    }
    None
}

/// `None` = let the general evaluator decide.
type Answer = Option<bool>;

/// An element of a typed object: `Some(None)` absent/empty, `Some(Some(v))` present (a non-null
/// value or an array without nulls), `None` for shapes the fast path does not answer.
fn elem<'a>(
    model: &ModelInfo,
    ty: TypeId,
    o: &'a Map<String, Value>,
    name: &str,
) -> Option<(Option<&'a Value>, TypeId)> {
    let (key, child_ty) = slot(model, ty, name)?;
    Some((read(o, key)?, child_ty))
}

/// The JSON key and type of element `name` of `ty` (`None`: unknown or a choice element).
fn slot<'m>(model: &'m ModelInfo, ty: TypeId, name: &str) -> Option<(&'m str, TypeId)> {
    let info = model.element(ty, name)?;
    if info.choice {
        return None;
    }
    let (key, child_ty) = info.types.first()?;
    (key == name).then_some((key.as_str(), *child_ty))
}

/// The value under `key` as `elem` describes it.
fn read<'a>(o: &'a Map<String, Value>, key: &str) -> Option<Option<&'a Value>> {
    let (v, ext) = field(o, key);
    if ext.is_some() {
        return None;
    }
    Some(match v {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::Array(a)) if a.iter().any(Value::is_null) => return None,
        Some(v) => Some(v),
    })
}

fn exists(model: &ModelInfo, ty: TypeId, o: &Map<String, Value>, name: &str) -> Option<bool> {
    elem(model, ty, o, name).map(|(v, _)| v.is_some())
}

fn count(model: &ModelInfo, ty: TypeId, o: &Map<String, Value>, name: &str) -> Option<usize> {
    Some(match elem(model, ty, o, name)?.0 {
        None => 0,
        Some(Value::Array(a)) => a.len(),
        Some(_) => 1,
    })
}

/// A single string element: `Some(None)` absent, `Some(Some(s))` a string.
fn string<'a>(
    model: &ModelInfo,
    ty: TypeId,
    o: &'a Map<String, Value>,
    name: &str,
) -> Option<Option<&'a str>> {
    match elem(model, ty, o, name)?.0 {
        None => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

/// The entries of a Bundle as objects, with the entry type.
fn entries<'a>(
    model: &ModelInfo,
    ty: TypeId,
    o: &'a Map<String, Value>,
) -> Option<(Vec<&'a Map<String, Value>>, TypeId)> {
    let (v, entry_ty) = elem(model, ty, o, "entry")?;
    let items: &[Value] = match v {
        None => &[],
        Some(Value::Array(a)) => a,
        Some(other) => std::slice::from_ref(other),
    };
    let objs: Option<Vec<_>> = items.iter().map(Value::as_object).collect();
    Some((objs?, entry_ty))
}

/// The focus type, as `EvalEnv::typed_node` computed it, when it names `want` (or any resource
/// type for `want = None`).
fn focus_is(model: &ModelInfo, focus: &NodeRef<'_>, want: Option<&str>) -> bool {
    if !focus.ty.is_known() {
        return false;
    }
    match want {
        Some(w) => model.name(focus.ty) == Some(w),
        None => model.kind(focus.ty) == Some(TypeKind::Resource),
    }
}

fn resource_type(model: &ModelInfo, v: &Value) -> Option<TypeId> {
    let ty = model.type_id(v.member("resourceType")?.as_str()?);
    ty.is_known().then_some(ty)
}

impl TypedFast {
    /// The invariant's answer at `focus` (true = satisfied), or `None` to use the general evaluator.
    pub fn eval(
        &self,
        model: &ModelInfo,
        focus: NodeRef<'_>,
        input: &InvariantInput<'_>,
    ) -> Answer {
        let o = focus.value.as_object()?;
        if focus.ext.is_some() || !focus.ty.is_known() {
            return None;
        }
        let ty = focus.ty;
        match self {
            TypedFast::AnyExists(names) => {
                let mut any = false;
                for n in names {
                    any |= exists(model, ty, o, n)?;
                }
                Some(any)
            }
            TypedFast::EmptyOrExists(a, b) => {
                let a = exists(model, ty, o, a)?;
                let b = exists(model, ty, o, b)?;
                Some(!a || b)
            }
            TypedFast::CountSumPositive(a, b) => {
                Some(count(model, ty, o, a)? + count(model, ty, o, b)? > 0)
            }
            TypedFast::Dom6 => {
                if !focus_is(model, &focus, None) {
                    return None;
                }
                let (text, text_ty) = elem(model, ty, o, "text")?;
                match text {
                    None => Some(false),
                    Some(Value::Object(t)) => exists(model, text_ty, t, "div"),
                    Some(_) => None,
                }
            }
            TypedFast::Ref1 => {
                if !focus_is(model, &focus, Some("Reference")) {
                    return None;
                }
                let Some(r) = string(model, ty, o, "reference")? else {
                    return Some(true);
                };
                let Some(id) = r.strip_prefix('#') else {
                    return Some(true);
                };
                if id.is_empty() {
                    return None;
                }
                let root = input.root_resource;
                let root_ty = resource_type(model, root)?;
                let (contained, _) = elem(model, root_ty, root.as_object()?, "contained")?;
                let items: &[Value] = match contained {
                    None => &[],
                    Some(Value::Array(a)) => a,
                    Some(_) => return None,
                };
                let mut found = false;
                for c in items {
                    let c_ty = resource_type(model, c)?;
                    if let Some(cid) = string(model, c_ty, c.as_object()?, "id")? {
                        found |= cid == id;
                    }
                }
                Some(found)
            }
            TypedFast::Bdl8 => {
                if !focus_is(model, &focus, Some("Bundle.entry")) {
                    return None;
                }
                Some(match string(model, ty, o, "fullUrl")? {
                    None => true,
                    Some(u) => !u.contains("/_history/"),
                })
            }
            _ => self.bundle(model, focus, o, input),
        }
    }

    /// The rules declared on the Bundle root.
    fn bundle(
        &self,
        model: &ModelInfo,
        focus: NodeRef<'_>,
        o: &Map<String, Value>,
        input: &InvariantInput<'_>,
    ) -> Answer {
        if !focus_is(model, &focus, Some("Bundle")) {
            return None;
        }
        let ty = focus.ty;
        let bundle_type = string(model, ty, o, "type")?;
        match self {
            TypedFast::Bdl1 => {
                if !exists(model, ty, o, "total")? {
                    return Some(true);
                }
                Some(bundle_type.is_none_or(|t| t == "searchset" || t == "history"))
            }
            TypedFast::Bdl2 => {
                let (es, ety) = entries(model, ty, o)?;
                let (search_key, _) = slot(model, ety, "search")?;
                let mut search = false;
                for e in es {
                    search |= read(e, search_key)?.is_some();
                }
                Some(!search || bundle_type.is_none_or(|t| t == "searchset"))
            }
            TypedFast::Bdl3 | TypedFast::Bdl4 => {
                let res = input.resource;
                let res_ty = resource_type(model, res)?;
                if model.name(res_ty) != Some("Bundle") {
                    return None;
                }
                let rt = string(model, res_ty, res.as_object()?, "type")??;
                let (member, expected) = if *self == TypedFast::Bdl3 {
                    ("request", matches!(rt, "batch" | "transaction" | "history"))
                } else {
                    (
                        "response",
                        matches!(rt, "batch-response" | "transaction-response" | "history"),
                    )
                };
                let (es, ety) = entries(model, ty, o)?;
                let (key, _) = slot(model, ety, member)?;
                let mut all = true;
                for e in es {
                    all &= read(e, key)?.is_some() == expected;
                }
                Some(all)
            }
            TypedFast::Bdl7 => {
                let (es, ety) = entries(model, ty, o)?;
                let mut keys: Vec<(&str, &str)> = Vec::with_capacity(es.len());
                let (url_key, _) = slot(model, ety, "fullUrl")?;
                let (res_key, _) = slot(model, ety, "resource")?;
                for e in es {
                    let url = match read(e, url_key)? {
                        None => continue,
                        Some(Value::String(u)) => u.as_str(),
                        Some(_) => return None,
                    };
                    let mut version = "";
                    if let Some(res) = read(e, res_key)? {
                        let res_ty = resource_type(model, res)?;
                        if let (Some(meta), meta_ty) =
                            elem(model, res_ty, res.as_object()?, "meta")?
                        {
                            version = string(model, meta_ty, meta.as_object()?, "versionId")?
                                .unwrap_or("");
                        }
                    }
                    keys.push((url, version));
                }
                if bundle_type == Some("history") {
                    return Some(true);
                }
                let concat_eq = |a: &(&str, &str), b: &(&str, &str)| {
                    a.0.len() + a.1.len() == b.0.len() + b.1.len()
                        && a.0
                            .bytes()
                            .chain(a.1.bytes())
                            .eq(b.0.bytes().chain(b.1.bytes()))
                };
                let distinct = keys
                    .iter()
                    .enumerate()
                    .all(|(i, a)| keys[..i].iter().all(|b| !concat_eq(a, b)));
                // `{} or false` is empty: satisfied when the type is absent.
                Some(distinct || bundle_type.is_none())
            }
            TypedFast::TypeImplies(kind) => match bundle_type {
                Some(t) if t != *kind => Some(true),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
