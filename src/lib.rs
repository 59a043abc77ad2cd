//! # spbridge
//!
//! A FHIR R4 integration service that carries social-prescribing referrals from GP
//! clinical systems to voluntary and community sector (VCS) providers, and carries
//! their progress back.
//!
//! ## A tour of the layout
//!
//! Follow one referral from the socket to the queue and back by reading the module
//! names in order (see `ARCHITECTURE.md` for the full map and the invariants):
//!
//! * [`packages`] — FHIR NPM packages in the package-cache layout; canonical URL
//!   resolution; `spbridge packages install`.
//! * [`conformance`] — StructureDefinition snapshots generated from differentials
//!   (UK Core ships none).
//! * [`fhirpath`] — the FHIRPath engine used for profile invariants.
//! * [`terminology`] — local ValueSet expansion for required bindings.
//! * [`validation`] — compiles profiles once into a validator; structure, profile,
//!   terminology, NHS-specific and invariant checks; produces an [`outcome::OperationOutcome`].
//! * [`definitions`] — loads all of the above from configuration at start-up.
//! * [`http`] — listener, request ids, limits, content negotiation, errors as OperationOutcome.
//! * [`intake`] — FHIR REST routes: metadata, create, transaction, `$process-message`, reads,
//!   searches; accepting a referral in one transaction with its Task and outbox row.
//! * [`routing`] — which provider gets a referral (provider directory + rules); no I/O.
//! * [`store`] — versioned resources, idempotency keys and the outbox on SQLite or PostgreSQL.
//! * [`broker`] — RabbitMQ topology and the outbox relay with publisher confirms.
//! * [`config`] — the TOML configuration with environment overrides.
//! * [`service`] — wires the parts together for `spbridge serve` and the tests.
//! * [`referral_demo`] — `spbridge demo`: referrals end to end on the local RabbitMQ.
//! * [`outcome`] — the `OperationOutcome` every problem is reported as.

pub mod auth;
pub mod broker;
pub mod config;
pub mod conformance;
pub mod definitions;
pub mod fhir_json;
pub mod fhirpath;
pub mod http;
pub mod inbox;
pub mod intake;
pub mod notify;
pub mod outcome;
pub mod packages;
pub mod referral_demo;
pub mod routing;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod terminology;
pub mod validation;
pub mod workflow;
