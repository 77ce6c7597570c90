//! `Prover::analyze` against a real cvc5 (scripts/test.sh installs one and sets `CVC5`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly by design"
)]

use cedar_policy::{PolicySet, Schema};
use policy_proof::{Cache, Issue, PolicyIssue, Prover, SolverCommand};

const SCHEMA: &str = r#"
entity User { level: Long, team: String };
entity Doc { owner: User };
action read, write appliesTo { principal: User, resource: Doc };
"#;

fn analyze(src: &str) -> Vec<PolicyIssue> {
    let schema = Schema::from_cedarschema_str(SCHEMA).expect("schema").0;
    let set: PolicySet = src.parse().expect("policies");
    let solver = SolverCommand::discover(None).unwrap_or_else(|e| panic!("{e}"));
    Prover::new(&solver, None)
        .expect("prover")
        .analyze(&set, &schema)
        .expect("analyze")
}

fn kinds(issues: &[PolicyIssue]) -> Vec<(String, Issue)> {
    issues.iter().map(|i| (i.policy.clone(), i.issue)).collect()
}

#[test]
fn healthy_policies_have_no_issues() {
    let issues = analyze(
        r#"permit(principal, action == Action::"read", resource) when { principal.level > 2 };
           forbid(principal, action == Action::"read", resource) when { principal.team == "contractors" };"#,
    );
    assert!(issues.is_empty(), "{issues:?}");
}

#[test]
fn dead_condition_and_always_erroring_condition_are_told_apart() {
    let issues = analyze(
        r#"permit(principal, action == Action::"read", resource) when { principal.level > 5 && principal.level < 3 };
           permit(principal, action == Action::"write", resource) when { principal.level + 9223372036854775807 + 1 > principal.level - 9223372036854775807 - 2 };
           permit(principal, action == Action::"read", resource) when { principal.level > 8 };"#,
    );
    let k = kinds(&issues);
    assert!(k.contains(&("policy0".into(), Issue::Dead)), "{k:?}");
    let err = issues
        .iter()
        .find(|i| i.policy == "policy1")
        .expect("policy1 reported");
    assert_eq!(err.issue, Issue::AlwaysErrors, "{issues:?}");
    assert_eq!(err.envs.len(), 1);
    assert!(err.envs[0].action.contains("write"));
    assert!(!k.iter().any(|(p, _)| p == "policy2"), "{k:?}");
}

#[test]
fn shadowed_redundant_and_never_firing_policies() {
    let issues = analyze(
        r#"permit(principal, action == Action::"read", resource) when { principal.team == "ops" };
           forbid(principal, action == Action::"read", resource) when { principal.team == "ops" || principal.level < 0 };
           permit(principal, action == Action::"write", resource) when { principal.level > 3 };
           permit(principal, action == Action::"write", resource) when { principal.level > 5 };
           forbid(principal, action == Action::"write", resource) when { principal.level < 2 };"#,
    );
    let k = kinds(&issues);
    assert!(k.contains(&("policy0".into(), Issue::Shadowed)), "{k:?}");
    assert!(k.contains(&("policy3".into(), Issue::Redundant)), "{k:?}");
    assert!(k.contains(&("policy4".into(), Issue::NeverFires)), "{k:?}");
    // The forbid that shadows policy0 is what denies ops: removing it changes decisions.
    assert!(!k.iter().any(|(p, _)| p == "policy1"), "{k:?}");
    assert!(!k.iter().any(|(p, _)| p == "policy2"), "{k:?}");
}

#[test]
fn unconstrained_permit_matches_every_request_of_every_environment() {
    let issues = analyze(
        r#"@id("temp-debug-access") permit(principal, action, resource);
           permit(principal, action == Action::"read", resource) when { principal.level > 2 };"#,
    );
    let all = issues
        .iter()
        .find(|i| i.issue == Issue::MatchesAll)
        .expect("matches-all");
    assert_eq!(all.policy, "policy0");
    assert_eq!(all.envs.len(), 2);
    // The narrower permit now changes nothing.
    assert!(
        kinds(&issues).contains(&("policy1".into(), Issue::Redundant)),
        "{issues:?}"
    );
}

#[test]
fn a_second_comparison_is_answered_from_the_cache() {
    let schema = Schema::from_cedarschema_str(SCHEMA).expect("schema").0;
    let base: PolicySet = r#"permit(principal, action, resource) when { principal.level > 2 };"#
        .parse()
        .expect("base");
    let head: PolicySet = r#"permit(principal, action, resource) when { principal.level >= 2 };"#
        .parse()
        .expect("head");
    let dir = std::env::temp_dir().join(format!("policy-proof-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let solver = SolverCommand::discover(None).unwrap_or_else(|e| panic!("{e}"));
    let mut prover = Prover::new(&solver, Some(Cache::new(&dir, SCHEMA))).expect("prover");
    let first = prover.compare(&base, &head, &schema).expect("first");
    assert_eq!(first.cached, 0);
    let second = prover.compare(&base, &head, &schema).expect("second");
    assert_eq!(second.cached, 2);
    assert_eq!(
        serde_json::to_value(&first.environments).expect("json"),
        serde_json::to_value(&second.environments).expect("json")
    );
    // Another schema is another key.
    let mut other = Prover::new(&solver, Some(Cache::new(&dir, "other schema"))).expect("prover");
    assert_eq!(
        other.compare(&base, &head, &schema).expect("third").cached,
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
