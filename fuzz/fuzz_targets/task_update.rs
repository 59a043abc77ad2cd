#![no_main]
//! See `spbridge_fuzz::task_update`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| spbridge_fuzz::task_update(data));
