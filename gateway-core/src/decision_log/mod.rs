//! The signed, hash-chained decision log (format: `docs/decision-record.md`).
//!
//! `record` defines the line format, `writer` the group-commit writer thread, `segment` file
//! naming and crash recovery, `verify` the chain checker behind `cairn audit verify`.
//!
//! INVARIANT: a record is acknowledged only after the fsync that covers it returned; the
//! gateway sends no response byte before the acknowledgement of that request's decision record.

pub mod record;
pub mod segment;
pub mod verify;
mod writer;

pub use record::{Record, RecordKind, Usage};
pub use writer::{DecisionLog, LogObserver, LogSettings, Receipt};
