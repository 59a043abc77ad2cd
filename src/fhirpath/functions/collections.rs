//! Existence, filtering/projection, subsetting, combining, tree navigation, aggregate, sort,
//! iif, not and trace.
//!
//! Owns: the collection-level FHIRPath functions.
//! Must not: implement string/math/type functions.

use super::{boolean, single, Call};
use crate::fhirpath::ast::{Func, Node};
use crate::fhirpath::error::{eval_err, FhirPathError};
use crate::fhirpath::eval::{depth_ok, EvalResult, Vars};
use crate::fhirpath::model::TypeId;
use crate::fhirpath::operators::to_bool;
use crate::fhirpath::value::{item_equals, prim_compare, Collection, Item, NodeRef};
use serde_json::Value;
use std::cmp::Ordering;

/// Identity for nodes (same JSON node), equality for computed values.
pub fn same_item(a: &Item, b: &Item, model: &crate::fhirpath::model::ModelInfo) -> bool {
    match (a, b) {
        (Item::Node(x), Item::Node(y)) => {
            std::ptr::eq(x.value, y.value)
                && match (x.ext, y.ext) {
                    (Some(p), Some(q)) => std::ptr::eq(p, q),
                    (None, None) => true,
                    _ => false,
                }
                && (!x.value.is_null() || x.ext.is_some())
        }
        (Item::Node(_), _) | (_, Item::Node(_)) => false,
        _ => item_equals(a, b, model) == Some(true),
    }
}

fn strict_bool(c: &[Item]) -> Result<bool, FhirPathError> {
    match c {
        [] => Ok(false),
        [Item::Bool(b)] => Ok(*b),
        [Item::Node(n)] if n.value.is_boolean() => Ok(n.value.as_bool().unwrap_or(false)),
        _ => eval_err("iif() criterion must be a single boolean"),
    }
}

fn bools(c: &[Item], name: &str) -> Result<Vec<bool>, FhirPathError> {
    c.iter()
        .map(|i| match i {
            Item::Bool(b) => Ok(*b),
            Item::Node(n) if n.value.is_boolean() => Ok(n.value.as_bool().unwrap_or(false)),
            _ => eval_err(format!("{name}() expects booleans")),
        })
        .collect()
}

pub fn call<'a>(cx: &Call<'_, '_, 'a>, func: Func, input: Collection<'a>) -> EvalResult<'a> {
    let model = cx.ev.env.model;
    Ok(match func {
        Func::Empty => boolean(input.is_empty()),
        Func::Exists => {
            if cx.args.is_empty() {
                boolean(!input.is_empty())
            } else {
                for (i, item) in input.iter().enumerate() {
                    if to_bool(&cx.lambda(0, item, i)?)? == Some(true) {
                        return Ok(boolean(true));
                    }
                }
                boolean(false)
            }
        }
        Func::All => {
            for (i, item) in input.iter().enumerate() {
                if to_bool(&cx.lambda(0, item, i)?)? != Some(true) {
                    return Ok(boolean(false));
                }
            }
            boolean(true)
        }
        Func::AllTrue => boolean(bools(&input, "allTrue")?.iter().all(|b| *b)),
        Func::AnyTrue => boolean(bools(&input, "anyTrue")?.iter().any(|b| *b)),
        Func::AllFalse => boolean(bools(&input, "allFalse")?.iter().all(|b| !*b)),
        Func::AnyFalse => boolean(bools(&input, "anyFalse")?.iter().any(|b| !*b)),
        Func::SubsetOf | Func::SupersetOf => {
            let other = cx.arg(0)?;
            let (sub, sup) = if func == Func::SubsetOf {
                (&input, &other)
            } else {
                (&other, &input)
            };
            boolean(
                sub.iter()
                    .all(|x| sup.iter().any(|y| item_equals(x, y, model) == Some(true))),
            )
        }
        Func::Count => smallvec::smallvec![Item::Int(input.len() as i64)],
        Func::Distinct => distinct(input, model),
        Func::IsDistinct => {
            let n = input.len();
            boolean(distinct(input, model).len() == n)
        }
        Func::Where => {
            let mut out = Collection::new();
            for (i, item) in input.into_iter().enumerate() {
                if to_bool(&cx.lambda(0, &item, i)?)? == Some(true) {
                    out.push(item);
                }
            }
            out
        }
        Func::Select => {
            let mut out = Collection::new();
            for (i, item) in input.iter().enumerate() {
                out.extend(cx.lambda(0, item, i)?);
            }
            out
        }
        Func::Repeat => {
            let mut out: Collection<'a> = Collection::new();
            let mut frontier = input;
            let mut rounds = 0;
            while !frontier.is_empty() {
                rounds += 1;
                if rounds > 10_000 {
                    return eval_err("repeat() did not terminate");
                }
                let mut next = Collection::new();
                for (i, item) in frontier.iter().enumerate() {
                    for r in cx.lambda(0, item, i)? {
                        if !out.iter().any(|o| same_item(o, &r, model)) {
                            out.push(r.clone());
                            next.push(r);
                        }
                    }
                }
                frontier = next;
            }
            out
        }
        Func::Single => single(&input, "single")?.cloned().into_iter().collect(),
        Func::First => input.into_iter().take(1).collect(),
        Func::Last => input.into_iter().last().into_iter().collect(),
        Func::Tail => input.into_iter().skip(1).collect(),
        Func::Skip => {
            let n = cx.int_arg(0)?.unwrap_or(0);
            input
                .into_iter()
                .skip(usize::try_from(n).unwrap_or(0))
                .collect()
        }
        Func::Take => {
            let n = cx.int_arg(0)?.unwrap_or(0);
            input
                .into_iter()
                .take(usize::try_from(n).unwrap_or(0))
                .collect()
        }
        Func::Intersect => {
            let other = cx.arg(0)?;
            let mut out: Collection<'a> = Collection::new();
            for x in input {
                if other
                    .iter()
                    .any(|y| item_equals(&x, y, model) == Some(true))
                    && !out.iter().any(|o| item_equals(o, &x, model) == Some(true))
                {
                    out.push(x);
                }
            }
            out
        }
        Func::Exclude => {
            let other = cx.arg(0)?;
            input
                .into_iter()
                .filter(|x| !other.iter().any(|y| item_equals(x, y, model) == Some(true)))
                .collect()
        }
        Func::Union => {
            let other = cx.arg(0)?;
            return crate::fhirpath::operators::apply(
                cx.ev,
                crate::fhirpath::ast::BinOp::Union,
                input,
                other,
            );
        }
        Func::Combine => {
            let mut out = input;
            out.extend(cx.arg(0)?);
            out
        }
        Func::Iif => {
            if cx.has_target && input.len() > 1 {
                return eval_err("iif() expects a single input item");
            }
            let (focus, vars): (&[Item<'a>], Vars<'_, 'a>) = match (cx.has_target, input.first()) {
                (true, Some(item)) => (
                    std::slice::from_ref(item),
                    Vars {
                        this: Some(item),
                        index: Some(0),
                        total: cx.vars.total,
                    },
                ),
                (true, None) => (&[], cx.vars),
                _ => (cx.focus, cx.vars),
            };
            let crit = cx.ev.eval(&cx.args[0], focus, vars)?;
            let branch = if strict_bool(&crit)? {
                cx.args.get(1)
            } else {
                cx.args.get(2)
            };
            match branch {
                Some(n) => cx.ev.eval(n, focus, vars)?,
                None => Collection::new(),
            }
        }
        Func::Not => match to_bool(&input)? {
            Some(b) => boolean(!b),
            None => Collection::new(),
        },
        Func::Aggregate => {
            let mut total = match cx.args.get(1) {
                Some(_) => cx.arg(1)?,
                None => Collection::new(),
            };
            for (i, item) in input.iter().enumerate() {
                let vars = Vars {
                    this: Some(item),
                    index: Some(i),
                    total: Some(&total),
                };
                let next = cx.ev.eval(&cx.args[0], std::slice::from_ref(item), vars)?;
                total = next;
            }
            total
        }
        Func::Sort => sort(cx, input)?,
        Func::Trace => input,
        Func::Children => {
            let mut out = Collection::new();
            for item in &input {
                children(cx, item, &mut out);
            }
            out
        }
        Func::Descendants => {
            let mut out = Collection::new();
            let mut frontier = input;
            let mut depth = 0;
            while !frontier.is_empty() {
                depth += 1;
                depth_ok(depth)?;
                let mut next = Collection::new();
                for item in &frontier {
                    children(cx, item, &mut next);
                }
                out.extend(next.iter().cloned());
                frontier = next;
            }
            out
        }
        _ => return eval_err(format!("{}() is not a collection function", func.name())),
    })
}

fn distinct<'a>(
    input: Collection<'a>,
    model: &crate::fhirpath::model::ModelInfo,
) -> Collection<'a> {
    let mut out: Collection<'a> = Collection::with_capacity(input.len());
    for x in input {
        if !out.iter().any(|y| item_equals(&x, y, model) == Some(true)) {
            out.push(x);
        }
    }
    out
}

/// All child nodes of a node (every property; choice elements keep their type).
pub fn children<'a>(cx: &Call<'_, '_, 'a>, item: &Item<'a>, out: &mut Collection<'a>) {
    let Item::Node(n) = item else { return };
    if let Some(Value::Object(e)) = n.ext {
        if !n.value.is_object() {
            for name in ["id", "extension"] {
                cx.ev.child(item, name, out);
            }
            let _ = e;
            return;
        }
    }
    let Value::Object(obj) = n.value else { return };
    let model = cx.ev.env.model;
    for (k, v) in obj {
        if k == "resourceType" {
            continue;
        }
        let key = match k.strip_prefix('_') {
            Some(base) if obj.contains_key(base) => continue,
            Some(base) => base,
            None => k.as_str(),
        };
        if model.element(n.ty, key).is_some() || !n.ty.is_known() {
            cx.ev.child(item, key, out);
            continue;
        }
        // a choice element such as valueQuantity: find its stem
        let stem = key
            .char_indices()
            .filter(|(i, c)| *i > 0 && c.is_ascii_uppercase())
            .map(|(i, _)| &key[..i])
            .find(|s| model.element(n.ty, s).is_some_and(|e| e.choice));
        match stem {
            Some(s) => {
                let ty = model
                    .element(n.ty, s)
                    .and_then(|e| e.types.iter().find(|(jk, _)| jk == key).map(|(_, t)| *t))
                    .unwrap_or(TypeId::NONE);
                let start = out.len();
                cx.ev.child(
                    &Item::Node(NodeRef {
                        value: n.value,
                        ext: None,
                        ty: n.ty,
                    }),
                    s,
                    out,
                );
                if out.len() == start {
                    out.push(Item::node(v, ty));
                }
            }
            None => out.push(Item::node(v, TypeId::NONE)),
        }
    }
}

fn sort<'a>(cx: &Call<'_, '_, 'a>, input: Collection<'a>) -> EvalResult<'a> {
    let model = cx.ev.env.model;
    let mut keyed: Vec<(Vec<Collection<'a>>, Item<'a>)> = Vec::with_capacity(input.len());
    let mut desc = Vec::new();
    for arg in cx.args {
        desc.push(matches!(arg, Node::Neg(_)));
    }
    for (i, item) in input.into_iter().enumerate() {
        let mut keys = Vec::new();
        for arg in cx.args {
            let expr = match arg {
                Node::Neg(inner) => &**inner,
                other => other,
            };
            let vars = Vars {
                this: Some(&item),
                index: Some(i),
                total: None,
            };
            keys.push(cx.ev.eval(expr, std::slice::from_ref(&item), vars)?);
        }
        if cx.args.is_empty() {
            keys.push(smallvec::smallvec![item.clone()]);
            desc.push(false);
        }
        keyed.push((keys, item));
    }
    let mut err = None;
    keyed.sort_by(|(ka, _), (kb, _)| {
        for (j, (a, b)) in ka.iter().zip(kb).enumerate() {
            let reverse = desc.get(j).copied().unwrap_or(false);
            // empty keys sort first in both directions
            let o = match (a.first(), b.first()) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => {
                    let o = match prim_compare(&x.prim(model), &y.prim(model)) {
                        Ok(o) => o.unwrap_or(Ordering::Equal),
                        Err(()) => {
                            err = Some(());
                            Ordering::Equal
                        }
                    };
                    if reverse {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    if err.is_some() {
        return eval_err("sort() keys are not comparable");
    }
    Ok(keyed.into_iter().map(|(_, i)| i).collect())
}
