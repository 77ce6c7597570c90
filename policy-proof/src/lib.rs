//! Symbolic comparison of Cedar policy sets.
//!
//! Testing shows what a change does to the requests someone thought of; a
//! proof covers every request the schema admits. [`compare`] asks an SMT
//! solver (cvc5, through `cedar-policy-symcc`), for each request environment
//! (principal type × action × resource type) of the schema, whether the new
//! set allows something the old one denied (it *widens*) or denies something
//! the old one allowed (it *narrows*). Every counterexample the solver returns
//! is decided again by Cedar's own authorizer under both sets before it is
//! reported: a witness the authorizer disagrees with is an error, never a
//! finding, so a solver or encoding bug cannot produce a false report.

mod analyze;
mod cache;
mod prover;
mod solver;
mod witness;

use cedar_policy::{PolicySet, RequestEnv, Schema};

pub use analyze::{ALLOW_ANNOTATION, Issue, PolicyIssue};
pub use cache::Cache;
pub use prover::Prover;
pub use solver::{SolverCommand, SolverSource};
pub use witness::Witness;

/// What went wrong while proving; each names the environment it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(
        "no SMT solver: {0}. Install cvc5 ≥ 1.3 (e.g. `pip install cvc5==1.4.2` and the \
         scripts/cvc5-stdin.py shim, or a cvc5 release binary) and put it on PATH or in $CVC5"
    )]
    NoSolver(String),
    #[error("cannot start the solver `{command}`: {reason}")]
    SolverStart { command: String, reason: String },
    #[error("{side} policies cannot be compiled for {env}: {reason}")]
    Compile {
        side: &'static str,
        env: String,
        reason: String,
    },
    #[error("the solver failed on {env}: {reason}")]
    Solve { env: String, reason: String },
    #[error(
        "the solver's counterexample for {env} does not hold when Cedar decides it \
         (expected {expected}, Cedar says base {base}, head {head}); not reporting it"
    )]
    WitnessDisagrees {
        env: String,
        expected: &'static str,
        base: &'static str,
        head: &'static str,
    },
    #[error("cannot build an async runtime for the solver: {0}")]
    Runtime(String),
    #[error("policy `{policy}` cannot be rewritten for analysis: {reason}")]
    Rewrite { policy: String, reason: String },
}

/// How head's decisions relate to base's in one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Same decision for every request.
    Equivalent,
    /// Some request base denied is allowed by head; nothing allowed is now denied.
    Widens,
    /// Some request base allowed is denied by head; nothing denied is now allowed.
    Narrows,
    /// Both directions change.
    Both,
}

impl Verdict {
    pub(crate) fn of(widened: bool, narrowed: bool) -> Self {
        match (widened, narrowed) {
            (false, false) => Self::Equivalent,
            (true, false) => Self::Widens,
            (false, true) => Self::Narrows,
            (true, true) => Self::Both,
        }
    }
}

/// One request environment of the schema.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct EnvName {
    pub principal_type: String,
    pub action: String,
    pub resource_type: String,
}

impl std::fmt::Display for EnvName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} × {} × {}",
            self.principal_type, self.action, self.resource_type
        )
    }
}

impl EnvName {
    pub(crate) fn of(env: &RequestEnv) -> Self {
        Self {
            principal_type: env.principal().to_string(),
            action: env.action().to_string(),
            resource_type: env.resource().to_string(),
        }
    }
}

/// The proven relation in one environment, with a checked witness per change.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EnvComparison {
    pub env: EnvName,
    pub verdict: Verdict,
    /// A request base denies and head allows.
    pub deny_to_allow: Option<Witness>,
    /// A request base allows and head denies.
    pub allow_to_deny: Option<Witness>,
}

/// Every environment of the schema, ordered by principal type, action and resource type.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub environments: Vec<EnvComparison>,
    /// Environments answered from the cache rather than the solver.
    pub cached: usize,
}

impl Comparison {
    pub fn widens(&self) -> bool {
        self.environments.iter().any(|e| e.deny_to_allow.is_some())
    }
    pub fn narrows(&self) -> bool {
        self.environments.iter().any(|e| e.allow_to_deny.is_some())
    }
    pub fn changed(&self) -> impl Iterator<Item = &EnvComparison> {
        self.environments
            .iter()
            .filter(|e| e.verdict != Verdict::Equivalent)
    }
}

/// Prove how `head` relates to `base` in every environment of `schema`, without a cache.
///
/// Both sets must validate against `schema` (strict mode): symbolic
/// compilation is defined for well-typed policies only.
pub fn compare(
    base: &PolicySet,
    head: &PolicySet,
    schema: &Schema,
    solver: &SolverCommand,
) -> Result<Comparison, ProofError> {
    Prover::new(solver, None)?.compare(base, head, schema)
}
