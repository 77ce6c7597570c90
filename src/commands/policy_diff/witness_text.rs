//! A proven counterexample written the ways a reviewer uses it: as a policy-test case to paste
//! into a suite, and as `cairn policy authorize` arguments to run.

use std::fmt::Write as _;

use policy_engine::load::LoadedPolicies;
use policy_proof::{EnvName, Witness};

/// A JSON string is a YAML double-quoted scalar: every value quoted the same way, whatever it
/// holds.
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// One test case (a list item of a suite's `cases:`) pinning the head's decision and reasons.
/// Its context and entities are complete, so it also runs in a suite of its own.
pub fn yaml_case(w: &Witness, env: &EnvName) -> String {
    let name = format!(
        "proof: {} {} under base, {} under head",
        env, w.base_decision, w.head_decision
    );
    let mut s = String::new();
    let _ = writeln!(s, "- name: {}", quoted(&name));
    let _ = writeln!(s, "  principal: {}", quoted(&w.principal));
    let _ = writeln!(s, "  action: {}", quoted(&w.action));
    let _ = writeln!(s, "  resource: {}", quoted(&w.resource));
    let _ = writeln!(s, "  context: {}", w.context);
    let _ = writeln!(s, "  entities:");
    for e in w.entities.as_array().into_iter().flatten() {
        let _ = writeln!(s, "    - {e}");
    }
    let _ = writeln!(s, "  expect: {}", w.head_decision);
    let reasons: Vec<String> = w.head_reasons.iter().map(|r| quoted(r)).collect();
    let _ = writeln!(s, "  reasons: [{}]", reasons.join(", "));
    s
}

/// POSIX shell single quoting.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `cairn policy authorize` deciding the witness under `policies` (bash or zsh: the entities
/// and context are given by process substitution, so nothing has to be saved first).
pub fn authorize_command(w: &Witness, policies: &str) -> String {
    format!(
        "cairn policy authorize --policies {} \\\n  --principal {} --action {} --resource {} \\\n  --context <(printf '%s' {}) \\\n  --entities <(printf '%s' {})",
        sh(policies),
        sh(&w.principal),
        sh(&w.action),
        sh(&w.resource),
        sh(&w.context.to_string()),
        sh(&w.entities.to_string()),
    )
}

/// The source text of the policies `ids` name in `loaded`, each with its position.
pub fn policy_texts(loaded: &LoadedPolicies, ids: &[String]) -> Vec<(String, String)> {
    ids.iter()
        .filter_map(|id| loaded.policy(id))
        .map(|p| {
            let start = p.span.offset();
            let text = p
                .file
                .text
                .get(start..start + p.span.len())
                .unwrap_or("")
                .to_owned();
            (p.position(), text)
        })
        .collect()
}
