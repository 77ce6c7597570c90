//! OpenTelemetry spans over OTLP/HTTP (protobuf) and/or appended to a file as OTLP/JSON, batched
//! off the hot path. A request's spans
//! are built after it finishes, from the stage timings it recorded, with the trace id and span
//! id the gateway already returned in `traceparent`; a background task sends them in batches.
//! When the queue is full, spans are dropped and counted rather than slowing requests.
//!
//! Names and attributes follow the GenAI semantic conventions. Prompt and completion text are
//! sent only when `telemetry.capture_content` is on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prometheus_client::metrics::counter::Counter;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP endpoint (spans go to `<endpoint>/v1/traces`); empty disables export.
    pub otlp_endpoint: String,
    /// A file that spans are appended to as OTLP/JSON, one `TracesData` object a line (the
    /// OpenTelemetry Collector file exporter's format, which `cairn ingest otel` reads); empty:
    /// no file. Works alone or beside `otlp_endpoint`.
    pub otlp_file: String,
    pub service_name: String,
    /// Put prompt and completion text into spans (`gen_ai.input.messages`, ...). Off by default.
    pub capture_content: bool,
    /// Spans per export request.
    pub batch_size: usize,
    /// Longest a span waits before export, in milliseconds.
    pub batch_delay_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            otlp_file: String::new(),
            service_name: "cairn-gateway".into(),
            capture_content: false,
            batch_size: 512,
            batch_delay_ms: 1000,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Attr {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Strs(Vec<String>),
}

impl From<&str> for Attr {
    fn from(s: &str) -> Self {
        Attr::Str(s.to_string())
    }
}
impl From<String> for Attr {
    fn from(s: String) -> Self {
        Attr::Str(s)
    }
}
impl From<i64> for Attr {
    fn from(v: i64) -> Self {
        Attr::Int(v)
    }
}
impl From<u64> for Attr {
    fn from(v: u64) -> Self {
        Attr::Int(v as i64)
    }
}
impl From<f64> for Attr {
    fn from(v: f64) -> Self {
        Attr::Float(v)
    }
}
impl From<bool> for Attr {
    fn from(v: bool) -> Self {
        Attr::Bool(v)
    }
}
impl From<Vec<String>> for Attr {
    fn from(v: Vec<String>) -> Self {
        Attr::Strs(v)
    }
}

fn any(a: Attr) -> AnyValue {
    let v = match a {
        Attr::Str(s) => any_value::Value::StringValue(s),
        Attr::Int(i) => any_value::Value::IntValue(i),
        Attr::Float(f) => any_value::Value::DoubleValue(f),
        Attr::Bool(b) => any_value::Value::BoolValue(b),
        Attr::Strs(v) => any_value::Value::ArrayValue(ArrayValue {
            values: v
                .into_iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(v) }
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    /// `Server`, `Client` or `Internal`.
    pub kind: span::SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attrs: Vec<(&'static str, Attr)>,
    pub error: Option<String>,
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn to_proto(s: SpanRecord) -> Span {
    Span {
        trace_id: hex::decode(&s.trace_id).unwrap_or_default(),
        span_id: hex::decode(&s.span_id).unwrap_or_default(),
        parent_span_id: s
            .parent_span_id
            .and_then(|p| hex::decode(p).ok())
            .unwrap_or_default(),
        name: s.name,
        kind: s.kind as i32,
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: s
            .attrs
            .into_iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: Some(any(v)),
                ..Default::default()
            })
            .collect(),
        status: Some(match &s.error {
            Some(m) => Status {
                code: status::StatusCode::Error as i32,
                message: m.clone(),
            },
            None => Status {
                code: status::StatusCode::Unset as i32,
                message: String::new(),
            },
        }),
        ..Default::default()
    }
}

enum Message {
    Span(Box<SpanRecord>),
    /// Send what is buffered now, then answer.
    Flush(oneshot::Sender<()>),
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    tx: mpsc::Sender<Message>,
    dropped: Counter,
    pub capture_content: bool,
}

struct Batcher {
    /// The OTLP/HTTP client and `<endpoint>/v1/traces`, when an endpoint is configured.
    http: Option<(reqwest::Client, String)>,
    /// The OTLP/JSON file, when one is configured.
    file: Option<std::path::PathBuf>,
    service: String,
    exported: Counter,
    dropped: Counter,
}

impl Batcher {
    /// One export request holding `spans`: encoded as protobuf for the endpoint and, by
    /// opentelemetry-proto's own serde mapping, as OTLP/JSON (a `TracesData`) for the file.
    fn request(&self, spans: Vec<SpanRecord>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(any(Attr::Str(self.service.clone()))),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "cairn".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: spans.into_iter().map(to_proto).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Appends the request to the file as one line, so a reader never sees half a batch.
    async fn append(
        path: &std::path::Path,
        request: &ExportTraceServiceRequest,
    ) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        f.write_all(&line).await?;
        // tokio's file hands the last chunk to a blocking task: only `flush` says whether it was
        // written, and it finishes before the next batch opens the file.
        f.flush().await
    }

    async fn send(&self, spans: Vec<SpanRecord>) {
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        let request = self.request(spans);
        if let Some(path) = &self.file {
            match Self::append(path, &request).await {
                Ok(()) if self.http.is_none() => {
                    self.exported.inc_by(n);
                }
                Ok(()) => {}
                Err(e) => {
                    self.dropped.inc_by(n);
                    tracing::warn!(error = %e, file = %path.display(), "cannot append spans to the OTLP file");
                }
            }
        }
        let Some((client, url)) = &self.http else {
            return;
        };
        let body = request.encode_to_vec();
        let sent = client
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                self.exported.inc_by(n);
            }
            Ok(r) => {
                self.dropped.inc_by(n);
                tracing::warn!(status = %r.status(), "the OTLP endpoint refused spans");
            }
            Err(e) => {
                self.dropped.inc_by(n);
                tracing::warn!(error = %e, "OTLP export failed");
            }
        }
    }
}

impl Exporter {
    /// Starts the batching task (creating the OTLP file's directory). `None` when neither an
    /// endpoint nor a file is configured.
    pub fn start(config: &TelemetryConfig, exported: Counter, dropped: Counter) -> Option<Self> {
        if config.otlp_endpoint.is_empty() && config.otlp_file.is_empty() {
            return None;
        }
        let http = if config.otlp_endpoint.is_empty() {
            None
        } else {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(
                    |e| tracing::error!(error = %e, "cannot build the OTLP client; spans are off"),
                )
                .ok()?;
            Some((
                client,
                format!("{}/v1/traces", config.otlp_endpoint.trim_end_matches('/')),
            ))
        };
        if let Some(dir) = std::path::Path::new(&config.otlp_file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot create the directory of the OTLP file");
        }
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
        let batcher = Batcher {
            http,
            file: (!config.otlp_file.is_empty()).then(|| config.otlp_file.clone().into()),
            service: config.service_name.clone(),
            exported,
            dropped: dropped.clone(),
        };
        let batch = config.batch_size.max(1);
        let delay = Duration::from_millis(config.batch_delay_ms.max(10));
        tokio::spawn(async move {
            let mut buf: Vec<SpanRecord> = Vec::with_capacity(batch);
            while let Some(first) = rx.recv().await {
                let mut flushed = None;
                match first {
                    Message::Span(s) => buf.push(*s),
                    Message::Flush(done) => flushed = Some(done),
                }
                let deadline = tokio::time::Instant::now() + delay;
                while flushed.is_none() && buf.len() < batch {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(Message::Span(s))) => buf.push(*s),
                        Ok(Some(Message::Flush(done))) => flushed = Some(done),
                        Ok(None) | Err(_) => break,
                    }
                }
                batcher.send(std::mem::take(&mut buf)).await;
                if let Some(done) = flushed {
                    let _ = done.send(());
                }
            }
        });
        Some(Self {
            tx,
            dropped,
            capture_content: config.capture_content,
        })
    }

    /// Queues spans; never waits.
    pub fn export(&self, spans: Vec<SpanRecord>) {
        for s in spans {
            if self.tx.try_send(Message::Span(Box::new(s))).is_err() {
                self.dropped.inc();
            }
        }
    }

    /// Sends what is queued (on shutdown), waiting at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(timeout, wait).await;
        }
    }
}

/// Spans waiting for export; beyond this they are dropped (and counted).
const QUEUE: usize = 16_384;

/// A child span of the request.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub kind: span::SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attrs: Vec<(&'static str, Attr)>,
    pub error: Option<String>,
}

/// The spans of one request, collected as it runs.
pub struct RequestSpans {
    pub trace_id: String,
    pub root_span_id: String,
    pub parent_span_id: Option<String>,
    pub start: SystemTime,
    pub stages: Vec<Stage>,
}

impl RequestSpans {
    pub fn new(trace: &super::TraceContext) -> Self {
        Self {
            trace_id: trace.trace_id.clone(),
            root_span_id: trace.span_id.clone(),
            parent_span_id: trace.parent_span_id.clone(),
            start: SystemTime::now(),
            stages: Vec::new(),
        }
    }

    /// A finished stage that started at `start`.
    pub fn stage(
        &mut self,
        name: impl Into<String>,
        kind: span::SpanKind,
        start: SystemTime,
        attrs: Vec<(&'static str, Attr)>,
        error: Option<String>,
    ) {
        self.stages.push(Stage {
            name: name.into(),
            kind,
            start,
            end: SystemTime::now(),
            attrs,
            error,
        });
    }

    /// The root span (the request, a SERVER span) and one child per stage.
    pub fn finish(
        self,
        name: String,
        attrs: Vec<(&'static str, Attr)>,
        error: Option<String>,
    ) -> Vec<SpanRecord> {
        let end = SystemTime::now();
        let mut out = Vec::with_capacity(self.stages.len() + 1);
        for stage in self.stages {
            out.push(SpanRecord {
                trace_id: self.trace_id.clone(),
                span_id: random_span_id(),
                parent_span_id: Some(self.root_span_id.clone()),
                name: stage.name,
                kind: stage.kind,
                start: stage.start,
                end: stage.end,
                attrs: stage.attrs,
                error: stage.error,
            });
        }
        out.push(SpanRecord {
            trace_id: self.trace_id,
            span_id: self.root_span_id,
            parent_span_id: self.parent_span_id,
            name,
            kind: span::SpanKind::Server,
            start: self.start,
            end,
            attrs,
            error,
        });
        out
    }
}

fn random_span_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}
