#![no_main]
//! See `spbridge_fuzz::fhirpath`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spbridge_fuzz::fhirpath(data));
