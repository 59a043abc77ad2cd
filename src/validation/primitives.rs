//! FHIR R4 primitive types: JSON representation and lexical format (the regexes published with
//! the R4 StructureDefinitions, plus value-range rules the regexes cannot express).
//!
//! Owns: `Primitive`, `PrimitiveRules::check`. Must not: know about profiles, paths or issues.

use regex::Regex;
use serde_json::Value;

/// The FHIR R4 primitive data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    Boolean,
    Integer,
    String,
    Decimal,
    Uri,
    Url,
    Canonical,
    Base64Binary,
    Instant,
    Date,
    DateTime,
    Time,
    Code,
    Oid,
    Id,
    Markdown,
    UnsignedInt,
    PositiveInt,
    Uuid,
    Xhtml,
}

impl Primitive {
    /// Maps a type code (`date`, or the FHIRPath system types used in R4 snapshots) to a primitive.
    pub fn from_code(code: &str) -> Option<Primitive> {
        Some(match code {
            "boolean" | "http://hl7.org/fhirpath/System.Boolean" => Primitive::Boolean,
            "integer" | "http://hl7.org/fhirpath/System.Integer" => Primitive::Integer,
            "string" | "http://hl7.org/fhirpath/System.String" => Primitive::String,
            "decimal" | "http://hl7.org/fhirpath/System.Decimal" => Primitive::Decimal,
            "uri" => Primitive::Uri,
            "url" => Primitive::Url,
            "canonical" => Primitive::Canonical,
            "base64Binary" => Primitive::Base64Binary,
            "instant" => Primitive::Instant,
            "date" | "http://hl7.org/fhirpath/System.Date" => Primitive::Date,
            "dateTime" | "http://hl7.org/fhirpath/System.DateTime" => Primitive::DateTime,
            "time" | "http://hl7.org/fhirpath/System.Time" => Primitive::Time,
            "code" => Primitive::Code,
            "oid" => Primitive::Oid,
            "id" => Primitive::Id,
            "markdown" => Primitive::Markdown,
            "unsignedInt" => Primitive::UnsignedInt,
            "positiveInt" => Primitive::PositiveInt,
            "uuid" => Primitive::Uuid,
            "xhtml" => Primitive::Xhtml,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Primitive::Boolean => "boolean",
            Primitive::Integer => "integer",
            Primitive::String => "string",
            Primitive::Decimal => "decimal",
            Primitive::Uri => "uri",
            Primitive::Url => "url",
            Primitive::Canonical => "canonical",
            Primitive::Base64Binary => "base64Binary",
            Primitive::Instant => "instant",
            Primitive::Date => "date",
            Primitive::DateTime => "dateTime",
            Primitive::Time => "time",
            Primitive::Code => "code",
            Primitive::Oid => "oid",
            Primitive::Id => "id",
            Primitive::Markdown => "markdown",
            Primitive::UnsignedInt => "unsignedInt",
            Primitive::PositiveInt => "positiveInt",
            Primitive::Uuid => "uuid",
            Primitive::Xhtml => "xhtml",
        }
    }
}

/// Why a primitive value is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimitiveError {
    /// Wrong JSON type (issue code `structure`).
    JsonType(&'static str),
    /// Right JSON type, bad lexical form or range (issue code `value`).
    Format(String),
}

/// Compiled R4 primitive regexes (anchored).
pub struct PrimitiveRules {
    date: Regex,
    date_time: Regex,
    instant: Regex,
    time: Regex,
    code: Regex,
    id: Regex,
    oid: Regex,
    uuid: Regex,
    base64: Regex,
}

const YEAR: &str = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)";
const TZ: &str = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))";

fn anchored(p: &str) -> Regex {
    // The patterns are compile-time constants (not input-driven), covered by unit tests.
    Regex::new(&format!("^(?:{p})$")).expect("constant primitive regex")
}

impl Default for PrimitiveRules {
    fn default() -> Self {
        Self::new()
    }
}

impl PrimitiveRules {
    pub fn new() -> Self {
        let hms = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?";
        let md = r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])";
        PrimitiveRules {
            date: anchored(&format!(
                r"{YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
            )),
            date_time: anchored(&format!(
                r"{YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{hms}{TZ})?)?)?"
            )),
            instant: anchored(&format!(r"{YEAR}{md}T{hms}{TZ}")),
            time: anchored(hms),
            code: anchored(r"[^\s]+(\s[^\s]+)*"),
            id: anchored(r"[A-Za-z0-9\-\.]{1,64}"),
            oid: anchored(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"),
            uuid: anchored(
                r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            ),
            base64: anchored(r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+"),
        }
    }

    /// Checks one JSON primitive value (never `null`; the caller handles nulls in arrays).
    pub fn check(&self, p: Primitive, v: &Value) -> Result<(), PrimitiveError> {
        match p {
            Primitive::Boolean => match v {
                Value::Bool(_) => Ok(()),
                _ => Err(PrimitiveError::JsonType("a JSON boolean")),
            },
            Primitive::Integer | Primitive::UnsignedInt | Primitive::PositiveInt => {
                let Value::Number(n) = v else {
                    return Err(PrimitiveError::JsonType("a JSON number"));
                };
                let Some(i) = n.as_i64() else {
                    return Err(PrimitiveError::Format(format!(
                        "not a whole number: {} must be an integer",
                        p.name()
                    )));
                };
                let min = match p {
                    Primitive::Integer => -2_147_483_648,
                    Primitive::UnsignedInt => 0,
                    _ => 1,
                };
                if i < min || i > 2_147_483_647 {
                    return Err(PrimitiveError::Format(format!(
                        "out of range for {} ({min}..2147483647)",
                        p.name()
                    )));
                }
                Ok(())
            }
            Primitive::Decimal => match v {
                Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Ok(()),
                Value::Number(_) => Err(PrimitiveError::Format("not a finite decimal".into())),
                _ => Err(PrimitiveError::JsonType("a JSON number")),
            },
            _ => {
                let Value::String(s) = v else {
                    return Err(PrimitiveError::JsonType("a JSON string"));
                };
                self.check_string(p, s)
            }
        }
    }

    fn check_string(&self, p: Primitive, s: &str) -> Result<(), PrimitiveError> {
        if s.is_empty() {
            return Err(PrimitiveError::Format(
                "empty string: omit the element instead of sending \"\"".into(),
            ));
        }
        let bad = |what: &str| Err(PrimitiveError::Format(format!("not a valid {what}")));
        match p {
            Primitive::String | Primitive::Markdown => {
                if s.trim().is_empty() {
                    return Err(PrimitiveError::Format(
                        "string has no non-whitespace content".into(),
                    ));
                }
                if s.len() > 1_048_576 {
                    return Err(PrimitiveError::Format("string longer than 1 MB".into()));
                }
                // Printable ASCII (the usual case) is checked in wide chunks; other text char by char.
                let control = if printable_ascii(s) {
                    false
                } else if s.is_ascii() {
                    s.bytes()
                        .any(|b| (b < 0x20 || b == 0x7f) && !matches!(b, b'\r' | b'\n' | b'\t'))
                } else {
                    s.chars()
                        .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
                };
                if control {
                    return Err(PrimitiveError::Format(
                        "string contains control characters".into(),
                    ));
                }
                Ok(())
            }
            Primitive::Uri | Primitive::Url | Primitive::Canonical => {
                let ws = if printable_ascii(s) {
                    s.as_bytes().contains(&b' ')
                } else if s.is_ascii() {
                    // char::is_whitespace on ASCII: \t \n \x0b \x0c \r and space
                    s.bytes().any(|b| matches!(b, b'\t'..=b'\r' | b' '))
                } else {
                    s.chars().any(char::is_whitespace)
                };
                if ws {
                    bad(p.name())
                } else {
                    Ok(())
                }
            }
            Primitive::Xhtml => Ok(()),
            Primitive::Date => {
                if self.date.is_match(s) && valid_day(s) {
                    Ok(())
                } else {
                    bad("date (YYYY, YYYY-MM or YYYY-MM-DD)")
                }
            }
            Primitive::DateTime => {
                if self.date_time.is_match(s) && valid_day(s) {
                    Ok(())
                } else {
                    bad("dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz with a time zone)")
                }
            }
            Primitive::Instant => {
                if self.instant.is_match(s) && valid_day(s) {
                    Ok(())
                } else {
                    bad("instant (YYYY-MM-DDThh:mm:ss[.sss]+zz:zz)")
                }
            }
            Primitive::Time => check(&self.time, s, "time (hh:mm:ss)"),
            Primitive::Code if printable_ascii(s) && !s.as_bytes().contains(&b' ') => Ok(()),
            Primitive::Code if s.is_ascii() => {
                // `[^\s]+(\s[^\s]+)*` on ASCII: no leading, trailing or doubled whitespace.
                let b = s.as_bytes();
                let ws = |c: u8| matches!(c, b'\t'..=b'\r' | b' ');
                let ok =
                    !ws(b[0]) && !ws(b[b.len() - 1]) && !b.windows(2).any(|w| ws(w[0]) && ws(w[1]));
                if ok {
                    Ok(())
                } else {
                    bad("code (no leading/trailing or double whitespace)")
                }
            }
            Primitive::Code => check(
                &self.code,
                s,
                "code (no leading/trailing or double whitespace)",
            ),
            Primitive::Id => check(&self.id, s, "id (1-64 of A-Z a-z 0-9 - .)"),
            Primitive::Oid => check(&self.oid, s, "oid (urn:oid:…)"),
            Primitive::Uuid => check(&self.uuid, s, "uuid (urn:uuid: + lower-case UUID)"),
            Primitive::Base64Binary => check(&self.base64, s, "base64Binary"),
            _ => Ok(()),
        }
    }
}

/// Every byte is printable ASCII (0x20..0x7e); written without early exit so it vectorises.
fn printable_ascii(s: &str) -> bool {
    s.as_bytes().chunks(32).all(|c| {
        c.iter()
            .fold(true, |ok, &b| ok & (b.wrapping_sub(0x20) < 0x5f))
    })
}

fn check(re: &Regex, s: &str, what: &str) -> Result<(), PrimitiveError> {
    if re.is_match(s) {
        Ok(())
    } else {
        Err(PrimitiveError::Format(format!("not a valid {what}")))
    }
}

/// Day-of-month validity for `YYYY-MM-DD…` (the regex allows 2023-02-31).
fn valid_day(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 {
        return true;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok()).unwrap_or(0);
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let max = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    d <= max
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats() {
        let r = PrimitiveRules::new();
        assert!(r.check(Primitive::Date, &json!("2020-02-29")).is_ok());
        assert!(r.check(Primitive::Date, &json!("2021-02-29")).is_err());
        assert!(r
            .check(Primitive::DateTime, &json!("2020-01-01T10:00:00Z"))
            .is_ok());
        assert!(r
            .check(Primitive::DateTime, &json!("2020-01-01T10:00:00"))
            .is_err());
        assert!(r.check(Primitive::DateTime, &json!("2020-13")).is_err());
        assert!(r.check(Primitive::Instant, &json!("2020-01-01")).is_err());
        assert!(r.check(Primitive::Code, &json!("a b")).is_ok());
        assert!(r.check(Primitive::Code, &json!(" a")).is_err());
        assert!(r.check(Primitive::Id, &json!("a_b")).is_err());
        assert!(r.check(Primitive::PositiveInt, &json!(0)).is_err());
        assert!(r.check(Primitive::UnsignedInt, &json!(0)).is_ok());
        assert!(r.check(Primitive::Integer, &json!(1.5)).is_err());
        assert!(r.check(Primitive::Boolean, &json!("true")).is_err());
        assert!(r.check(Primitive::String, &json!("")).is_err());
        assert!(r
            .check(
                Primitive::Uuid,
                &json!("urn:uuid:0c1a1a38-4b1e-4f3c-9a8e-0b1f9ac0f1a1")
            )
            .is_ok());
        assert!(r.check(Primitive::Oid, &json!("urn:oid:1.2.3")).is_ok());
    }

    #[test]
    fn ascii_fast_paths_agree_with_the_regexes() {
        let r = PrimitiveRules::new();
        let samples = [
            "a",
            "a b",
            " a",
            "a ",
            "a  b",
            "a\tb",
            "a\t\tb",
            "a\nb",
            "\u{b}x",
            "x\u{c}",
            "a\rb",
            "ab\u{1f}",
            "é",
            "a\u{a0}b",
            "a\u{2003}b",
            "\u{7f}",
            "http://x/y z",
            "urn:uuid:1",
        ];
        for s in samples {
            for p in [
                Primitive::Code,
                Primitive::Uri,
                Primitive::String,
                Primitive::Markdown,
            ] {
                let re_ok = match p {
                    Primitive::Code => r.code.is_match(s),
                    Primitive::Uri => !s.chars().any(char::is_whitespace),
                    _ => {
                        !s.trim().is_empty()
                            && !s
                                .chars()
                                .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
                    }
                };
                assert_eq!(r.check(p, &json!(s)).is_ok(), re_ok, "{p:?} {s:?}");
            }
        }
    }
}
