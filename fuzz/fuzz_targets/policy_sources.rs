#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| policy_engine::fuzzing::policy_sources(data));
