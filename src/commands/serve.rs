//! `spbridge serve`, `spbridge demo` and `spbridge check-config`: the service itself.
//!
//! Owns: starting telemetry (logs, trace export; see `spbridge::telemetry`), the async runtime, loading the FHIR definitions the intake validates
//! against, and signal handling (SIGTERM, Ctrl-C). Must not: contain service logic (see
//! `spbridge::service`).

use super::DefinitionArgs;
use anyhow::Context;
use spbridge::config::Config;
use spbridge::intake::ReferralValidator;
use spbridge::telemetry::Telemetry;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

fn init_telemetry(config: &Config, default_level: &str) -> anyhow::Result<Telemetry> {
    spbridge::telemetry::init(&config.telemetry, default_level).context("starting telemetry")
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
    let config = Config::load(config).with_context(|| format!("{}", config.display()))?;
    let telemetry = init_telemetry(&config, "info")?;
    let validator = validator(args)?;
    let result = runtime()?.block_on(async move {
        let running = spbridge::service::start(config, validator)
            .await
            .context("spbridge cannot start")?;
        println!("spbridge listening on {}", running.base_url);
        wait_for_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    });
    // Outside the runtime: exporting the last spans blocks.
    telemetry.shutdown();
    result
}

pub fn demo(
    args: &DefinitionArgs,
    config: Option<&Path>,
    fixtures: &Path,
) -> anyhow::Result<ExitCode> {
    let config = match config {
        Some(path) => Config::load(path).with_context(|| format!("{}", path.display()))?,
        None => Config::default(),
    };
    let telemetry = init_telemetry(&config, "warn,lapin=off")?;
    let validator = validator(args)?;
    let result = runtime()?.block_on(spbridge::referral_demo::run(config, fixtures, validator));
    telemetry.shutdown();
    result.context("demo failed")?;
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
