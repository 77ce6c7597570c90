//! What every response of one request shares: its decision id, trace context, clocks, and the
//! spans it collects as it runs (only when spans are exported).

use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use axum::response::Response;
use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::clock;
use crate::decision_log::{Decision, Record, Usage};
use crate::state::AppState;
use crate::telemetry::Metrics;
use crate::telemetry::TraceContext;
use crate::telemetry::otlp::{Attr, RequestSpans};

/// When a stage started, on both clocks (metrics use the monotonic one, spans the wall one).
#[derive(Debug, Clone, Copy)]
pub struct StageClock {
    instant: Instant,
    wall: SystemTime,
}

pub struct RequestScope {
    pub decision_id: String,
    /// When the request arrived (RFC 3339), the decision record's `ts`.
    pub ts: String,
    pub trace: TraceContext,
    pub started: Instant,
    /// `host[:port]` the client addressed, for `server.address`.
    host: Option<String>,
    spans: Option<Mutex<RequestSpans>>,
    /// Detectors whose findings were redacted from the prompt (sent as `x-cairn-redacted`).
    redacted: OnceLock<String>,
    /// The authenticated principal (`Type::"id"`), for the access log.
    principal: OnceLock<String>,
}

/// A running stage of a request. Dropping it ends the stage.
pub struct Stage<'a> {
    scope: &'a RequestScope,
    metrics: &'a Metrics,
    name: &'static str,
    clock: StageClock,
    attrs: Vec<(&'static str, Attr)>,
    error: Option<String>,
}

impl Stage<'_> {
    pub fn attr(&mut self, key: &'static str, value: impl Into<Attr>) {
        if self.scope.collects_spans() {
            self.attrs.push((key, value.into()));
        }
    }

    pub fn attrs(&mut self, attrs: Vec<(&'static str, Attr)>) {
        if self.scope.collects_spans() {
            self.attrs.extend(attrs);
        }
    }

    /// Marks the stage failed; its span carries `error`.
    pub fn fail(&mut self, error: impl std::fmt::Display) {
        self.error = Some(error.to_string());
    }
}

impl Drop for Stage<'_> {
    fn drop(&mut self) {
        self.metrics.stage(self.name, self.clock.instant.elapsed());
        self.scope.span(
            self.name.to_string(),
            SpanKind::Internal,
            self.clock,
            std::mem::take(&mut self.attrs),
            self.error.take(),
        );
    }
}

/// Whether a request whose decision id is `id` is in a sample of `rate` (0 to 1): the id's
/// last 16 bits (random in a UUIDv7) against the rate.
fn sampled(id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let tail = id.get(id.len().saturating_sub(4)..).unwrap_or("");
    let n = u16::from_str_radix(tail, 16).unwrap_or(0);
    f64::from(n) < rate * 65536.0
}

/// How a request ended, for its root span.
#[derive(Debug, Default)]
pub struct SpanEnd {
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub provider: Option<String>,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    pub status: u16,
    pub decision: &'static str,
    pub reason: String,
    pub error_type: Option<String>,
    pub cost_usd: Option<f64>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub cache_hit: bool,
    /// `gen_ai.input.messages` / `gen_ai.output.messages`, only when content capture is on.
    pub input_messages: Option<String>,
    pub output_messages: Option<String>,
    /// An MCP request: the root span is named for the method (and tool) instead of the chat.
    pub mcp: Option<McpSpan>,
    /// The OpenAI-compatible method for the access log, when not `chat.completions`.
    pub openai_method: Option<&'static str>,
}

/// What the root span of an MCP request says (the MCP and GenAI semantic conventions).
#[derive(Debug, Default)]
pub struct McpSpan {
    pub method: String,
    /// The tool's name as the client gave it (`tools/call`).
    pub tool: Option<String>,
    pub session: Option<String>,
    pub version: Option<String>,
}

/// The `gen_ai.provider.name` of a Cairn provider.
pub fn genai_provider(provider: &str) -> &'static str {
    match provider {
        "openai" => "openai",
        "bedrock" => "aws.bedrock",
        _ => "cairn.mock",
    }
}

impl RequestScope {
    pub fn new(headers: &HeaderMap, collect_spans: bool) -> Self {
        let trace = TraceContext::from_headers(headers);
        let spans = collect_spans.then(|| Mutex::new(RequestSpans::new(&trace)));
        Self {
            decision_id: uuid::Uuid::now_v7().to_string(),
            ts: clock::now_rfc3339(),
            trace,
            started: Instant::now(),
            host: headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            spans,
            redacted: OnceLock::new(),
            principal: OnceLock::new(),
        }
    }

    /// A decision with the fields every decision record has.
    pub fn decision(&self, action: &str) -> Decision {
        Decision {
            action: Some(action.to_string()),
            trace_id: Some(self.trace.trace_id.clone()),
            ..Default::default()
        }
    }

    /// The record of this request's decision, to append.
    pub fn decision_record(&self, decision: Decision) -> Record {
        Record::new(self.decision_id.clone(), self.ts.clone(), decision)
    }

    pub fn set_principal(&self, uid: String) {
        let _ = self.principal.set(uid);
    }

    /// One structured line per request on the `cairn::access` target (JSON with `--log-json`):
    /// who, what, the decision and how it went; never content. Refusals are always logged,
    /// allowed requests at `server.access_log_sample` (decided by the decision id, so a
    /// replica logs the same share).
    fn access_log(&self, state: &AppState, end: &SpanEnd) {
        let server = &state.config.raw.server;
        if !server.access_log {
            return;
        }
        if end.decision == "allow" && !sampled(&self.decision_id, server.access_log_sample) {
            return;
        }
        let usage = end.usage.as_ref();
        // Model, method and tool names can be a client's text: bounded, so a line stays a line.
        let cut = |s: &str| -> String { s.chars().take(128).collect() };
        let (api, method, tool) = match &end.mcp {
            Some(m) => ("mcp", m.method.as_str(), m.tool.as_deref().unwrap_or("")),
            None => (
                "openai",
                end.openai_method.unwrap_or("chat.completions"),
                "",
            ),
        };
        tracing::info!(
            target: "cairn::access",
            decision_id = %self.decision_id,
            trace_id = %self.trace.trace_id,
            principal = self.principal.get().map_or(crate::admission::ANONYMOUS, String::as_str),
            api,
            method = %cut(method),
            model = %cut(end.request_model.as_deref().unwrap_or("")),
            tool = %cut(tool),
            decision = end.decision,
            status = end.status,
            reason = %end.reason,
            latency_ms = self.started.elapsed().as_millis() as u64,
            input_tokens = usage.map_or(0, |u| u.input_tokens),
            output_tokens = usage.map_or(0, |u| u.output_tokens),
            cache_hit = end.cache_hit,
            "request"
        );
    }

    /// Tells the client which kinds of data were redacted from its prompt (never the text).
    pub fn set_redacted(&self, kinds: &[&str]) {
        if !kinds.is_empty() {
            let _ = self.redacted.set(kinds.join(","));
        }
    }

    pub fn headers(&self, response: &mut Response) {
        let h = response.headers_mut();
        if let Some(r) = self.redacted.get()
            && let Ok(v) = HeaderValue::from_str(r)
        {
            h.insert("x-cairn-redacted", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.decision_id) {
            h.insert("x-cairn-decision-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.trace.header()) {
            h.insert("traceparent", v);
        }
    }

    pub fn collects_spans(&self) -> bool {
        self.spans.is_some()
    }

    pub fn begin(&self) -> StageClock {
        StageClock {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// Starts timing a stage; the stage ends (latency histogram, child span) when the returned
    /// guard is dropped, however the stage exits.
    pub fn stage<'a>(&'a self, state: &'a AppState, name: &'static str) -> Stage<'a> {
        Stage {
            scope: self,
            metrics: &state.metrics,
            name,
            clock: self.begin(),
            attrs: Vec::new(),
            error: None,
        }
    }

    /// Adds a child span without a metric (the provider call is timed by its caller).
    pub fn span(
        &self,
        name: String,
        kind: SpanKind,
        clock: StageClock,
        attrs: Vec<(&'static str, Attr)>,
        error: Option<String>,
    ) {
        if let Some(spans) = &self.spans {
            let mut g = spans.lock().unwrap_or_else(|e| e.into_inner());
            g.stage(name, kind, clock.wall, attrs, error);
        }
    }

    /// Ends the request: the total latency, and the spans handed to the exporter.
    pub fn finish(&self, state: &AppState, end: SpanEnd) {
        state.metrics.stage("total", self.started.elapsed());
        self.access_log(state, &end);
        let (Some(spans), Some(exporter)) = (&self.spans, &state.exporter) else {
            return;
        };
        let spans = {
            let mut g = spans.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *g, RequestSpans::new(&self.trace))
        };
        let (name, operation) = match (&end.mcp, &end.request_model) {
            (Some(m), _) => match &m.tool {
                Some(t) => (format!("{} {t}", m.method), "execute_tool"),
                None => (m.method.clone(), "mcp"),
            },
            (None, Some(m)) => (format!("chat {m}"), "chat"),
            (None, None) => ("chat".to_string(), "chat"),
        };
        let mut attrs: Vec<(&'static str, Attr)> = vec![
            ("gen_ai.operation.name", operation.into()),
            (
                "http.response.status_code",
                Attr::Int(i64::from(end.status)),
            ),
            ("cairn.decision_id", self.decision_id.clone().into()),
            ("cairn.decision", end.decision.into()),
            ("cairn.reason", end.reason.into()),
        ];
        if let Some(m) = &end.mcp {
            attrs.push(("mcp.method.name", m.method.clone().into()));
            if let Some(t) = &m.tool {
                attrs.push(("gen_ai.tool.name", t.clone().into()));
            }
            if let Some(s) = &m.session {
                attrs.push(("mcp.session.id", s.clone().into()));
            }
            if let Some(v) = &m.version {
                attrs.push(("mcp.protocol.version", v.clone().into()));
            }
        }
        if let Some(p) = &end.provider {
            attrs.push(("gen_ai.provider.name", genai_provider(p).into()));
        }
        if let Some(m) = end.request_model {
            attrs.push(("gen_ai.request.model", m.into()));
        }
        if let Some(m) = end.response_model {
            attrs.push(("gen_ai.response.model", m.into()));
        }
        if let Some(n) = end.max_tokens {
            attrs.push(("gen_ai.request.max_tokens", n.into()));
        }
        if let Some(t) = end.temperature {
            attrs.push(("gen_ai.request.temperature", t.into()));
        }
        if let Some(u) = end.usage {
            attrs.push(("gen_ai.usage.input_tokens", u.input_tokens.into()));
            attrs.push(("gen_ai.usage.output_tokens", u.output_tokens.into()));
        }
        if let Some(f) = end.finish_reason {
            attrs.push(("gen_ai.response.finish_reasons", Attr::Strs(vec![f])));
        }
        if let Some(c) = end.cost_usd {
            attrs.push(("cairn.cost_usd", c.into()));
        }
        if end.cache_hit {
            attrs.push(("cairn.cache.hit", true.into()));
        }
        if let Some(host) = &self.host {
            let (addr, port) = match host.rsplit_once(':') {
                Some((a, p)) if p.parse::<u16>().is_ok() => (a, p.parse::<i64>().ok()),
                _ => (host.as_str(), None),
            };
            attrs.push(("server.address", addr.into()));
            if let Some(p) = port {
                attrs.push(("server.port", Attr::Int(p)));
            }
        }
        if let Some(m) = end.input_messages {
            attrs.push(("gen_ai.input.messages", m.into()));
        }
        if let Some(m) = end.output_messages {
            attrs.push(("gen_ai.output.messages", m.into()));
        }
        let error = end.error_type.clone();
        if let Some(e) = end.error_type {
            attrs.push(("error.type", e.into()));
        }
        exporter.export(spans.finish(name, attrs, error));
    }
}

#[cfg(test)]
mod access_log_tests {
    use super::sampled;

    #[test]
    fn a_sample_takes_its_share_of_decision_ids() {
        let ids: Vec<String> = (0..4096u32)
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let share = |r: f64| ids.iter().filter(|id| sampled(id, r)).count() as f64 / 4096.0;
        assert_eq!(share(0.0), 0.0);
        assert_eq!(share(1.0), 1.0);
        assert!((share(0.5) - 0.5).abs() < 0.05, "{}", share(0.5));
        assert!((share(0.1) - 0.1).abs() < 0.03, "{}", share(0.1));
        // An id that is not a UUID (no hex tail, a tail off a character boundary) counts as 0.
        assert!(sampled("not-hex!", 0.5) && sampled("ééé", 0.5) && !sampled("ééé", 0.0));
    }
}
