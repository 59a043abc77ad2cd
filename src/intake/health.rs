//! `/livez` and `/readyz` for probes.
//!
//! Owns: liveness (the process answers) and readiness (store reachable, broker
//! connected, outbox lag under the bound), as small JSON documents.
//! Must not: change state.

use super::Intake;
use crate::http::ApiResponse;
use hyper::StatusCode;
use serde_json::json;
use std::sync::atomic::Ordering;

pub(crate) fn livez() -> ApiResponse {
    let mut a = ApiResponse::json(StatusCode::OK, json!({"status": "alive"}));
    a.content_type = Some("application/json");
    a
}

pub(crate) async fn readyz(intake: &Intake) -> ApiResponse {
    let store_ok = intake.store.ping().await.is_ok();
    let broker_ok = intake.broker_connected.load(Ordering::Relaxed);
    let stats = intake.store.outbox_stats().await.unwrap_or_default();
    let lag_ok = stats.oldest_age_ms <= intake.max_outbox_lag_ms;
    let ready = store_ok && broker_ok && lag_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut a = ApiResponse::json(
        status,
        json!({
            "status": if ready { "ready" } else { "unready" },
            "store": store_ok,
            "broker": broker_ok,
            "outbox": {"pending": stats.pending, "oldestAgeMs": stats.oldest_age_ms},
        }),
    );
    a.content_type = Some("application/json");
    a
}
