//! FHIRPath quantities: a decimal value with a UCUM or calendar unit.
//!
//! Owns: unit normalisation (calendar words), conversion between simple convertible UCUM units
//! (mass, length, time, volume), comparison, multiplication/division, formatting.
//! Must not: know about collections or JSON; it is not a full UCUM implementation.

use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    pub value: Decimal,
    /// UCUM code (`mg`, `'1'`) or a calendar word in singular (`year`, `day`).
    pub unit: String,
}

/// Calendar duration keywords (singular and plural) to their singular form.
pub fn calendar_unit(word: &str) -> Option<&'static str> {
    Some(match word {
        "year" | "years" => "year",
        "month" | "months" => "month",
        "week" | "weeks" => "week",
        "day" | "days" => "day",
        "hour" | "hours" => "hour",
        "minute" | "minutes" => "minute",
        "second" | "seconds" => "second",
        "millisecond" | "milliseconds" => "millisecond",
        _ => return None,
    })
}

/// (dimension, factor to the dimension's base unit).
fn unit_factor(unit: &str) -> Option<(&'static str, Decimal)> {
    let d = |s: &str| Decimal::from_str(s).ok();
    Some(match unit {
        "g" => ("g", Decimal::ONE),
        "kg" => ("g", d("1000")?),
        "mg" => ("g", d("0.001")?),
        "ug" => ("g", d("0.000001")?),
        "ng" => ("g", d("0.000000001")?),
        "[lb_av]" => ("g", d("453.59237")?),
        "[oz_av]" => ("g", d("28.349523125")?),
        "m" => ("m", Decimal::ONE),
        "km" => ("m", d("1000")?),
        "cm" => ("m", d("0.01")?),
        "mm" => ("m", d("0.001")?),
        "um" => ("m", d("0.000001")?),
        "[in_i]" => ("m", d("0.0254")?),
        "[ft_i]" => ("m", d("0.3048")?),
        "m2" => ("m2", Decimal::ONE),
        "cm2" => ("m2", d("0.0001")?),
        "L" | "l" => ("L", Decimal::ONE),
        "dL" => ("L", d("0.1")?),
        "mL" | "ml" => ("L", d("0.001")?),
        "uL" => ("L", d("0.000001")?),
        "s" | "second" => ("s", Decimal::ONE),
        "ms" | "millisecond" => ("s", d("0.001")?),
        "min" | "minute" => ("s", d("60")?),
        "h" | "hour" => ("s", d("3600")?),
        "d" | "day" => ("s", d("86400")?),
        "wk" | "week" => ("s", d("604800")?),
        "mmol/L" => ("mol/L", d("0.001")?),
        "umol/L" => ("mol/L", d("0.000001")?),
        "mol/L" => ("mol/L", Decimal::ONE),
        "Cel" => ("Cel", Decimal::ONE),
        "[degF]" => ("[degF]", Decimal::ONE),
        "1" | "" => ("1", Decimal::ONE),
        "%" => ("1", d("0.01")?),
        _ => return None,
    })
}

impl Quantity {
    pub fn new(value: Decimal, unit: &str) -> Self {
        Quantity {
            value,
            unit: calendar_unit(unit).unwrap_or(unit).to_string(),
        }
    }

    /// Parses `1.5 'mg'`, `4 days`, `1` (unit `1`).
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (num, rest) = match s.find(' ') {
            Some(i) => (&s[..i], s[i..].trim()),
            None => (s, ""),
        };
        if num.is_empty()
            || num.ends_with('.')
            || !num
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+')
        {
            return None;
        }
        let value = Decimal::from_str(num).ok()?;
        if rest.is_empty() {
            return Some(Quantity::new(value, "1"));
        }
        if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            return Some(Quantity::new(value, u));
        }
        calendar_unit(rest).map(|u| Quantity::new(value, u))
    }

    fn is_calendar_word(&self) -> bool {
        matches!(
            self.unit.as_str(),
            "year" | "month" | "week" | "day" | "hour" | "minute" | "second" | "millisecond"
        )
    }

    /// Both values expressed in a common unit, if the units are convertible.
    fn common(&self, other: &Quantity) -> Option<(Decimal, Decimal)> {
        if self.unit == other.unit {
            return Some((self.value, other.value));
        }
        let (da, fa) = unit_factor(&self.unit)?;
        let (db, fb) = unit_factor(&other.unit)?;
        if da != db {
            return None;
        }
        Some((self.value.checked_mul(fa)?, other.value.checked_mul(fb)?))
    }

    pub fn compare(&self, other: &Quantity) -> Option<Ordering> {
        let (a, b) = self.common(other)?;
        Some(a.cmp(&b))
    }

    /// Equality: `None` when the units are not comparable.
    pub fn equals(&self, other: &Quantity) -> Option<bool> {
        self.compare(other).map(|o| o == Ordering::Equal)
    }

    /// Equivalence: values compared at the precision of the less precise one.
    pub fn equivalent(&self, other: &Quantity) -> bool {
        match self.common(other) {
            Some((a, b)) => {
                let scale = self.value.scale().min(other.value.scale());
                a.round_dp(scale) == b.round_dp(scale)
            }
            None => false,
        }
    }

    pub fn comparable(&self, other: &Quantity) -> bool {
        self.common(other).is_some()
    }

    pub fn mul_div(&self, other: &Quantity, divide: bool) -> Option<Quantity> {
        let (da, fa) = unit_factor(&self.unit).unwrap_or(("?", Decimal::ONE));
        let (db, fb) = unit_factor(&other.unit).unwrap_or(("?", Decimal::ONE));
        let (ua, ub) = if da == "?" || db == "?" {
            (self.unit.as_str(), other.unit.as_str())
        } else {
            (da, db)
        };
        let a = self
            .value
            .checked_mul(if da == "?" { Decimal::ONE } else { fa })?;
        let b = other
            .value
            .checked_mul(if db == "?" { Decimal::ONE } else { fb })?;
        if divide {
            let v = a.checked_div(b)?;
            let unit = if ua == ub {
                "1".to_string()
            } else if ub == "1" {
                ua.to_string()
            } else {
                format!("{ua}/{ub}")
            };
            Some(Quantity {
                value: v.normalize(),
                unit,
            })
        } else {
            let v = a.checked_mul(b)?;
            let unit = if ua == ub {
                format!("{ua}2")
            } else if ua == "1" {
                ub.to_string()
            } else if ub == "1" {
                ua.to_string()
            } else {
                format!("{ua}.{ub}")
            };
            Some(Quantity { value: v, unit })
        }
    }

    /// FHIRPath string form: `1 'wk'`, `1 week`.
    pub fn format(&self) -> String {
        if self.is_calendar_word() {
            format!("{} {}", self.value, self.unit)
        } else {
            format!("{} '{}'", self.value, self.unit)
        }
    }

    /// FHIR JSON Quantity.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("value".into(), super::value::decimal_to_json(self.value));
        if self.is_calendar_word() {
            m.insert("unit".into(), self.unit.clone().into());
        } else {
            m.insert("unit".into(), self.unit.clone().into());
            m.insert("system".into(), "http://unitsofmeasure.org".into());
            m.insert("code".into(), self.unit.clone().into());
        }
        serde_json::Value::Object(m)
    }
}
