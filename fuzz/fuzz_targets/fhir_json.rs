#![no_main]
//! See `spbridge_fuzz::fhir_json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spbridge_fuzz::fhir_json(data));
