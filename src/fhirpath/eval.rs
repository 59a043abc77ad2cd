//! The evaluator core: walks the AST over borrowed FHIR JSON.
//!
//! Owns: path navigation (choice types, `_field` primitive extensions, arrays, contained
//! resources), type-name path heads (`Patient.name`), indexers, variables, and dispatch of
//! operators (`operators.rs`) and functions (`functions/`).
//! Must not: clone JSON; panic on any input.

use super::ast::{Func, Literal, Node};
use super::env::EvalEnv;
use super::error::{eval_err, FhirPathError};
use super::functions;
use super::model::{TypeId, TypeKind};
use super::operators;
use super::value::{Collection, Item, JsonMember, NodeRef, Text, NULL};
use serde_json::{Map, Value};
use std::rc::Rc;

/// Iteration variables of the innermost `where`/`select`/… .
#[derive(Clone, Copy, Default)]
pub struct Vars<'v, 'a> {
    pub this: Option<&'v Item<'a>>,
    pub index: Option<usize>,
    pub total: Option<&'v Collection<'a>>,
}

pub struct Evaluator<'e, 'a> {
    pub env: &'e EvalEnv<'a>,
    /// The focus the whole expression started from (`%context` when not set in the env).
    pub root: &'e Collection<'a>,
}

pub type EvalResult<'a> = Result<Collection<'a>, FhirPathError>;

const MAX_DEPTH: usize = 64;

impl<'e, 'a> Evaluator<'e, 'a> {
    pub fn eval(&self, node: &Node, focus: &[Item<'a>], vars: Vars<'_, 'a>) -> EvalResult<'a> {
        match node {
            Node::Literal(l) => Ok(literal(l)),
            Node::Member(name) => {
                let mut out = Collection::new();
                let upper = name.as_bytes().first().is_some_and(u8::is_ascii_uppercase);
                for item in focus {
                    if upper && self.is_type_named(item, name) {
                        out.push(item.clone());
                    } else {
                        if !self.child(item, name, &mut out) {
                            self.check_strict(item, name)?;
                        }
                    }
                }
                Ok(out)
            }
            Node::Path(target, name) => {
                if self.env.strict {
                    self.check_static_path(target, name)?;
                }
                let base = self.eval(target, focus, vars)?;
                let mut out = Collection::with_capacity(base.len());
                for item in &base {
                    if !self.child(item, name, &mut out) {
                        self.check_strict(item, name)?;
                    }
                }
                Ok(out)
            }
            Node::Call { target, func, args } => {
                if self.env.strict {
                    check_ordered(target.as_deref(), *func)?;
                }
                let input = match target {
                    Some(t) => self.eval(t, focus, vars)?,
                    None => clone_all(focus),
                };
                functions::call(self, *func, input, target.is_some(), args, focus, vars)
            }
            Node::Index(target, idx) => {
                let base = self.eval(target, focus, vars)?;
                let i = self.eval(idx, focus, vars)?;
                match i.as_slice() {
                    [] => Ok(Collection::new()),
                    [Item::Int(n)] => Ok(usize::try_from(*n)
                        .ok()
                        .and_then(|n| base.into_iter().nth(n))
                        .into_iter()
                        .collect()),
                    _ => eval_err("indexer expects a single integer"),
                }
            }
            Node::This => Ok(match vars.this {
                Some(t) => smallvec::smallvec![t.clone()],
                None => clone_all(focus),
            }),
            Node::IndexVar => Ok(vars
                .index
                .map(|i| Item::Int(i as i64))
                .into_iter()
                .collect()),
            Node::Total => Ok(vars.total.cloned().unwrap_or_default()),
            Node::Env(name) => self.env_var(name),
            Node::Neg(inner) => {
                let v = self.eval(inner, focus, vars)?;
                operators::negate(self, v)
            }
            Node::Binary(op, l, r) => operators::binary(self, *op, l, r, focus, vars),
            Node::Is(inner, ts) => {
                let v = self.eval(inner, focus, vars)?;
                functions::types::is_op(self, &v, ts)
            }
            Node::As(inner, ts) => {
                let v = self.eval(inner, focus, vars)?;
                functions::types::as_op(self, &v, ts, false)
            }
            Node::Type(_) => {
                eval_err("a type name is only allowed as the argument of is(), as() or ofType()")
            }
        }
    }

    /// In strict mode, an element name the model does not know on a typed node is an error.
    fn check_strict(&self, item: &Item<'a>, name: &str) -> Result<(), FhirPathError> {
        let Item::Node(n) = item else { return Ok(()) };
        let model = self.env.model;
        if !n.ty.is_known() || !n.value.is_object() || model.element(n.ty, name).is_some() {
            return Ok(());
        }
        if let Some(stem) = model.choice_stem_of(n.ty, name) {
            return eval_err(format!(
                "`{name}` is a choice-type element name: use `{stem}` or `{stem}.ofType(...)`"
            ));
        }
        if self.env.strict {
            let t = model.public_name(n.ty).unwrap_or("?");
            return eval_err(format!("`{name}` is not an element of {t}"));
        }
        Ok(())
    }

    /// Strict mode: `(x as T).name` / `x.ofType(T).name` where T has no element `name`.
    fn check_static_path(&self, target: &Node, name: &str) -> Result<(), FhirPathError> {
        let ts = match target {
            Node::As(_, ts) => ts,
            Node::Call {
                func: Func::As | Func::OfType,
                args,
                ..
            } => match args.first() {
                Some(Node::Type(ts)) => ts,
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        let model = self.env.model;
        let t = model.type_id(&ts.name);
        if t.is_known()
            && model.kind(t) != Some(TypeKind::Primitive)
            && model.element(t, name).is_none()
        {
            return eval_err(format!("`{name}` is not an element of {}", ts.name));
        }
        Ok(())
    }

    fn env_var(&self, name: &str) -> EvalResult<'a> {
        let node = |v: Option<&'a Value>| -> Collection<'a> {
            v.map(|v| Item::Node(self.env.resource_node(v)))
                .into_iter()
                .collect()
        };
        let s = |s: &'static str| Ok(smallvec::smallvec![Item::Str(Text::Borrowed(s))]);
        match name {
            "resource" => Ok(node(self.env.resource)),
            "rootResource" => Ok(node(self.env.root_resource.or(self.env.resource))),
            "context" => Ok(match self.env.context {
                Some(c) => smallvec::smallvec![Item::Node(c)],
                None => self.root.clone(),
            }),
            "ucum" => s("http://unitsofmeasure.org"),
            "sct" => s("http://snomed.info/sct"),
            "loinc" => s("http://loinc.org"),
            _ => {
                if let Some(rest) = name.strip_prefix("vs-") {
                    return Ok(smallvec::smallvec![Item::Str(
                        format!("http://hl7.org/fhir/ValueSet/{rest}").into(),
                    )]);
                }
                if let Some(rest) = name.strip_prefix("ext-") {
                    return Ok(smallvec::smallvec![Item::Str(
                        format!("http://hl7.org/fhir/StructureDefinition/{rest}").into(),
                    )]);
                }
                eval_err(format!("unknown environment variable %{name}"))
            }
        }
    }

    /// True when `name` names the item's type or one of its base types (`Patient.name` head).
    fn is_type_named(&self, item: &Item<'a>, name: &str) -> bool {
        let Item::Node(n) = item else { return false };
        let model = self.env.model;
        let target = model.type_id(name);
        if n.ty.is_known() && target.is_known() && model.kind(n.ty) == Some(TypeKind::Resource) {
            return model.is_subtype(n.ty, target);
        }
        n.value.member("resourceType").and_then(Value::as_str) == Some(name)
    }

    /// The type of a child node: resolves abstract `Resource` to the `resourceType`.
    fn child_type(&self, ty: TypeId, v: &'a Value) -> TypeId {
        let model = self.env.model;
        if ty.is_known() && model.kind(ty) != Some(TypeKind::Resource) {
            return ty;
        }
        if let Some(rt) = v.member("resourceType").and_then(Value::as_str) {
            let t = model.type_id(rt);
            if t.is_known() {
                return t;
            }
        }
        ty
    }

    fn push_value(
        &self,
        v: &'a Value,
        ext: Option<&'a Value>,
        ty: TypeId,
        out: &mut Collection<'a>,
    ) {
        match v {
            Value::Array(items) => {
                let exts = ext.and_then(Value::as_array);
                for (i, it) in items.iter().enumerate() {
                    let e = exts.and_then(|a| a.get(i)).filter(|e| !e.is_null());
                    if it.is_null() && e.is_none() {
                        continue;
                    }
                    out.push(Item::Node(NodeRef {
                        value: it,
                        ext: e,
                        ty: self.child_type(ty, it),
                    }));
                }
                // extensions without values beyond the value array
                if let Some(exts) = exts {
                    for e in exts.iter().skip(items.len()).filter(|e| !e.is_null()) {
                        out.push(Item::Node(NodeRef {
                            value: &NULL,
                            ext: Some(e),
                            ty,
                        }));
                    }
                }
            }
            Value::Null => {
                if let Some(e) = ext {
                    match e {
                        Value::Array(exts) => {
                            for e in exts.iter().filter(|e| !e.is_null()) {
                                out.push(Item::Node(NodeRef {
                                    value: &NULL,
                                    ext: Some(e),
                                    ty,
                                }));
                            }
                        }
                        _ => out.push(Item::Node(NodeRef {
                            value: &NULL,
                            ext: Some(e),
                            ty,
                        })),
                    }
                }
            }
            _ => out.push(Item::Node(NodeRef {
                value: v,
                ext: ext.filter(|e| !e.is_null()),
                ty: self.child_type(ty, v),
            })),
        }
    }

    /// Navigates `item.name`, appending the children to `out`.
    /// Returns `false` only when the node is typed and its type has no element `name` (the
    /// JSON is still consulted).
    pub fn child(&self, item: &Item<'a>, name: &str, out: &mut Collection<'a>) -> bool {
        let n = match item {
            Item::Node(n) => n,
            Item::Object(o) => {
                match o.get(name) {
                    Some(Value::String(s)) => out.push(Item::Str(s.clone().into())),
                    Some(Value::Bool(b)) => out.push(Item::Bool(*b)),
                    _ => {}
                }
                return true;
            }
            _ => return true,
        };
        let obj = match n.value {
            Value::Object(o) => o,
            _ => {
                // primitive: `id` and `extension` live in the `_name` sibling
                if let Some(Value::Object(e)) = n.ext {
                    if name == "extension" || name == "id" {
                        if let Some(v) = e.get(name) {
                            let ty = if name == "id" {
                                self.env.model.type_id("string")
                            } else {
                                self.env.model.type_id("Extension")
                            };
                            self.push_value(v, None, ty, out);
                        }
                    }
                }
                return true;
            }
        };
        let model = self.env.model;
        if n.ty.is_known() {
            if let Some(info) = model.element(n.ty, name) {
                if info.choice {
                    // one scan of the object's keys instead of a lookup per possible type
                    for (k, v) in obj {
                        let key = k.strip_prefix('_').unwrap_or(k);
                        if !key.starts_with(name) {
                            continue;
                        }
                        if let Some((_, ty)) = info.types.iter().find(|(jk, _)| jk == key) {
                            let (value, ext) = if k.starts_with('_') {
                                (field(obj, key).0.unwrap_or(&NULL), Some(v))
                            } else {
                                (v, ext_sibling(obj, key))
                            };
                            self.push_value(value, ext, *ty, out);
                            return true;
                        }
                    }
                    return true;
                }
                if let Some((key, ty)) = info.types.first() {
                    let (v, ext) = field(obj, key);
                    if v.is_some() || ext.is_some() {
                        self.push_value(v.unwrap_or(&NULL), ext, *ty, out);
                    }
                }
                return true;
            }
        }
        let known = !n.ty.is_known();
        // no type information: the JSON decides
        let (v, ext) = field(obj, name);
        if v.is_some() || ext.is_some() {
            self.push_value(v.unwrap_or(&NULL), ext, TypeId::NONE, out);
            return known;
        }
        for (k, v) in obj {
            if k.len() > name.len()
                && k.starts_with(name)
                && k.as_bytes()[name.len()].is_ascii_uppercase()
            {
                let suffix = &k[name.len()..];
                let mut ty = model.type_id(suffix);
                if !ty.is_known() {
                    let lower: String = suffix[..1].to_lowercase() + &suffix[1..];
                    ty = model.type_id(&lower);
                }
                self.push_value(v, ext_sibling(obj, k), ty, out);
                return known;
            }
        }
        known
    }
}

/// Copies a slice of items into a collection (push loop: cheaper than `collect` for 0–1 items).
pub fn clone_all<'a>(items: &[Item<'a>]) -> Collection<'a> {
    let mut c = Collection::with_capacity(items.len());
    for i in items {
        c.push(i.clone());
    }
    c
}

/// Strict mode: order-dependent functions on the unordered output of children()/descendants().
fn check_ordered(target: Option<&Node>, func: Func) -> Result<(), FhirPathError> {
    let unordered = matches!(
        target,
        Some(Node::Call {
            func: Func::Children | Func::Descendants,
            ..
        })
    );
    if unordered
        && matches!(
            func,
            Func::Skip | Func::Take | Func::First | Func::Last | Func::Tail | Func::Single
        )
    {
        return eval_err(format!(
            "{}() depends on order, but the input of children()/descendants() is unordered",
            func.name()
        ));
    }
    Ok(())
}

/// `name` and its `_name` sibling in one scan of the object (no hashing: objects are small, and
/// with serde_json's `preserve_order` every `get` would hash the key with SipHash).
pub fn field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
) -> (Option<&'a Value>, Option<&'a Value>) {
    let (mut v, mut ext) = (None, None);
    let n = name.len();
    for (k, val) in obj {
        if k.len() == n {
            if k == name {
                v = Some(val);
            }
        } else if k.len() == n + 1 && k.as_bytes()[0] == b'_' && &k[1..] == name {
            ext = Some(val);
        }
    }
    (v, ext)
}

/// The `_name` sibling of `name`, found without allocating.
pub fn ext_sibling<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.len() == name.len() + 1 && k.starts_with('_') && &k[1..] == name)
        .map(|(_, v)| v)
}

pub fn literal<'a>(l: &Literal) -> Collection<'a> {
    smallvec::smallvec![match l {
        Literal::Empty => return Collection::new(),
        Literal::Bool(b) => Item::Bool(*b),
        Literal::Int(i) => Item::Int(*i),
        Literal::Dec(d) => Item::Dec(*d),
        Literal::Str(s) => Item::Str(Text::Owned(s.clone())),
        Literal::Date(d) => Item::Date(*d),
        Literal::DateTime(d) => Item::DateTime(*d),
        Literal::Time(t) => Item::Time(*t),
        Literal::Quantity(q) => Item::Quantity(Rc::new(q.clone())),
    }]
}

/// Guards deep recursion in user-driven recursion (repeat/descendants).
pub fn depth_ok(depth: usize) -> Result<(), FhirPathError> {
    if depth > MAX_DEPTH {
        eval_err("recursion too deep")
    } else {
        Ok(())
    }
}
