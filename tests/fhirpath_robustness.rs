//! Parse errors carry positions and say what was expected; nothing panics on mangled
//! expressions or odd JSON.

#[path = "support/fhirpath.rs"]
mod common;

use serde_json::{json, Value};
use spbridge::fhirpath::{EvalEnv, Expression};

#[test]
fn parse_errors_have_positions_and_expectations() {
    let cases: [(&str, usize, &str); 9] = [
        ("name.given.", 11, "expected an identifier"),
        ("name.where(use = 'official'", 27, "expected `)`"),
        ("2 + 2 /", 7, "expected an expression"),
        ("name.foo()", 5, "unknown function `foo`"),
        ("name.where()", 5, "expects 1 argument"),
        ("'abc", 0, "unterminated string"),
        ("1 + #", 4, "unexpected character `#`"),
        ("name[0", 6, "expected `]`"),
        ("a b", 2, "unexpected identifier `b`"),
    ];
    for (text, offset, msg) in cases {
        let err = Expression::compile(text).expect_err(text);
        assert_eq!(err.offset, offset, "{text}: {err}");
        assert!(err.message.contains(msg), "{text}: {err}");
    }
    let err = Expression::compile("name\n  .where(x = )").expect_err("multi-line");
    assert_eq!((err.line, err.column), (2, 14));
}

/// Deterministic pseudo-random numbers (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn mangled_expressions_never_panic() {
    let model = common::model();
    let patient = common::read_json(&common::suite_dir().join("input/patient-example.json"));
    let odd = json!({"resourceType": "Patient", "name": [null, {"given": [null]}, 3], "_birthDate": [1], "birthDate": {"x": 1},
        "extension": "nope", "contained": [{"contained": [{}]}], "active": "yes"});
    let suite = common::read_json(&common::suite_dir().join("tests-fhir-r4.json"));
    let mut seeds: Vec<String> = suite
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["expression"].as_str().map(str::to_string))
        .collect();
    seeds.push("contained.where((('#'+id in (%resource.descendants().reference)) or descendants().where(reference = '#').exists()).not()).empty()".into());
    let junk = [
        "(", ")", ".", "[", "]", "'", "`", "@", "%", "$", "-", "|", "{}", " is ", "*", "/", "\\",
        "1.", "é",
    ];
    let mut rng = Lcg(42);
    let mut compiled = 0;
    for seed in &seeds {
        let chars: Vec<char> = seed.chars().collect();
        for _ in 0..6 {
            let mut c = chars.clone();
            match rng.next() % 3 {
                0 if !c.is_empty() => {
                    let at = rng.next() % c.len();
                    c.truncate(at);
                }
                1 if !c.is_empty() => {
                    let at = rng.next() % c.len();
                    c.remove(at);
                }
                _ => {
                    let at = rng.next() % (c.len() + 1);
                    let j = junk[rng.next() % junk.len()];
                    for (k, ch) in j.chars().enumerate() {
                        c.insert(at + k, ch);
                    }
                }
            }
            let text: String = c.into_iter().collect();
            if let Ok(e) = Expression::compile(&text) {
                compiled += 1;
                for res in [&patient, &odd] {
                    let env = EvalEnv::for_resource(model, res);
                    let _ = e.evaluate(&env, env.resource_node(res));
                }
            }
        }
    }
    assert!(compiled > 100);
    let env = EvalEnv::for_resource(model, &patient);
    for x in [
        "'2020-01-01Téééééé'.toDateTime()",
        "'2020-01-01T10:00é+01:00'.convertsToDateTime()",
        "'é'.toQuantity()",
        "'1 é'.toQuantity()",
        "'ééé'.substring(1, 5) & 'é'.toChars().first()",
        "'é12'.decode('hex') | 'é'.decode('base64') | 'x'.matches('(')",
        "@2020-01-01 + 1000000000000 years",
        "9223372036854775807 + 1",
        "-(-9223372036854775807 - 1)",
        "0.0000000000000000000000000001.lowBoundary() | 0.0000000000000000000000000001.highBoundary(28)",
        "@2020-01-01 + 9223372036854775807 months | @T10:00 + 9223372036854775807 'ms'",
        "(-9223372036854775807 - 1) div -1",
        "1.0 / 0.0000000000000000000000000001 * 100000000000000000000",
    ] {
        let e = Expression::compile(x).expect(x);
        let _ = e.evaluate(&env, env.resource_node(&patient));
    }
    // deep nesting gives an error, not a stack overflow
    for deep in [
        "(".repeat(5000) + "1" + &")".repeat(5000),
        "-".repeat(100_000) + "1",
        "1".to_string() + &"+1".repeat(5000),
    ] {
        let _ = Expression::compile(&deep);
    }
    let _ = Value::Null;
}

#[test]
fn evaluation_over_every_test_input_and_odd_values() {
    let model = common::model();
    let dir = common::suite_dir().join("input");
    let exprs = [
        "descendants().count()",
        "descendants().select($this.toString()).count()",
        "descendants().where(hasValue()).count() >= 0",
        "children().type().name.distinct()",
        "descendants().ofType(Reference).resolve()",
        "descendants().as(string).matches('^[a-z]')",
        "repeat(children()).count()",
    ];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let res = common::read_json(&path);
        let env = EvalEnv::for_resource(model, &res);
        for x in exprs {
            let e = Expression::compile(x).unwrap();
            let _ = e.evaluate(&env, env.resource_node(&res));
        }
    }
}

#[test]
fn fast_paths_agree_with_general_evaluator_on_every_node() {
    let model = common::model();
    let dir = common::suite_dir().join("input");
    let ele1 = Expression::compile("hasValue() or (children().count() > id.count())").unwrap();
    let ext1 = Expression::compile("extension.exists() != value.exists()").unwrap();
    let all = Expression::compile("descendants()").unwrap();
    let mut resources: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .map(|p| common::read_json(&p))
        .collect();
    resources.push(json!({"resourceType": "Patient", "id": "x", "_active": {"id": "a"}, "_gender": {"extension": [{"url": "u", "_valueCode": {"id": "b"}}]},
        "name": [{"id": "only-id"}, {}, {"given": [null, "A"], "_given": [{"id": "g"}]}],
        "extension": [{"url": "a"}, {"url": "b", "valueString": "x", "extension": [{"url": "c", "valueInteger": 1}]}, {"url": "d", "_valueString": {"id": "e"}}]}));
    let mut checked = 0;
    for res in &resources {
        let env = EvalEnv::for_resource(model, res);
        let root = env.resource_node(res);
        let mut nodes = vec![spbridge::fhirpath::Item::Node(root)];
        nodes.extend(all.evaluate(&env, root).unwrap());
        for item in &nodes {
            let spbridge::fhirpath::Item::Node(n) = item else {
                continue;
            };
            let fast = ele1.evaluate_boolean(&env, *n).unwrap().unwrap_or(false);
            let general = ele1
                .evaluate_boolean_general(&env, *n)
                .unwrap()
                .unwrap_or(false);
            assert_eq!(fast, general, "ele-1 on {}", n.value);
            if model.name(n.ty) == Some("Extension") {
                let fast = ext1.evaluate_boolean(&env, *n).unwrap().unwrap_or(false);
                let general = ext1
                    .evaluate_boolean_general(&env, *n)
                    .unwrap()
                    .unwrap_or(false);
                assert_eq!(fast, general, "ext-1 on {}", n.value);
            }
            checked += 1;
        }
    }
    assert!(checked > 500, "{checked}");
}
