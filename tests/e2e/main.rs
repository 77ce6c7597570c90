//! End-to-end tests of the real `cairn` binary. Each test works in its own temporary directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly by design"
)]

mod fuzz_replay;
mod harness;
mod lake;
mod policy;
mod policy_proof;
mod records;
