//! Ingest into the audit lake: CloudTrail logs, OpenTelemetry exports and the gateway's decision
//! records become Hive-partitioned zstd Parquet, locally or on S3.
//!
//! - [`ingest::cloudtrail`], [`ingest::otel`], [`decisions::run`], [`bundles::run`],
//!   [`lookup::run`]: the sources (and CloudTrail's LookupEvents API), each giving an
//!   [`ingest::IngestSummary`].
//! - [`lake::Lake`]: the store, layout, manifest and partition writer.
//! - [`schema`]: the tables (`cloudtrail`, `genai_spans`, `decisions`, `outcomes`,
//!   `bundles`, `policies`, `_quarantine`).
//! - [`compact::compact`]: merges small files.
//!
//! Bad input never stops a run and is never dropped: it goes to `_quarantine` with its source,
//! record number and reason, and is counted in the summary.
//!
//! Architecture invariant: the lake is only ever added to through [`lake::writer::TableWriter`];
//! audit-ingest never changes a row once written.

pub mod bundles;
pub mod cloudtrail;
pub mod compact;
pub mod decisions;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod integrity;
mod job;
pub mod json;
pub mod lookup;
pub mod otel;
mod reject;
pub mod source;
pub mod split;

pub use error::IngestError;
/// The lake's store, layout and tables (the `lake` crate), re-exported for callers of the ingest.
pub use lake::{self, schema};
pub use reject::{Reason, Reject};
