//! Log capture for tests: a `MakeWriter` that keeps every line written, and the patient
//! details of the fixture referral that must never appear in logs, traces or metrics.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

/// Patient data of `fixtures/referral-transaction-bundle.json` and the single ServiceRequest
/// fixture: NHS number, names, address, postcode, phone, date of birth.
pub const PATIENT_DATA: &[&str] = &[
    "9990001243",
    "Ashworth",
    "Margaret",
    "Cardigan Lane",
    "LS6 1EB",
    "07700 900412",
    "1946-05-02",
];

/// The first piece of patient data found in `text`.
pub fn patient_data_in(text: &str) -> Option<&'static str> {
    PATIENT_DATA.iter().copied().find(|p| text.contains(p))
}

/// Captured log output.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn make_writer(&self) -> impl Fn() -> Capture + Send + Sync + 'static {
        let me = self.clone();
        move || me.clone()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
