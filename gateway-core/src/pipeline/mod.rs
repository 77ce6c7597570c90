//! One chat completion, top to bottom: authenticate, read and check the request, find the
//! model, run the input guardrails, reserve budget, decide with Cedar, look in the response
//! cache, make the decision record durable while the upstream call runs, answer (checking the
//! output), and settle: outcome record, budget reconciliation, spans, metrics.
//!
//! INVARIANT: no response byte (status line included) leaves before the request's decision
//! record is durable; when it cannot be made durable the answer is 503 and nothing else.
//! INVARIANT: every reservation is settled exactly once: reconciled with the usage served, or
//! released when nothing was.

mod respond;
mod route;
mod scope;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::authn::Principal;
use crate::authz::{self, INVOKE_MODEL};
use crate::catalogue::CatalogueModel;
use crate::decision_log::{Record, Usage};
use crate::error::GatewayError;
use crate::guardrails::Verdict;
use crate::limits::Reservation;
use crate::openai::{self, ChatRequest};
use crate::server::AppState;
use crate::telemetry::otlp::Attr;

pub use scope::{RequestScope, SpanEnd};

/// Fills the principal's part of a record.
pub fn record_principal(record: &mut Record, principal: &Principal) {
    record.principal = Some(principal.uid());
    record.principal_parents = Some(principal.parent_uids());
    record.principal_attrs = Some(json!(principal.attrs));
    record.auth = Some(principal.auth_json());
}

/// The anonymous principal of a request that did not authenticate.
pub const ANONYMOUS: &str = "Anonymous::\"anonymous\"";

fn error_response(scope: &RequestScope, e: &GatewayError) -> Response {
    let (status, kind, _) = e.classify();
    let body = openai::error_json(&e.to_string(), kind, e.code());
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(secs) = e.retry_after()
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    scope.headers(&mut resp);
    resp
}

/// Adds `key: value` to the record's `extra` object.
pub fn extra(record: &mut Record, key: &str, value: Value) {
    let obj = record.extra.get_or_insert_with(|| json!({}));
    if let Some(map) = obj.as_object_mut() {
        map.insert(key.to_string(), value);
    }
}

/// Records a request that ends in an error before any upstream call, then answers it. If the
/// record cannot be made durable, the answer is 503 instead.
pub async fn refuse(
    state: &AppState,
    scope: &RequestScope,
    mut record: Record,
    e: GatewayError,
) -> Response {
    let (status, _, reason) = e.classify();
    if record.principal.is_none() {
        record.principal = Some(ANONYMOUS.into());
    }
    record.decision = Some("deny".into());
    record.status = Some(status.as_u16());
    record.reason = Some(reason.into());
    if record.errors.is_none() {
        record.errors = Some(match &e {
            GatewayError::Denied { .. } => Vec::new(),
            other => vec![other.to_string()],
        });
    }
    record.latency_ms = Some(scope.started.elapsed().as_millis() as u64);
    let model = record.model.clone().unwrap_or_default();
    let span_end = SpanEnd {
        request_model: record.model.clone(),
        provider: record.provider.clone(),
        status: status.as_u16(),
        decision: "deny",
        reason: reason.to_string(),
        error_type: Some(reason.to_string()),
        ..SpanEnd::default()
    };
    let c = scope.begin();
    let durable = state.log.append(record).await;
    scope.end(
        state,
        "record",
        c,
        Vec::new(),
        durable.as_ref().err().map(ToString::to_string),
    );
    let resp = match durable {
        Ok(_) => {
            state
                .metrics
                .request("deny", &model, status.as_u16(), reason);
            error_response(scope, &e)
        }
        Err(_) => records_unavailable(state, scope, &model),
    };
    scope.finish(state, span_end);
    resp
}

fn records_unavailable(state: &AppState, scope: &RequestScope, model: &str) -> Response {
    let e = GatewayError::RecordsUnavailable;
    let (status, _, reason) = e.classify();
    state
        .metrics
        .request("none", model, status.as_u16(), reason);
    let mut resp = error_response(scope, &e);
    // No record carries this id: handing it out would point an auditor at nothing.
    resp.headers_mut().remove("x-cairn-decision-id");
    resp
}

/// The data classification of the prompt: the header's label, or the configured default.
fn classification(state: &AppState, headers: &HeaderMap) -> Result<(String, i64), GatewayError> {
    let c = &state.config.raw.classification;
    let label = match headers.get(c.header.as_str()) {
        Some(v) => v
            .to_str()
            .map_err(|_| GatewayError::InvalidRequest(format!("`{}` is not text", c.header)))?
            .trim()
            .to_ascii_lowercase(),
        None => c.default.clone(),
    };
    let level = c.levels.get(&label).copied().ok_or_else(|| {
        GatewayError::InvalidRequest(format!(
            "`{}: {label}` is not a data classification; use one of: {}",
            c.header,
            c.levels.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    Ok((label, level))
}

/// The Cedar context of an `invoke_model` request, before guardrails and budgets add theirs.
pub fn invoke_context(
    label: &str,
    level: i64,
    streaming: bool,
    max_tokens: u64,
    peer: &SocketAddr,
) -> Value {
    json!({
        "data_classification": label,
        "data_level": level,
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

/// Tokens in a text, erring high for real tokenizers: ASCII at four bytes a token, anything
/// else at two tokens a character (CJK, emoji), and never fewer than its words.
fn estimate_text_tokens(t: &str) -> u64 {
    let non_ascii = t.chars().filter(|c| !c.is_ascii()).count() as u64;
    let ascii_bytes = t.bytes().filter(u8::is_ascii).count() as u64;
    crate::providers::mock::count_tokens(t).max(ascii_bytes.div_ceil(4) + 2 * non_ascii)
}

/// Prompt tokens to reserve, erring high for real tokenizers (and exact for the mock provider):
/// per message the larger of its word count and a byte count that takes ASCII at four bytes a
/// token and anything else at two tokens a character (CJK, emoji), plus what the message
/// carries besides text (tool calls, tool results' ids) and the tool definitions, which are
/// sent as prompt too.
fn estimate_prompt_tokens(request: &ChatRequest) -> u64 {
    // Serialised where it lies: counting clones nothing on the hot path.
    fn json_tokens(v: &impl serde::Serialize) -> u64 {
        serde_json::to_string(v).map_or(0, |t| estimate_text_tokens(&t))
    }
    let messages: u64 = request
        .messages
        .iter()
        .map(|m| {
            let extra = if m.extra.is_empty() {
                0
            } else {
                json_tokens(&m.extra)
            };
            estimate_text_tokens(&m.text()) + extra
        })
        .sum();
    let tools: u64 = request.tools.iter().flatten().map(json_tokens).sum();
    (messages + tools).max(1)
}

/// Counts findings in metrics, by detector and the action taken.
fn count_findings(state: &AppState, verdict: &Verdict, label: &str, direction: &str) {
    for (kind, n) in &verdict.counts {
        let action = crate::guardrails::Kind::parse(kind)
            .map(|k| state.guardrails.action(k, label))
            .map_or("log", |a| a.name());
        state.metrics.finding(kind, direction, action, *n as u64);
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
    /// The catalogue entry whose prices apply: the deployment that answered.
    pub fn priced(&self) -> &CatalogueModel {
        self.served_by.as_ref().unwrap_or(&self.model)
    }

    /// Reconciles the reservation with what was served (once).
    pub fn settle(&mut self, state: &AppState, usage: &Usage, served: bool) {
        if let Some(r) = self.reservation.take() {
            let tokens = (usage.input_tokens
                + usage.output_tokens
                + usage.cache_read_tokens
                + usage.cache_write_tokens) as i64;
            let cost = self.priced().cost_micro_usd(usage);
            state.limiter.reconcile_later(r, tokens, cost, served);
        }
    }

    /// Settles at what was reserved: a call dropped mid-flight may have been charged in full,
    /// and its usage will never be known.
    pub fn settle_reserved(&mut self, state: &AppState) {
        if let Some(r) = self.reservation.take() {
            let (tokens, micro_usd) = (r.reserved_tokens, r.reserved_micro_usd);
            state.limiter.reconcile_later(r, tokens, micro_usd, true);
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

pub async fn chat_completions(
    state: Arc<AppState>,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let scope = RequestScope::new(&headers, state.exporter.is_some());
    let mut record = scope.record(INVOKE_MODEL);

    let c = scope.begin();
    let principal = match state.authn.authenticate(&headers).await {
        Ok(p) => p,
        Err(e) => {
            scope.end(
                &state,
                "authenticate",
                c,
                Vec::new(),
                Some(e.reason().into()),
            );
            record.auth = Some(json!({ "error": e.reason() }));
            return refuse(&state, &scope, record, GatewayError::Unauthenticated(e)).await;
        }
    };
    scope.end(
        &state,
        "authenticate",
        c,
        vec![("cairn.auth.method", principal.auth.method.into())],
        None,
    );
    record_principal(&mut record, &principal);

    let limit = state.config.raw.server.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let e = if too_large {
                GatewayError::BodyTooLarge { limit }
            } else {
                // A client that went away mid-body, or a broken chunked encoding.
                GatewayError::BodyUnreadable(e.to_string())
            };
            return refuse(&state, &scope, record, e).await;
        }
    };
    let mut request: ChatRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                &state,
                &scope,
                record,
                GatewayError::InvalidBody(e.to_string()),
            )
            .await;
        }
    };
    record.model = Some(request.model.clone());
    record.stream = Some(request.streaming());
    if let Err(m) = request.check() {
        return refuse(&state, &scope, record, GatewayError::InvalidRequest(m)).await;
    }
    let Some(model) = state.catalogue.get(&request.model).cloned() else {
        return refuse(
            &state,
            &scope,
            record,
            GatewayError::UnknownModel(request.model.clone()),
        )
        .await;
    };
    record.resource = Some(model.uid());
    record.resource_attrs = Some(model.attrs.clone());
    record.provider = Some(model.provider.clone());
    let (label, level) = match classification(&state, &headers) {
        Ok(c) => c,
        Err(e) => return refuse(&state, &scope, record, e).await,
    };

    // Input guardrails: redact in place, and tell Cedar what was found (kinds, never text).
    let c = scope.begin();
    let verdict = state.guardrails.check_request(&mut request, &label);
    scope.end(&state, "guardrails", c, verdict.span_attrs("input"), None);
    scope.set_redacted(&verdict.redacted_kinds);
    if !verdict.counts.is_empty() {
        count_findings(&state, &verdict, &label, "input");
        record.guardrails = Some(json!({ "input": verdict.json() }));
    }

    // Budgets and rate limits: one atomic reservation of the estimate.
    let mut reservation = None;
    if state.limiter.enabled() {
        if request.max_output_tokens().is_none() {
            // The cap is what makes the reservation an upper bound of the spend.
            request.max_tokens = Some(state.limiter.default_output_tokens());
        }
        let prompt = estimate_prompt_tokens(&request);
        let estimate = Usage {
            input_tokens: prompt,
            output_tokens: request.max_output_tokens().unwrap_or(0),
            ..Usage::default()
        };
        let tokens = (estimate.input_tokens + estimate.output_tokens) as i64;
        // Priced as if every prompt token were written to the provider's cache, when that
        // costs more than plain input: the reservation is an upper bound of the charge.
        let priced = Usage {
            input_tokens: 0,
            cache_write_tokens: prompt,
            ..estimate
        };
        let micro_usd = model
            .cost_micro_usd(&estimate)
            .max(model.cost_micro_usd(&priced));
        let c = scope.begin();
        match state
            .limiter
            .reserve(&principal, &model.id, tokens, micro_usd)
            .await
        {
            Ok(Ok(r)) => {
                scope.end(
                    &state,
                    "budget",
                    c,
                    vec![
                        ("cairn.budget.reserved_tokens", Attr::Int(tokens)),
                        (
                            "cairn.budget.reserved_usd",
                            Attr::Float(micro_usd as f64 / 1e6),
                        ),
                    ],
                    None,
                );
                if let Some(b) = r.budget_json() {
                    extra(&mut record, "budget", b);
                }
                extra(&mut record, "limits", r.json());
                reservation = Some(r);
            }
            Ok(Err(exceeded)) => {
                scope.end(
                    &state,
                    "budget",
                    c,
                    Vec::new(),
                    Some(exceeded.reason().into()),
                );
                state
                    .metrics
                    .limit_rejected(&exceeded.rule, exceeded.metric);
                extra(&mut record, "limit", json!(exceeded));
                return refuse(
                    &state,
                    &scope,
                    record,
                    GatewayError::LimitExceeded(exceeded),
                )
                .await;
            }
            Err(e) => {
                scope.end(&state, "budget", c, Vec::new(), Some(e.to_string()));
                if state.limiter.fail_open() {
                    state.metrics.limits_backend_error("open");
                    tracing::warn!(error = %e, "limits backend failed; serving unlimited (on_backend_error = open)");
                    extra(
                        &mut record,
                        "limits",
                        json!({ "unchecked": true, "error": e.to_string() }),
                    );
                } else {
                    state.metrics.limits_backend_error("closed");
                    tracing::warn!(error = %e, "limits backend failed; refusing (on_backend_error = closed)");
                    record.errors = Some(vec![e.to_string()]);
                    return refuse(
                        &state,
                        &scope,
                        record,
                        GatewayError::LimitsUnavailable(e.to_string()),
                    )
                    .await;
                }
            }
        }
    }

    let mut context = invoke_context(
        &label,
        level,
        request.streaming(),
        request.max_output_tokens().unwrap_or(0),
        &peer,
    );
    context["guardrail_findings"] = json!(verdict.kinds());
    if let Some(remaining) = reservation.as_ref().and_then(|r| r.remaining_micro_usd) {
        context["budget_remaining_usd"] = json!(decimal_usd(remaining));
    }
    record.context = Some(context.clone());

    // From here on, a refusal releases the reservation.
    let release = |state: &AppState, r: Option<Reservation>| {
        if let Some(r) = r {
            state.limiter.reconcile_later(r, 0, 0, false);
        }
    };
    let Some(engine) = state.policy.current() else {
        release(&state, reservation);
        return refuse(&state, &scope, record, GatewayError::NoBundle).await;
    };
    record.bundle = Some(engine.digest().to_string());
    let c = scope.begin();
    let decision = match authz::decide(
        &engine,
        &principal,
        INVOKE_MODEL,
        "Model",
        &model.id,
        &model.attrs,
        &context,
    ) {
        Ok(d) => d,
        Err(e) => {
            scope.end(&state, "policy", c, Vec::new(), Some(e.clone()));
            release(&state, reservation);
            return refuse(&state, &scope, record, GatewayError::PolicyMismatch(e)).await;
        }
    };
    scope.end(
        &state,
        "policy",
        c,
        vec![
            (
                "cairn.decision",
                if decision.allow { "allow" } else { "deny" }.into(),
            ),
            ("cairn.policy.reasons", Attr::Strs(decision.reasons.clone())),
            ("cairn.bundle", engine.digest().into()),
        ],
        None,
    );
    record.reasons = Some(decision.reasons.clone());
    record.errors = Some(decision.errors.clone());
    if !decision.allow {
        release(&state, reservation);
        return refuse(
            &state,
            &scope,
            record,
            GatewayError::Denied {
                reasons: decision.reasons,
            },
        )
        .await;
    }
    if !verdict.blocked.is_empty() {
        release(&state, reservation);
        let kinds = verdict.blocked.iter().map(|k| k.name()).collect();
        return refuse(
            &state,
            &scope,
            record,
            GatewayError::GuardrailBlocked(kinds),
        )
        .await;
    }
    // An alias is served by its deployments; each one used must be allowed too.
    let mut plan = Vec::new();
    let mut denied = Vec::new();
    let mut denied_reasons = Vec::new();
    for dep in state.router.plan(&state.catalogue, &model) {
        if dep.id == model.id {
            plan.push(dep);
            continue;
        }
        match authz::decide(
            &engine,
            &principal,
            INVOKE_MODEL,
            "Model",
            &dep.id,
            &dep.attrs,
            &context,
        ) {
            Ok(d) if d.allow => plan.push(dep),
            Ok(d) => {
                denied_reasons.extend(d.reasons.iter().cloned());
                denied.push(json!({ "deployment": dep.id, "reasons": d.reasons }));
            }
            Err(e) => denied.push(json!({ "deployment": dep.id, "error": e })),
        }
    }
    if !denied.is_empty() {
        extra(&mut record, "deployments_denied", json!(denied));
    }
    if plan.is_empty() {
        release(&state, reservation);
        denied_reasons.sort();
        denied_reasons.dedup();
        return refuse(
            &state,
            &scope,
            record,
            GatewayError::Denied {
                reasons: denied_reasons,
            },
        )
        .await;
    }
    if let Some(bedrock) = &state.bedrock
        && state.catalogue.uses_bedrock(&model)
        && let Some(session) = bedrock.session(&principal)
    {
        for (k, v) in session.record_fields() {
            extra(&mut record, k, v);
        }
    }
    record.decision = Some("allow".into());
    record.reason = Some("policy".into());

    let ttl = cache_ttl(&engine, &decision.reasons, &model);
    let cache = (ttl > 0).then(|| {
        let scope_value = match state.cache.scope_kind() {
            "global" => "*".to_string(),
            "team" => crate::limits::team_of(&principal)
                .map_or_else(|| principal.uid(), |t| format!("team:{t}")),
            _ => principal.uid(),
        };
        (
            crate::cache::key(&request, &scope_value, &label),
            Duration::from_secs(ttl),
        )
    });
    let allowed = Allowed {
        scope,
        principal,
        request,
        model,
        plan,
        served_by: None,
        attempts: Vec::new(),
        label,
        reservation,
        cache,
    };
    if let Some((key, _)) = &allowed.cache {
        let c = allowed.scope.begin();
        let hit = state.cache.get(key);
        let result = if hit.is_some() { "hit" } else { "miss" };
        allowed.scope.end(
            &state,
            "cache",
            c,
            vec![("cairn.cache.result", result.into())],
            None,
        );
        state.metrics.cache(result);
        extra(&mut record, "cache", json!(result));
        if let Some(cached) = hit {
            return respond::from_cache(&state, allowed, record, cached).await;
        }
    }

    // From here the work runs in its own task, so a client that goes away does not stop the
    // outcome from being recorded.
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
