#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nospy_fuzz::evidence(data));
