//! FHIR REST intake: the routes a GP system calls.
//!
//! Owns: `/metadata`, `POST /ServiceRequest`, `POST /` (transaction),
//! `POST /$process-message`, reads, vreads, history and searches, `PUT`/`PATCH
//! /Task/{id}` (through the workflow), `POST /Subscription`, `/livez` and `/readyz`;
//! turning an accepted referral into ServiceRequest + Task + outbox row (one
//! store commit); the provider message Bundle; `Prefer` handling; and the
//! `ReferralValidator` seam to the validation module.
//! Must not: talk to the broker (it writes outbox rows; the relay publishes) or
//! parse HTTP (the `http` module hands it `ApiRequest`s).

mod accept;
mod capability;
mod create;
mod dispatch;
mod health;
mod message;
mod openapi;
pub(crate) mod provider_message;
mod read;
mod respond;
mod subscription;
mod task_update;
mod transaction;

use crate::config::IntakeConfig;
use crate::outcome::OperationOutcome;
use crate::routing::Router;
use crate::store::Store;
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use capability::capability_statement;
pub use openapi::document as openapi_document;

/// `GET /openapi.json` (`secured`: the security layer is on, so its paths and the bearer
/// scheme are described too).
pub fn openapi_response(base_url: &str, secured: bool) -> crate::http::ApiResponse {
    let mut answer =
        crate::http::ApiResponse::json(hyper::StatusCode::OK, openapi::document(base_url, secured));
    answer.content_type = Some("application/json");
    answer
}

/// The validation seam. The validation module's validator implements this; the
/// intake calls it once per resource it is about to store.
///
/// `profile` is the canonical URL the resource must conform to (for a
/// ServiceRequest: `intake.referral_profile`), or `None` for "base FHIR R4 plus
/// whatever `meta.profile` claims". Issue expressions are rooted at the resource
/// type (`ServiceRequest.subject`); the intake re-roots them for Bundle entries
/// (`Bundle.entry[2].resource.subject`). Must not do I/O or panic on any input.
pub trait ReferralValidator: Send + Sync {
    fn validate(&self, resource: &Value, profile: Option<&str>) -> OperationOutcome;
}

/// Event code of a new referral (BaRS `servicerequest-request`).
pub const EVENT_SERVICEREQUEST_REQUEST: &str = "servicerequest-request";
/// Code system of BaRS message events.
pub const MESSAGE_EVENTS_SYSTEM: &str = "https://fhir.nhs.uk/CodeSystem/message-events-bars";
/// Outbox destination (exchange suffix) of referral messages.
pub const REFERRALS_DESTINATION: &str = "referrals";

/// The intake service: shared, immutable after start-up.
pub struct Intake {
    pub(crate) store: Store,
    pub(crate) router: Arc<Router>,
    pub(crate) validator: Arc<dyn ReferralValidator>,
    pub(crate) config: IntakeConfig,
    pub(crate) broker_connected: Arc<AtomicBool>,
    /// `/readyz` turns unready when the oldest unsent outbox row is older than this.
    pub(crate) max_outbox_lag_ms: i64,
    /// Applies Task updates (`PUT`/`PATCH /Task/{id}`).
    pub(crate) workflow: Arc<crate::workflow::Workflow>,
}

impl Intake {
    pub fn new(
        store: Store,
        router: Arc<Router>,
        validator: Arc<dyn ReferralValidator>,
        config: IntakeConfig,
        broker_connected: Arc<AtomicBool>,
        workflow: Arc<crate::workflow::Workflow>,
    ) -> Intake {
        Intake {
            store,
            router,
            validator,
            config,
            broker_connected,
            max_outbox_lag_ms: 60_000,
            workflow,
        }
    }

    /// The profile updated Tasks are validated against.
    pub(crate) fn workflow_task_profile(&self) -> &str {
        self.workflow.task_profile()
    }

    /// Readiness bound on the age of the oldest unsent outbox row.
    pub fn with_max_outbox_lag_ms(mut self, lag_ms: u64) -> Intake {
        self.max_outbox_lag_ms = i64::try_from(lag_ms).unwrap_or(i64::MAX);
        self
    }
}

/// The real validator: R4 structure, UK Core and spbridge profiles, terminology, NHS checks
/// and FHIRPath invariants (see `crate::validation`).
impl ReferralValidator for crate::validation::Validator {
    fn validate(&self, resource: &Value, profile: Option<&str>) -> OperationOutcome {
        crate::validation::Validator::validate(self, resource, profile)
    }
}
