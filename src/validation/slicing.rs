//! Slicing: assigns each item of a sliced element to a slice (discriminators value, pattern, type,
//! profile, exists over paths such as `url`, `system`, `coding.system`, `$this`, `resolve()`), then
//! checks closed / openAtEnd / ordered rules and per-slice cardinality.
//!
//! Owns: slice matching and slice-level issues. Must not: validate item content (the walker does,
//! against the matched slice).

use super::checks::pattern_matches;
use super::model::{CompiledProfile, DiscriminatorKind, SliceTest, SlicingRules};
use super::walker::{push_index, Walk};
use crate::fhirpath::JsonMember;
use crate::outcome::IssueType;
use serde_json::Value;

impl<'a> Walk<'a> {
    /// For each item, the element index of its slice (None = unmatched).
    pub(crate) fn assign_slices(
        &mut self,
        prof: &CompiledProfile,
        k: usize,
        items: &'a [Value],
    ) -> Vec<Option<usize>> {
        let el = &prof.elements[k];
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let hit = el.slices.iter().copied().find(|&s| {
                !prof.elements[s].slice_tests.is_empty()
                    && prof.elements[s]
                        .slice_tests
                        .iter()
                        .all(|t| self.slice_test(t, item))
            });
            out.push(hit);
        }
        let Some(slicing) = &el.slicing else {
            return out;
        };
        let base_len = self.path.len();
        let mut last_pos = 0usize;
        let mut seen_unmatched = false;
        for (i, hit) in out.iter().enumerate() {
            match hit {
                None => {
                    seen_unmatched = true;
                    if slicing.rules == SlicingRules::Closed {
                        push_index(&mut self.path, i);
                        self.error(
                            IssueType::Structure,
                            format!(
                                "{} is closed-sliced and this entry matches none of its slices",
                                el.path
                            ),
                        );
                        self.path.truncate(base_len);
                    }
                }
                Some(s) => {
                    let pos = el.slices.iter().position(|x| x == s).unwrap_or(0);
                    if slicing.rules == SlicingRules::OpenAtEnd && seen_unmatched {
                        push_index(&mut self.path, i);
                        self.error(
                            IssueType::Structure,
                            format!(
                                "{}: unsliced entries must come after all slices (openAtEnd)",
                                el.path
                            ),
                        );
                        self.path.truncate(base_len);
                    }
                    if slicing.ordered && pos < last_pos {
                        push_index(&mut self.path, i);
                        self.error(
                            IssueType::Structure,
                            format!("{}: slices are out of order", el.path),
                        );
                        self.path.truncate(base_len);
                    }
                    last_pos = last_pos.max(pos);
                }
            }
        }
        for &s in &el.slices {
            let se = &prof.elements[s];
            let n = out.iter().filter(|h| **h == Some(s)).count() as u32;
            let name = se.slice_name.as_deref().unwrap_or("?");
            if n < se.min {
                self.error(
                    IssueType::Required,
                    format!(
                        "Slice {}:{name} requires at least {} but found {n}",
                        el.path, se.min
                    ),
                );
            }
            if let Some(max) = se.max {
                if n > max {
                    // Point at the first item beyond the slice's maximum.
                    let extra = out
                        .iter()
                        .enumerate()
                        .filter(|(_, h)| **h == Some(s))
                        .nth(max as usize)
                        .map(|(i, _)| i);
                    if let Some(i) = extra {
                        push_index(&mut self.path, i);
                    }
                    self.error(
                        IssueType::Structure,
                        format!(
                            "Slice {}:{name} allows at most {max} but found {n}",
                            el.path
                        ),
                    );
                    self.path.truncate(base_len);
                }
            }
        }
        out
    }

    fn slice_test(&self, t: &SliceTest, item: &'a Value) -> bool {
        let mut values: Vec<&'a Value> = vec![item];
        for seg in &t.path {
            let mut next = Vec::new();
            for v in values {
                if seg == "resolve()" {
                    if let Some(r) = v.member("reference").and_then(Value::as_str) {
                        if let Some(target) = self.resolve_local(r) {
                            next.push(target);
                        }
                    }
                    continue;
                }
                if let Some(url) = seg
                    .strip_prefix("extension('")
                    .and_then(|s| s.strip_suffix("')"))
                {
                    for e in v
                        .member("extension")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if e.member("url").and_then(Value::as_str) == Some(url) {
                            next.push(e);
                        }
                    }
                    continue;
                }
                match v.get(seg.as_str()) {
                    Some(Value::Array(a)) => next.extend(a.iter()),
                    Some(x) => next.push(x),
                    None => {}
                }
            }
            values = next;
        }
        match t.kind {
            DiscriminatorKind::Value => match &t.expected {
                Some(e) => values.contains(&e),
                None => true,
            },
            DiscriminatorKind::Pattern => match &t.expected {
                Some(e) => values.iter().any(|v| pattern_matches(e, v)),
                None => true,
            },
            DiscriminatorKind::Exists => match t.exists {
                Some(want) => values.is_empty() != want,
                None => true,
            },
            DiscriminatorKind::Type => values.iter().any(|v| {
                let rt = v.member("resourceType").and_then(Value::as_str);
                t.types.is_empty() || t.types.iter().any(|ty| Some(ty.as_str()) == rt)
            }),
            DiscriminatorKind::Profile => values
                .iter()
                .any(|v| t.profiles.is_empty() || t.profiles.iter().any(|p| self.v.conforms(v, p))),
        }
    }

    /// A reference resolved inside the current resource's contained list or the enclosing Bundle.
    pub(crate) fn resolve_local(&self, r: &str) -> Option<&'a Value> {
        if let Some(id) = r.strip_prefix('#') {
            return self
                .root
                .member("contained")
                .and_then(Value::as_array)?
                .iter()
                .find(|c| c.member("id").and_then(Value::as_str) == Some(id));
        }
        let entries = self.bundle?.member("entry").and_then(Value::as_array)?;
        entries
            .iter()
            .find(|e| {
                e.member("fullUrl").and_then(Value::as_str) == Some(r)
                    || e.member("resource").is_some_and(|res| {
                        let (Some(t), Some(id)) = (
                            res.member("resourceType").and_then(Value::as_str),
                            res.member("id").and_then(Value::as_str),
                        ) else {
                            return false;
                        };
                        r.len() == t.len() + 1 + id.len()
                            && r.starts_with(t)
                            && r.ends_with(id)
                            && r.as_bytes()[t.len()] == b'/'
                    })
            })
            .and_then(|e| e.member("resource"))
    }
}
