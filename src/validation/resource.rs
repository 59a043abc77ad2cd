//! Resource-level validation: resourceType, profile choice (explicit, `meta.profile`, configured
//! default, base R4), the resource context for invariants, Bundle rules and the per-resource JSON
//! schema layer.
//!
//! Owns: `Walk::resource` and profile selection. Must not: check element content (the walker does).

use super::model::CompiledProfile;
use super::walker::Walk;
use crate::fhirpath::JsonMember;
use crate::outcome::{IssueType, Severity};
use serde_json::{Map, Value};
use std::sync::Arc;

impl<'a> Walk<'a> {
    /// Validates a resource at the current path (the path already names its location).
    pub fn resource(&mut self, res: &'a Value, explicit_profile: Option<&str>, is_entry: bool) {
        let Some(obj) = res.as_object() else {
            self.error(IssueType::Structure, "A resource must be a JSON object");
            return;
        };
        let Some(rt) = obj.member("resourceType").and_then(Value::as_str) else {
            self.error(
                IssueType::Structure,
                "Missing resourceType: every resource must name its type",
            );
            return;
        };
        if !self.v.registry.is_resource_type(rt) || rt == "Resource" || rt == "DomainResource" {
            self.error(IssueType::Structure, format!("Unknown resourceType '{rt}'"));
            return;
        }
        let (saved_res, saved_root, saved_bundle) = (self.resource, self.root, self.bundle);
        self.resource = res;
        if is_entry {
            self.root = res;
        }
        if rt == "Bundle" {
            self.bundle = Some(res);
            self.bundle_rules(obj);
        }
        let first_issue = self.issues.len();
        let profiles = self.select_profiles(obj, rt, explicit_profile);
        for p in &profiles {
            if p.type_name != rt {
                self.error(
                    IssueType::Structure,
                    format!("Profile {} is for {}, not {rt}", p.url, p.type_name),
                );
                continue;
            }
            self.constraints(p, &p.elements[0], res, None, rt);
            self.children(obj, p, 0, true);
        }
        if let Some(schema) = &self.v.schema {
            let (done, mut out) = (&self.issues[first_issue..], Vec::new());
            schema.check(rt, res, &self.path, done, &mut out);
            self.issues.extend(out);
        }
        self.resource = saved_res;
        self.root = saved_root;
        self.bundle = saved_bundle;
    }

    pub(crate) fn select_profiles(
        &mut self,
        obj: &Map<String, Value>,
        rt: &str,
        explicit: Option<&str>,
    ) -> Vec<Arc<CompiledProfile>> {
        let reg = &self.v.registry;
        if let Some(url) = explicit {
            return match reg.profile(url) {
                Ok(p) => vec![p],
                Err(e) => {
                    self.error(
                        IssueType::NotSupported,
                        format!("Profile {url} cannot be used: {e}"),
                    );
                    Vec::new()
                }
            };
        }
        let mut out = Vec::new();
        let metas = obj
            .member("meta")
            .and_then(|m| m.member("profile"))
            .and_then(Value::as_array);
        for url in metas.into_iter().flatten().filter_map(Value::as_str) {
            match reg.profile(url) {
                Ok(p) => out.push(p),
                Err(e) => {
                    let sev = if self.v.options.strict_profiles {
                        Severity::Error
                    } else {
                        Severity::Warning
                    };
                    let saved = self.path.len();
                    self.path.push_str(".meta.profile");
                    self.issue(
                        sev,
                        IssueType::NotSupported,
                        format!("Profile {url} in meta.profile is not loaded, so it was not checked ({e})"),
                    );
                    self.path.truncate(saved);
                }
            }
        }
        if out.is_empty() {
            let r = match self.v.options.default_profiles.get(rt) {
                Some(url) => reg.profile(url).map_err(|e| (url.clone(), e)),
                None => reg
                    .base_profile(rt)
                    .map_err(|e| (super::registry::type_url(rt), e)),
            };
            match r {
                Ok(p) => out.push(p),
                Err((url, e)) => self.error(
                    IssueType::NotSupported,
                    format!("Profile {url} cannot be used: {e}"),
                ),
            }
        }
        if out.len() > 1 {
            self.multi_profile = true;
        }
        out
    }
}
