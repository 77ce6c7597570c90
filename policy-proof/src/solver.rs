//! Finding and starting the SMT solver.

use std::path::{Path, PathBuf};
use std::process::Command;

use cedar_policy_symcc::solver::LocalSolver;

use crate::ProofError;

/// Where the solver came from, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverSource {
    Flag,
    Env,
    Path,
}

/// A cvc5 that answered `--version` with a release symcc supports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SolverCommand {
    pub program: PathBuf,
    pub source: SolverSource,
    pub version: String,
}

/// symcc's encoding uses cvc5's set and regular-expression theories as
/// spelled since 1.3.
const MIN_VERSION: (u32, u32) = (1, 3);

/// Per-query wall-clock limit handed to cvc5: an unanswered query is an
/// error, never a silent "no change".
const TIME_LIMIT_MS: u32 = 60_000;

impl SolverCommand {
    /// The explicit path if given, else `$CVC5`, else `cvc5` on `PATH`.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, ProofError> {
        let (program, source) = match (explicit, std::env::var_os("CVC5")) {
            (Some(p), _) => (p.to_path_buf(), SolverSource::Flag),
            (None, Some(p)) if !p.is_empty() => (PathBuf::from(p), SolverSource::Env),
            _ => (PathBuf::from("cvc5"), SolverSource::Path),
        };
        let out = Command::new(&program)
            .arg("--version")
            .output()
            .map_err(|e| ProofError::NoSolver(format!("`{}`: {e}", program.display())))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = parse_version(&text).ok_or_else(|| {
            ProofError::NoSolver(format!(
                "`{} --version` did not name a cvc5 release",
                program.display()
            ))
        })?;
        if version < MIN_VERSION {
            return Err(ProofError::NoSolver(format!(
                "`{}` is cvc5 {}.{}, older than {}.{}",
                program.display(),
                version.0,
                version.1,
                MIN_VERSION.0,
                MIN_VERSION.1
            )));
        }
        Ok(Self {
            version: format!("{}.{}", version.0, version.1),
            program,
            source,
        })
    }

    pub(crate) fn spawn(&self) -> Result<LocalSolver, ProofError> {
        LocalSolver::from_command(
            tokio::process::Command::new(&self.program)
                .args(["--lang", "smt"])
                .arg(format!("--tlimit-per={TIME_LIMIT_MS}"))
                .kill_on_drop(true),
        )
        .map_err(|e| ProofError::SolverStart {
            command: self.program.display().to_string(),
            reason: e.to_string(),
        })
    }
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("cvc5 version ").nth(1)?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn reads_release_and_shim_banners() {
        assert_eq!(
            parse_version("This is cvc5 version 1.4.2 [git tag 1.4.2]\ncompiled with"),
            Some((1, 4))
        );
        assert_eq!(
            parse_version("This is cvc5 version 1.4.2 (PyPI bindings, cvc5-stdin)"),
            Some((1, 4))
        );
        assert_eq!(parse_version("z3 version 4.13"), None);
    }
}
