//! Stage: Cedar decides, from the verified bundle in force. The record keeps the bundle digest,
//! the context exactly as given and the determining policies, so the decision can be replayed.
//! For a model alias, every deployment that may serve the request is decided too.

use std::net::SocketAddr;
use std::sync::Arc;

use policy_engine::PolicyEngine;
use serde_json::{Value, json};

use super::Admission;
use super::resource::Classification;
use crate::authn::Principal;
use crate::authz::{self, INVOKE_MODEL};
use crate::catalogue::CatalogueModel;
use crate::error::GatewayError;
use crate::state::AppState;
use crate::telemetry::otlp::Attr;

/// What is asked of Cedar.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub resource_attrs: &'a Value,
    pub context: &'a Value,
}

impl<'a> Ask<'a> {
    /// `invoke_model` on a catalogue model.
    pub fn invoke(model: &'a CatalogueModel, context: &'a Value) -> Self {
        Self {
            action: INVOKE_MODEL,
            resource_type: "Model",
            resource_id: &model.id,
            resource_attrs: &model.attrs,
            context,
        }
    }
}

/// The bundle in force; the record learns its digest.
pub fn engine(adm: &mut Admission, state: &AppState) -> Result<Arc<PolicyEngine>, GatewayError> {
    let engine = state.policy.current().ok_or(GatewayError::NoBundle)?;
    adm.record.bundle = Some(engine.digest().to_string());
    Ok(engine)
}

/// One Cedar decision, without refusing: for listings, which decide many resources.
pub fn evaluate(
    engine: &PolicyEngine,
    principal: &Principal,
    ask: Ask<'_>,
) -> Result<authz::Decision, GatewayError> {
    authz::decide(
        engine,
        principal,
        ask.action,
        ask.resource_type,
        ask.resource_id,
        ask.resource_attrs,
        ask.context,
    )
    .map_err(GatewayError::PolicyMismatch)
}

/// Decides the request; a denial is an error naming the determining policies.
pub fn run(
    state: &AppState,
    adm: &mut Admission,
    engine: &PolicyEngine,
    principal: &Principal,
    ask: Ask<'_>,
) -> Result<authz::Decision, GatewayError> {
    let decision = {
        let mut stage = adm.scope.stage(state, "policy");
        let decision = evaluate(engine, principal, ask);
        match &decision {
            Ok(d) => {
                stage.attr("cairn.decision", if d.allow { "allow" } else { "deny" });
                stage.attr("cairn.policy.reasons", Attr::Strs(d.reasons.clone()));
                stage.attr("cairn.bundle", engine.digest());
            }
            Err(GatewayError::PolicyMismatch(e)) => stage.fail(e),
            Err(e) => stage.fail(e),
        }
        decision?
    };
    adm.record.reasons = Some(decision.reasons.clone());
    adm.record.errors = Some(decision.errors.clone());
    if !decision.allow {
        return Err(GatewayError::Denied {
            reasons: decision.reasons,
        });
    }
    Ok(decision)
}

/// The deployments that may serve `model`, in the order to try them: an alias is served by its
/// deployments, and each one used must be allowed too. None allowed is a denial.
pub fn deployments(
    state: &AppState,
    adm: &mut Admission,
    engine: &PolicyEngine,
    principal: &Principal,
    model: &CatalogueModel,
    context: &Value,
) -> Result<Vec<CatalogueModel>, GatewayError> {
    let mut plan = Vec::new();
    let mut denied = Vec::new();
    let mut denied_reasons = Vec::new();
    for dep in state.router.plan(&state.catalogue, model) {
        if dep.id == model.id {
            plan.push(dep);
            continue;
        }
        match evaluate(engine, principal, Ask::invoke(&dep, context)) {
            Ok(d) if d.allow => plan.push(dep),
            Ok(d) => {
                denied_reasons.extend(d.reasons.iter().cloned());
                denied.push(json!({ "deployment": dep.id, "reasons": d.reasons }));
            }
            Err(GatewayError::PolicyMismatch(e)) => {
                denied.push(json!({ "deployment": dep.id, "error": e.to_string() }));
            }
            Err(e) => return Err(e),
        }
    }
    if !denied.is_empty() {
        adm.extra("deployments_denied", json!(denied));
    }
    if plan.is_empty() {
        denied_reasons.sort();
        denied_reasons.dedup();
        return Err(GatewayError::Denied {
            reasons: denied_reasons,
        });
    }
    Ok(plan)
}

/// The Cedar context of an `invoke_model` request, before guardrails and budgets add theirs.
pub fn invoke_context(
    classification: &Classification,
    streaming: bool,
    max_tokens: u64,
    peer: &SocketAddr,
) -> Value {
    json!({
        "data_classification": classification.label,
        "data_level": classification.level,
        "streaming": streaming,
        "max_tokens": max_tokens,
        "source_ip": peer.ip().to_string(),
        "request_time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "guardrail_findings": [],
    })
}

/// Micro-USD as a Cedar `decimal` literal (four decimal places, rounded down so a policy never
/// sees more budget than there is).
pub fn decimal_usd(micro: i64) -> String {
    let hundredths_of_cents = micro.div_euclid(100);
    let sign = if hundredths_of_cents < 0 { "-" } else { "" };
    let abs = hundredths_of_cents.unsigned_abs();
    format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_down_to_four_places() {
        assert_eq!(decimal_usd(0), "0.0000");
        assert_eq!(decimal_usd(1_234_567), "1.2345");
        assert_eq!(decimal_usd(99), "0.0000");
        assert_eq!(decimal_usd(-1), "-0.0001");
        assert_eq!(decimal_usd(-1_500_000), "-1.5000");
    }
}
