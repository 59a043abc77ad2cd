//! Native fast paths for the hottest FHIR invariants (ele-1, ext-1). A test proves they agree
//! with the general evaluator.
//!
//! Owns: recognising those expressions by text and evaluating them natively.
//! Must not: be used for anything whose result could differ from the general evaluator.

use super::model::ModelInfo;
use super::value::JsonMember;
use super::value::NodeRef;
use serde_json::Value;

/// A check of a node's JSON and its `_field` sibling: `Some(result)`, or `None` = undecided.
pub type JsonFn = fn(&Value, Option<&Value>) -> Option<bool>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastPath {
    /// ele-1: `hasValue() or (children().count() > id.count())`
    Ele1,
    /// ext-1: `extension.exists() != value.exists()`
    Ext1,
    /// dom-2, dom-3, dom-4, dom-5: constraints on `contained` that are trivially true when the
    /// resource has no contained resources (otherwise the general evaluator runs).
    NoContainedTrue,
}

const DOM_2: &str = "contained.contained.empty()";
const DOM_3: &str = "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()";
const DOM_4: &str = "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()";
const DOM_5: &str = "contained.meta.security.empty()";

/// The expression without whitespace outside string/identifier quotes.
pub(crate) fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            Some(q) => {
                out.push(c);
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '`' => {
                quote = Some(c);
                out.push(c);
            }
            None if c.is_whitespace() => {}
            None => out.push(c),
        }
    }
    out
}

pub fn detect(text: &str) -> Option<FastPath> {
    let norm = normalise(text);
    match norm.as_str() {
        "hasValue()or(children().count()>id.count())" => Some(FastPath::Ele1),
        "extension.exists()!=value.exists()" => Some(FastPath::Ext1),
        other
            if [DOM_2, DOM_3, DOM_4, DOM_5]
                .iter()
                .any(|d| d.chars().filter(|c| !c.is_whitespace()).eq(other.chars())) =>
        {
            Some(FastPath::NoContainedTrue)
        }
        _ => None,
    }
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => a.iter().any(|x| !x.is_null()),
        _ => true,
    }
}

impl FastPath {
    /// The same check as a plain function of the node's JSON and `_field` sibling.
    pub fn json_fn(self) -> JsonFn {
        fn ele1(v: &Value, ext: Option<&Value>) -> Option<bool> {
            FastPath::Ele1.on_json(v, ext)
        }
        fn ext1(v: &Value, ext: Option<&Value>) -> Option<bool> {
            FastPath::Ext1.on_json(v, ext)
        }
        fn no_contained(v: &Value, ext: Option<&Value>) -> Option<bool> {
            FastPath::NoContainedTrue.on_json(v, ext)
        }
        match self {
            FastPath::Ele1 => ele1,
            FastPath::Ext1 => ext1,
            FastPath::NoContainedTrue => no_contained,
        }
    }

    /// `Some(answer)`, or `None` when the general evaluator must decide.
    pub fn eval(self, _model: &ModelInfo, focus: NodeRef<'_>) -> Option<bool> {
        self.on_json(focus.value, focus.ext)
    }

    #[inline]
    fn on_json(self, value: &Value, ext: Option<&Value>) -> Option<bool> {
        Some(match self {
            FastPath::NoContainedTrue => {
                let Value::Object(o) = value else {
                    return None;
                };
                if o.member("contained").is_some_and(non_empty) {
                    return None;
                }
                true
            }
            FastPath::Ele1 => match value {
                Value::Object(o) => o
                    .iter()
                    .any(|(k, v)| k != "id" && k != "resourceType" && k != "_id" && non_empty(v)),
                Value::Null | Value::Array(_) => match ext {
                    Some(Value::Object(e)) => e.member("extension").is_some_and(non_empty),
                    _ => false,
                },
                _ => true,
            },
            FastPath::Ext1 => {
                let Value::Object(o) = value else {
                    return Some(false);
                };
                let has_ext = o.member("extension").is_some_and(non_empty);
                let has_value = o.iter().any(|(k, v)| {
                    let k = k.strip_prefix('_').unwrap_or(k);
                    k.len() > 5
                        && k.starts_with("value")
                        && k.as_bytes()[5].is_ascii_uppercase()
                        && non_empty(v)
                });
                has_ext != has_value
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_core_texts_only() {
        for d in [DOM_2, DOM_3, DOM_4, DOM_5] {
            assert_eq!(detect(d), Some(FastPath::NoContainedTrue), "{d}");
        }
        assert_eq!(
            detect("hasValue() or (children().count() > id.count())"),
            Some(FastPath::Ele1)
        );
        assert_eq!(
            detect("extension.exists() != value.exists()"),
            Some(FastPath::Ext1)
        );
        assert_eq!(detect("extension.exists() = value.exists()"), None);
        assert_eq!(detect("contained.where(x = 'a b').empty()"), None);
    }
}
