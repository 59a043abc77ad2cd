//! ElementDefinition ids and paths: parsing `Patient.identifier:nhsNumber.system`
//! into segments, choice-type renames (`valueQuantity` for `value[x]`), and
//! re-rooting ids/paths when a datatype's or profile's elements are grafted in.
//! Must not: look anything up or touch element content beyond `id`/`path`.

/// One dotted step of an element id: the element name and an optional slice
/// name (`identifier:nhsNumber`, re-slices as `extension:a/b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub name: String,
    pub slice: Option<String>,
}

/// Split an element id into segments. Slice names never contain `.` (eld-16).
pub fn parse_id(id: &str) -> Vec<Segment> {
    id.split('.')
        .map(|part| match part.split_once(':') {
            Some((name, slice)) => Segment {
                name: name.to_string(),
                slice: Some(slice.to_string()),
            },
            None => Segment {
                name: part.to_string(),
                slice: None,
            },
        })
        .collect()
}

/// The last dotted name of a path (`Observation.value[x]` -> `value[x]`).
pub fn last_name(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// If `name` is a renamed form of the choice element `choice` (`valueString`
/// for `value[x]`), the type-code suffix as written (`String`).
pub fn choice_suffix<'a>(choice: &str, name: &'a str) -> Option<&'a str> {
    let stem = choice.strip_suffix("[x]")?;
    let rest = name.strip_prefix(stem)?;
    if rest.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
        Some(rest)
    } else {
        None
    }
}

/// Whether a type code matches a renamed-choice suffix (`dateTime` ~ `DateTime`).
pub fn type_matches_suffix(code: &str, suffix: &str) -> bool {
    let mut chars = code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str() == suffix,
        None => false,
    }
}

/// Replace the leading `old_root` of an id or path by `new_root`
/// (`Identifier.system` with `Identifier` -> `Patient.identifier` gives
/// `Patient.identifier.system`). `None` if `value` is not under `old_root`.
pub fn reroot(value: &str, old_root: &str, new_root: &str) -> Option<String> {
    if value == old_root {
        return Some(new_root.to_string());
    }
    let rest = value.strip_prefix(old_root)?;
    if rest.starts_with('.') || rest.starts_with(':') {
        Some(format!("{new_root}{rest}"))
    } else {
        None
    }
}

/// Build an element id from a differential `path` when the element has no id:
/// the id of the nearest earlier element whose path is an ancestor (or the
/// same path) supplies the slice names of the leading segments.
pub fn id_from_path(path: &str, slice_name: Option<&str>, earlier: &[(String, String)]) -> String {
    let mut base_id: Option<(usize, &str)> = None;
    for (p, id) in earlier.iter().rev() {
        let is_ancestor = path.len() > p.len()
            && path.starts_with(p.as_str())
            && path.as_bytes().get(p.len()) == Some(&b'.');
        if is_ancestor {
            base_id = Some((p.len(), id.as_str()));
            break;
        }
    }
    let mut id = match base_id {
        Some((len, id)) => format!("{id}{}", &path[len..]),
        None => path.to_string(),
    };
    if let Some(s) = slice_name {
        id.push(':');
        id.push_str(s);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_slices_and_reslices() {
        let s = parse_id("Patient.extension:a/b.value[x]");
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].name, "extension");
        assert_eq!(s[1].slice.as_deref(), Some("a/b"));
        assert_eq!(s[2].name, "value[x]");
    }

    #[test]
    fn choice_renames() {
        assert_eq!(choice_suffix("value[x]", "valueDateTime"), Some("DateTime"));
        assert_eq!(choice_suffix("value[x]", "value"), None);
        assert!(type_matches_suffix("dateTime", "DateTime"));
        assert!(!type_matches_suffix("date", "DateTime"));
    }

    #[test]
    fn reroots() {
        assert_eq!(
            reroot("Identifier.system", "Identifier", "Patient.identifier:nhs").as_deref(),
            Some("Patient.identifier:nhs.system")
        );
        assert_eq!(reroot("Identifiers.x", "Identifier", "P"), None);
    }

    #[test]
    fn ids_from_paths() {
        let earlier = vec![("A.b".to_string(), "A.b:s".to_string())];
        assert_eq!(id_from_path("A.b.c", None, &earlier), "A.b:s.c");
        assert_eq!(id_from_path("A.d", Some("x"), &earlier), "A.d:x");
    }
}
