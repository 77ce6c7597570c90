//! `POST /v1/chat/completions`, top to bottom: admit (the admission stages: authenticate, read
//! the body, resolve the model and classification, guard the input, reserve, decide, and plan
//! the deployments), serve (the response cache, or the upstream call while the decision record
//! is made durable, with the output checked) and settle (outcome record, budget, spans,
//! metrics).
//!
//! INVARIANT: every reservation is settled exactly once: the [`Reservation`] is reconciled with
//! the usage served, or released when it is dropped.

mod estimate;
mod respond;
mod route;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::admission::decide::{self, Ask, decimal_usd, invoke_context};
use crate::admission::reserve::{self, Estimate};
use crate::admission::{Admission, RequestScope, authenticate, body, guard, refuse, resource};
use crate::authn::Principal;
use crate::authz::INVOKE_MODEL;
use crate::catalogue::CatalogueModel;
use crate::decision_log::{Decision, Usage};
use crate::error::GatewayError;
use crate::limits::Reservation;
use crate::openai::{self, ChatRequest};
use crate::state::AppState;

pub use estimate::{estimate_prompt_tokens, estimate_text_tokens};

pub async fn chat_completions(
    state: Arc<AppState>,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut adm = Admission::new(&headers, state.exporter.is_some(), INVOKE_MODEL);
    let admitted = match admit(&state, &mut adm, peer, &headers, body).await {
        Ok(admitted) => admitted,
        Err(e) => return refuse(&state, adm, e).await,
    };
    let Admission { scope, record } = adm;
    serve(state, Allowed::new(scope, admitted), record).await
}

/// What admission established about an allowed request.
struct Admitted {
    principal: Principal,
    request: ChatRequest,
    model: CatalogueModel,
    plan: Vec<CatalogueModel>,
    label: String,
    reservation: Option<Reservation>,
    cache: Option<([u8; 32], Duration)>,
}

/// The admission stages for a chat completion; the request leaves allowed, with its plan, or
/// with the error that refuses it.
async fn admit(
    state: &AppState,
    adm: &mut Admission,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<Admitted, GatewayError> {
    let principal = authenticate::run(state, adm, headers).await?;
    let mut request: ChatRequest = body::json(&body::read(state, body).await?)?;
    adm.record.model = Some(request.model.clone());
    adm.record.stream = Some(request.streaming());
    request.check().map_err(GatewayError::InvalidRequest)?;
    let model = resource::model(state, adm, &request.model)?;
    let classification = resource::classification(state, headers)?;
    let label = classification.label.clone();
    let verdict = guard::input(state, adm, &label, |g| {
        g.check_request(&mut request, &label)
    });
    let reservation = match estimate(state, &mut request, &model) {
        Some(e) => reserve::run(state, adm, &principal, &model.id, e).await?,
        None => None,
    };
    let mut context = invoke_context(
        &classification,
        request.streaming(),
        request.max_output_tokens().unwrap_or(0),
        &peer,
    );
    context["guardrail_findings"] = json!(verdict.kinds());
    if let Some(remaining) = reservation
        .as_ref()
        .and_then(Reservation::remaining_micro_usd)
    {
        context["budget_remaining_usd"] = json!(decimal_usd(remaining));
    }
    adm.record.context = Some(context.clone());
    let engine = decide::engine(adm, state)?;
    let decision = decide::run(
        state,
        adm,
        &engine,
        &principal,
        Ask::invoke(&model, &context),
    )?;
    guard::enforce(&verdict)?;
    let plan = decide::deployments(state, adm, &engine, &principal, &model, &context)?;
    if let Some(bedrock) = state.bedrock()
        && state.catalogue.uses_bedrock(&model)
        && let Some(session) = bedrock.session(&principal)
    {
        for (k, v) in session.record_fields() {
            adm.extra(k, v);
        }
    }
    adm.record.decision = Some("allow".into());
    adm.record.reason = Some("policy".into());
    let cache = cache_slot(
        state,
        &engine,
        &decision.reasons,
        &model,
        &principal,
        &request,
        &label,
    );
    Ok(Admitted {
        principal,
        request,
        model,
        plan,
        label,
        reservation,
        cache,
    })
}

/// What the request may cost at most, when limits apply: the prompt as estimated, and the
/// output capped (a default cap is set when the client gave none, so the bound holds).
fn estimate(
    state: &AppState,
    request: &mut ChatRequest,
    model: &CatalogueModel,
) -> Option<Estimate> {
    if !state.limiter.enabled() {
        return None;
    }
    if request.max_output_tokens().is_none() {
        request.max_tokens = Some(state.limiter.default_output_tokens());
    }
    let prompt = estimate_prompt_tokens(request);
    let usage = Usage {
        input_tokens: prompt,
        output_tokens: request.max_output_tokens().unwrap_or(0),
        ..Usage::default()
    };
    // Priced as if every prompt token were written to the provider's cache, when that costs
    // more than plain input: the reservation is an upper bound of the charge.
    let as_cache_write = Usage {
        input_tokens: 0,
        cache_write_tokens: prompt,
        ..usage
    };
    Some(Estimate {
        tokens: (usage.input_tokens + usage.output_tokens) as i64,
        micro_usd: model
            .cost_micro_usd(&usage)
            .max(model.cost_micro_usd(&as_cache_write)),
    })
}

/// Where to keep the answer and for how long, when the response cache applies.
fn cache_slot(
    state: &AppState,
    engine: &policy_engine::PolicyEngine,
    reasons: &[String],
    model: &CatalogueModel,
    principal: &Principal,
    request: &ChatRequest,
    label: &str,
) -> Option<([u8; 32], Duration)> {
    let ttl = cache_ttl(engine, reasons, model);
    (ttl > 0).then(|| {
        let scope_value = match state.cache.scope_kind() {
            "global" => "*".to_string(),
            "team" => crate::limits::team_of(principal)
                .map_or_else(|| principal.uid(), |t| format!("team:{t}")),
            _ => principal.uid(),
        };
        (
            crate::cache::key(request, &scope_value, label),
            Duration::from_secs(ttl),
        )
    })
}

/// Serves an allowed request: from the response cache, or from the provider in a task of its
/// own, so a client that goes away does not stop the outcome from being recorded.
async fn serve(state: Arc<AppState>, allowed: Allowed, mut record: Decision) -> Response {
    if let Some((key, _)) = &allowed.cache {
        let hit = {
            let mut stage = allowed.scope.stage(&state, "cache");
            let hit = state.cache.get(key);
            let result = if hit.is_some() { "hit" } else { "miss" };
            stage.attr("cairn.cache.result", result);
            state.metrics.cache(result);
            crate::admission::extra(&mut record.extra, "cache", json!(result));
            hit
        };
        if let Some(cached) = hit {
            return respond::from_cache(&state, allowed, record, cached).await;
        }
    }
    let state2 = state.clone();
    let task = tokio::spawn(async move { respond::upstream(state2, allowed, record).await });
    task.await.unwrap_or_else(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(openai::error_json("internal error", "api_error", None)),
        )
            .into_response()
    })
}

/// What an allowed request carries into its upstream call and settlement.
pub struct Allowed {
    pub scope: RequestScope,
    pub principal: Principal,
    pub request: ChatRequest,
    /// The model the client asked for (an alias, or a model).
    pub model: CatalogueModel,
    /// The deployments Cedar allows, in the order to try them.
    pub plan: Vec<CatalogueModel>,
    /// The deployment that answered.
    pub served_by: Option<CatalogueModel>,
    pub attempts: Vec<crate::routing::Attempt>,
    /// The data classification label (output guardrails act by it).
    pub label: String,
    pub reservation: Option<Reservation>,
    /// Where to store the answer, and for how long, when the response cache applies.
    pub cache: Option<([u8; 32], Duration)>,
}

impl Allowed {
    fn new(scope: RequestScope, a: Admitted) -> Self {
        Self {
            scope,
            principal: a.principal,
            request: a.request,
            model: a.model,
            plan: a.plan,
            served_by: None,
            attempts: Vec::new(),
            label: a.label,
            reservation: a.reservation,
            cache: a.cache,
        }
    }

    /// The catalogue entry whose prices apply: the deployment that answered.
    pub fn priced(&self) -> &CatalogueModel {
        self.served_by.as_ref().unwrap_or(&self.model)
    }

    /// Reconciles the reservation with what was served.
    pub fn settle(&mut self, usage: &Usage, served: bool) {
        if let Some(r) = self.reservation.take() {
            let tokens = (usage.input_tokens
                + usage.output_tokens
                + usage.cache_read_tokens
                + usage.cache_write_tokens) as i64;
            r.settle(tokens, self.priced().cost_micro_usd(usage), served);
        }
    }

    /// Settles at what was reserved: a call dropped mid-flight may have been charged in full,
    /// and its usage will never be known.
    pub fn settle_reserved(&mut self) {
        if let Some(r) = self.reservation.take() {
            r.settle_reserved();
        }
    }

    /// `extra.routing` of the outcome record: who answered and every attempt.
    pub fn routing_json(&self) -> Option<Value> {
        (!self.model.deployments.is_empty() || self.attempts.len() > 1).then(|| {
            json!({
                "deployment": self.served_by.as_ref().map(|m| m.id.clone()),
                "attempts": self.attempts,
            })
        })
    }
}

/// The response cache's lifetime for this request: the smallest `@cache_ttl` among the
/// determining permits when any has one, else the model's setting.
fn cache_ttl(
    engine: &policy_engine::PolicyEngine,
    reasons: &[String],
    model: &CatalogueModel,
) -> u64 {
    let from_policy = reasons
        .iter()
        .filter_map(|id| {
            engine
                .policies()
                .policy(&policy_engine::cedar_policy::PolicyId::new(id))?
                .annotation("cache_ttl")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .min();
    from_policy.unwrap_or(model.cache_ttl_s)
}
