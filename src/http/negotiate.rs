//! Content negotiation and request-id hygiene.
//!
//! Owns: deciding whether `Accept` / `_format` allow FHIR JSON (else 406), whether
//! a request body's `Content-Type` is JSON (else 415; forms only for the token endpoint),
//! and which request-id,
//! correlation-id and trace-context header values are acceptable.
//! Must not: read bodies or know about routes.

/// Media types whose bodies are parsed as JSON.
const JSON_TYPES: &[&str] = &[
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
    "application/json-patch+json",
];

/// True when an `Accept` header (or its absence) allows a FHIR JSON answer.
pub fn accept_allows_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|part| {
        let mut params = part.split(';');
        let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let zero_q = params.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !zero_q
            && (media == "*/*" || media == "application/*" || JSON_TYPES.contains(&media.as_str()))
    })
}

/// True when `_format` (if present) asks for JSON.
pub fn format_allows_json(format: Option<&str>) -> bool {
    match format {
        None => true,
        Some(f) => {
            let f = f.trim().to_ascii_lowercase();
            let media = f.split(';').next().unwrap_or("").trim().to_string();
            media == "json" || JSON_TYPES.contains(&media.as_str())
        }
    }
}

/// True when a request `Content-Type` is a JSON type spbridge parses.
pub fn content_type_is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    JSON_TYPES.contains(&media.as_str())
}

/// The OAuth token endpoint: the one path whose bodies are forms.
pub const TOKEN_PATH: &str = "/oauth2/token";

/// True for `application/x-www-form-urlencoded`.
pub fn content_type_is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// A form body as a JSON object: a field sent once is a string, repeated fields an array.
pub fn form_to_json(bytes: &[u8]) -> serde_json::Value {
    use serde_json::Value;
    let mut map = serde_json::Map::new();
    for (key, value) in form_urlencoded::parse(bytes) {
        let value = Value::String(value.into_owned());
        match map.get_mut(key.as_ref()) {
            None => {
                map.insert(key.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    Value::Object(map)
}

/// A client-supplied id is used only when it is short, visible ASCII.
pub fn acceptable_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= 200 && value.bytes().all(|b| b.is_ascii_graphic())
}

/// `traceparent` per W3C Trace Context: `00-<32 hex>-<16 hex>-<2 hex>`.
pub fn acceptable_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        assert!(accept_allows_json(None));
        assert!(accept_allows_json(Some("application/fhir+json")));
        assert!(accept_allows_json(Some("text/html, */*;q=0.8")));
        assert!(!accept_allows_json(Some("application/fhir+xml")));
        assert!(!accept_allows_json(Some("application/json;q=0")));
    }

    #[test]
    fn formats_and_content_types() {
        assert!(format_allows_json(Some("json")));
        assert!(!format_allows_json(Some("xml")));
        assert!(content_type_is_json(Some(
            "application/fhir+json; charset=utf-8"
        )));
        assert!(!content_type_is_json(Some("application/fhir+xml")));
        assert!(!content_type_is_json(None));
    }

    #[test]
    fn traceparents() {
        assert!(acceptable_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!acceptable_traceparent("00-xyz-00f067aa0ba902b7-01"));
    }
}
