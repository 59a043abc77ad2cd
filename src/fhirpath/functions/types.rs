//! Type functions and operators: `is`, `as`, `ofType`, `type()`, with FHIR types (model
//! hierarchy: Age is Quantity, Patient is DomainResource) and System types.
//!
//! Owns: matching an item against a type specifier.
//! Must not: navigate or convert values.

use super::{boolean, Call};
use crate::fhirpath::ast::{Func, Node, TypeSpec};
use crate::fhirpath::error::{eval_err, FhirPathError};
use crate::fhirpath::eval::{EvalResult, Evaluator};
use crate::fhirpath::model::{ModelInfo, TypeId, TypeKind};
use crate::fhirpath::value::{Collection, Item};
use serde_json::{json, Value};
use std::rc::Rc;

const SYSTEM_TYPES: [&str; 9] = [
    "Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity", "Any",
];

/// The System type of a computed item.
fn system_name(item: &Item) -> Option<&'static str> {
    Some(match item {
        Item::Bool(_) => "Boolean",
        Item::Int(_) => "Integer",
        Item::Dec(_) => "Decimal",
        Item::Str(_) => "String",
        Item::Date(_) => "Date",
        Item::DateTime(_) => "DateTime",
        Item::Time(_) => "Time",
        Item::Quantity(_) => "Quantity",
        Item::Node(_) | Item::Object(_) => return None,
    })
}

/// FHIR type name of a node whose type the model does not know, guessed from the JSON.
fn guessed_fhir_name(v: &Value) -> Option<&str> {
    match v {
        Value::Object(o) => o.get("resourceType").and_then(Value::as_str),
        Value::String(_) => Some("string"),
        Value::Bool(_) => Some("boolean"),
        Value::Number(n) if n.is_i64() => Some("integer"),
        Value::Number(_) => Some("decimal"),
        _ => None,
    }
}

/// Does `item` have type `ts`? `exact` (as/ofType on primitives) disables the hierarchy for
/// FHIR primitive types.
pub fn matches(
    model: &ModelInfo,
    item: &Item,
    ts: &TypeSpec,
    exact: bool,
) -> Result<bool, FhirPathError> {
    let ns = ts.namespace.as_deref();
    let name = ts.name.as_str();
    let fhir_target = if ns == Some("System") {
        TypeId::NONE
    } else {
        model.type_id(name)
    };
    let is_system = SYSTEM_TYPES.contains(&name);
    if ns.is_some_and(|n| n != "System" && n != "FHIR") {
        return eval_err(format!("unknown type namespace `{}`", ns.unwrap_or("")));
    }
    if !model.is_empty() && !fhir_target.is_known() && !is_system && ns != Some("System") {
        return eval_err(format!("unknown type `{name}`"));
    }
    match item {
        Item::Node(n) => {
            if ns == Some("System") {
                return Ok(false);
            }
            if n.ty.is_known() {
                if !fhir_target.is_known() {
                    return Ok(false);
                }
                if exact && model.kind(n.ty) == Some(TypeKind::Primitive) {
                    return Ok(n.ty == fhir_target);
                }
                return Ok(model.is_subtype(n.ty, fhir_target));
            }
            let guessed = guessed_fhir_name(n.value);
            if guessed == Some(name) {
                return Ok(true);
            }
            // abstract resource types without a model
            Ok(n.value.get("resourceType").is_some()
                && matches!(name, "Resource" | "DomainResource"))
        }
        Item::Object(_) => Ok(false),
        other => Ok(ns != Some("FHIR") && system_name(other) == Some(name)),
    }
}

pub fn is_op<'a>(ev: &Evaluator<'_, 'a>, input: &Collection<'a>, ts: &TypeSpec) -> EvalResult<'a> {
    match input.as_slice() {
        [] => Ok(Collection::new()),
        [x] => Ok(boolean(matches(ev.env.model, x, ts, false)?)),
        _ => eval_err("`is` expects a single item"),
    }
}

pub fn as_op<'a>(
    ev: &Evaluator<'_, 'a>,
    input: &Collection<'a>,
    ts: &TypeSpec,
    strict: bool,
) -> EvalResult<'a> {
    if strict && input.len() > 1 {
        return eval_err("as() expects a single item");
    }
    let mut out = Collection::new();
    for x in input {
        if matches(ev.env.model, x, ts, true)? {
            out.push(x.clone());
        }
    }
    Ok(out)
}

pub fn call<'a>(cx: &Call<'_, '_, 'a>, func: Func, input: Collection<'a>) -> EvalResult<'a> {
    let ts = match cx.args.first() {
        Some(Node::Type(ts)) => Some(ts),
        _ => None,
    };
    match (func, ts) {
        (Func::Is, Some(ts)) => is_op(cx.ev, &input, ts),
        // R4 invariants (dom-3: `descendants().as(canonical)`) use as() on collections, so the
        // function filters like ofType() except in strict mode.
        (Func::As, Some(ts)) => as_op(cx.ev, &input, ts, cx.ev.env.strict),
        (Func::OfType, Some(ts)) => as_op(cx.ev, &input, ts, false),
        (Func::Type, _) => {
            let model = cx.ev.env.model;
            Ok(input
                .iter()
                .map(|item| {
                    let (ns, name) = match system_name(item) {
                        Some(s) => ("System", s.to_string()),
                        None => match item {
                            Item::Node(n) => (
                                "FHIR",
                                model
                                    .public_name(n.ty)
                                    .or_else(|| guessed_fhir_name(n.value))
                                    .unwrap_or("Element")
                                    .to_string(),
                            ),
                            _ => ("System", "Any".to_string()),
                        },
                    };
                    Item::Object(Rc::new(json!({ "namespace": ns, "name": name })))
                })
                .collect())
        }
        _ => eval_err(format!("{}() expects a type name", func.name())),
    }
}
