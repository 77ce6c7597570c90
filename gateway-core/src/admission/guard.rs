//! Stage: the local guardrails on what the client sends. Findings are redacted in place or
//! block the request (after Cedar decided, so a denial is reported as a denial); what was found
//! goes into the Cedar context and the record as kinds and counts, never text.

use serde_json::json;

use super::Admission;
use crate::error::GatewayError;
use crate::guardrails::{Guardrails, Verdict};
use crate::state::AppState;

/// Runs `check` (which redacts in place) as the input guardrail stage of `label`.
pub fn input(
    state: &AppState,
    adm: &mut Admission,
    label: &str,
    check: impl FnOnce(&Guardrails) -> Verdict,
) -> Verdict {
    let verdict = {
        let mut stage = adm.scope.stage(state, "guardrails");
        let verdict = check(&state.guardrails);
        stage.attrs(verdict.span_attrs("input"));
        verdict
    };
    adm.scope.set_redacted(&verdict.redacted_kinds);
    if !verdict.counts.is_empty() {
        count_findings(state, &verdict, label, "input");
        adm.record.guardrails = Some(json!({ "input": verdict.json() }));
    }
    verdict
}

/// Refuses a request whose input a blocking detector matched.
pub fn enforce(verdict: &Verdict) -> Result<(), GatewayError> {
    if verdict.blocked.is_empty() {
        return Ok(());
    }
    Err(GatewayError::GuardrailBlocked(
        verdict.blocked.iter().map(|k| k.name()).collect(),
    ))
}

/// Counts findings in metrics, by detector and the action taken.
pub fn count_findings(state: &AppState, verdict: &Verdict, label: &str, direction: &str) {
    for (kind, n) in &verdict.counts {
        let action = crate::guardrails::Kind::parse(kind)
            .map(|k| state.guardrails.action(k, label))
            .map_or("log", |a| a.name());
        state.metrics.finding(kind, direction, action, *n as u64);
    }
}
