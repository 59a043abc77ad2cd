//! FHIRPath operators: equality/equivalence, comparison, three-valued boolean logic,
//! arithmetic (numbers, strings, quantities, date/time + duration), union, membership.
//!
//! Owns: operator semantics over collections.
//! Must not: navigate JSON or implement named functions.

use super::ast::{BinOp, Node};
use super::error::{eval_err, FhirPathError};
use super::eval::{EvalResult, Evaluator, Vars};
use super::quantity::Quantity;
use super::value::{item_equals, item_equivalent, prim_compare, Collection, Item, Prim};
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::rc::Rc;

/// Singleton evaluation of a collection as a boolean (empty → None).
pub fn to_bool(c: &[Item]) -> Result<Option<bool>, FhirPathError> {
    match c {
        [] => Ok(None),
        [Item::Bool(b)] => Ok(Some(*b)),
        [Item::Node(n)] => Ok(Some(n.value.as_bool().unwrap_or(true))),
        [_] => Ok(Some(true)),
        _ => eval_err("expected a single boolean, found a collection of several items"),
    }
}

fn bool_coll<'a>(b: Option<bool>) -> Collection<'a> {
    let mut c = Collection::new();
    if let Some(b) = b {
        c.push(Item::Bool(b));
    }
    c
}

pub fn binary<'a>(
    ev: &Evaluator<'_, 'a>,
    op: BinOp,
    l: &Node,
    r: &Node,
    focus: &[Item<'a>],
    vars: Vars<'_, 'a>,
) -> EvalResult<'a> {
    // short-circuit boolean operators
    match op {
        BinOp::And => {
            let a = to_bool(&ev.eval(l, focus, vars)?)?;
            if a == Some(false) {
                return Ok(bool_coll(Some(false)));
            }
            let b = to_bool(&ev.eval(r, focus, vars)?)?;
            return Ok(bool_coll(match (a, b) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }));
        }
        BinOp::Or => {
            let a = to_bool(&ev.eval(l, focus, vars)?)?;
            if a == Some(true) {
                return Ok(bool_coll(Some(true)));
            }
            let b = to_bool(&ev.eval(r, focus, vars)?)?;
            return Ok(bool_coll(match (a, b) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }));
        }
        BinOp::Implies => {
            let a = to_bool(&ev.eval(l, focus, vars)?)?;
            if a == Some(false) {
                return Ok(bool_coll(Some(true)));
            }
            let b = to_bool(&ev.eval(r, focus, vars)?)?;
            return Ok(bool_coll(match (a, b) {
                (_, Some(true)) => Some(true),
                (Some(true), Some(false)) => Some(false),
                _ => None,
            }));
        }
        BinOp::Xor => {
            let a = to_bool(&ev.eval(l, focus, vars)?)?;
            let b = to_bool(&ev.eval(r, focus, vars)?)?;
            return Ok(bool_coll(match (a, b) {
                (Some(x), Some(y)) => Some(x != y),
                _ => None,
            }));
        }
        _ => {}
    }
    let a = ev.eval(l, focus, vars)?;
    let b = ev.eval(r, focus, vars)?;
    apply(ev, op, a, b)
}

pub fn apply<'a>(
    ev: &Evaluator<'_, 'a>,
    op: BinOp,
    a: Collection<'a>,
    b: Collection<'a>,
) -> EvalResult<'a> {
    let model = ev.env.model;
    match op {
        BinOp::Eq | BinOp::Ne => {
            if a.is_empty() || b.is_empty() {
                return Ok(Collection::new());
            }
            let eq = if a.len() != b.len() {
                Some(false)
            } else {
                let mut res = Some(true);
                for (x, y) in a.iter().zip(&b) {
                    match item_equals(x, y, model) {
                        Some(true) => {}
                        Some(false) => {
                            res = Some(false);
                            break;
                        }
                        None => res = None,
                    }
                }
                res
            };
            Ok(bool_coll(if op == BinOp::Eq { eq } else { eq.map(|e| !e) }))
        }
        BinOp::Equiv | BinOp::NotEquiv => {
            let eq = if a.is_empty() && b.is_empty() {
                true
            } else if a.len() != b.len() {
                false
            } else {
                a.iter()
                    .all(|x| b.iter().any(|y| item_equivalent(x, y, model)))
            };
            Ok(bool_coll(Some(if op == BinOp::Equiv { eq } else { !eq })))
        }
        BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
            if a.is_empty() || b.is_empty() {
                return Ok(Collection::new());
            }
            if a.len() > 1 || b.len() > 1 {
                return eval_err("comparison operands must be single items");
            }
            let (pa, pb) = (a[0].prim(model), b[0].prim(model));
            let ord = match prim_compare(&pa, &pb) {
                Ok(o) => o,
                Err(()) => return eval_err("cannot compare values of these types"),
            };
            Ok(bool_coll(ord.map(|o| match op {
                BinOp::Lt => o == Ordering::Less,
                BinOp::Gt => o == Ordering::Greater,
                BinOp::Le => o != Ordering::Greater,
                _ => o != Ordering::Less,
            })))
        }
        BinOp::Union => {
            let mut out: Collection<'a> = Collection::with_capacity(a.len() + b.len());
            for x in a.into_iter().chain(b) {
                if !out.iter().any(|y| item_equals(&x, y, model) == Some(true)) {
                    out.push(x);
                }
            }
            Ok(out)
        }
        BinOp::In | BinOp::Contains => {
            let (needle, hay) = if op == BinOp::In { (a, b) } else { (b, a) };
            match needle.len() {
                0 => Ok(Collection::new()),
                1 => Ok(bool_coll(Some(
                    hay.iter()
                        .any(|y| item_equals(&needle[0], y, model) == Some(true)),
                ))),
                _ => eval_err("membership operand must be a single item"),
            }
        }
        BinOp::Concat => {
            let s = |c: &Collection<'a>| -> Result<String, FhirPathError> {
                match c.as_slice() {
                    [] => Ok(String::new()),
                    [x] => Ok(match x.prim(model) {
                        Prim::Str(s) => s.to_string(),
                        _ => return eval_err("`&` expects strings"),
                    }),
                    _ => eval_err("`&` operands must be single items"),
                }
            };
            Ok(smallvec::smallvec![Item::Str((s(&a)? + &s(&b)?).into())])
        }
        _ => arithmetic(ev, op, a, b),
    }
}

fn arithmetic<'a>(
    ev: &Evaluator<'_, 'a>,
    op: BinOp,
    a: Collection<'a>,
    b: Collection<'a>,
) -> EvalResult<'a> {
    if a.is_empty() || b.is_empty() {
        return Ok(Collection::new());
    }
    if a.len() > 1 || b.len() > 1 {
        return eval_err("arithmetic operands must be single items");
    }
    let model = ev.env.model;
    let (pa, pb) = (a[0].prim(model), b[0].prim(model));
    let dec = |x: &Prim| super::value::as_decimal(x);
    let item = match (&pa, &pb, op) {
        (Prim::Int(x), Prim::Int(y), BinOp::Add) => x.checked_add(*y).map(Item::Int),
        (Prim::Int(x), Prim::Int(y), BinOp::Sub) => x.checked_sub(*y).map(Item::Int),
        (Prim::Int(x), Prim::Int(y), BinOp::Mul) => x.checked_mul(*y).map(Item::Int),
        (Prim::Int(x), Prim::Int(y), BinOp::IntDiv) => x.checked_div(*y).map(Item::Int),
        (Prim::Int(x), Prim::Int(y), BinOp::Mod) => x.checked_rem(*y).map(Item::Int),
        (Prim::Str(x), Prim::Str(y), BinOp::Add) => Some(Item::Str(format!("{x}{y}").into())),
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_), _) => {
            let (Some(x), Some(y)) = (dec(&pa), dec(&pb)) else {
                return Ok(Collection::new());
            };
            match op {
                BinOp::Add => x.checked_add(y).map(Item::Dec),
                BinOp::Sub => x.checked_sub(y).map(Item::Dec),
                BinOp::Mul => x.checked_mul(y).map(Item::Dec),
                BinOp::Div => {
                    if y.is_zero() {
                        None
                    } else {
                        x.checked_div(y).map(|d| Item::Dec(d.normalize()))
                    }
                }
                BinOp::IntDiv => {
                    if y.is_zero() {
                        None
                    } else {
                        x.checked_div(y)
                            .and_then(|d| i64::try_from(d.trunc()).ok())
                            .map(Item::Int)
                    }
                }
                BinOp::Mod => {
                    if y.is_zero() {
                        None
                    } else {
                        x.checked_rem(y).map(Item::Dec)
                    }
                }
                _ => None,
            }
        }
        (Prim::Quantity(x), Prim::Quantity(y), BinOp::Add | BinOp::Sub) => {
            let yv = if x.unit == y.unit {
                Some(y.value)
            } else {
                None
            };
            match yv {
                Some(v) => {
                    let value = if op == BinOp::Add {
                        x.value.checked_add(v)
                    } else {
                        x.value.checked_sub(v)
                    };
                    value.map(|value| {
                        Item::Quantity(Rc::new(Quantity {
                            value,
                            unit: x.unit.clone(),
                        }))
                    })
                }
                None => None,
            }
        }
        (Prim::Quantity(x), Prim::Quantity(y), BinOp::Mul | BinOp::Div) => x
            .mul_div(y, op == BinOp::Div)
            .map(|q| Item::Quantity(Rc::new(q))),
        (Prim::Quantity(x), Prim::Int(_) | Prim::Dec(_), BinOp::Mul | BinOp::Div) => {
            let y = dec(&pb).unwrap_or(Decimal::ONE);
            let v = if op == BinOp::Mul {
                x.value.checked_mul(y)
            } else {
                x.value.checked_div(y)
            };
            v.map(|value| {
                Item::Quantity(Rc::new(Quantity {
                    value,
                    unit: x.unit.clone(),
                }))
            })
        }
        (
            Prim::Date(d) | Prim::DateTime(d) | Prim::Time(d),
            Prim::Quantity(q),
            BinOp::Add | BinOp::Sub,
        ) => {
            let v = q.value.trunc();
            let Ok(mut n) = i64::try_from(v) else {
                return Ok(Collection::new());
            };
            if op == BinOp::Sub {
                n = -n;
            }
            let Some(r) = d.add(n, &q.unit) else {
                return eval_err(format!(
                    "cannot add a quantity in `{}` to a date/time",
                    q.unit
                ));
            };
            Some(match pa {
                Prim::Date(_) => Item::Date(r),
                Prim::Time(_) => Item::Time(r),
                _ => Item::DateTime(r),
            })
        }
        _ => {
            return eval_err(format!(
                "operator {op:?} is not defined for these operand types"
            ))
        }
    };
    Ok(item.into_iter().collect())
}

pub fn negate<'a>(ev: &Evaluator<'_, 'a>, v: Collection<'a>) -> EvalResult<'a> {
    match v.as_slice() {
        [] => Ok(Collection::new()),
        [x] => Ok(match x.prim(ev.env.model) {
            Prim::Int(i) => match i.checked_neg() {
                Some(n) => smallvec::smallvec![Item::Int(n)],
                None => Collection::new(),
            },
            Prim::Dec(d) if d.is_zero() => smallvec::smallvec![Item::Dec(d.abs())],
            Prim::Dec(d) => smallvec::smallvec![Item::Dec(-d)],
            Prim::Quantity(q) => smallvec::smallvec![Item::Quantity(Rc::new(Quantity {
                value: -q.value,
                unit: q.unit,
            }))],
            _ => return eval_err("unary minus expects a number or quantity"),
        }),
        _ => eval_err("unary minus expects a single item"),
    }
}
