//! `GET /openapi.json`: an OpenAPI 3.0 description of the routes intake really serves.
//!
//! Owns: describing the paths, methods, search parameters and media types, generated from
//! the same tables the dispatcher and the store use (`READABLE_TYPES`, `SEARCHABLE_TYPES`,
//! `supported_params`), so it cannot drift from them; every error is described as an
//! OperationOutcome. API fuzzers (schemathesis, `scripts/api-fuzz`) and integrators' tooling
//! read it. The FHIR-native description stays `GET /metadata` (the CapabilityStatement).
//! Must not: describe anything the dispatcher does not route.

use super::dispatch::{READABLE_TYPES, SEARCHABLE_TYPES};
use crate::store::supported_params;
use serde_json::{json, Map, Value};

const FHIR_JSON: &str = "application/fhir+json";

/// The document for a service whose base URL is `base_url`.
pub fn document(base_url: &str, auth_enabled: bool) -> Value {
    let mut paths = Map::new();
    paths.insert(
        "/".into(),
        json!({"post": operation("transaction", "Submit a referral as a FHIR transaction Bundle",
            Some("Bundle"), &[], &["200"], auth_enabled)}),
    );
    paths.insert(
        "/$process-message".into(),
        json!({"post": operation("process-message",
            "Submit a referral as a FHIR message Bundle (NHS Booking and Referral Standard style)",
            Some("Bundle"), &[], &["200"], auth_enabled)}),
    );
    paths.insert(
        "/metadata".into(),
        json!({"get": operation("capabilities", "The CapabilityStatement", None, &[], &["200"], false)}),
    );
    for (path, id, summary) in [
        ("/livez", "livez", "Liveness"),
        (
            "/readyz",
            "readyz",
            "Readiness: store reachable, broker connected, outbox lag bounded",
        ),
    ] {
        // Health answers are plain JSON documents, not FHIR resources.
        let mut get = operation(id, summary, None, &[], &[], false);
        for code in ["200", "503"] {
            get["responses"][code] = json!({"description": summary,
                "content": {"application/json": {"schema": {"type": "object", "required": ["status"]}}}});
        }
        paths.insert(path.into(), json!({"get": get}));
    }
    for resource_type in READABLE_TYPES {
        let mut item = Map::new();
        if SEARCHABLE_TYPES.contains(resource_type) {
            item.insert(
                "get".into(),
                operation(
                    &format!("search-{resource_type}"),
                    &format!("Search {resource_type}"),
                    None,
                    &search_parameters(resource_type),
                    &["200"],
                    auth_enabled,
                ),
            );
        }
        if *resource_type == "ServiceRequest" || *resource_type == "Subscription" {
            item.insert(
                "post".into(),
                operation(
                    &format!("create-{resource_type}"),
                    &format!("Create a {resource_type}"),
                    Some(resource_type),
                    &[],
                    &["201", "200"],
                    auth_enabled,
                ),
            );
        }
        if !item.is_empty() {
            paths.insert(format!("/{resource_type}"), Value::Object(item));
        }
        let id = path_parameter("id", "[A-Za-z0-9\\-\\.]{1,64}");
        let mut instance = Map::new();
        instance.insert(
            "get".into(),
            operation(
                &format!("read-{resource_type}"),
                &format!("Read a {resource_type}"),
                None,
                std::slice::from_ref(&id),
                &["200"],
                auth_enabled,
            ),
        );
        if *resource_type == "Task" {
            let if_match = json!({"name": "If-Match", "in": "header", "required": true,
                "schema": {"type": "string"}, "description": "W/\"<versionId>\" of the version being changed"});
            instance.insert(
                "put".into(),
                operation(
                    "update-Task",
                    "A provider changes a Task (status, business status, output, note)",
                    Some("Task"),
                    &[id.clone(), if_match.clone()],
                    &["200"],
                    auth_enabled,
                ),
            );
            let mut patch = operation(
                "patch-Task",
                "A provider changes a Task with a JSON Patch",
                None,
                &[id.clone(), if_match],
                &["200"],
                auth_enabled,
            );
            patch["requestBody"] = json!({"required": true, "content": {
                "application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object",
                    "required": ["op", "path"], "properties": {
                        "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
                        "path": {"type": "string"}, "from": {"type": "string"}, "value": {}}}}}}});
            instance.insert("patch".into(), patch);
        }
        paths.insert(format!("/{resource_type}/{{id}}"), Value::Object(instance));
        paths.insert(
            format!("/{resource_type}/{{id}}/_history"),
            json!({"get": operation(&format!("history-{resource_type}"),
                &format!("Every version of a {resource_type}"), None,
                std::slice::from_ref(&id), &["200"], auth_enabled)}),
        );
        paths.insert(
            format!("/{resource_type}/{{id}}/_history/{{vid}}"),
            json!({"get": operation(&format!("vread-{resource_type}"),
                &format!("One version of a {resource_type}"), None,
                &[id, path_parameter("vid", "[0-9]{1,9}")], &["200"], auth_enabled)}),
        );
    }
    if auth_enabled {
        add_security_paths(&mut paths);
    }
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "spbridge FHIR R4 API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Social-prescribing referrals from GP systems to VCS providers and their \
                progress back. FHIR R4 JSON only; every error is an OperationOutcome. The FHIR \
                CapabilityStatement is at /metadata."
        },
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {"schemas": {
            "Resource": {"type": "object", "required": ["resourceType"],
                         "properties": {"resourceType": {"type": "string"}}},
            "OperationOutcome": {"type": "object", "required": ["resourceType", "issue"],
                "properties": {
                    "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                    "issue": {"type": "array", "minItems": 1, "items": {"type": "object",
                        "required": ["severity", "code"],
                        "properties": {"severity": {"type": "string"}, "code": {"type": "string"},
                                       "diagnostics": {"type": "string"}}}}}}
        }}
    });
    if auth_enabled {
        doc["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
            "bearerFormat": "JWT", "description": "SMART Backend Services access token from POST /oauth2/token"}});
    }
    doc
}

fn add_security_paths(paths: &mut Map<String, Value>) {
    let mut token = operation(
        "token",
        "SMART Backend Services token request (client assertion)",
        None,
        &[],
        &["200"],
        false,
    );
    token["requestBody"] = json!({"required": true, "content": {
        "application/x-www-form-urlencoded": {"schema": {"type": "object",
            "required": ["grant_type", "client_assertion_type", "client_assertion"],
            "properties": {"grant_type": {"type": "string"}, "client_assertion_type": {"type": "string"},
                           "client_assertion": {"type": "string"}, "scope": {"type": "string"}}}}}});
    // OAuth errors are RFC 6749 JSON, not OperationOutcomes.
    token["responses"] = json!({
        "200": {"description": "An access token",
                "content": {"application/json": {"schema": {"type": "object", "required": ["access_token"]}}}},
        "default": {"description": "An RFC 6749 error",
                    "content": {"application/json": {"schema": {"type": "object", "required": ["error"]}}}}
    });
    paths.insert("/oauth2/token".into(), json!({"post": token}));
    for (path, id) in [
        ("/.well-known/jwks.json", "jwks"),
        ("/.well-known/smart-configuration", "smart-configuration"),
    ] {
        let mut get = operation(id, id, None, &[], &["200"], false);
        get["responses"]["200"]["content"] =
            json!({"application/json": {"schema": {"type": "object"}}});
        paths.insert(path.into(), json!({"get": get}));
    }
}

fn path_parameter(name: &str, pattern: &str) -> Value {
    json!({"name": name, "in": "path", "required": true,
           "schema": {"type": "string", "pattern": format!("^{pattern}$")}})
}

fn search_parameters(resource_type: &str) -> Vec<Value> {
    let mut out: Vec<Value> = supported_params(resource_type)
        .iter()
        .map(|p| json!({"name": p, "in": "query", "required": false, "schema": {"type": "string"}}))
        .collect();
    out.push(json!({"name": "_id", "in": "query", "schema": {"type": "string"}}));
    out.push(json!({"name": "_count", "in": "query", "schema": {"type": "integer", "minimum": 0}}));
    out.push(
        json!({"name": "_offset", "in": "query", "schema": {"type": "integer", "minimum": 0}}),
    );
    out.push(
        json!({"name": "_lastUpdated", "in": "query", "schema": {"type": "string"},
        "description": "[gt|ge|lt|le|eq]<date or instant>"}),
    );
    out
}

/// One operation: FHIR JSON in and out, `success` codes with a resource, every other status
/// an OperationOutcome.
fn operation(
    id: &str,
    summary: &str,
    body: Option<&str>,
    parameters: &[Value],
    success: &[&str],
    secured: bool,
) -> Value {
    let mut responses = Map::new();
    for code in success {
        responses.insert(
            (*code).into(),
            json!({"description": "FHIR resource",
                   "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}}}}),
        );
    }
    responses.insert(
        "default".into(),
        json!({"description": "An OperationOutcome saying what is wrong and where",
               "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}}),
    );
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(resource_type) = body {
        op["requestBody"] = json!({"required": true, "content": {FHIR_JSON: {"schema": {
            "type": "object", "required": ["resourceType"],
            "properties": {"resourceType": {"type": "string", "enum": [resource_type]}}}}}});
    }
    if secured {
        op["security"] = json!([{"bearer": []}]);
    }
    op
}

#[cfg(test)]
mod tests {
    use super::document;

    #[test]
    fn every_readable_type_and_task_update_is_described() {
        let doc = document("http://127.0.0.1:8080", true);
        let paths = doc["paths"].as_object().unwrap();
        for t in super::READABLE_TYPES {
            assert!(paths.contains_key(&format!("/{t}/{{id}}")), "{t}");
        }
        assert!(paths["/Task/{id}"].get("put").is_some());
        assert!(paths["/Task/{id}"].get("patch").is_some());
        assert!(paths["/ServiceRequest"].get("post").is_some());
        assert!(paths.contains_key("/oauth2/token"));
        assert!(!document("x", false)["paths"]
            .as_object()
            .unwrap()
            .contains_key("/oauth2/token"));
    }
}
