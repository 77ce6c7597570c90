//! Streaming an allowed request: chunks pass through the output guardrails incrementally (a
//! tail is held back so a secret split across chunks is seen whole), and the outcome is settled
//! exactly once: when the stream ends, or when it is dropped early (client gone, upstream
//! broken), charging what the provider sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, header};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;

use super::Allowed;
use super::respond::{outcome, outcome_record, provider_attrs, span_end};
use crate::admission::guard::count_findings;
use crate::admission::{StageClock, extra};
use crate::cache::Cached;
use crate::clock;
use crate::decision_log::Usage;
use crate::guardrails::{StreamGuard, Verdict};
use crate::openai;
use crate::providers::{EventStream, StreamEvent};
use crate::state::AppState;

/// What a stream did, settled once.
struct StreamOutcome {
    state: Arc<AppState>,
    allowed: Allowed,
    call_clock: StageClock,
    call_started: std::time::Instant,
    guard: Option<StreamGuard>,
    /// Streamed tool calls' arguments (by index), held while output is checked until the call is
    /// complete (another call or text follows, or the stream ends), then checked whole as JSON
    /// and sent as one piece.
    tool_args: BTreeMap<u32, String>,
    /// What the checks of tool-call arguments found.
    tool_verdict: Verdict,
    /// The answer had tool calls: it is not cached (the cache keeps text only).
    had_tool_calls: bool,
    /// Text the provider sent (what usage is estimated from when it sends none).
    received: String,
    /// Text the client was sent.
    sent: String,
    usage: Option<Usage>,
    finish: Option<String>,
    error: Option<String>,
    /// A provider-side guardrail's assessment of the output.
    provider_guardrail: Option<serde_json::Value>,
    upstream_request_id: Option<String>,
    /// The client went away before the end: not the provider's failure.
    client_gone: bool,
    done: bool,
}

impl StreamOutcome {
    fn settle(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let state = self.state.clone();
        let (usage, estimated) = match self.usage {
            Some(u) => (u, false),
            // No usage from the provider (the stream broke, or was stopped): charge what it
            // was sent and what it produced, estimated as the reservation estimates.
            None => (
                Usage {
                    input_tokens: super::estimate_prompt_tokens(&self.allowed.request),
                    output_tokens: super::estimate_text_tokens(&self.received),
                    ..Default::default()
                },
                true,
            ),
        };
        state.metrics.stage("upstream", self.call_started.elapsed());
        let provider_error = self.error.clone();
        let deployment = self.allowed.priced().clone();
        self.allowed.scope.span(
            format!("chat {}", deployment.upstream_model),
            SpanKind::Client,
            self.call_clock,
            provider_attrs(&deployment, Some(&usage), self.finish.as_deref()),
            provider_error,
        );
        let cost = deployment.cost_usd(&usage);
        // 499, as proxies log a client that closed the request; 502 for a provider failure.
        let (status, error_type) = match (&self.error, self.client_gone) {
            (None, _) => (200, None),
            (Some(_), true) => (499, Some("client_disconnected")),
            (Some(_), false) => (502, Some("stream_error")),
        };
        let mut rec = outcome(&self.allowed, status);
        if let Some(r) = self.allowed.routing_json() {
            extra(&mut rec.extra, "routing", r);
        }
        if let Some(a) = self.provider_guardrail.take() {
            extra(&mut rec.extra, "bedrock_guardrail", a);
        }
        if let Some(id) = self.upstream_request_id.take() {
            extra(&mut rec.extra, "upstream_request_id", json!(id));
        }
        rec.usage = Some(usage);
        rec.cost_usd = Some(cost);
        rec.finish_reason = self.finish.clone();
        rec.error = self.error.clone().or_else(|| {
            self.finish
                .is_none()
                .then(|| "stream ended early".to_string())
        });
        if estimated {
            extra(&mut rec.extra, "usage_estimated", json!(true));
        }
        if let Some(g) = &self.guard {
            let mut verdict = g.verdict.clone();
            verdict.merge(self.tool_verdict.clone());
            if !verdict.counts.is_empty() {
                count_findings(&state, &verdict, &self.allowed.label, "output");
                rec.guardrails = Some(json!({ "output": verdict.json() }));
            }
        }
        let complete = self.error.is_none()
            && self
                .finish
                .as_deref()
                .is_some_and(|f| f != "content_filter");
        if let Some((key, ttl)) = self.allowed.cache
            && complete
            && !estimated
            && !self.had_tool_calls
        {
            state.cache.put(
                key,
                Cached {
                    content: self.sent.clone(),
                    finish_reason: self.finish.clone().unwrap_or_default(),
                    usage,
                    model: self.allowed.model.id.clone(),
                    tool_calls: None,
                },
                ttl,
            );
            extra(&mut rec.extra, "cache", json!("stored"));
        }
        state.log.append_detached(outcome_record(rec));
        self.allowed.settle(&usage, true);
        state.metrics.usage(&self.allowed.model.id, &usage, cost);
        let mut end = span_end(&state, &self.allowed, status);
        end.usage = Some(usage);
        end.finish_reason = self.finish.clone();
        end.cost_usd = Some(cost);
        end.error_type = error_type.map(str::to_string);
        if state.exporter.as_ref().is_some_and(|e| e.capture_content) {
            end.output_messages = serde_json::to_string(&json!([{
                "role": "assistant", "content": self.sent, "finish_reason": self.finish,
            }]))
            .ok();
        }
        self.allowed.scope.finish(&state, end);
    }
}

impl StreamOutcome {
    /// Output guardrails blocked: the stream finishes with `content_filter`.
    fn filtered(&mut self, chunks: &mut Chunks<'_>) {
        self.finish = Some("content_filter".into());
        chunks.finish("content_filter");
    }

    /// Sends what the output guard holds back, checked. False when the guard blocked it: the
    /// stream then finishes with `content_filter`.
    fn release_held(&mut self, chunks: &mut Chunks<'_>) -> bool {
        let Some(g) = &mut self.guard else {
            return true;
        };
        match g.finish() {
            Ok(t) => {
                self.sent.push_str(&t);
                chunks.delta(&t);
                true
            }
            Err(_) => {
                self.filtered(chunks);
                false
            }
        }
    }

    /// Checks and sends the held arguments of every tool call but `keep`. False when a check
    /// blocked them: the stream then finishes with `content_filter`.
    fn release_tools(&mut self, keep: Option<u32>, chunks: &mut Chunks<'_>) -> bool {
        let done: Vec<u32> = self
            .tool_args
            .keys()
            .copied()
            .filter(|i| Some(*i) != keep)
            .collect();
        for index in done {
            let Some(mut args) = self.tool_args.remove(&index) else {
                continue;
            };
            let verdict = self
                .state
                .guardrails
                .check_arguments(&mut args, &self.allowed.label);
            let blocked = !verdict.blocked.is_empty();
            self.tool_verdict.merge(verdict);
            if blocked {
                self.tool_args.clear();
                self.filtered(chunks);
                return false;
            }
            if !args.is_empty() {
                chunks.tool_call(&openai::ToolCallPiece {
                    index,
                    id: None,
                    name: None,
                    arguments: &args,
                });
            }
        }
        true
    }

    /// Everything held back, text first.
    fn release_all(&mut self, chunks: &mut Chunks<'_>) -> bool {
        self.release_held(chunks) && self.release_tools(None, chunks)
    }
}

impl Drop for StreamOutcome {
    fn drop(&mut self) {
        if !self.done {
            if self.error.is_none() && self.finish.is_none() {
                self.error = Some("client disconnected".into());
                self.client_gone = true;
            }
            self.settle();
        }
    }
}

/// Renders SSE events for one step of the stream.
struct Chunks<'a> {
    id: &'a str,
    model: &'a str,
    created: i64,
    first: &'a mut bool,
    out: Vec<u8>,
}

impl Chunks<'_> {
    fn delta(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let chunk = openai::chunk_json(
            self.id,
            self.model,
            self.created,
            Some(text),
            *self.first,
            None,
        );
        *self.first = false;
        self.out.extend_from_slice(&openai::sse_event(&chunk));
    }

    fn tool_call(&mut self, piece: &openai::ToolCallPiece<'_>) {
        let chunk =
            openai::tool_call_chunk_json(self.id, self.model, self.created, *self.first, piece);
        *self.first = false;
        self.out.extend_from_slice(&openai::sse_event(&chunk));
    }

    fn finish(&mut self, reason: &str) {
        let chunk = openai::chunk_json(
            self.id,
            self.model,
            self.created,
            None,
            *self.first,
            Some(reason),
        );
        *self.first = false;
        self.out.extend_from_slice(&openai::sse_event(&chunk));
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

struct Streaming {
    events: EventStream,
    outcome: StreamOutcome,
    first: bool,
    ended: bool,
    /// Guardrails blocked the output: the rest is withheld, usage is still read.
    withheld: bool,
}

pub fn respond(
    state: Arc<AppState>,
    allowed: Allowed,
    events: EventStream,
    call_clock: StageClock,
) -> Response {
    state
        .metrics
        .request("allow", &allowed.model.id, 200, "policy");
    let include_usage = allowed.request.include_usage();
    // Shared, not copied, by every step of the stream.
    let id: Arc<str> = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()).into();
    let created = clock::unix_seconds();
    let model_name: Arc<str> = allowed.model.id.as_str().into();
    let mut resp_headers = Response::new(Body::empty());
    allowed.scope.headers(&mut resp_headers);
    super::respond::routing_headers(&allowed, &mut resp_headers);
    let guard = state
        .guardrails
        .checks_output()
        .then(|| state.guardrails.stream(&allowed.label));
    let outcome = StreamOutcome {
        state,
        allowed,
        call_clock,
        call_started: std::time::Instant::now(),
        guard,
        tool_args: BTreeMap::new(),
        tool_verdict: Verdict::default(),
        had_tool_calls: false,
        received: String::new(),
        sent: String::new(),
        usage: None,
        finish: None,
        error: None,
        provider_guardrail: None,
        upstream_request_id: None,
        client_gone: false,
        done: false,
    };
    let start = Streaming {
        events,
        outcome,
        first: true,
        ended: false,
        withheld: false,
    };
    let body = futures::stream::unfold(start, move |mut s| {
        let id = id.clone();
        let model_name = model_name.clone();
        async move {
            if s.ended {
                return None;
            }
            loop {
                let mut chunks = Chunks {
                    id: &id,
                    model: &model_name,
                    created,
                    first: &mut s.first,
                    out: Vec::new(),
                };
                let o = &mut s.outcome;
                match s.events.next().await {
                    Some(Ok(StreamEvent::Delta(text))) => {
                        o.received.push_str(&text);
                        if s.withheld {
                            continue;
                        }
                        if !o.release_tools(None, &mut chunks) {
                            // The content_filter finish is in `chunks`; usage is still read.
                            s.withheld = true;
                        } else {
                            let passed = match &mut o.guard {
                                Some(g) => g.push(&text),
                                None => Ok(text),
                            };
                            match passed {
                                Ok(t) => {
                                    o.sent.push_str(&t);
                                    chunks.delta(&t);
                                }
                                Err(_) => {
                                    // Stop the generation: nothing more of it will be sent.
                                    o.filtered(&mut chunks);
                                    o.settle();
                                    chunks.raw(openai::SSE_DONE.as_bytes());
                                    s.ended = true;
                                }
                            }
                        }
                    }
                    Some(Ok(StreamEvent::Finish(reason))) => {
                        if s.withheld {
                            continue;
                        }
                        if o.release_all(&mut chunks) {
                            chunks.finish(&reason);
                            o.finish = Some(reason);
                        } else {
                            s.withheld = true;
                        }
                    }
                    Some(Ok(StreamEvent::ToolCall {
                        index,
                        id: call_id,
                        name,
                        arguments,
                    })) => {
                        if s.withheld {
                            continue;
                        }
                        o.received.push_str(&arguments);
                        o.had_tool_calls = true;
                        // Text before a call, and the calls before this one, are complete:
                        // they are checked and sent first.
                        if !(o.release_held(&mut chunks)
                            && o.release_tools(Some(index), &mut chunks))
                        {
                            // The content_filter finish is in `chunks`; usage is still read.
                            s.withheld = true;
                        } else if o.guard.is_none() {
                            chunks.tool_call(&openai::ToolCallPiece {
                                index,
                                id: call_id.as_deref(),
                                name: name.as_deref(),
                                arguments: &arguments,
                            });
                        } else {
                            // The call's id and name go now; its arguments once complete.
                            if call_id.is_some() || name.is_some() {
                                chunks.tool_call(&openai::ToolCallPiece {
                                    index,
                                    id: call_id.as_deref(),
                                    name: name.as_deref(),
                                    arguments: "",
                                });
                            }
                            o.tool_args.entry(index).or_default().push_str(&arguments);
                        }
                    }
                    Some(Ok(StreamEvent::Guardrail(assessment))) => {
                        o.provider_guardrail = Some(assessment);
                    }
                    Some(Ok(StreamEvent::UpstreamRequestId(id))) => {
                        o.upstream_request_id = Some(id);
                    }
                    Some(Ok(StreamEvent::Usage(u))) => {
                        o.usage = Some(u);
                        if include_usage {
                            chunks.raw(&openai::sse_event(&openai::usage_chunk_json(
                                &id,
                                &model_name,
                                created,
                                &u,
                            )));
                        }
                    }
                    Some(Err(e)) => {
                        // What the guard holds back was received whole: send it, checked.
                        if !s.withheld {
                            o.release_all(&mut chunks);
                        }
                        let (_, kind) = e.classify();
                        o.error = Some(e.to_string());
                        o.settle();
                        let err = openai::error_json(&e.to_string(), kind, None);
                        chunks.raw(&openai::sse_event(&err));
                        s.ended = true;
                    }
                    None => {
                        // An upstream that ends without a finish event: send what the guard
                        // still holds, checked.
                        if !s.withheld && o.finish.is_none() {
                            o.release_all(&mut chunks);
                        }
                        o.settle();
                        chunks.raw(openai::SSE_DONE.as_bytes());
                        s.ended = true;
                    }
                }
                if !chunks.out.is_empty() {
                    let bytes = Bytes::from(chunks.out);
                    return Some((Ok::<Bytes, std::io::Error>(bytes), s));
                }
                if s.ended {
                    return None;
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    for (k, v) in resp_headers.headers() {
        h.insert(k, v.clone());
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
