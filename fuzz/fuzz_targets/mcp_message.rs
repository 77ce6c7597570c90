#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway_core::fuzzing::mcp_message(data));
