//! Environment overrides for the TOML configuration tree.
//!
//! Owns: mapping `SPBRIDGE_<SECTION>__<KEY>` variables onto TOML table paths.
//! Must not: read the environment itself (the caller passes the variables) or know
//! what any key means.

use super::ConfigError;

const PREFIX: &str = "SPBRIDGE_";

/// Apply every `SPBRIDGE_A__B__C=value` to `table.a.b.c`. Variables without `__`
/// (such as `SPBRIDGE_FHIR_PACKAGES`) are not configuration and are ignored.
pub fn apply_env_overrides(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Invalid(format!(
                "environment variable {name} has an empty key segment"
            )));
        }
        set_path(table, &path, parse_scalar(&raw), &name)?;
    }
    Ok(())
}

fn set_path(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
    var: &str,
) -> Result<(), ConfigError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "environment variable {var} descends into non-table key {key}"
                )))
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// An integer, float or boolean when the text is one, otherwise a string.
fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if raw.contains('.') && !raw.contains(':') {
        if let Ok(f) = raw.parse::<f64>() {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(raw.to_string())
}
