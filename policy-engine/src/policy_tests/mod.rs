//! Policy test suites: loading (Cairn YAML and Cedar CLI `run-tests` JSON), running with exact
//! comparison of decisions, reasons and errors, coverage, and report formats.

mod marked;
pub mod report;
mod runner;
mod suite;

pub use runner::{CaseOutcome, CaseStatus, Coverage, TestRun, decision_name, run, run_case};
pub use suite::{ExpectedErrors, LoadedSuites, PreparedCase, discover, load, load_source};
