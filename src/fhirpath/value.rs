//! The FHIRPath value model: items borrowed from the FHIR JSON tree or computed.
//!
//! Owns: `Item` (a JSON node with its FHIR type, or a System value), `Collection`, conversion of
//! FHIR primitives to System values, equality/equivalence/ordering of items, and rendering to JSON.
//! Must not: navigate paths or evaluate expressions.

use super::datetime::{PartialDate, PartialTime};
use super::model::{ModelInfo, TypeId, ValueKind};
use super::quantity::Quantity;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde_json::Value;
use std::cmp::Ordering;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;

/// A string that is either borrowed (from the JSON or the expression) or computed.
#[derive(Debug, Clone)]
pub enum Text<'a> {
    Borrowed(&'a str),
    /// Computed, or a literal of the expression (shared, so results never borrow the AST).
    Owned(Arc<str>),
}

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Text<'_> {
    fn from(s: String) -> Self {
        Text::Owned(Arc::from(s))
    }
}

/// A node of the FHIR JSON tree.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    /// The JSON value (`Null` for a primitive that only has an extension).
    pub value: &'a Value,
    /// The `_name` sibling of a primitive (id/extension), if any.
    pub ext: Option<&'a Value>,
    /// FHIR type, if known.
    pub ty: TypeId,
}

/// One item of a FHIRPath collection.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    Node(NodeRef<'a>),
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(Text<'a>),
    Date(PartialDate),
    DateTime(PartialDate),
    Time(PartialTime),
    Quantity(Rc<Quantity>),
    /// A computed complex value (e.g. `type()` results), rendered as JSON.
    Object(Rc<Value>),
}

pub type Collection<'a> = smallvec::SmallVec<[Item<'a>; 1]>;

pub(crate) const NULL: Value = Value::Null;

/// A System-level view of an item, used for comparisons and operators.
#[derive(Debug, Clone)]
pub enum Prim<'x> {
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(&'x str),
    Date(PartialDate),
    DateTime(PartialDate),
    Time(PartialTime),
    Quantity(Quantity),
    /// A complex node (object) or something without a System value.
    Complex,
}

pub fn decimal_from_json(v: &Value) -> Option<Decimal> {
    if let Some(i) = v.as_i64() {
        return Some(Decimal::from(i));
    }
    if let Some(u) = v.as_u64() {
        return Decimal::from_u64(u);
    }
    let f = v.as_f64()?;
    // shortest round-trip text keeps "1.5" as 1.5 (serde_json does not keep "1.0")
    Decimal::from_str(&f.to_string())
        .ok()
        .or_else(|| Decimal::from_f64(f))
}

pub fn decimal_to_json(d: Decimal) -> Value {
    if d.scale() == 0 {
        if let Some(i) = d.to_i64() {
            return Value::from(i);
        }
    }
    serde_json::Number::from_str(&d.to_string())
        .map(Value::Number)
        .unwrap_or_else(|_| Value::from(d.to_f64().unwrap_or(0.0)))
}

impl<'a> Item<'a> {
    pub fn node(value: &'a Value, ty: TypeId) -> Self {
        Item::Node(NodeRef {
            value,
            ext: None,
            ty,
        })
    }

    /// FHIR type name of a node, from the model or guessed from the JSON.
    pub fn fhir_type_name<'m>(&self, model: &'m ModelInfo) -> Option<&'m str>
    where
        'a: 'm,
    {
        match self {
            Item::Node(n) => {
                if let Some(name) = model.public_name(n.ty) {
                    return Some(name);
                }
                n.value.get("resourceType").and_then(Value::as_str)
            }
            _ => None,
        }
    }

    /// The System value of this item (primitive nodes converted by their FHIR type).
    pub fn prim(&self, model: &ModelInfo) -> Prim<'_> {
        match self {
            Item::Bool(b) => Prim::Bool(*b),
            Item::Int(i) => Prim::Int(*i),
            Item::Dec(d) => Prim::Dec(*d),
            Item::Str(s) => Prim::Str(s.as_str()),
            Item::Date(d) => Prim::Date(*d),
            Item::DateTime(d) => Prim::DateTime(*d),
            Item::Time(d) => Prim::Time(*d),
            Item::Quantity(q) => Prim::Quantity((**q).clone()),
            Item::Object(_) => Prim::Complex,
            Item::Node(n) => node_prim(n, model),
        }
    }

    /// True for items that are (or wrap) a primitive value.
    pub fn is_primitive_like(&self) -> bool {
        match self {
            Item::Node(n) => !n.value.is_object(),
            Item::Object(_) => false,
            _ => true,
        }
    }

    /// JSON rendering: primitives as JSON values, complex types as FHIR JSON.
    pub fn to_json(&self, model: &ModelInfo) -> Value {
        match self {
            // a primitive with only an id/extension renders as its `_name` object
            Item::Node(n) if n.value.is_null() => n.ext.cloned().unwrap_or(Value::Null),
            Item::Node(n) => n.value.clone(),
            Item::Object(v) => (**v).clone(),
            _ => match self.prim(model) {
                Prim::Bool(b) => Value::Bool(b),
                Prim::Int(i) => Value::from(i),
                Prim::Dec(d) => decimal_to_json(d),
                Prim::Str(s) => Value::from(s),
                Prim::Date(d) => Value::from(d.format_date()),
                Prim::DateTime(d) => Value::from(d.format_datetime()),
                Prim::Time(d) => Value::from(d.format_time()),
                Prim::Quantity(q) => q.to_json(),
                Prim::Complex => Value::Null,
            },
        }
    }
}

fn node_prim<'x>(n: &NodeRef<'x>, model: &ModelInfo) -> Prim<'x> {
    let v = n.value;
    let vk = model.value_kind(n.ty);
    match v {
        Value::Bool(b) => Prim::Bool(*b),
        Value::Number(_) => {
            if vk == ValueKind::Decimal || (vk != ValueKind::Integer && !v.is_i64()) {
                decimal_from_json(v).map_or(Prim::Complex, Prim::Dec)
            } else {
                v.as_i64().map_or(Prim::Complex, Prim::Int)
            }
        }
        Value::String(s) => match vk {
            ValueKind::Date => PartialDate::parse_date(s).map_or(Prim::Str(s), Prim::Date),
            ValueKind::DateTime => {
                PartialDate::parse_datetime(s).map_or(Prim::Str(s), Prim::DateTime)
            }
            ValueKind::Time => PartialDate::parse_time(s).map_or(Prim::Str(s), Prim::Time),
            _ => Prim::Str(s),
        },
        Value::Object(_) => {
            let is_quantity = vk == ValueKind::Quantity
                || (!n.ty.is_known()
                    && v.get("value").is_some_and(Value::is_number)
                    && (v.get("code").is_some() || v.get("unit").is_some()));
            if is_quantity {
                quantity_from_json(v).map_or(Prim::Complex, Prim::Quantity)
            } else {
                Prim::Complex
            }
        }
        _ => Prim::Complex,
    }
}

/// A FHIR Quantity (JSON) as a FHIRPath quantity: UCUM `code` wins, else `unit`.
pub fn quantity_from_json(v: &Value) -> Option<Quantity> {
    let value = decimal_from_json(v.get("value")?)?;
    let ucum = v.get("system").and_then(Value::as_str) == Some("http://unitsofmeasure.org");
    let unit = match (
        v.get("code").and_then(Value::as_str),
        v.get("unit").and_then(Value::as_str),
    ) {
        (Some(c), _) if ucum || v.get("system").is_none() => c,
        (_, Some(u)) => u,
        (Some(c), None) => c,
        (None, None) => "1",
    };
    // UCUM time codes stay codes; calendar words in `unit` map to calendar units
    Some(Quantity::new(value, unit))
}

/// Equality of two System values: `None` when unknown (different precision, incomparable units).
pub fn prim_equals(a: &Prim, b: &Prim) -> Option<bool> {
    Some(match (a, b) {
        (Prim::Bool(x), Prim::Bool(y)) => x == y,
        (Prim::Int(x), Prim::Int(y)) => x == y,
        (Prim::Int(x), Prim::Dec(y)) | (Prim::Dec(y), Prim::Int(x)) => Decimal::from(*x) == *y,
        (Prim::Dec(x), Prim::Dec(y)) => x == y,
        (Prim::Str(x), Prim::Str(y)) => x == y,
        (Prim::Date(x), Prim::Date(y))
        | (Prim::DateTime(x), Prim::DateTime(y))
        | (Prim::Date(x), Prim::DateTime(y))
        | (Prim::DateTime(x), Prim::Date(y))
        | (Prim::Time(x), Prim::Time(y)) => return x.compare(y).map(|o| o == Ordering::Equal),
        (Prim::Quantity(x), Prim::Quantity(y)) => return x.equals(y),
        _ => false,
    })
}

fn normalise_ws(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

pub fn prim_equivalent(a: &Prim, b: &Prim) -> bool {
    match (a, b) {
        (Prim::Str(x), Prim::Str(y)) => normalise_ws(x) == normalise_ws(y),
        (Prim::Dec(_), _) | (_, Prim::Dec(_)) => {
            let (Some(x), Some(y)) = (as_decimal(a), as_decimal(b)) else {
                return false;
            };
            let scale = x.scale().min(y.scale());
            x.round_dp(scale) == y.round_dp(scale)
        }
        (Prim::Date(x), Prim::Date(y))
        | (Prim::DateTime(x), Prim::DateTime(y))
        | (Prim::Date(x), Prim::DateTime(y))
        | (Prim::DateTime(x), Prim::Date(y))
        | (Prim::Time(x), Prim::Time(y)) => x.equivalent(y),
        (Prim::Quantity(x), Prim::Quantity(y)) => x.equivalent(y),
        _ => prim_equals(a, b).unwrap_or(false),
    }
}

pub fn as_decimal(p: &Prim) -> Option<Decimal> {
    match p {
        Prim::Int(i) => Some(Decimal::from(*i)),
        Prim::Dec(d) => Some(*d),
        _ => None,
    }
}

/// Ordering of two System values; `Err` when the types cannot be compared.
pub fn prim_compare(a: &Prim, b: &Prim) -> Result<Option<Ordering>, ()> {
    Ok(match (a, b) {
        (Prim::Int(x), Prim::Int(y)) => Some(x.cmp(y)),
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => {
            let (Some(x), Some(y)) = (as_decimal(a), as_decimal(b)) else {
                return Err(());
            };
            Some(x.cmp(&y))
        }
        (Prim::Str(x), Prim::Str(y)) => Some(x.cmp(y)),
        (Prim::Date(x) | Prim::DateTime(x), Prim::Date(y) | Prim::DateTime(y))
        | (Prim::Time(x), Prim::Time(y)) => x.compare(y),
        (Prim::Quantity(x), Prim::Quantity(y)) => match x.compare(y) {
            Some(o) => Some(o),
            None => return Err(()),
        },
        _ => return Err(()),
    })
}

/// Deep equality of two JSON nodes (used for complex `=`).
pub fn json_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let xs = x.iter().filter(|(k, _)| k.as_str() != "id");
            let n = xs.clone().count();
            n == y.iter().filter(|(k, _)| k.as_str() != "id").count()
                && xs
                    .into_iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equals(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equals(v, w))
        }
        (Value::Number(_), Value::Number(_)) => decimal_from_json(a) == decimal_from_json(b),
        _ => a == b,
    }
}

/// Item equality (`=`): `None` when unknown.
pub fn item_equals(a: &Item, b: &Item, model: &ModelInfo) -> Option<bool> {
    match (a, b) {
        (Item::Node(x), Item::Node(y)) if x.value.is_object() || y.value.is_object() => {
            let (pa, pb) = (a.prim(model), b.prim(model));
            if let (Prim::Quantity(_), Prim::Quantity(_)) = (&pa, &pb) {
                return prim_equals(&pa, &pb);
            }
            Some(json_equals(x.value, y.value))
        }
        _ => prim_equals(&a.prim(model), &b.prim(model)),
    }
}

pub fn item_equivalent(a: &Item, b: &Item, model: &ModelInfo) -> bool {
    match (a, b) {
        (Item::Node(x), Item::Node(y)) if x.value.is_object() && y.value.is_object() => {
            json_equals(x.value, y.value)
        }
        _ => prim_equivalent(&a.prim(model), &b.prim(model)),
    }
}

/// Member lookup on FHIR JSON objects without hashing: objects are small, and with serde_json's
/// `preserve_order` every `Map::get` hashes the key with SipHash. Large objects still use the map.
pub trait JsonMember {
    fn member(&self, key: &str) -> Option<&Value>;
}

impl JsonMember for serde_json::Map<String, Value> {
    #[inline]
    fn member(&self, key: &str) -> Option<&Value> {
        if self.len() > 16 {
            return self.get(key);
        }
        self.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    }
}

impl JsonMember for Value {
    #[inline]
    fn member(&self, key: &str) -> Option<&Value> {
        self.as_object()?.member(key)
    }
}
