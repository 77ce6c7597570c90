#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| audit_ingest::fuzzing::otlp(data));
