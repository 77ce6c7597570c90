//! The decision record: what the gateway writes for every request it decides and what auditors
//! check (format: `docs/decision-record.md`).
//!
//! - [`record`]: the line format (body, hash, signature) and the typed bodies.
//! - [`segment`]: segment naming, listing and recovery of a torn tail after a crash.
//! - [`verify`]: the chain checker behind `cairn audit verify` and the lake's decision ingest.
//! - [`checkpoint`]: signed checkpoints (C2SP tlog-checkpoint notes) that catch a shortened log.
//!
//! This crate does no network IO and knows nothing of HTTP: the gateway's writer, `cairn audit
//! verify` and the decision ingest share it, so the audit side never compiles the gateway.

pub mod checkpoint;
pub mod record;
pub mod segment;
pub mod verify;
mod wire;

#[doc(hidden)]
pub mod fuzzing;

pub use record::{Body, Decision, Outcome, Record, RecordKind, Seal, Usage};
