//! A small FNV-1a hasher for the in-memory lookup tables (code sets, profile caches): keys are
//! short trusted-shape strings from loaded packages and SipHash dominated lookup time.
//!
//! Owns: `FastHash`. Must not: be used for maps keyed by untrusted input that an attacker can
//! grow (HashDoS); lookups with input keys are fine because the tables are fixed at build time.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// `BuildHasher` for `HashMap<_, _, FastHash>`.
pub type FastHash = BuildHasherDefault<Fnv>;
