//! Unit tests for local expansion (in-memory resources only).

use super::*;
use crate::packages::CanonicalResolver;
use serde_json::{json, Value};

/// In-memory resources by canonical URL.
#[derive(Default)]
struct MemoryResolver(Vec<Arc<Value>>);

impl MemoryResolver {
    fn add(&mut self, resource: Value) {
        self.0.push(Arc::new(resource));
    }
}

impl CanonicalResolver for MemoryResolver {
    fn resolve(&self, canonical: &str) -> Option<Arc<Value>> {
        let url = canonical.split('|').next().unwrap_or(canonical);
        self.0.iter().find(|r| r["url"] == url).cloned()
    }

    fn all_of_type(&self, resource_type: &str) -> Vec<Arc<Value>> {
        self.0
            .iter()
            .filter(|r| r["resourceType"] == resource_type)
            .cloned()
            .collect()
    }
}

fn term() -> Terminology {
    let mut r = MemoryResolver::default();
    r.add(
        json!({"resourceType":"CodeSystem","url":"http://x/cs","content":"complete","concept":[
        {"code":"a","concept":[{"code":"a1"},{"code":"a2","concept":[{"code":"a2x"}]}]},
        {"code":"b","property":[{"code":"status","valueCode":"retired"}]}]}),
    );
    r.add(json!({"resourceType":"ValueSet","url":"http://x/enum","compose":{"include":[{"system":"http://x/cs","concept":[{"code":"a"},{"code":"b"}]}]}}));
    r.add(json!({"resourceType":"ValueSet","url":"http://x/all","compose":{"include":[{"system":"http://x/cs"}],"exclude":[{"system":"http://x/cs","concept":[{"code":"b"}]}]}}));
    r.add(json!({"resourceType":"ValueSet","url":"http://x/isa","compose":{"include":[{"system":"http://x/cs","filter":[{"property":"concept","op":"is-a","value":"a2"}]}]}}));
    r.add(json!({"resourceType":"ValueSet","url":"http://x/desc","compose":{"include":[{"system":"http://x/cs","filter":[{"property":"concept","op":"descendent-of","value":"a"}]}]}}));
    r.add(json!({"resourceType":"ValueSet","url":"http://x/prop","compose":{"include":[{"system":"http://x/cs","filter":[{"property":"status","op":"=","value":"retired"}]}]}}));
    r.add(json!({"resourceType":"ValueSet","url":"http://x/nested","compose":{"include":[{"valueSet":["http://x/enum"]}]}}));
    r.add(json!({"resourceType":"ValueSet","url":"http://x/sct","compose":{"include":[{"system":"http://snomed.info/sct","filter":[{"property":"concept","op":"is-a","value":"1"}]}]}}));
    Terminology::new(Arc::new(r))
}

fn codes(e: &Expansion) -> Vec<String> {
    match e {
        Expansion::Complete(s) => {
            let mut v: Vec<String> = s.codes.keys().cloned().collect();
            v.sort();
            v
        }
        Expansion::Incomplete(r) => vec![format!("INCOMPLETE {r}")],
    }
}

#[test]
fn expansions() {
    let t = term();
    assert_eq!(codes(&t.expand("http://x/enum")), ["a", "b"]);
    assert_eq!(codes(&t.expand("http://x/all")), ["a", "a1", "a2", "a2x"]);
    assert_eq!(codes(&t.expand("http://x/isa")), ["a2", "a2x"]);
    assert_eq!(codes(&t.expand("http://x/desc")), ["a1", "a2", "a2x"]);
    assert_eq!(codes(&t.expand("http://x/prop")), ["b"]);
    assert_eq!(codes(&t.expand("http://x/nested|1.0")), ["a", "b"]);
    assert!(matches!(
        *t.expand("http://x/sct"),
        Expansion::Incomplete(_)
    ));
    assert!(matches!(
        *t.expand("http://x/missing"),
        Expansion::Incomplete(_)
    ));
    match &*t.expand("http://x/enum") {
        Expansion::Complete(s) => {
            assert!(s.contains("http://x/cs", "a") && !s.contains("http://y", "a"))
        }
        Expansion::Incomplete(_) => panic!(),
    }
}
