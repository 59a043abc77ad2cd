//! Who is calling, and what they may do.
//!
//! Owns: the `Principal` a verified bearer token (or an AMQP user) stands for — client id,
//! the organisation it acts for, its role and its SMART v2 system scopes — and the scope
//! checks every endpoint makes. Token issuance and verification, TLS and audit live in the
//! submodules the security issue adds.
//! Must not: read request bodies, touch the store's resources, or log patient data.

mod principal;

pub use principal::{Interaction, Principal, Role};
