//! Answering an allowed request: from the response cache, or from the provider (the decision
//! record's fsync and the upstream call run together; nothing is sent before the record is
//! durable), with the output guardrails applied and the request settled.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;

use super::Allowed;
use super::route::Answer;
use crate::admission::guard::count_findings;
use crate::admission::{SpanEnd, error_response, extra, records_unavailable};
use crate::cache::Cached;
use crate::catalogue::CatalogueModel;
use crate::clock;
use crate::decision_log::{Decision, Outcome, Record, Usage};
use crate::error::GatewayError;
use crate::openai::{self, Completion};
use crate::providers::ProviderError;
use crate::state::AppState;
use crate::telemetry::otlp::Attr;

/// The outcome of an allowed request.
pub fn outcome(allowed: &Allowed, status: u16) -> Outcome {
    Outcome {
        decision_id: allowed.scope.decision_id.clone(),
        model: Some(allowed.model.id.clone()),
        provider: Some(allowed.priced().provider.clone()),
        status: Some(status),
        trace_id: Some(allowed.scope.trace.trace_id.clone()),
        latency_ms: Some(allowed.scope.started.elapsed().as_millis() as u64),
        stream: Some(allowed.request.streaming()),
        ..Default::default()
    }
}

/// An outcome's record, to append.
pub fn outcome_record(outcome: Outcome) -> Record {
    Record::new(
        uuid::Uuid::now_v7().to_string(),
        clock::now_rfc3339(),
        outcome,
    )
}

/// The root span's description of an allowed request.
pub fn span_end(state: &AppState, allowed: &Allowed, status: u16) -> SpanEnd {
    SpanEnd {
        request_model: Some(allowed.model.id.clone()),
        response_model: Some(allowed.priced().id.clone()),
        provider: Some(allowed.priced().provider.clone()),
        status,
        decision: "allow",
        reason: "policy".into(),
        max_tokens: allowed.request.max_output_tokens(),
        temperature: allowed.request.temperature,
        input_messages: state
            .exporter
            .as_ref()
            .filter(|e| e.capture_content)
            .and_then(|_| serde_json::to_string(&allowed.request.messages).ok()),
        ..SpanEnd::default()
    }
}

/// Attributes of a provider call's CLIENT span.
pub fn provider_attrs(
    deployment: &CatalogueModel,
    usage: Option<&Usage>,
    finish: Option<&str>,
) -> Vec<(&'static str, Attr)> {
    let mut attrs: Vec<(&'static str, Attr)> = vec![
        ("gen_ai.operation.name", "chat".into()),
        (
            "gen_ai.provider.name",
            crate::admission::genai_provider(&deployment.provider).into(),
        ),
        (
            "gen_ai.request.model",
            deployment.upstream_model.clone().into(),
        ),
        ("cairn.deployment", deployment.id.clone().into()),
    ];
    if let Some(u) = usage {
        attrs.push(("gen_ai.usage.input_tokens", u.input_tokens.into()));
        attrs.push(("gen_ai.usage.output_tokens", u.output_tokens.into()));
    }
    if let Some(f) = finish {
        attrs.push(("gen_ai.response.finish_reasons", Attr::Strs(vec![f.into()])));
    }
    attrs
}

/// Adds the answering deployment (for an alias) and the number of upstream attempts.
pub fn routing_headers(allowed: &Allowed, resp: &mut Response) {
    if let Some(m) = &allowed.served_by
        && !allowed.model.deployments.is_empty()
        && let Ok(v) = HeaderValue::from_str(&m.id)
    {
        resp.headers_mut().insert("x-cairn-deployment", v);
    }
    let tries = allowed
        .attempts
        .iter()
        .filter(|a| a.result != "skipped")
        .count();
    if tries > 1 {
        resp.headers_mut()
            .insert("x-cairn-attempts", HeaderValue::from(tries));
    }
}

pub async fn upstream(state: Arc<AppState>, mut allowed: Allowed, record: Decision) -> Response {
    if !state.log.healthy() {
        // Known unusable: refuse before the prompt goes anywhere.
        allowed.settle(&Usage::default(), true);
        return records_unavailable(&state, &allowed.scope, &allowed.model.id);
    }
    let record = allowed.scope.decision_record(record);
    // The fsync overlaps the upstream call; if the record fails, the call is dropped at once
    // rather than finished (and retried) for an answer that will never be sent.
    let (receipt, routed) = {
        let mut stage = allowed.scope.stage(&state, "record");
        let durable = async {
            let r = state.log.append(record).await;
            if let Err(e) = &r {
                stage.fail(e);
            }
            drop(stage);
            r
        };
        let route = super::route::route(&state, &allowed);
        tokio::pin!(durable, route);
        tokio::select! {
            biased;
            receipt = &mut durable => {
                let routed = if receipt.is_ok() { Some(route.await) } else { None };
                (receipt, routed)
            }
            routed = &mut route => (durable.await, Some(routed)),
        }
    };
    let Some((routed, attempts)) = routed else {
        // The call was dropped in flight: the provider may have charged for it.
        allowed.settle_reserved();
        return records_unavailable(&state, &allowed.scope, &allowed.model.id);
    };
    allowed.attempts = attempts;
    if receipt.is_err() {
        // The provider may have charged for an answer nobody will see; budgets count it.
        let usage = match &routed {
            Ok((Answer::Complete(c), dep, _)) => {
                allowed.served_by = Some(dep.clone());
                c.usage
            }
            _ => Usage::default(),
        };
        allowed.settle(&usage, true);
        return records_unavailable(&state, &allowed.scope, &allowed.model.id);
    }
    match routed {
        Ok((Answer::Complete(completion), dep, clock)) => {
            allowed.served_by = Some(dep);
            complete_response(&state, allowed, *completion, clock)
        }
        Ok((Answer::Stream(events), dep, clock)) => {
            allowed.served_by = Some(dep);
            super::stream::respond(state, allowed, events, clock)
        }
        Err(e) => upstream_failed(&state, allowed, e),
    }
}

fn upstream_failed(state: &AppState, mut allowed: Allowed, e: ProviderError) -> Response {
    let assessment = match &e {
        ProviderError::GuardrailIntervened { assessment, .. } => Some(assessment.clone()),
        _ => None,
    };
    let kind = e.kind();
    let detail = e.detail();
    let e = GatewayError::Upstream(e);
    let (status, _, reason) = e.classify();
    let mut rec = outcome(&allowed, status.as_u16());
    rec.error = Some(detail);
    rec.reason = Some(reason.into());
    rec.usage = Some(Usage::default());
    rec.cost_usd = Some(0.0);
    if let Some(r) = allowed.routing_json() {
        extra(&mut rec.extra, "routing", r);
    }
    if let Some(a) = assessment {
        extra(&mut rec.extra, "bedrock_guardrail", a);
    }
    state.log.append_detached(outcome_record(rec));
    allowed.settle(&Usage::default(), true);
    state
        .metrics
        .request("allow", &allowed.model.id, status.as_u16(), reason);
    let mut end = span_end(state, &allowed, status.as_u16());
    end.reason = reason.into();
    end.error_type = Some(kind);
    allowed.scope.finish(state, end);
    error_response(&allowed.scope, &e)
}

fn complete_response(
    state: &AppState,
    mut allowed: Allowed,
    mut completion: Completion,
    call_clock: crate::admission::StageClock,
) -> Response {
    let deployment = allowed.priced().clone();
    allowed.scope.span(
        format!("chat {}", deployment.upstream_model),
        SpanKind::Client,
        call_clock,
        provider_attrs(
            &deployment,
            Some(&completion.usage),
            Some(&completion.finish_reason),
        ),
        None,
    );
    completion.model = allowed.model.id.clone();
    let mut rec = outcome(&allowed, 200);
    if let Some(r) = allowed.routing_json() {
        extra(&mut rec.extra, "routing", r);
    }
    if let Some(a) = completion.guardrail.take() {
        extra(&mut rec.extra, "bedrock_guardrail", a);
    }
    if let Some(id) = completion.upstream_request_id.take() {
        extra(&mut rec.extra, "upstream_request_id", json!(id));
    }
    if state.guardrails.checks_output() {
        let stage = allowed.scope.stage(state, "guardrails");
        let mut verdict = state
            .guardrails
            .check_text(&mut completion.content, &allowed.label);
        if let Some(calls) = &mut completion.tool_calls {
            verdict.merge(state.guardrails.check_tool_calls(calls, &allowed.label));
        }
        let mut stage = stage;
        stage.attrs(verdict.span_attrs("output"));
        drop(stage);
        if !verdict.counts.is_empty() {
            count_findings(state, &verdict, &allowed.label, "output");
            rec.guardrails = Some(json!({ "output": verdict.json() }));
        }
        if !verdict.blocked.is_empty() {
            // The provider's answer is withheld, as OpenAI does for filtered content.
            completion.content.clear();
            completion.tool_calls = None;
            completion.finish_reason = "content_filter".into();
        }
    }
    let cost = deployment.cost_usd(&completion.usage);
    rec.usage = Some(completion.usage);
    rec.cost_usd = Some(cost);
    rec.finish_reason = Some(completion.finish_reason.clone());
    if let Some((key, ttl)) = allowed.cache
        && completion.finish_reason != "content_filter"
    {
        state.cache.put(
            key,
            Cached {
                content: completion.content.clone(),
                finish_reason: completion.finish_reason.clone(),
                usage: completion.usage,
                model: completion.model.clone(),
                tool_calls: completion.tool_calls.clone(),
            },
            ttl,
        );
        extra(&mut rec.extra, "cache", json!("stored"));
    }
    state.log.append_detached(outcome_record(rec));
    allowed.settle(&completion.usage, true);
    state
        .metrics
        .usage(&allowed.model.id, &completion.usage, cost);
    state
        .metrics
        .request("allow", &allowed.model.id, 200, "policy");
    let mut end = span_end(state, &allowed, 200);
    end.usage = Some(completion.usage);
    end.finish_reason = Some(completion.finish_reason.clone());
    end.cost_usd = Some(cost);
    if state.exporter.as_ref().is_some_and(|e| e.capture_content) {
        end.output_messages = serde_json::to_string(&json!([{
            "role": "assistant", "content": completion.content,
            "finish_reason": completion.finish_reason,
        }]))
        .ok();
    }
    allowed.scope.finish(state, end);
    let mut resp =
        axum::Json(openai::completion_json(&completion, clock::unix_seconds())).into_response();
    allowed.scope.headers(&mut resp);
    routing_headers(&allowed, &mut resp);
    resp
}

/// A cache hit: the decision record (with `extra.cache = "hit"`) is made durable, the answer is
/// served from the cache, and the outcome costs nothing.
pub async fn from_cache(
    state: &AppState,
    mut allowed: Allowed,
    record: Decision,
    cached: Cached,
) -> Response {
    let durable = {
        let mut stage = allowed.scope.stage(state, "record");
        let durable = state
            .log
            .append(allowed.scope.decision_record(record))
            .await;
        if let Err(e) = &durable {
            stage.fail(e);
        }
        durable
    };
    if durable.is_err() {
        allowed.settle(&Usage::default(), false);
        return records_unavailable(state, &allowed.scope, &allowed.model.id);
    }
    let mut rec = outcome(&allowed, 200);
    rec.usage = Some(Usage::default());
    rec.cost_usd = Some(0.0);
    rec.finish_reason = Some(cached.finish_reason.clone());
    extra(
        &mut rec.extra,
        "cache",
        json!({ "hit": true, "cached_usage": cached.usage }),
    );
    state.log.append_detached(outcome_record(rec));
    allowed.settle(&Usage::default(), true);
    state
        .metrics
        .request("allow", &allowed.model.id, 200, "cache_hit");
    let mut end = span_end(state, &allowed, 200);
    end.cache_hit = true;
    end.usage = Some(Usage::default());
    end.finish_reason = Some(cached.finish_reason.clone());
    end.cost_usd = Some(0.0);
    allowed.scope.finish(state, end);

    let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
    let created = clock::unix_seconds();
    let mut resp = if allowed.request.streaming() {
        let mut body = Vec::new();
        body.extend_from_slice(&openai::sse_event(&openai::chunk_json(
            &id,
            &cached.model,
            created,
            Some(&cached.content),
            true,
            None,
        )));
        // A cached answer with tool calls (stored from a non-streamed request) streams them too.
        let calls = cached.tool_calls.as_ref().and_then(|c| c.as_array());
        for (index, call) in calls.into_iter().flatten().enumerate() {
            let function = &call["function"];
            body.extend_from_slice(&openai::sse_event(&openai::tool_call_chunk_json(
                &id,
                &cached.model,
                created,
                false,
                &openai::ToolCallPiece {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    id: call["id"].as_str(),
                    name: function["name"].as_str(),
                    arguments: function["arguments"].as_str().unwrap_or_default(),
                },
            )));
        }
        body.extend_from_slice(&openai::sse_event(&openai::chunk_json(
            &id,
            &cached.model,
            created,
            None,
            false,
            Some(&cached.finish_reason),
        )));
        if allowed.request.include_usage() {
            body.extend_from_slice(&openai::sse_event(&openai::usage_chunk_json(
                &id,
                &cached.model,
                created,
                &cached.usage,
            )));
        }
        body.extend_from_slice(openai::SSE_DONE.as_bytes());
        let mut r = Response::new(Body::from(Bytes::from(body)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    } else {
        let completion = Completion {
            id,
            model: cached.model,
            content: cached.content,
            finish_reason: cached.finish_reason,
            usage: cached.usage,
            tool_calls: cached.tool_calls,
            guardrail: None,
            upstream_request_id: None,
        };
        axum::Json(openai::completion_json(&completion, created)).into_response()
    };
    resp.headers_mut()
        .insert("x-cairn-cache", HeaderValue::from_static("hit"));
    allowed.scope.headers(&mut resp);
    resp
}
