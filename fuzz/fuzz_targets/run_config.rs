#![no_main]
//! cargo fuzz run run_config — see ../harness.rs.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run_config(data));
