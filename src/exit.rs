//! Outcomes and exit codes. Commands return `Ok(Outcome)` for results (including failed checks)
//! and `Err(CliError)` when they could not do their work.

use std::process::ExitCode;

/// How a command ended, as scripts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: validation errors, failing tests, verification failure.
    CheckFailed,
    /// Exit 2: bad usage or unreadable input.
    InputError,
    /// Any other code, for commands that follow another tool's codes (`policy authorize`).
    Code(u8),
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::CheckFailed => ExitCode::from(1),
            Outcome::InputError => ExitCode::from(2),
            Outcome::Code(c) => ExitCode::from(c),
        }
    }
}

/// An error that stopped a command; reported on stderr through miette.
pub struct CliError {
    pub report: miette::Report,
    pub outcome: Outcome,
}

impl CliError {
    /// The input could not be used (exit 2).
    pub fn input(report: impl Into<miette::Report>) -> Self {
        Self {
            report: report.into(),
            outcome: Outcome::InputError,
        }
    }

    /// A check failed (exit 1).
    pub fn failed(report: impl Into<miette::Report>) -> Self {
        Self {
            report: report.into(),
            outcome: Outcome::CheckFailed,
        }
    }

    pub fn report(self) -> Outcome {
        crate::output::print_report(&self.report);
        self.outcome
    }
}

impl<E> From<E> for CliError
where
    E: miette::Diagnostic + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        Self::input(miette::Report::new(e))
    }
}

pub type CliResult = Result<Outcome, CliError>;
