//! FHIR package registry client (NPM-style API) over blocking HTTP (ureq, rustls on aws-lc-rs).
//!
//! Owns: registry configuration, `GET {base}/{id}` metadata (`versions.{v}.dist.tarball`,
//! `shasum`, `integrity`), the direct `GET {base}/{id}/{version}` fallback, trying the configured
//! registries in order. Must not: verify or extract tarballs (that is `tarball.rs`) or write to
//! the package directory (that is `install.rs`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::error::{NameList, PackageError};
use super::version::{PackageRef, VersionSpec};

/// Where and how to download packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Registry base URLs, tried in order (no trailing slash needed).
    pub bases: Vec<String>,
    /// Time limit for one HTTP request, including the body.
    pub timeout: Duration,
    /// Largest tarball accepted (compressed bytes) and largest extracted size.
    pub max_tarball_bytes: u64,
}

impl RegistryConfig {
    /// Environment variable with registry base URLs (comma separated) replacing the defaults.
    pub const ENV: &'static str = "SPBRIDGE_FHIR_REGISTRY";
    /// The public FHIR package registries.
    pub const PUBLIC: [&'static str; 2] = [
        "https://packages.fhir.org",
        "https://packages2.fhir.org/packages",
    ];

    pub fn new<I, S>(bases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RegistryConfig {
            bases: bases.into_iter().map(Into::into).collect(),
            ..RegistryConfig::default()
        }
    }

    /// `$SPBRIDGE_FHIR_REGISTRY` (comma-separated bases) when set, else the public registries.
    pub fn from_env_or_default() -> Self {
        match std::env::var(Self::ENV) {
            Ok(v) if !v.trim().is_empty() => RegistryConfig::new(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            _ => RegistryConfig::default(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            bases: Self::PUBLIC.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(300),
            max_tarball_bytes: 1 << 30,
        }
    }
}

/// A downloaded tarball and the checksums the registry published for it.
#[derive(Debug)]
pub(crate) struct Download {
    pub(crate) package: PackageRef,
    pub(crate) url: String,
    pub(crate) bytes: Vec<u8>,
    /// `dist.shasum`: hex SHA-1 of the tarball.
    pub(crate) shasum: Option<String>,
    /// `dist.integrity`: Subresource Integrity (`sha512-<base64>` …).
    pub(crate) integrity: Option<String>,
}

pub(crate) struct RegistryClient {
    agent: ureq::Agent,
    config: RegistryConfig,
}

const METADATA_LIMIT: u64 = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl RegistryClient {
    pub(crate) fn new(config: &RegistryConfig) -> Self {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(CONNECT_TIMEOUT.min(config.timeout)))
            .http_status_as_error(false)
            .user_agent(concat!("spbridge/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .new_agent();
        RegistryClient {
            agent,
            config: config.clone(),
        }
    }

    /// Downloads the package best matching `request` from the first registry that has it.
    pub(crate) fn download(&self, request: &PackageRef) -> Result<Download, PackageError> {
        let mut failures = Vec::new();
        if self.config.bases.is_empty() {
            failures.push("no registry configured".to_string());
        }
        for base in &self.config.bases {
            match self.download_from(base.trim_end_matches('/'), request) {
                Ok(d) => return Ok(d),
                Err(reason) => failures.push(reason),
            }
        }
        Err(PackageError::Registry {
            package: request.to_string(),
            details: NameList(failures),
        })
    }

    fn download_from(&self, base: &str, request: &PackageRef) -> Result<Download, String> {
        let metadata_url = format!("{base}/{}", request.id);
        let spec = request.spec();
        match self.get(&metadata_url, "application/json", METADATA_LIMIT) {
            Ok(body) => {
                let doc: Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("{metadata_url}: metadata is not JSON: {e}"))?;
                let (version, dist) = pick_version(&doc, &spec).ok_or_else(|| {
                    format!(
                        "{metadata_url}: no version matching {} (has: {})",
                        request.version,
                        NameList(versions_of(&doc))
                    )
                })?;
                let package = PackageRef::new(&request.id, &version)
                    .map_err(|e| format!("{metadata_url}: {e}"))?;
                let text = |k: &str| dist.and_then(|d| d.get(k)).and_then(Value::as_str);
                let url = match text("tarball") {
                    Some(t) => absolute_url(base, t),
                    None => format!("{base}/{}/{version}", request.id),
                };
                let bytes = self.get(
                    &url,
                    "application/gzip, application/octet-stream, */*",
                    self.config.max_tarball_bytes,
                )?;
                Ok(Download {
                    package,
                    url,
                    bytes,
                    shasum: text("shasum").map(str::to_string),
                    integrity: text("integrity").map(str::to_string),
                })
            }
            Err(metadata_failure) => {
                // Registries such as packages.fhir.org also serve `{base}/{id}/{version}`.
                let VersionSpec::Exact(version) = spec else {
                    return Err(metadata_failure);
                };
                let url = format!("{base}/{}/{version}", request.id);
                let bytes = self
                    .get(
                        &url,
                        "application/gzip, application/octet-stream, */*",
                        self.config.max_tarball_bytes,
                    )
                    .map_err(|e| format!("{metadata_failure}; {e}"))?;
                Ok(Download {
                    package: request.clone(),
                    url,
                    bytes,
                    shasum: None,
                    integrity: None,
                })
            }
        }
    }

    fn get(&self, url: &str, accept: &str, limit: u64) -> Result<Vec<u8>, String> {
        let mut response = self
            .agent
            .get(url)
            .header("Accept", accept)
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{url}: HTTP {}", status.as_u16()));
        }
        response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))
    }
}

/// The best version in `versions` for `spec`, with its `dist` object.
fn pick_version<'a>(doc: &'a Value, spec: &VersionSpec) -> Option<(String, Option<&'a Value>)> {
    let versions = doc.get("versions")?.as_object()?;
    let keys: Vec<&str> = versions.keys().map(String::as_str).collect();
    let chosen = match spec {
        // `latest` follows the registry's dist-tags when it has one.
        VersionSpec::Latest(v) if v == "latest" || v.is_empty() => doc
            .pointer("/dist-tags/latest")
            .and_then(Value::as_str)
            .filter(|t| versions.contains_key(*t))
            .or_else(|| spec.pick(keys.iter().copied())),
        _ => spec.pick(keys.iter().copied()),
    }?;
    let dist = versions.get(chosen).and_then(|v| v.get("dist"));
    Some((chosen.to_string(), dist))
}

fn versions_of(doc: &Value) -> Vec<String> {
    doc.get("versions")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A tarball URL from metadata: absolute as given, or relative to the registry's origin/base.
fn absolute_url(base: &str, tarball: &str) -> String {
    if tarball.starts_with("http://") || tarball.starts_with("https://") {
        return tarball.to_string();
    }
    if let Some(path) = tarball.strip_prefix('/') {
        let origin_end = base
            .find("://")
            .and_then(|s| base[s + 3..].find('/').map(|p| s + 3 + p))
            .unwrap_or(base.len());
        return format!("{}/{path}", &base[..origin_end]);
    }
    format!("{base}/{tarball}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarball_urls() {
        assert_eq!(
            absolute_url("https://r.org/p", "https://x/y.tgz"),
            "https://x/y.tgz"
        );
        assert_eq!(
            absolute_url("https://r.org/p", "/a/1.0.0"),
            "https://r.org/a/1.0.0"
        );
        assert_eq!(
            absolute_url("http://127.0.0.1:9/p", "a.tgz"),
            "http://127.0.0.1:9/p/a.tgz"
        );
    }

    #[test]
    fn picks_from_metadata() {
        let doc = serde_json::json!({
            "dist-tags": {"latest": "1.0.0"},
            "versions": {"1.0.0": {"dist": {"shasum": "ab"}}, "1.1.0-ballot": {}}
        });
        let (v, dist) = pick_version(&doc, &VersionSpec::parse("latest")).unwrap();
        assert_eq!(v, "1.0.0");
        assert!(dist.is_some());
        let (v, _) = pick_version(&doc, &VersionSpec::parse("current")).unwrap();
        assert_eq!(v, "1.1.0-ballot");
        assert!(pick_version(&doc, &VersionSpec::parse("2.x")).is_none());
    }
}
