//! Prometheus metrics, served at `GET /metrics` in the Prometheus text format. Names start with
//! `cairn_`; labels are low-cardinality (decision, model from the catalogue, status, reason).

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::decision_log::LogObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub decision: String,
    pub model: String,
    pub status: u16,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BundleLabels {
    pub digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub rule: String,
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub detector: String,
    /// `input` or `output`.
    pub direction: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub deployment: String,
    /// `ok`, `error` or `skipped` (circuit open).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    /// `head_too_large` (431/414), `malformed` (400), `header_timeout` (closed).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub deployment: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub stage_seconds: Family<StageLabels, Histogram>,
    pub bundle_reloads: Family<ResultLabels, Counter>,
    pub bundle_info: Family<BundleLabels, Gauge>,
    pub record_flush_seconds: Histogram,
    pub record_batch_size: Histogram,
    pub record_write_failures: Counter,
    pub tokens: Family<TokenLabels, Counter>,
    pub spend_micro_usd: Family<ModelLabels, Counter>,
    pub limit_rejections: Family<LimitLabels, Counter>,
    pub limits_backend_errors: Family<ResultLabels, Counter>,
    pub guardrail_findings: Family<FindingLabels, Counter>,
    pub cache_lookups: Family<ResultLabels, Counter>,
    pub spans_exported: Counter,
    pub spans_dropped: Counter,
    pub upstream_attempts: Family<AttemptLabels, Counter>,
    pub circuits_opened: Family<DeploymentLabels, Counter>,
    /// Connections the HTTP server refused before a request existed (see `connections`).
    pub transport_refusals: Family<TransportLabels, Counter>,
    last_log_error: Mutex<Option<String>>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "cairn_requests",
            "API requests by decision, model, HTTP status and reason",
            requests.clone(),
        );
        let stage_seconds = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "cairn_stage_duration_seconds",
            "Time spent per request stage (authn, guardrails, budget, authz, cache, record, upstream, total)",
            stage_seconds.clone(),
        );
        let bundle_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "cairn_bundle_reloads",
            "Policy bundle loads by result (loaded, rejected)",
            bundle_reloads.clone(),
        );
        let bundle_info = Family::<BundleLabels, Gauge>::default();
        registry.register(
            "cairn_bundle_info",
            "The policy bundle in force (value 1), by digest",
            bundle_info.clone(),
        );
        let record_flush_seconds = Histogram::new(latency_buckets());
        registry.register(
            "cairn_record_flush_duration_seconds",
            "Time to write and fsync one group of decision records",
            record_flush_seconds.clone(),
        );
        let record_batch_size = Histogram::new([
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
        ]);
        registry.register(
            "cairn_record_batch_size",
            "Decision records per group commit",
            record_batch_size.clone(),
        );
        let record_write_failures = Counter::default();
        registry.register(
            "cairn_record_write_failures",
            "Failures to write decision records",
            record_write_failures.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "cairn_tokens",
            "Tokens by model and kind (input, output, cache_read, cache_write)",
            tokens.clone(),
        );
        let spend_micro_usd = Family::<ModelLabels, Counter>::default();
        registry.register(
            "cairn_spend_micro_usd",
            "Spend in millionths of a US dollar, by model",
            spend_micro_usd.clone(),
        );
        let limit_rejections = Family::<LimitLabels, Counter>::default();
        registry.register(
            "cairn_limit_rejections",
            "Requests refused by a rate limit or budget, by rule and metric",
            limit_rejections.clone(),
        );
        let limits_backend_errors = Family::<ResultLabels, Counter>::default();
        registry.register(
            "cairn_limits_backend_errors",
            "Limit checks the backend could not answer, by what the gateway did (closed, open)",
            limits_backend_errors.clone(),
        );
        let guardrail_findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "cairn_guardrail_findings",
            "Guardrail findings by detector, direction (input, output) and action",
            guardrail_findings.clone(),
        );
        let cache_lookups = Family::<ResultLabels, Counter>::default();
        registry.register(
            "cairn_cache_lookups",
            "Response cache lookups by result (hit, miss)",
            cache_lookups.clone(),
        );
        let spans_exported = Counter::default();
        registry.register(
            "cairn_spans_exported",
            "Spans accepted by the OTLP endpoint",
            spans_exported.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "cairn_spans_dropped",
            "Spans dropped (export queue full or export failed)",
            spans_dropped.clone(),
        );
        let upstream_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "cairn_upstream_attempts",
            "Calls to model deployments by result (ok, error, skipped while the circuit is open)",
            upstream_attempts.clone(),
        );
        let circuits_opened = Family::<DeploymentLabels, Counter>::default();
        registry.register(
            "cairn_circuits_opened",
            "Times a deployment's circuit breaker opened",
            circuits_opened.clone(),
        );
        let transport_refusals = Family::<TransportLabels, Counter>::default();
        registry.register(
            "cairn_transport_refusals",
            "Connections refused by the HTTP server before a request existed, so with no record: \
             head_too_large (431 or 414), malformed (400: request line, header or framing), \
             header_timeout (the head did not arrive in time; closed)",
            transport_refusals.clone(),
        );
        Self {
            registry,
            transport_refusals,
            upstream_attempts,
            circuits_opened,
            limit_rejections,
            limits_backend_errors,
            guardrail_findings,
            cache_lookups,
            spans_exported,
            spans_dropped,
            requests,
            stage_seconds,
            bundle_reloads,
            bundle_info,
            record_flush_seconds,
            record_batch_size,
            record_write_failures,
            tokens,
            spend_micro_usd,
            last_log_error: Mutex::new(None),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn request(&self, decision: &str, model: &str, status: u16, reason: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                decision: decision.into(),
                model: model.into(),
                status,
                reason: reason.into(),
            })
            .inc();
    }

    pub fn stage(&self, stage: &str, d: Duration) {
        self.stage_seconds
            .get_or_create(&StageLabels {
                stage: stage.into(),
            })
            .observe(d.as_secs_f64());
    }

    pub fn bundle_loaded(&self, digest: &str, previous: Option<&str>) {
        if let Some(p) = previous {
            self.bundle_info.remove(&BundleLabels { digest: p.into() });
        }
        self.bundle_info
            .get_or_create(&BundleLabels {
                digest: digest.into(),
            })
            .set(1);
        self.bundle_reloads
            .get_or_create(&ResultLabels {
                result: "loaded".into(),
            })
            .inc();
    }

    pub fn bundle_rejected(&self) {
        self.bundle_reloads
            .get_or_create(&ResultLabels {
                result: "rejected".into(),
            })
            .inc();
    }

    pub fn usage(&self, model: &str, usage: &crate::decision_log::Usage, cost_usd: f64) {
        self.tokens
            .get_or_create(&TokenLabels {
                model: model.into(),
                kind: "input".into(),
            })
            .inc_by(usage.input_tokens);
        self.tokens
            .get_or_create(&TokenLabels {
                model: model.into(),
                kind: "output".into(),
            })
            .inc_by(usage.output_tokens);
        for (kind, n) in [
            ("cache_read", usage.cache_read_tokens),
            ("cache_write", usage.cache_write_tokens),
        ] {
            if n > 0 {
                self.tokens
                    .get_or_create(&TokenLabels {
                        model: model.into(),
                        kind: kind.into(),
                    })
                    .inc_by(n);
            }
        }
        self.spend_micro_usd
            .get_or_create(&ModelLabels {
                model: model.into(),
            })
            .inc_by((cost_usd * 1e6).round() as u64);
    }

    pub fn limit_rejected(&self, rule: &str, metric: &str) {
        self.limit_rejections
            .get_or_create(&LimitLabels {
                rule: rule.into(),
                metric: metric.into(),
            })
            .inc();
    }

    pub fn limits_backend_error(&self, result: &str) {
        self.limits_backend_errors
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn finding(&self, detector: &str, direction: &str, action: &str, n: u64) {
        self.guardrail_findings
            .get_or_create(&FindingLabels {
                detector: detector.into(),
                direction: direction.into(),
                action: action.into(),
            })
            .inc_by(n);
    }

    pub fn cache(&self, result: &str) {
        self.cache_lookups
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn attempt(&self, deployment: &str, result: &str) {
        self.upstream_attempts
            .get_or_create(&AttemptLabels {
                deployment: deployment.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn circuit_opened(&self, deployment: &str) {
        self.circuits_opened
            .get_or_create(&DeploymentLabels {
                deployment: deployment.into(),
            })
            .inc();
    }

    pub fn last_log_error(&self) -> Option<String> {
        self.last_log_error.lock().ok().and_then(|g| g.clone())
    }
}

impl LogObserver for Metrics {
    fn committed(&self, records: usize, flush: Duration) {
        self.record_flush_seconds.observe(flush.as_secs_f64());
        self.record_batch_size.observe(records as f64);
    }

    fn failed(&self, error: &str) {
        self.record_write_failures.inc();
        if let Ok(mut g) = self.last_log_error.lock() {
            *g = Some(error.to_string());
        }
    }
}
