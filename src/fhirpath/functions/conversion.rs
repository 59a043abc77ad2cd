//! Conversion functions (`toX()` / `convertsToX()`), current date/time, boundaries, precision
//! and `comparable()`.
//!
//! Owns: conversions between System types.
//! Must not: navigate JSON.

use super::{boolean, single, Call};
use crate::fhirpath::ast::Func;
use crate::fhirpath::datetime::{PartialDate, DAY, HOUR, MILLI};
use crate::fhirpath::error::{eval_err, FhirPathError};
use crate::fhirpath::eval::EvalResult;
use crate::fhirpath::model::ModelInfo;
use crate::fhirpath::quantity::Quantity;
use crate::fhirpath::value::{Collection, Item, Prim};
use rust_decimal::{Decimal, RoundingStrategy};
use std::rc::Rc;
use std::str::FromStr;

fn is_integer_text(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
}

fn is_decimal_text(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    match t.split_once('.') {
        Some((a, b)) => {
            is_integer_text(a)
                && !a.starts_with(['+', '-'])
                && !b.is_empty()
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => is_integer_text(t) && !t.starts_with(['+', '-']),
    }
}

/// Converts one item; `Ok(None)` when not convertible.
fn convert<'a>(
    model: &ModelInfo,
    item: &Item<'a>,
    func: Func,
) -> Result<Option<Item<'a>>, FhirPathError> {
    let p = item.prim(model);
    Ok(match func {
        Func::ToBoolean => match p {
            Prim::Bool(b) => Some(Item::Bool(b)),
            Prim::Int(1) => Some(Item::Bool(true)),
            Prim::Int(0) => Some(Item::Bool(false)),
            Prim::Dec(d) if d == Decimal::ONE => Some(Item::Bool(true)),
            Prim::Dec(d) if d.is_zero() => Some(Item::Bool(false)),
            Prim::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(Item::Bool(true)),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(Item::Bool(false)),
                _ => None,
            },
            _ => None,
        },
        Func::ToInteger => match p {
            Prim::Int(i) => Some(Item::Int(i)),
            Prim::Bool(b) => Some(Item::Int(b as i64)),
            Prim::Str(s) if is_integer_text(s) => s.parse::<i64>().ok().map(Item::Int),
            _ => None,
        },
        Func::ToDecimal => match p {
            Prim::Int(i) => Some(Item::Dec(Decimal::from(i))),
            Prim::Dec(d) => Some(Item::Dec(d)),
            Prim::Bool(b) => Some(Item::Dec(if b { Decimal::ONE } else { Decimal::ZERO })),
            Prim::Str(s) if is_decimal_text(s) => Decimal::from_str(s).ok().map(Item::Dec),
            _ => None,
        },
        Func::ToStringFn => Some(Item::Str(
            match p {
                Prim::Str(s) => s.to_string(),
                Prim::Int(i) => i.to_string(),
                Prim::Dec(d) => d.to_string(),
                Prim::Bool(b) => b.to_string(),
                Prim::Date(d) => d.format_date(),
                Prim::DateTime(d) => d.format_datetime(),
                Prim::Time(t) => t.format_time(),
                Prim::Quantity(q) => q.format(),
                Prim::Complex => return Ok(None),
            }
            .into(),
        )),
        Func::ToDate => match p {
            Prim::Date(d) => Some(Item::Date(d)),
            Prim::DateTime(d) => Some(Item::Date(truncate_to_date(d))),
            Prim::Str(s) => PartialDate::parse_date(s)
                .or_else(|| PartialDate::parse_datetime(s).map(truncate_to_date))
                .map(Item::Date),
            _ => None,
        },
        Func::ToDateTime => match p {
            Prim::Date(d) | Prim::DateTime(d) => Some(Item::DateTime(d)),
            Prim::Str(s) => PartialDate::parse_datetime(s).map(Item::DateTime),
            _ => None,
        },
        Func::ToTime => match p {
            Prim::Time(t) => Some(Item::Time(t)),
            Prim::Str(s) => PartialDate::parse_time(s).map(Item::Time),
            _ => None,
        },
        Func::ToQuantity => match p {
            Prim::Int(i) => Some(Quantity::new(Decimal::from(i), "1")),
            Prim::Dec(d) => Some(Quantity::new(d, "1")),
            Prim::Bool(b) => Some(Quantity::new(
                if b { Decimal::ONE } else { Decimal::ZERO },
                "1",
            )),
            Prim::Quantity(q) => Some(q),
            Prim::Str(s) => Quantity::parse(s),
            _ => None,
        }
        .map(|q| Item::Quantity(Rc::new(q))),
        _ => return eval_err(format!("{}() is not a conversion", func.name())),
    })
}

fn truncate_to_date(mut d: PartialDate) -> PartialDate {
    d.precision = d.precision.min(DAY);
    d.hour = 0;
    d.minute = 0;
    d.second = 0;
    d.millis = 0;
    d.tz = None;
    d
}

fn target_of(func: Func) -> Func {
    match func {
        Func::ConvertsToBoolean => Func::ToBoolean,
        Func::ConvertsToInteger => Func::ToInteger,
        Func::ConvertsToDecimal => Func::ToDecimal,
        Func::ConvertsToString => Func::ToStringFn,
        Func::ConvertsToDate => Func::ToDate,
        Func::ConvertsToDateTime => Func::ToDateTime,
        Func::ConvertsToTime => Func::ToTime,
        Func::ConvertsToQuantity => Func::ToQuantity,
        other => other,
    }
}

/// Boundary of a decimal with the given precision of its own digits.
fn decimal_boundary(d: Decimal, digits: Option<i64>, high: bool) -> Option<Decimal> {
    let p = digits.unwrap_or(8);
    if !(0..=28).contains(&p) {
        return None;
    }
    // below the requested precision nothing is known but the sign: ±0 at that precision
    if !d.is_zero() && d.abs() < Decimal::try_new(1, p as u32).ok()? {
        let mut z = Decimal::ZERO;
        z.rescale(p as u32);
        z.set_sign_negative(d.is_sign_negative());
        return Some(z);
    }
    let half = Decimal::try_new(5, (d.scale() + 1).min(28)).ok()?;
    let edge = if high {
        d.checked_add(half)?
    } else {
        d.checked_sub(half)?
    };
    let strategy = if high {
        RoundingStrategy::ToPositiveInfinity
    } else {
        RoundingStrategy::ToNegativeInfinity
    };
    let mut r = edge.round_dp_with_strategy(p as u32, strategy);
    r.rescale(p as u32);
    Some(r)
}

pub fn call<'a>(cx: &Call<'_, '_, 'a>, func: Func, input: Collection<'a>) -> EvalResult<'a> {
    let model = cx.ev.env.model;
    match func {
        Func::Now => return Ok(smallvec::smallvec![Item::DateTime(PartialDate::now())]),
        Func::Today => {
            let mut d = PartialDate::now();
            d.precision = DAY;
            return Ok(smallvec::smallvec![Item::Date(truncate_to_date(d))]);
        }
        Func::TimeOfDay => {
            let mut d = PartialDate::now();
            d.year = 0;
            d.month = 0;
            d.day = 0;
            d.tz = None;
            d.precision = MILLI;
            return Ok(smallvec::smallvec![Item::Time(d)]);
        }
        _ => {}
    }
    let Some(item) = single(&input, func.name())? else {
        return Ok(Collection::new());
    };
    match func {
        Func::ToBoolean
        | Func::ToInteger
        | Func::ToDecimal
        | Func::ToStringFn
        | Func::ToDate
        | Func::ToDateTime
        | Func::ToTime
        | Func::ToQuantity => Ok(convert(model, item, func)?.into_iter().collect()),
        Func::ConvertsToBoolean
        | Func::ConvertsToInteger
        | Func::ConvertsToDecimal
        | Func::ConvertsToString
        | Func::ConvertsToDate
        | Func::ConvertsToDateTime
        | Func::ConvertsToTime
        | Func::ConvertsToQuantity => Ok(boolean(convert(model, item, target_of(func))?.is_some())),
        Func::LowBoundary | Func::HighBoundary => {
            let high = func == Func::HighBoundary;
            let digits = cx.int_arg(0)?;
            Ok(match item.prim(model) {
                Prim::Int(i) => decimal_boundary(Decimal::from(i), digits, high).map(Item::Dec),
                Prim::Dec(d) => decimal_boundary(d, digits, high).map(Item::Dec),
                Prim::Quantity(q) => decimal_boundary(q.value, digits, high).map(|value| {
                    Item::Quantity(Rc::new(Quantity {
                        value,
                        unit: q.unit.clone(),
                    }))
                }),
                Prim::Date(d) => d.boundary(digits, false, true, high).map(Item::Date),
                Prim::DateTime(d) => d.boundary(digits, false, false, high).map(|b| {
                    if b.precision < HOUR {
                        Item::Date(b)
                    } else {
                        Item::DateTime(b)
                    }
                }),
                Prim::Time(t) => t.boundary(digits, true, false, high).map(Item::Time),
                _ => None,
            }
            .into_iter()
            .collect())
        }
        Func::Precision => Ok(match item.prim(model) {
            Prim::Dec(d) => Some(d.scale() as i64),
            Prim::Int(_) => Some(0),
            Prim::Date(d) | Prim::DateTime(d) => Some(d.precision_digits(false)),
            Prim::Time(t) => Some(t.precision_digits(true)),
            _ => None,
        }
        .map(Item::Int)
        .into_iter()
        .collect()),
        Func::Comparable => {
            let other = cx.arg(0)?;
            let Some(o) = single(&other, "comparable")? else {
                return Ok(Collection::new());
            };
            match (item.prim(model), o.prim(model)) {
                (Prim::Quantity(a), Prim::Quantity(b)) => Ok(boolean(a.comparable(&b))),
                _ => eval_err("comparable() expects quantities"),
            }
        }
        _ => eval_err(format!("{}() is not a conversion", func.name())),
    }
}
