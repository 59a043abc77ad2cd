//! Minimal RFC 6902 JSON Patch (add, remove, replace, move) for the invalid-variant tables.

use serde_json::Value;

fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

fn parent<'a>(doc: &'a mut Value, path: &str) -> (&'a mut Value, String) {
    let (head, last) = path.rsplit_once('/').unwrap();
    let p = if head.is_empty() {
        doc
    } else {
        doc.pointer_mut(head).unwrap_or_else(|| panic!("no {head}"))
    };
    (p, unescape(last))
}

fn remove(doc: &mut Value, path: &str) -> Value {
    let (p, key) = parent(doc, path);
    match p {
        Value::Object(m) => m.shift_remove(&key).unwrap_or_else(|| panic!("no {path}")),
        Value::Array(a) => a.remove(key.parse::<usize>().unwrap()),
        _ => panic!("bad path {path}"),
    }
}

fn add(doc: &mut Value, path: &str, v: Value) {
    let (p, key) = parent(doc, path);
    match p {
        Value::Object(m) => {
            m.insert(key, v);
        }
        Value::Array(a) if key == "-" => a.push(v),
        Value::Array(a) => a.insert(key.parse::<usize>().unwrap(), v),
        _ => panic!("bad path {path}"),
    }
}

pub fn apply(doc: &mut Value, ops: &[Value]) {
    for op in ops {
        let path = op["path"].as_str().unwrap();
        match op["op"].as_str().unwrap() {
            "add" => add(doc, path, op["value"].clone()),
            "remove" => {
                remove(doc, path);
            }
            "replace" => {
                *doc.pointer_mut(path).unwrap_or_else(|| panic!("no {path}")) = op["value"].clone();
            }
            "move" => {
                let v = remove(doc, op["from"].as_str().unwrap());
                add(doc, path, v);
            }
            other => panic!("unsupported op {other}"),
        }
    }
}
