//! Math functions: abs, ceiling, exp, floor, ln, log, power, round, sqrt, truncate.
//!
//! Owns: numeric functions (decimal arithmetic where exact, f64 for transcendental ones).
//! Must not: navigate JSON.

use super::{single, Call};
use crate::fhirpath::ast::Func;
use crate::fhirpath::error::eval_err;
use crate::fhirpath::eval::EvalResult;
use crate::fhirpath::quantity::Quantity;
use crate::fhirpath::value::{as_decimal, Collection, Item, Prim};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use std::rc::Rc;

fn from_f64<'a>(f: f64) -> Collection<'a> {
    if !f.is_finite() {
        return Collection::new();
    }
    Decimal::from_f64(f)
        .map(|d| Item::Dec(d.normalize()))
        .into_iter()
        .collect()
}

fn to_int<'a>(d: Decimal) -> Collection<'a> {
    d.to_i64().map(Item::Int).into_iter().collect()
}

pub fn call<'a>(cx: &Call<'_, '_, 'a>, func: Func, input: Collection<'a>) -> EvalResult<'a> {
    let model = cx.ev.env.model;
    let Some(item) = single(&input, func.name())? else {
        return Ok(Collection::new());
    };
    let p = item.prim(model);
    if let (Func::Abs, Prim::Quantity(q)) = (func, &p) {
        return Ok(smallvec::smallvec![Item::Quantity(Rc::new(Quantity {
            value: q.value.abs(),
            unit: q.unit.clone(),
        }))]);
    }
    let Some(d) = as_decimal(&p) else {
        return eval_err(format!("{}() expects a number", func.name()));
    };
    let is_int = matches!(p, Prim::Int(_));
    let f = d.to_f64().unwrap_or(f64::NAN);
    Ok(match func {
        Func::Abs => {
            if is_int {
                to_int(d.abs())
            } else {
                smallvec::smallvec![Item::Dec(d.abs())]
            }
        }
        Func::Ceiling => to_int(d.ceil()),
        Func::Floor => to_int(d.floor()),
        Func::Truncate => to_int(d.trunc()),
        Func::Round => {
            let dp = cx.int_arg(0)?.unwrap_or(0);
            if dp < 0 {
                return eval_err("round() precision must be >= 0");
            }
            smallvec::smallvec![Item::Dec(d.round_dp(dp.min(28) as u32))]
        }
        Func::Exp => from_f64(f.exp()),
        Func::Ln => from_f64(f.ln()),
        Func::Sqrt => from_f64(f.sqrt()),
        Func::Log => {
            let base = cx.arg(0)?;
            let Some(b) = single(&base, "log")?.and_then(|b| as_decimal(&b.prim(model))) else {
                return Ok(Collection::new());
            };
            from_f64(f.ln() / b.to_f64().unwrap_or(f64::NAN).ln())
        }
        Func::Power => {
            let e = cx.arg(0)?;
            let Some(ep) = single(&e, "power")?.map(|x| x.prim(model)) else {
                return Ok(Collection::new());
            };
            match (&p, &ep) {
                (Prim::Int(b), Prim::Int(x)) if *x >= 0 => u32::try_from(*x)
                    .ok()
                    .and_then(|x| b.checked_pow(x))
                    .map(Item::Int)
                    .into_iter()
                    .collect(),
                _ => {
                    let Some(x) = as_decimal(&ep) else {
                        return eval_err("power() expects a number");
                    };
                    from_f64(f.powf(x.to_f64().unwrap_or(f64::NAN)))
                }
            }
        }
        _ => return eval_err(format!("{}() is not a math function", func.name())),
    })
}
