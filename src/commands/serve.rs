//! `spbridge serve`, `spbridge demo` and `spbridge check-config`: the service itself.
//!
//! Owns: logging set-up, the async runtime, loading the FHIR definitions the intake validates
//! against, and signal handling (SIGTERM, Ctrl-C). Must not: contain service logic (see
//! `spbridge::service`).

use super::DefinitionArgs;
use anyhow::Context;
use spbridge::config::Config;
use spbridge::intake::ReferralValidator;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

fn init_logging(default_level: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The compiled validator, with the referral profiles compiled before the first request.
fn validator(args: &DefinitionArgs) -> anyhow::Result<Arc<dyn ReferralValidator>> {
    let defs = args.load(false)?;
    defs.precompile_standard_profiles()
        .context("compiling the referral profiles")?;
    tracing::info!(timings = ?defs.timings, "FHIR definitions loaded");
    Ok(defs.validator.clone())
}

pub fn check_config(config: &Path) -> anyhow::Result<ExitCode> {
    Config::load(config).with_context(|| format!("{}", config.display()))?;
    println!("{}: ok", config.display());
    Ok(ExitCode::SUCCESS)
}

pub fn serve(args: &DefinitionArgs, config: &Path) -> anyhow::Result<ExitCode> {
    init_logging("info");
    let config = Config::load(config).with_context(|| format!("{}", config.display()))?;
    let validator = validator(args)?;
    runtime()?.block_on(async move {
        let running = spbridge::service::start(config, validator)
            .await
            .context("spbridge cannot start")?;
        println!("spbridge listening on {}", running.base_url);
        wait_for_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn demo(
    args: &DefinitionArgs,
    config: Option<&Path>,
    fixtures: &Path,
) -> anyhow::Result<ExitCode> {
    init_logging("warn,lapin=off");
    let config = match config {
        Some(path) => Config::load(path).with_context(|| format!("{}", path.display()))?,
        None => Config::default(),
    };
    let validator = validator(args)?;
    runtime()?
        .block_on(spbridge::referral_demo::run(config, fixtures, validator))
        .context("demo failed")?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
