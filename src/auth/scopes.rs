//! Which SMART v2 scope each FHIR interaction needs, from its method and path.
//!
//! Owns: the (method, path) → (resource type, interaction) table and the list of paths
//! that need no token at all.
//! Must not: know about tokens or principals beyond `Interaction`.

use super::Interaction;
use crate::definitions::R4_RESOURCE_TYPES;
use hyper::Method;

/// Paths anyone may call: capability statement, probes, metrics, discovery documents and
/// the token endpoint itself.
pub fn is_public(method: &Method, path: &str) -> bool {
    matches!(
        path,
        "/metadata" | "/openapi.json" | "/livez" | "/readyz" | "/metrics"
    ) || path.starts_with("/.well-known/")
        || (method == Method::POST && path == "/oauth2/token")
}

/// The resource type and interaction a request needs a scope for; `None` for paths that
/// are no FHIR interaction or name no R4 resource type (they still need a valid token,
/// and intake answers 404/405).
pub fn required(method: &Method, path: &str) -> Option<(String, Interaction)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if method == Method::POST && (path == "/" || path == "/$process-message") {
        return Some(("ServiceRequest".into(), Interaction::Create));
    }
    let resource_type = *segments.first()?;
    if !resource_type
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase())
        || !R4_RESOURCE_TYPES.contains(&resource_type)
    {
        return None;
    }
    let instance = segments.len() > 1 && segments[1] != "_search" && segments[1] != "_history";
    let interaction = match *method {
        Method::GET | Method::HEAD if instance => Interaction::Read,
        Method::GET | Method::HEAD => Interaction::Search,
        Method::POST if segments.get(1) == Some(&"_search") => Interaction::Search,
        Method::POST => Interaction::Create,
        Method::PUT | Method::PATCH => Interaction::Update,
        Method::DELETE => Interaction::Delete,
        _ => return None,
    };
    Some((resource_type.to_string(), interaction))
}

/// The scope to name in a 403 (`system/<Type>.<letter>`).
pub fn scope_text(resource_type: &str, interaction: Interaction) -> String {
    let letter = match interaction {
        Interaction::Create => "c",
        Interaction::Read => "r",
        Interaction::Update => "u",
        Interaction::Delete => "d",
        Interaction::Search => "s",
    };
    format!("system/{resource_type}.{letter}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactions_by_method_and_path() {
        let r = |m: Method, p: &str| required(&m, p);
        assert_eq!(
            r(Method::POST, "/ServiceRequest"),
            Some(("ServiceRequest".into(), Interaction::Create))
        );
        assert_eq!(
            r(Method::POST, "/$process-message"),
            Some(("ServiceRequest".into(), Interaction::Create))
        );
        assert_eq!(
            r(Method::POST, "/"),
            Some(("ServiceRequest".into(), Interaction::Create))
        );
        assert_eq!(
            r(Method::GET, "/Task/abc"),
            Some(("Task".into(), Interaction::Read))
        );
        assert_eq!(
            r(Method::GET, "/Task"),
            Some(("Task".into(), Interaction::Search))
        );
        assert_eq!(
            r(Method::PATCH, "/Task/abc"),
            Some(("Task".into(), Interaction::Update))
        );
        assert_eq!(
            r(Method::GET, "/ServiceRequest/x/_history/2"),
            Some(("ServiceRequest".into(), Interaction::Read))
        );
        assert_eq!(r(Method::GET, "/nonsense"), None);
        assert_eq!(r(Method::GET, "/Nowhere"), None);
        assert!(is_public(&Method::GET, "/.well-known/jwks.json"));
        assert!(!is_public(&Method::GET, "/ServiceRequest"));
    }
}
