//! FHIRPath function dispatch (resolved at compile time to `Func`) and argument helpers.
//!
//! Owns: routing a `Func` to its family module and the shared argument helpers.
//! Must not: implement operators or navigation (see `eval.rs`, `operators.rs`).

mod collections;
mod conversion;
mod fhir;
mod math;
mod strings;
pub mod types;

use super::ast::{Func, Node};
use super::error::{eval_err, FhirPathError};
use super::eval::{EvalResult, Evaluator, Vars};
use super::value::{Collection, Item, Prim, Text};

pub fn call<'a>(
    ev: &Evaluator<'_, 'a>,
    func: Func,
    input: Collection<'a>,
    has_target: bool,
    args: &[Node],
    focus: &[Item<'a>],
    vars: Vars<'_, 'a>,
) -> EvalResult<'a> {
    let cx = Call {
        ev,
        args,
        focus,
        vars,
        has_target,
    };
    use Func::*;
    match func {
        Empty | Exists | All | AllTrue | AnyTrue | AllFalse | AnyFalse | SubsetOf | SupersetOf
        | Count | Distinct | IsDistinct | Where | Select | Repeat | Single | First | Last
        | Tail | Skip | Take | Intersect | Exclude | Union | Combine | Iif | Not | Aggregate
        | Sort | Trace | Children | Descendants => collections::call(&cx, func, input),
        Is | As | OfType | Type => types::call(&cx, func, input),
        ToBoolean | ConvertsToBoolean | ToInteger | ConvertsToInteger | ToDecimal
        | ConvertsToDecimal | ToStringFn | ConvertsToString | ToDate | ConvertsToDate
        | ToDateTime | ConvertsToDateTime | ToTime | ConvertsToTime | ToQuantity
        | ConvertsToQuantity | Now | Today | TimeOfDay | LowBoundary | HighBoundary | Precision
        | Comparable => conversion::call(&cx, func, input),
        IndexOf | LastIndexOf | Substring | StartsWith | EndsWith | ContainsStr | Upper | Lower
        | Replace | Matches | MatchesFull | ReplaceMatches | Length | ToChars | Trim | Split
        | Join | Encode | Decode | Escape | Unescape => strings::call(&cx, func, input),
        Abs | Ceiling | Exp | Floor | Ln | Log | Power | Round | Sqrt | Truncate => {
            math::call(&cx, func, input)
        }
        Extension | HasValue | GetValue | Resolve | HtmlChecks | HtmlChecks2 | ConformsTo
        | MemberOf | Subsumes | SubsumedBy | ElementDefinition | Slice | CheckModifiers => {
            fhir::call(&cx, func, input)
        }
    }
}

/// A function call in progress: evaluator, argument expressions, the outer focus and variables.
pub struct Call<'c, 'e, 'a> {
    pub ev: &'c Evaluator<'e, 'a>,
    pub args: &'c [Node],
    pub focus: &'c [Item<'a>],
    pub vars: Vars<'c, 'a>,
    /// Whether the call had an explicit target (`x.f()`) rather than the implicit focus.
    pub has_target: bool,
}

impl<'a> Call<'_, '_, 'a> {
    /// Evaluates argument `i` against the outer focus (non-lambda arguments).
    pub fn arg(&self, i: usize) -> EvalResult<'a> {
        match self.args.get(i) {
            Some(n) => self.ev.eval(n, self.focus, self.vars),
            None => Ok(Collection::new()),
        }
    }

    /// Evaluates argument `i` with `$this` = `item`, `$index` = `index`.
    pub fn lambda(&self, i: usize, item: &Item<'a>, index: usize) -> EvalResult<'a> {
        let Some(n) = self.args.get(i) else {
            return Ok(Collection::new());
        };
        let vars = Vars {
            this: Some(item),
            index: Some(index),
            total: self.vars.total,
        };
        self.ev.eval(n, std::slice::from_ref(item), vars)
    }

    /// A single string argument (`None` when empty); borrowed when it is a literal or JSON.
    pub fn str_arg(&self, i: usize) -> Result<Option<Text<'a>>, FhirPathError> {
        let v = self.arg(i)?;
        match v.as_slice() {
            [] => Ok(None),
            [Item::Str(t)] => Ok(Some(t.clone())),
            [Item::Node(n)] => match n.value {
                serde_json::Value::String(s) => Ok(Some(Text::Borrowed(s))),
                _ => eval_err("expected a string argument"),
            },
            [x] => match x.prim(self.ev.env.model) {
                Prim::Str(s) => Ok(Some(Text::from(s.to_string()))),
                _ => eval_err("expected a string argument"),
            },
            _ => eval_err("expected a single string argument"),
        }
    }

    /// A single integer argument (`None` when empty or absent).
    pub fn int_arg(&self, i: usize) -> Result<Option<i64>, FhirPathError> {
        let v = self.arg(i)?;
        match v.as_slice() {
            [] => Ok(None),
            [x] => match x.prim(self.ev.env.model) {
                Prim::Int(n) => Ok(Some(n)),
                _ => eval_err("expected an integer argument"),
            },
            _ => eval_err("expected a single integer argument"),
        }
    }
}

/// The single item of a function's input (`None` when empty; error when several).
pub fn single<'c, 'a>(
    input: &'c [Item<'a>],
    name: &str,
) -> Result<Option<&'c Item<'a>>, FhirPathError> {
    match input {
        [] => Ok(None),
        [x] => Ok(Some(x)),
        _ => eval_err(format!(
            "{name}() expects a single item, found {}",
            input.len()
        )),
    }
}

pub fn boolean<'a>(b: bool) -> Collection<'a> {
    let mut c = Collection::new();
    c.push(Item::Bool(b));
    c
}
