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
//! * [`outcome`] — the `OperationOutcome` every problem is reported as.

pub mod conformance;
pub mod definitions;
pub mod fhirpath;
pub mod outcome;
pub mod packages;
pub mod terminology;
pub mod validation;
