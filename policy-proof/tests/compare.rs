//! `compare` against a real cvc5 (scripts/test.sh installs one and sets `CVC5`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly by design"
)]

use cedar_policy::{PolicySet, Schema};
use policy_proof::{ProofError, SolverCommand, Verdict, compare};

const SCHEMA: &str = r#"
entity User { level: Long, team: String };
entity Doc { owner: User };
action read, write appliesTo { principal: User, resource: Doc };
"#;

fn schema() -> Schema {
    Schema::from_cedarschema_str(SCHEMA).expect("schema").0
}

fn set(src: &str) -> PolicySet {
    src.parse().expect("policies")
}

fn solver() -> SolverCommand {
    SolverCommand::discover(None).unwrap_or_else(|e| {
        panic!("{e}\n(scripts/test.sh installs cvc5 into its venv and exports CVC5)")
    })
}

#[test]
fn rewritten_condition_is_proved_equivalent() {
    let base = set(
        r#"permit(principal, action == Action::"read", resource) when { principal.level > 2 };"#,
    );
    let head = set(
        r#"permit(principal, action == Action::"read", resource) unless { principal.level <= 2 };"#,
    );
    let c = compare(&base, &head, &schema(), &solver()).expect("compare");
    assert_eq!(c.environments.len(), 2);
    assert!(
        c.environments
            .iter()
            .all(|e| e.verdict == Verdict::Equivalent)
    );
    assert!(!c.widens() && !c.narrows());
}

#[test]
fn lowered_threshold_widens_with_a_witness_cedar_confirms() {
    let base = set(
        r#"@id("readers") permit(principal, action == Action::"read", resource) when { principal.level > 2 };"#,
    );
    let head = set(
        r#"@id("readers") permit(principal, action == Action::"read", resource) when { principal.level > 1 };"#,
    );
    let c = compare(&base, &head, &schema(), &solver()).expect("compare");
    let read = c
        .environments
        .iter()
        .find(|e| e.env.action.contains("read"))
        .expect("read env");
    assert_eq!(read.verdict, Verdict::Widens);
    let w = read.deny_to_allow.as_ref().expect("witness");
    assert_eq!(
        (w.base_decision.as_str(), w.head_decision.as_str()),
        ("deny", "allow")
    );
    assert_eq!(w.head_reasons, vec!["policy0".to_owned()]);
    assert!(w.base_reasons.is_empty());
    // The witness's principal must have level exactly 2, the only value in the gap.
    let principal = w
        .entities
        .as_array()
        .expect("entities array")
        .iter()
        .find(|e| {
            e["uid"]["type"] == "User"
                && format!("User::\"{}\"", e["uid"]["id"].as_str().unwrap_or("")) == w.principal
        });
    assert_eq!(principal.expect("principal entity")["attrs"]["level"], 2);
    let write = c
        .environments
        .iter()
        .find(|e| e.env.action.contains("write"))
        .expect("write env");
    assert_eq!(write.verdict, Verdict::Equivalent);
    assert!(c.widens() && !c.narrows());
}

#[test]
fn added_forbid_narrows_and_swapped_scope_changes_both_ways() {
    let base = set(r#"permit(principal, action, resource) when { resource.owner == principal };"#);
    let narrowed = set(
        r#"permit(principal, action, resource) when { resource.owner == principal };
           forbid(principal, action == Action::"write", resource) when { principal.team == "contractors" };"#,
    );
    let c = compare(&base, &narrowed, &schema(), &solver()).expect("compare");
    let verdicts: Vec<_> = c
        .environments
        .iter()
        .map(|e| (e.env.action.clone(), e.verdict))
        .collect();
    assert!(
        verdicts
            .iter()
            .any(|(a, v)| a.contains("write") && *v == Verdict::Narrows),
        "{verdicts:?}"
    );
    assert!(
        verdicts
            .iter()
            .any(|(a, v)| a.contains("read") && *v == Verdict::Equivalent),
        "{verdicts:?}"
    );
    let w = c
        .changed()
        .next()
        .and_then(|e| e.allow_to_deny.as_ref())
        .expect("witness");
    assert_eq!(w.head_reasons, vec!["policy1".to_owned()]);

    let swapped = set(r#"permit(principal, action, resource) when { principal.level > 5 };"#);
    let c = compare(&base, &swapped, &schema(), &solver()).expect("compare");
    assert!(c.environments.iter().all(|e| e.verdict == Verdict::Both));
}

#[test]
fn ill_typed_head_is_an_error_naming_the_side() {
    let base = set(r#"permit(principal, action, resource);"#);
    let head = set(r#"permit(principal, action, resource) when { principal.level == "high" };"#);
    match compare(&base, &head, &schema(), &solver()) {
        Err(ProofError::Compile { side, .. }) => assert_eq!(side, "head"),
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn missing_solver_says_how_to_install_one() {
    let err = SolverCommand::discover(Some(std::path::Path::new("/nonexistent/cvc5"))).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/cvc5") && text.contains("cvc5 ≥ 1.3"),
        "{text}"
    );
}
