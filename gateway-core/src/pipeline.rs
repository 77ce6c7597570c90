//! One chat completion, top to bottom: authenticate, read and check the request, find the
//! model, decide with Cedar, make the decision record durable while the upstream call runs,
//! answer, and record the outcome.
//!
//! INVARIANT: no response byte (status line included) leaves before the request's decision
//! record is durable; when it cannot be made durable the answer is 503 and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::authn::Principal;
use crate::authz::{self, INVOKE_MODEL};
use crate::catalogue::CatalogueModel;
use crate::clock;
use crate::decision_log::{Record, RecordKind, Usage};
use crate::error::GatewayError;
use crate::openai::{self, ChatRequest, Completion};
use crate::providers::{ProviderError, StreamEvent};
use crate::server::AppState;
use crate::telemetry::TraceContext;

/// What every response of one request shares.
pub struct RequestScope {
    pub decision_id: String,
    pub trace: TraceContext,
    pub started: Instant,
}

impl RequestScope {
    pub fn new(headers: &HeaderMap) -> Self {
        Self {
            decision_id: uuid::Uuid::now_v7().to_string(),
            trace: TraceContext::from_headers(headers),
            started: Instant::now(),
        }
    }

    /// A record with the fields every decision record has.
    pub fn record(&self, action: &str) -> Record {
        Record {
            kind: RecordKind::Decision,
            id: self.decision_id.clone(),
            ts: clock::now_rfc3339(),
            action: Some(action.to_string()),
            trace_id: Some(self.trace.trace_id.clone()),
            ..Default::default()
        }
    }

    pub fn headers(&self, response: &mut Response) {
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.decision_id) {
            h.insert("x-cairn-decision-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.trace.header()) {
            h.insert("traceparent", v);
        }
    }
}

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
    let t = Instant::now();
    let durable = state.log.append(record).await;
    state.metrics.stage("record", t.elapsed());
    match durable {
        Ok(_) => {
            state
                .metrics
                .request("deny", &model, status.as_u16(), reason);
            error_response(scope, &e)
        }
        Err(_) => records_unavailable(state, scope, &model),
    }
}

fn records_unavailable(state: &AppState, scope: &RequestScope, model: &str) -> Response {
    let e = GatewayError::RecordsUnavailable;
    let (status, _, reason) = e.classify();
    state
        .metrics
        .request("none", model, status.as_u16(), reason);
    error_response(scope, &e)
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

/// The Cedar context of an `invoke_model` request.
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

pub async fn chat_completions(
    state: Arc<AppState>,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let scope = RequestScope::new(&headers);
    let mut record = scope.record(INVOKE_MODEL);

    let t = Instant::now();
    let principal = match state.authn.authenticate(&headers).await {
        Ok(p) => p,
        Err(e) => {
            record.auth = Some(json!({ "error": e.reason() }));
            return refuse(&state, &scope, record, GatewayError::Unauthenticated(e)).await;
        }
    };
    state.metrics.stage("authn", t.elapsed());
    record_principal(&mut record, &principal);

    let limit = state.config.raw.server.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(&state, &scope, record, GatewayError::BodyTooLarge { limit }).await;
        }
    };
    let request: ChatRequest = match serde_json::from_slice(&bytes) {
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
    let context = invoke_context(
        &label,
        level,
        request.streaming(),
        request.max_output_tokens().unwrap_or(0),
        &peer,
    );
    record.context = Some(context.clone());

    let Some(engine) = state.policy.current() else {
        return refuse(&state, &scope, record, GatewayError::NoBundle).await;
    };
    record.bundle = Some(engine.digest().to_string());
    let t = Instant::now();
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
        Err(e) => return refuse(&state, &scope, record, GatewayError::PolicyMismatch(e)).await,
    };
    state.metrics.stage("authz", t.elapsed());
    record.reasons = Some(decision.reasons.clone());
    record.errors = Some(decision.errors.clone());
    if !decision.allow {
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
    record.decision = Some("allow".into());
    record.reason = Some("policy".into());

    // From here the work runs in its own task, so a client that goes away does not stop the
    // outcome from being recorded.
    let state2 = state.clone();
    let task = tokio::spawn(async move { allowed(state2, scope, record, request, model).await });
    task.await.unwrap_or_else(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(openai::error_json("internal error", "api_error", None)),
        )
            .into_response()
    })
}

/// An allowed request: the decision record's fsync and the upstream call run together; nothing
/// is sent before the record is durable.
async fn allowed(
    state: Arc<AppState>,
    scope: RequestScope,
    record: Record,
    request: ChatRequest,
    model: CatalogueModel,
) -> Response {
    let provider = state.provider(&model.provider);
    let traceparent = scope.trace.header();
    let timeout = state.config.request_timeout;
    let t = Instant::now();
    let log = state.log.clone();
    let durable = async move {
        let r = log.append(record).await;
        (r, t.elapsed())
    };
    if request.streaming() {
        let upstream = tokio::time::timeout(
            timeout,
            provider.stream(&request, &model.upstream_model, Some(&traceparent)),
        );
        let ((receipt, record_time), upstream) = tokio::join!(durable, upstream);
        state.metrics.stage("record", record_time);
        if receipt.is_err() {
            return records_unavailable(&state, &scope, &model.id);
        }
        let upstream = upstream.unwrap_or(Err(ProviderError::Timeout));
        match upstream {
            Ok(events) => stream_response(state, scope, request, model, events),
            Err(e) => upstream_failed(&state, &scope, &model, e),
        }
    } else {
        let upstream = tokio::time::timeout(
            timeout,
            provider.complete(&request, &model.upstream_model, Some(&traceparent)),
        );
        let ((receipt, record_time), upstream) = tokio::join!(durable, upstream);
        state.metrics.stage("record", record_time);
        if receipt.is_err() {
            return records_unavailable(&state, &scope, &model.id);
        }
        match upstream.unwrap_or(Err(ProviderError::Timeout)) {
            Ok(completion) => complete_response(&state, &scope, &model, completion),
            Err(e) => upstream_failed(&state, &scope, &model, e),
        }
    }
}

/// The outcome record of an allowed request.
fn outcome(scope: &RequestScope, model: &CatalogueModel, status: u16) -> Record {
    Record {
        kind: RecordKind::Outcome,
        id: uuid::Uuid::now_v7().to_string(),
        ts: clock::now_rfc3339(),
        decision_id: Some(scope.decision_id.clone()),
        model: Some(model.id.clone()),
        provider: Some(model.provider.clone()),
        status: Some(status),
        trace_id: Some(scope.trace.trace_id.clone()),
        latency_ms: Some(scope.started.elapsed().as_millis() as u64),
        ..Default::default()
    }
}

fn upstream_failed(
    state: &AppState,
    scope: &RequestScope,
    model: &CatalogueModel,
    e: ProviderError,
) -> Response {
    let e = GatewayError::Upstream(e);
    let (status, _, reason) = e.classify();
    let mut rec = outcome(scope, model, status.as_u16());
    rec.error = Some(e.to_string());
    rec.usage = Some(Usage::default());
    rec.cost_usd = Some(0.0);
    state.log.append_detached(rec);
    state
        .metrics
        .request("allow", &model.id, status.as_u16(), reason);
    state.metrics.stage("total", scope.started.elapsed());
    error_response(scope, &e)
}

fn complete_response(
    state: &AppState,
    scope: &RequestScope,
    model: &CatalogueModel,
    mut completion: Completion,
) -> Response {
    completion.model = model.id.clone();
    let cost = model.cost_usd(&completion.usage);
    let mut rec = outcome(scope, model, 200);
    rec.usage = Some(completion.usage);
    rec.cost_usd = Some(cost);
    rec.finish_reason = Some(completion.finish_reason.clone());
    state.log.append_detached(rec);
    state.metrics.usage(&model.id, &completion.usage, cost);
    state.metrics.request("allow", &model.id, 200, "policy");
    state.metrics.stage("total", scope.started.elapsed());
    let mut resp =
        axum::Json(openai::completion_json(&completion, clock::unix_seconds())).into_response();
    scope.headers(&mut resp);
    resp
}

/// Accumulates what a stream sent, and records the outcome exactly once: when the stream ends,
/// or when it is dropped early (client gone, upstream broken), charging what was sent.
struct StreamOutcome {
    state: Arc<AppState>,
    scope_decision: String,
    trace_id: String,
    started: Instant,
    model: CatalogueModel,
    prompt_tokens: u64,
    sent_text: String,
    usage: Option<Usage>,
    finish: Option<String>,
    error: Option<String>,
    done: bool,
}

impl StreamOutcome {
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let (usage, estimated) = match self.usage {
            Some(u) => (u, false),
            None => (
                Usage {
                    input_tokens: self.prompt_tokens,
                    output_tokens: crate::providers::mock::count_tokens(&self.sent_text),
                    ..Default::default()
                },
                true,
            ),
        };
        let cost = self.model.cost_usd(&usage);
        let status = if self.error.is_some() { 502 } else { 200 };
        let rec = Record {
            kind: RecordKind::Outcome,
            id: uuid::Uuid::now_v7().to_string(),
            ts: clock::now_rfc3339(),
            decision_id: Some(self.scope_decision.clone()),
            model: Some(self.model.id.clone()),
            provider: Some(self.model.provider.clone()),
            status: Some(status),
            trace_id: Some(self.trace_id.clone()),
            latency_ms: Some(self.started.elapsed().as_millis() as u64),
            usage: Some(usage),
            cost_usd: Some(cost),
            finish_reason: self.finish.clone(),
            error: self.error.clone().or_else(|| {
                self.finish
                    .is_none()
                    .then(|| "stream ended early".to_string())
            }),
            stream: Some(true),
            extra: estimated.then(|| json!({ "usage_estimated": true })),
            ..Default::default()
        };
        self.state.log.append_detached(rec);
        self.state.metrics.usage(&self.model.id, &usage, cost);
        self.state.metrics.stage("total", self.started.elapsed());
    }
}

impl Drop for StreamOutcome {
    fn drop(&mut self) {
        if !self.done {
            if self.error.is_none() && self.finish.is_none() {
                self.error = Some("client disconnected".into());
            }
            self.finish();
        }
    }
}

fn stream_response(
    state: Arc<AppState>,
    scope: RequestScope,
    request: ChatRequest,
    model: CatalogueModel,
    events: crate::providers::EventStream,
) -> Response {
    state.metrics.request("allow", &model.id, 200, "policy");
    let include_usage = request.include_usage();
    let prompt_tokens = request
        .messages
        .iter()
        .map(|m| crate::providers::mock::count_tokens(&m.text()))
        .sum::<u64>()
        .max(1);
    let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
    let created = clock::unix_seconds();
    let model_name = model.id.clone();
    let outcome = StreamOutcome {
        state: state.clone(),
        scope_decision: scope.decision_id.clone(),
        trace_id: scope.trace.trace_id.clone(),
        started: scope.started,
        model,
        prompt_tokens,
        sent_text: String::new(),
        usage: None,
        finish: None,
        error: None,
        done: false,
    };
    let body = futures::stream::unfold(
        (events, outcome, true, false),
        move |(mut events, mut outcome, first, ended)| {
            let id = id.clone();
            let model_name = model_name.clone();
            async move {
                if ended {
                    return None;
                }
                loop {
                    match events.next().await {
                        Some(Ok(StreamEvent::Delta(text))) => {
                            outcome.sent_text.push_str(&text);
                            let chunk = openai::chunk_json(
                                &id,
                                &model_name,
                                created,
                                Some(&text),
                                first,
                                None,
                            );
                            return Some((
                                Ok::<Bytes, std::io::Error>(openai::sse_event(&chunk)),
                                (events, outcome, false, false),
                            ));
                        }
                        Some(Ok(StreamEvent::Finish(reason))) => {
                            outcome.finish = Some(reason.clone());
                            let chunk = openai::chunk_json(
                                &id,
                                &model_name,
                                created,
                                None,
                                first,
                                Some(&reason),
                            );
                            return Some((
                                Ok(openai::sse_event(&chunk)),
                                (events, outcome, false, false),
                            ));
                        }
                        Some(Ok(StreamEvent::Usage(u))) => {
                            outcome.usage = Some(u);
                            if include_usage {
                                let chunk = openai::usage_chunk_json(&id, &model_name, created, &u);
                                return Some((
                                    Ok(openai::sse_event(&chunk)),
                                    (events, outcome, false, false),
                                ));
                            }
                        }
                        Some(Err(e)) => {
                            let (_, kind) = e.classify();
                            outcome.error = Some(e.to_string());
                            outcome.finish();
                            let err = openai::error_json(&e.to_string(), kind, None);
                            return Some((
                                Ok(openai::sse_event(&err)),
                                (events, outcome, false, true),
                            ));
                        }
                        None => {
                            outcome.finish();
                            return Some((
                                Ok(Bytes::from_static(openai::SSE_DONE.as_bytes())),
                                (events, outcome, false, true),
                            ));
                        }
                    }
                }
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    scope.headers(&mut resp);
    resp
}
