#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| decision_record::fuzzing::record_lines(data));
