//! Observability: logs, traces and metrics.
//!
//! Owns: the process-wide `tracing` subscriber (human-readable or JSON logs, level from
//! `RUST_LOG`), the OpenTelemetry trace pipeline (OTLP export configured only by the standard
//! `OTEL_*` variables, absent when they are not set), W3C trace-context propagation helpers
//! (`propagation`), the span shapes other modules open (`spans`), and the Prometheus metrics
//! registry with one-call recording functions (`metrics`).
//! Must not: know what a referral contains. Nothing here may put patient data (NHS numbers,
//! names, addresses) into a span name, attribute, event, log field or metric label; callers
//! hand in ids, codes and counts only.

mod fresh_filter;
pub mod metrics;
mod otlp;
pub mod propagation;
pub mod spans;

use crate::config::{LogFormat, TelemetryConfig};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use fresh_filter::FreshFilter;
pub use otlp::OtlpSettings;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP trace exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// The running telemetry: keep it alive for the life of the process, then call `shutdown`
/// (dropping it does the same) so that buffered spans are exported before exit.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// The gRPC exporter's runtime; dropped after the provider has shut down.
    exporter_runtime: Option<tokio::runtime::Runtime>,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint was configured).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Export every finished span now (blocks until the exporter answers or times out).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            if let Err(err) = provider.force_flush() {
                tracing::warn!(error = %err, "flushing spans failed");
            }
        }
    }

    /// Flush and stop the exporter. Call outside the async runtime: it blocks.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(err) = provider.shutdown() {
                eprintln!("spbridge: stopping the trace exporter: {err}");
            }
        }
        if let Some(runtime) = self.exporter_runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

/// Install logging (to standard error) and, when `OTEL_*` asks for it, trace export.
/// `default_filter` applies when `RUST_LOG` is not set.
pub fn init(config: &TelemetryConfig, default_filter: &str) -> Result<Telemetry, TelemetryError> {
    init_with_writer(config, default_filter, std::io::stderr)
}

/// `init` with another log destination (tests capture logs this way).
pub fn init_with_writer<W>(
    config: &TelemetryConfig,
    default_filter: &str,
    writer: W,
) -> Result<Telemetry, TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let log_layer: Boxed = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .with_filter(FreshFilter(filter))
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_filter(FreshFilter(filter))
            .boxed(),
    };
    let settings = OtlpSettings::from_env();
    let (provider, exporter_runtime) = match &settings {
        Some(settings) => {
            let pipeline = otlp::pipeline(settings)?;
            (Some(pipeline.provider), pipeline.runtime)
        }
        None => (None, None),
    };
    let trace_layer: Option<Boxed> = provider.as_ref().map(|provider| {
        // Only spbridge's own spans are exported: library spans (sqlx, lapin, hyper, the
        // exporter's own HTTP client) would add noise and could feed back into the exporter.
        let only_ours = Targets::new()
            .with_target("spbridge", LevelFilter::INFO)
            .with_default(LevelFilter::OFF);
        // Busy/idle timing, thread and source-location attributes are off: they cost a clock
        // read on every poll of an instrumented future and add little to a trace.
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("spbridge"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(FreshFilter(only_ours))
            .boxed()
    });
    tracing_subscriber::registry()
        .with(
            vec![Some(log_layer), trace_layer]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        )
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if let Some(settings) = &settings {
        tracing::info!(
            protocol = settings.protocol_name(),
            "exporting traces over OTLP"
        );
    }
    Ok(Telemetry {
        provider,
        exporter_runtime,
    })
}
