//! Stage: budgets and rate limits. The request's estimate (an upper bound of what it can cost)
//! is reserved atomically against every counter it touches; the [`Reservation`] settles itself
//! exactly once afterwards: reconciled with what was served, or released when it is dropped.

use serde_json::json;

use super::Admission;
use crate::authn::Principal;
use crate::error::GatewayError;
use crate::limits::Reservation;
use crate::state::AppState;
use crate::telemetry::otlp::Attr;

/// What a request may cost at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub tokens: i64,
    pub micro_usd: i64,
}

/// Reserves `estimate` for `principal` on `resource` (`None` when no limits are configured, or
/// when the backend failed and limits fail open).
pub async fn run(
    state: &AppState,
    adm: &mut Admission,
    principal: &Principal,
    resource: &str,
    estimate: Estimate,
) -> Result<Option<Reservation>, GatewayError> {
    let mut stage = adm.scope.stage(state, "budget");
    match state
        .limiter
        .hold(principal, resource, estimate.tokens, estimate.micro_usd)
        .await
    {
        Ok(Ok(r)) => {
            stage.attr("cairn.budget.reserved_tokens", Attr::Int(estimate.tokens));
            stage.attr(
                "cairn.budget.reserved_usd",
                Attr::Float(estimate.micro_usd as f64 / 1e6),
            );
            drop(stage);
            if let Some(b) = r.budget_json() {
                adm.extra("budget", b);
            }
            adm.extra("limits", r.json());
            Ok(Some(r))
        }
        Ok(Err(exceeded)) => {
            stage.fail(exceeded.reason());
            drop(stage);
            state
                .metrics
                .limit_rejected(&exceeded.rule, exceeded.metric);
            adm.extra("limit", json!(exceeded));
            Err(GatewayError::LimitExceeded(exceeded))
        }
        Err(e) => {
            stage.fail(&e);
            drop(stage);
            if state.limiter.fail_open() {
                state.metrics.limits_backend_error("open");
                tracing::warn!(error = %e, "limits backend failed; serving unlimited (on_backend_error = open)");
                adm.extra(
                    "limits",
                    json!({ "unchecked": true, "error": e.to_string() }),
                );
                Ok(None)
            } else {
                state.metrics.limits_backend_error("closed");
                tracing::warn!(error = %e, "limits backend failed; refusing (on_backend_error = closed)");
                adm.record.errors = Some(vec![e.to_string()]);
                Err(GatewayError::LimitsUnavailable(e.to_string()))
            }
        }
    }
}
