#![no_main]
//! See `spbridge_fuzz::token_assertion`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spbridge_fuzz::token_assertion(data));
