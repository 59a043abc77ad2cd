//! `spbridge token`: mint a SMART Backend Services client assertion and fetch an access
//! token with it (for the demo, tests and integrators), or print a key's public JWK Set
//! to register the client with.
//!
//! Owns: reading the key file, the HTTPS call to the token endpoint, printing.
//! Must not: hold token logic (`spbridge::auth` does) or print private key material.

use anyhow::{bail, Context};
use clap::Args;
use spbridge::auth::{client_assertion, SigningKey, JWT_BEARER};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// The registered client id (`[[auth.clients]] client_id`).
    #[arg(long)]
    pub client: Option<String>,
    /// The client's private key (PEM; EC P-256 → ES256, P-384 → ES384, RSA → RS384).
    #[arg(long)]
    pub key: PathBuf,
    /// spbridge's base URL; the token endpoint is `<url>/oauth2/token`.
    #[arg(long, env = "SPBRIDGE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Key id in the assertion header. Default: the key's RFC 7638 thumbprint.
    #[arg(long)]
    pub kid: Option<String>,
    /// Scopes to ask for (space separated). Default: all the client is registered for.
    #[arg(long)]
    pub scope: Option<String>,
    /// Extra CA certificate (PEM) to trust for HTTPS, e.g. a development CA.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Print the full token response (JSON) instead of only the access token.
    #[arg(long)]
    pub json: bool,
    /// Print only the client assertion; do not call the server.
    #[arg(long)]
    pub assertion_only: bool,
    /// Print the key's public JWK Set (to register the client) and exit.
    #[arg(long)]
    pub jwks: bool,
}

pub fn run(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let pem =
        std::fs::read(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let key = SigningKey::detect(&pem, args.kid.as_deref()).with_context(|| {
        format!(
            "{} is not an EC P-256/P-384 or RSA private key",
            args.key.display()
        )
    })?;
    if args.jwks {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"keys": [key.jwk]}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(client) = args.client.as_deref() else {
        bail!("--client is required (unless --jwks)");
    };
    let token_url = format!("{}/oauth2/token", args.url.trim_end_matches('/'));
    let assertion = client_assertion(client, &token_url, &key, 120)?;
    if args.assertion_only {
        println!("{assertion}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
    ];
    if let Some(scope) = &args.scope {
        form.push(("scope", scope));
    }
    let mut response = agent(args.ca.as_ref())?
        .post(&token_url)
        .header("accept", "application/json")
        .send_form(form)
        .with_context(|| format!("POST {token_url}"))?;
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .context("reading the token response")?;
    let body: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("HTTP {status}: the answer is not JSON"))?;
    if !status.is_success() {
        bail!(
            "HTTP {status}: {} {}",
            body["error"].as_str().unwrap_or("error"),
            body["error_description"].as_str().unwrap_or("")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        let token = body["access_token"]
            .as_str()
            .context("the answer has no access_token")?;
        println!("{token}");
    }
    Ok(ExitCode::SUCCESS)
}

fn agent(ca: Option<&PathBuf>) -> anyhow::Result<ureq::Agent> {
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        );
    if let Some(path) = ca {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let cert = ureq::tls::Certificate::from_pem(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])));
    }
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .user_agent(concat!("spbridge/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build()
        .new_agent())
}
