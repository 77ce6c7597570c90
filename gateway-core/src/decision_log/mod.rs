//! The gateway's side of the signed, hash-chained decision log (format:
//! `docs/decision-record.md`): `writer` is the group-commit writer thread. The line format,
//! segments and the chain checker live in the `decision-record` crate, which `cairn audit
//! verify` and the lake's decision ingest share without compiling the gateway.
//!
//! INVARIANT: a record is acknowledged only after the fsync that covers it returned; the
//! gateway sends no response byte before the acknowledgement of that request's decision record.

mod writer;

pub use decision_record::{
    Body, Decision, Outcome, Record, RecordKind, Seal, Usage, record, segment, verify,
};
pub use writer::{CheckpointSettings, DecisionLog, LogObserver, LogSettings, Receipt};
