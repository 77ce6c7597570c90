//! Cairn's Cedar policy toolchain.
//!
//! - [`load`]: find and parse a policy directory, naming policies by `@id` and locating every
//!   problem ([`Problem`]) at file:line:col; [`load::validate`] adds the strict validator's
//!   findings.
//! - [`format`]: the Cedar formatter with a diff per changed file.
//! - [`policy_tests`]: test suites (Cairn YAML and Cedar CLI `run-tests` JSON), exact checks of
//!   decisions, reasons and errors, coverage, JSON/JUnit/GitHub reports.
//! - [`bundle`]: keys, DSSE signing, deterministic signed bundles and their verification.
//! - [`PolicyEngine`]: the authorizer built from a verified bundle, which the gateway holds.
//! - [`replay`]: recorded decisions decided again under two policy sets (`cairn policy diff`).
//!
//! Architecture invariant: this crate does no network IO and knows nothing of terminals.

pub mod authorize;
pub mod bundle;
mod engine;
mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod load;
pub mod policy_tests;
mod problem;
pub mod replay;

pub use cedar_policy;
pub use engine::PolicyEngine;
pub use error::{PolicyError, Result};
pub use problem::{Location, Problem, Severity, SourceFile, chain, summary};
