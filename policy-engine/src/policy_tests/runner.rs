//! Running prepared cases against a policy set, and what the run found: per-case outcomes and
//! which policies never determined a decision.

use std::collections::BTreeSet;

use cedar_policy::{Authorizer, Decision, PolicySet};
use serde::Serialize;

use super::suite::{ExpectedErrors, LoadedSuites, PreparedCase};
use crate::load::LoadedPolicies;
use crate::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseStatus {
    Passed,
    Failed,
    /// The case itself is malformed and could not run.
    Invalid,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseOutcome {
    pub name: String,
    pub file: String,
    pub line: usize,
    pub status: CaseStatus,
    pub expected: Option<&'static str>,
    pub actual: Option<&'static str>,
    /// Determining policy ids, sorted.
    pub reasons: Vec<String>,
    /// Policies whose evaluation errored, with the error text.
    pub errors: Vec<(String, String)>,
    /// What did not match, one line each.
    pub mismatches: Vec<String>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct TestRun {
    pub outcomes: Vec<CaseOutcome>,
    pub passed: usize,
    pub failed: usize,
    pub coverage: Coverage,
}

#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub policies: usize,
    pub covered: usize,
    /// Policies that determined no decision in any case, with where they are.
    pub uncovered: Vec<(String, String)>,
}

impl Coverage {
    pub fn percent(&self) -> f64 {
        if self.policies == 0 {
            100.0
        } else {
            self.covered as f64 * 100.0 / self.policies as f64
        }
    }
}

impl TestRun {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

pub fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
    }
}

/// Runs one case and compares exactly: decision, the full set of reasons when stated, and the
/// full set of erroring policies (or their count) when stated.
pub fn run_case(authorizer: &Authorizer, policies: &PolicySet, case: &PreparedCase) -> CaseOutcome {
    let response = authorizer.is_authorized(&case.request, policies, &case.entities);
    let reasons: BTreeSet<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    let errors: Vec<(String, String)> = response
        .diagnostics()
        .errors()
        .map(|e| match e {
            cedar_policy::AuthorizationError::PolicyEvaluationError(pe) => {
                (pe.policy_id().to_string(), pe.inner().to_string())
            }
        })
        .collect();
    let mut mismatches = Vec::new();
    if response.decision() != case.expect {
        mismatches.push(format!(
            "expected {}, got {}",
            decision_name(case.expect),
            decision_name(response.decision())
        ));
    }
    if let Some(expected) = &case.reasons
        && expected != &reasons
    {
        mismatches.push(format!(
            "expected determining policies [{}], got [{}]",
            join(expected.iter()),
            join(reasons.iter())
        ));
    }
    match &case.errors {
        Some(ExpectedErrors::Policies(expected)) => {
            let actual: BTreeSet<String> = errors.iter().map(|(id, _)| id.clone()).collect();
            if expected != &actual {
                mismatches.push(format!(
                    "expected errors in [{}], got [{}]{}",
                    join(expected.iter()),
                    join(actual.iter()),
                    error_detail(&errors)
                ));
            }
        }
        Some(ExpectedErrors::Count(n)) if *n != errors.len() => {
            mismatches.push(format!(
                "expected {n} error(s), got {}{}",
                errors.len(),
                error_detail(&errors)
            ));
        }
        Some(ExpectedErrors::Count(_)) | None => {}
    }
    CaseOutcome {
        name: case.name.clone(),
        file: case.suite.name.to_string(),
        line: case.line,
        status: if mismatches.is_empty() {
            CaseStatus::Passed
        } else {
            CaseStatus::Failed
        },
        expected: Some(decision_name(case.expect)),
        actual: Some(decision_name(response.decision())),
        reasons: reasons.into_iter().collect(),
        errors,
        mismatches,
    }
}

fn join<'a>(items: impl Iterator<Item = &'a String>) -> String {
    items.map(String::as_str).collect::<Vec<_>>().join(", ")
}

fn error_detail(errors: &[(String, String)]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(
            ": {}",
            errors
                .iter()
                .map(|(id, m)| format!("{id}: {m}"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

/// Runs every prepared case; malformed cases count as failures and appear as `invalid`.
pub fn run(policies: &LoadedPolicies, suites: &LoadedSuites) -> TestRun {
    let authorizer = Authorizer::new();
    let mut outcomes: Vec<CaseOutcome> = suites
        .cases
        .iter()
        .map(|c| run_case(&authorizer, &policies.policy_set, c))
        .collect();
    outcomes.extend(suites.problems.iter().map(invalid_outcome));
    outcomes.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));

    let covered: BTreeSet<&str> = outcomes
        .iter()
        .flat_map(|o| o.reasons.iter().map(String::as_str))
        .collect();
    let uncovered: Vec<(String, String)> = policies
        .policies
        .iter()
        .filter(|p| !covered.contains(p.id.as_str()))
        .map(|p| (p.id.clone(), p.position()))
        .collect();
    let passed = outcomes
        .iter()
        .filter(|o| o.status == CaseStatus::Passed)
        .count();
    TestRun {
        passed,
        failed: outcomes.len() - passed,
        coverage: Coverage {
            policies: policies.policies.len(),
            covered: policies.policies.len() - uncovered.len(),
            uncovered,
        },
        outcomes,
    }
}

fn invalid_outcome(p: &Problem) -> CaseOutcome {
    let (line, _) = p.line_col().unwrap_or((0, 0));
    CaseOutcome {
        name: "(invalid case)".to_string(),
        file: p.file_name().unwrap_or("").to_string(),
        line,
        status: CaseStatus::Invalid,
        expected: None,
        actual: None,
        reasons: Vec::new(),
        errors: Vec::new(),
        mismatches: vec![match &p.help {
            Some(h) => format!("{} (help: {h})", p.message),
            None => p.message.clone(),
        }],
    }
}
