//! The OTLP trace pipeline, configured by the standard OpenTelemetry environment variables.
//!
//! Owns: deciding whether to export at all (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, or `OTEL_TRACES_EXPORTER=otlp`; never when
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`), the transport
//! (`OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`: `http/protobuf` by default, `grpc` with the
//! `otlp-grpc` feature), the resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; service
//! name `spbridge` when neither names one) and the batch span processor. Sampling
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), endpoint, headers, timeout and
//! compression are read by the OpenTelemetry SDK and exporter themselves.
//! Must not: install anything globally (the caller wires the provider into `tracing`).

use super::TelemetryError;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// Transport of the OTLP exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    Grpc,
}

/// What the environment asks for; `None` from `from_env` means "do not export".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    pub protocol: OtlpProtocol,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl OtlpSettings {
    /// Read the `OTEL_*` switches of the process environment.
    pub fn from_env() -> Option<OtlpSettings> {
        Self::from_lookup(var)
    }

    /// Read the switches through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<OtlpSettings> {
        if lookup("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let exporter = lookup("OTEL_TRACES_EXPORTER");
        if exporter
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return None;
        }
        let endpoint = lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| lookup("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let asked = exporter
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("otlp"));
        if endpoint.is_none() && !asked {
            return None;
        }
        let protocol = lookup("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| lookup("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let protocol = match protocol.as_deref() {
            Some(p) if p.eq_ignore_ascii_case("grpc") => OtlpProtocol::Grpc,
            _ => OtlpProtocol::HttpProtobuf,
        };
        Some(OtlpSettings { protocol })
    }

    pub fn protocol_name(&self) -> &'static str {
        match self.protocol {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::Grpc => "grpc",
        }
    }
}

/// The resource every span carries: the SDK's detectors (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, SDK facts), with `service.name = spbridge` unless configured.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    let mut builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if !named {
        builder = builder.with_service_name("spbridge");
    }
    builder.build()
}

/// The exporter side of trace export: the provider, and for gRPC the Tokio runtime the tonic
/// client needs (kept alive until the provider has shut down).
pub(super) struct Pipeline {
    pub provider: SdkTracerProvider,
    pub runtime: Option<tokio::runtime::Runtime>,
}

fn http_exporter() -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))
}

/// A tracer provider exporting in batches (on the SDK's own thread).
pub(super) fn pipeline(settings: &OtlpSettings) -> Result<Pipeline, TelemetryError> {
    let (exporter, runtime) = match settings.protocol {
        OtlpProtocol::HttpProtobuf => (http_exporter()?, None),
        OtlpProtocol::Grpc => grpc_exporter()?,
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    Ok(Pipeline { provider, runtime })
}

#[cfg(feature = "otlp-grpc")]
fn grpc_exporter() -> Result<
    (
        opentelemetry_otlp::SpanExporter,
        Option<tokio::runtime::Runtime>,
    ),
    TelemetryError,
> {
    // The tonic client must be built inside, and driven by, a Tokio runtime of its own
    // (the service's runtime starts later and stops earlier than the exporter).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-grpc")
        .enable_all()
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let exporter = {
        let _entered = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?
    };
    Ok((exporter, Some(runtime)))
}

#[cfg(not(feature = "otlp-grpc"))]
fn grpc_exporter() -> Result<
    (
        opentelemetry_otlp::SpanExporter,
        Option<tokio::runtime::Runtime>,
    ),
    TelemetryError,
> {
    Err(TelemetryError::Exporter(
        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs spbridge built with the `otlp-grpc` feature; \
         use http/protobuf"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Option<OtlpSettings> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtlpSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn off_unless_configured() {
        assert_eq!(settings(&[]), None);
        assert_eq!(settings(&[("OTEL_SERVICE_NAME", "x")]), None);
        let on = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert_eq!(on.map(|s| s.protocol), Some(OtlpProtocol::HttpProtobuf));
        assert!(settings(&[("OTEL_TRACES_EXPORTER", "otlp")]).is_some());
        assert!(
            settings(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/v1/traces")]).is_some()
        );
    }

    #[test]
    fn disabled_wins() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert_eq!(settings(&[endpoint, ("OTEL_SDK_DISABLED", "true")]), None);
        assert_eq!(
            settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            None
        );
    }

    #[test]
    fn protocol_choice() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(s.map(|s| s.protocol), Some(OtlpProtocol::Grpc));
    }
}
