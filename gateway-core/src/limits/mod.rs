//! Budgets and rate limits per user, team, API key and model: requests and tokens per minute,
//! spend per day and per month (USD, from the catalogue's prices).
//!
//! At request start the estimated cost (prompt tokens plus the requested or default completion
//! tokens) is **reserved** in one atomic step: every applicable counter is checked and, only if
//! all have room, incremented. After the request the reservation is reconciled with the actual
//! usage (or released when nothing was served). Across replicas sharing Redis the overspend is
//! therefore bounded by one request's estimation error, never by the number of replicas.
//!
//! Counters are integers (requests, tokens, micro-USD) in fixed windows: the UTC minute, day and
//! month. Two backends: in-process (`memory`) for one node, `redis` (a Lua script, one round trip)
//! for several.

mod memory;
mod redis_backend;
mod reservation;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::authn::Principal;

pub use memory::MemoryBackend;
pub use redis_backend::RedisBackend;
pub use reservation::Reservation;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `memory` (one node) or `redis` (shared by replicas).
    pub backend: String,
    pub redis_url: String,
    /// `closed` (refuse with 503) or `open` (serve without limits) when the backend fails.
    pub on_backend_error: String,
    /// Completion tokens reserved when a request sets no `max_tokens`.
    pub default_output_tokens: u64,
    /// Longest wait for the backend, in milliseconds.
    pub timeout_ms: u64,
    pub rules: Vec<LimitRule>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            backend: "memory".into(),
            redis_url: String::new(),
            on_backend_error: "closed".into(),
            default_output_tokens: 1024,
            timeout_ms: 250,
            rules: Vec::new(),
        }
    }
}

/// How a tool call names its resource to the limiter.
pub const TOOL_PREFIX: &str = "tool:";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    pub name: String,
    /// `user`, `team`, `api_key`, `model` or `global` (model calls); `tool` or `user_tool`
    /// (MCP tool calls: each tool, or each principal on each tool).
    pub scope: String,
    /// `*` applies the rule to each value of the scope separately; anything else only to
    /// that value.
    #[serde(default = "star")]
    pub value: String,
    #[serde(default)]
    pub requests_per_minute: u64,
    #[serde(default)]
    pub tokens_per_minute: u64,
    #[serde(default)]
    pub usd_per_day: f64,
    #[serde(default)]
    pub usd_per_month: f64,
}

fn star() -> String {
    "*".into()
}

/// One counter to check and increment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub limit: i64,
    pub amount: i64,
    pub ttl_s: u64,
    pub rule: String,
    pub metric: &'static str,
    pub scope_value: String,
    /// Seconds until the window ends (for `Retry-After`).
    pub retry_after_s: u64,
}

/// What a refused reservation hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exceeded {
    pub rule: String,
    pub metric: &'static str,
    pub scope_value: String,
    pub limit: i64,
    pub used: i64,
    pub requested: i64,
    pub retry_after_s: u64,
}

impl Exceeded {
    pub fn message(&self) -> String {
        let amount = |v: i64| -> String {
            match self.metric {
                "usd_per_day" | "usd_per_month" => format!("{} USD", v as f64 / 1e6),
                "requests_per_minute" => format!("{v} requests"),
                _ => format!("{v} tokens"),
            }
        };
        format!(
            "limit `{}` ({}) reached for {}: {} of {} used, this request needs up to {}; retry in {}",
            self.rule,
            self.metric,
            self.scope_value,
            amount(self.used),
            amount(self.limit),
            amount(self.requested),
            human_duration(self.retry_after_s)
        )
    }

    /// Low-cardinality record reason.
    pub fn reason(&self) -> &'static str {
        if self.metric.starts_with("usd") {
            "budget_exceeded"
        } else {
            "rate_limited"
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the limits backend is unavailable: {0}")]
pub struct BackendError(pub String);

/// A successful reservation, to reconcile later.
#[derive(Debug, Clone, Default)]
pub struct Reserved {
    pub counters: Vec<Counter>,
    pub reserved_tokens: i64,
    pub reserved_micro_usd: i64,
    /// Remaining spend of the tightest USD budget before this request, when one applies.
    pub remaining_micro_usd: Option<i64>,
    pub tightest_budget: Option<(String, i64)>,
    /// Reserved without checking because the backend failed and the policy is to fail open.
    pub unchecked: bool,
}

impl Reserved {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "reserved_tokens": self.reserved_tokens,
            "reserved_usd": self.reserved_micro_usd as f64 / 1e6,
            "remaining_usd": self.remaining_micro_usd.map(|m| m as f64 / 1e6),
            "unchecked": self.unchecked,
        })
    }

    pub fn budget_json(&self) -> Option<serde_json::Value> {
        self.tightest_budget.as_ref().map(|(rule, limit)| {
            serde_json::json!({
                "rule": rule,
                "limit_usd": *limit as f64 / 1e6,
                "remaining_usd": self.remaining_micro_usd.map(|m| m as f64 / 1e6),
            })
        })
    }
}

pub enum Backend {
    Memory(MemoryBackend),
    Redis(RedisBackend),
}

impl Backend {
    /// Checks every counter and increments all of them only if each has room. `Ok(Err(..))`
    /// names the first counter that had none; `Ok(Ok(values))` are the values after increment.
    pub async fn reserve(
        &self,
        counters: &[Counter],
    ) -> Result<Result<Vec<i64>, (usize, i64)>, BackendError> {
        match self {
            Self::Memory(m) => Ok(m.reserve(counters)),
            Self::Redis(r) => r.reserve(counters).await,
        }
    }

    pub async fn adjust(&self, adjustments: &[(String, i64)]) -> Result<(), BackendError> {
        match self {
            Self::Memory(m) => {
                m.adjust(adjustments);
                Ok(())
            }
            Self::Redis(r) => r.adjust(adjustments).await,
        }
    }
}

pub struct Limiter {
    config: LimitsConfig,
    backend: Backend,
    /// Whether the last call to the backend succeeded.
    healthy: AtomicBool,
}

/// The principal's team, as the lake computes it: `owner_team`, else `department`, else the
/// first group.
pub fn team_of(p: &Principal) -> Option<String> {
    let attr = |k: &str| p.attrs.get(k).and_then(|v| v.as_str()).map(str::to_string);
    attr("owner_team")
        .or_else(|| attr("department"))
        .or_else(|| p.parents.first().map(|(_, id)| id.clone()))
}

impl Limiter {
    /// Builds the limiter. A Redis that is down does not stop the gateway from starting: the
    /// connection is made on first use and re-made after failures.
    pub fn new(config: LimitsConfig) -> Result<Self, String> {
        let backend = match config.backend.as_str() {
            "redis" => Backend::Redis(RedisBackend::new(&config.redis_url, config.timeout_ms)?),
            _ => Backend::Memory(MemoryBackend::default()),
        };
        Ok(Self {
            config,
            backend,
            healthy: AtomicBool::new(true),
        })
    }

    /// Whether the backend answered the last call (always true for memory).
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn observe<T>(&self, r: Result<T, BackendError>) -> Result<T, BackendError> {
        self.healthy.store(r.is_ok(), Ordering::Relaxed);
        r
    }

    /// Checks the backend once (startup), so a misconfigured Redis shows in the log at once.
    pub async fn probe(&self) -> Result<(), BackendError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(r) => self.observe(r.ping().await),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.config.rules.is_empty()
    }

    pub fn fail_open(&self) -> bool {
        self.config.on_backend_error == "open"
    }

    pub fn default_output_tokens(&self) -> u64 {
        self.config.default_output_tokens
    }

    /// The counters a request touches. `model` is the model, or [`TOOL_PREFIX`] and a tool's
    /// `server/name`.
    pub fn counters(
        &self,
        principal: &Principal,
        model: &str,
        tokens: i64,
        micro_usd: i64,
    ) -> Vec<Counter> {
        let now = Utc::now();
        let minute = now.timestamp() / 60;
        let day = now.format("%Y%m%d").to_string();
        let month = now.format("%Y%m").to_string();
        let to_minute_end = 60 - u64::from(now.second());
        let to_day_end = 86_400 - u64::from(now.num_seconds_from_midnight());
        let next_month = if now.month() == 12 {
            chrono::NaiveDate::from_ymd_opt(now.year() + 1, 1, 1)
        } else {
            chrono::NaiveDate::from_ymd_opt(now.year(), now.month() + 1, 1)
        };
        let to_month_end = next_month
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(86_400, |d| {
                (d.and_utc().timestamp() - now.timestamp()).max(1) as u64
            });
        let mut out = Vec::new();
        // A tool call's resource is `tool:{server}/{tool}`; model rules never count tool calls,
        // and tool rules never count model calls.
        let tool = model.strip_prefix(TOOL_PREFIX);
        for rule in &self.config.rules {
            let value = match (rule.scope.as_str(), tool) {
                ("user", None) => Some(principal.uid()),
                ("team", None) => team_of(principal),
                ("api_key", None) => {
                    (principal.auth.method == "api_key").then(|| principal.auth.subject.clone())
                }
                ("model", None) => Some(model.to_string()),
                ("global", None) => Some("*".to_string()),
                ("tool", Some(t)) => Some(t.to_string()),
                ("user_tool", Some(t)) => Some(format!("{}|{t}", principal.uid())),
                _ => None,
            };
            let Some(value) = value else { continue };
            if rule.value != "*" && rule.value != value {
                continue;
            }
            let mut add = |metric: &'static str,
                           window: String,
                           limit: i64,
                           amount: i64,
                           ttl: u64,
                           retry: u64| {
                if limit > 0 {
                    out.push(Counter {
                        key: format!("cairn:limit:{}:{}:{metric}:{window}", rule.name, value),
                        limit,
                        amount,
                        ttl_s: ttl,
                        rule: rule.name.clone(),
                        metric,
                        scope_value: value.clone(),
                        retry_after_s: retry,
                    });
                }
            };
            add(
                "requests_per_minute",
                minute.to_string(),
                rule.requests_per_minute as i64,
                1,
                120,
                to_minute_end,
            );
            add(
                "tokens_per_minute",
                minute.to_string(),
                rule.tokens_per_minute as i64,
                tokens,
                120,
                to_minute_end,
            );
            add(
                "usd_per_day",
                day.clone(),
                (rule.usd_per_day * 1e6).round() as i64,
                micro_usd,
                2 * 86_400,
                to_day_end,
            );
            add(
                "usd_per_month",
                month.clone(),
                (rule.usd_per_month * 1e6).round() as i64,
                micro_usd,
                32 * 86_400,
                to_month_end,
            );
        }
        out
    }

    /// Reserves the estimate. `Ok(Err)` is a refusal naming the limit; `Err` a backend failure
    /// (the caller fails closed, or open when so configured).
    pub async fn reserve(
        &self,
        principal: &Principal,
        model: &str,
        tokens: i64,
        micro_usd: i64,
    ) -> Result<Result<Reserved, Exceeded>, BackendError> {
        let counters = self.counters(principal, model, tokens, micro_usd);
        if counters.is_empty() {
            return Ok(Ok(Reserved::default()));
        }
        match self.observe(self.backend.reserve(&counters).await)? {
            Err((i, used)) => {
                let c = &counters[i];
                Ok(Err(Exceeded {
                    rule: c.rule.clone(),
                    metric: c.metric,
                    scope_value: c.scope_value.clone(),
                    limit: c.limit,
                    used,
                    requested: c.amount,
                    retry_after_s: c.retry_after_s,
                }))
            }
            Ok(values) => {
                let mut remaining: Option<i64> = None;
                let mut tightest = None;
                for (c, v) in counters.iter().zip(&values) {
                    if c.metric.starts_with("usd") {
                        let before = c.limit - (v - c.amount);
                        if remaining.is_none_or(|r| before < r) {
                            remaining = Some(before);
                            tightest = Some((c.rule.clone(), c.limit));
                        }
                    }
                }
                Ok(Ok(Reserved {
                    counters,
                    reserved_tokens: tokens,
                    reserved_micro_usd: micro_usd,
                    remaining_micro_usd: remaining,
                    tightest_budget: tightest,
                    unchecked: false,
                }))
            }
        }
    }

    /// Reserves the estimate as [`reserve`](Self::reserve) does, held by a [`Reservation`] that
    /// settles itself exactly once (released if dropped unsettled).
    pub async fn hold(
        self: &Arc<Self>,
        principal: &Principal,
        model: &str,
        tokens: i64,
        micro_usd: i64,
    ) -> Result<Result<Reservation, Exceeded>, BackendError> {
        Ok(self
            .reserve(principal, model, tokens, micro_usd)
            .await?
            .map(|r| Reservation::new(self.clone(), r)))
    }

    /// Replaces the reserved tokens and spend with the actual ones; `keep_request` counts the
    /// request against requests-per-minute (false releases it too).
    pub async fn reconcile(
        &self,
        r: &Reserved,
        tokens: i64,
        micro_usd: i64,
        keep_request: bool,
    ) -> Result<(), BackendError> {
        let adjustments: Vec<(String, i64)> = r
            .counters
            .iter()
            .filter_map(|c| {
                let delta = match c.metric {
                    "requests_per_minute" => {
                        if keep_request {
                            0
                        } else {
                            -1
                        }
                    }
                    "tokens_per_minute" => tokens - c.amount,
                    _ => micro_usd - c.amount,
                };
                (delta != 0).then(|| (c.key.clone(), delta))
            })
            .collect();
        if adjustments.is_empty() {
            return Ok(());
        }
        self.observe(self.backend.adjust(&adjustments).await)
    }

    /// Reconciles in the background (after the response), logging a failure.
    pub fn reconcile_later(
        self: &Arc<Self>,
        r: Reserved,
        tokens: i64,
        micro_usd: i64,
        keep_request: bool,
    ) {
        if r.counters.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.reconcile(&r, tokens, micro_usd, keep_request).await {
                tracing::error!(error = %e, "could not reconcile a budget reservation");
            }
        });
    }
}

/// `1h 05m`, `42 s`: how long until a window resets, for people.
fn human_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Checks what the types cannot, naming each key.
pub fn check_config(c: &LimitsConfig) -> Vec<String> {
    let mut problems = Vec::new();
    match c.backend.as_str() {
        "memory" => {}
        "redis" => {
            if !(c.redis_url.starts_with("redis://") || c.redis_url.starts_with("rediss://")) {
                problems.push(format!(
                    "`limits.redis_url` `{}` must be a redis:// or rediss:// URL when `limits.backend` is redis",
                    c.redis_url
                ));
            }
        }
        other => problems.push(format!(
            "`limits.backend` `{other}` must be memory (one gateway) or redis (shared by replicas)"
        )),
    }
    if !matches!(c.on_backend_error.as_str(), "closed" | "open") {
        problems.push(format!(
            "`limits.on_backend_error` `{}` must be closed (refuse with 503) or open (serve unlimited)",
            c.on_backend_error
        ));
    }
    if c.default_output_tokens == 0 {
        problems.push("`limits.default_output_tokens` must be at least 1".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in c.rules.iter().enumerate() {
        if r.name.is_empty() || r.name.contains(':') {
            problems.push(format!(
                "`limits.rules[{i}].name` must be a non-empty name without `:`"
            ));
        } else if !names.insert(&r.name) {
            problems.push(format!(
                "`limits.rules[{i}].name` `{}` appears twice",
                r.name
            ));
        }
        if !matches!(
            r.scope.as_str(),
            "user" | "team" | "api_key" | "model" | "global" | "tool" | "user_tool"
        ) {
            problems.push(format!(
                "`limits.rules[{i}].scope` `{}` must be user, team, api_key, model, global, tool or user_tool",
                r.scope
            ));
        }
        if r.requests_per_minute == 0
            && r.tokens_per_minute == 0
            && r.usd_per_day <= 0.0
            && r.usd_per_month <= 0.0
        {
            problems.push(format!(
                "`limits.rules[{i}]` sets no limit: give requests_per_minute, tokens_per_minute, usd_per_day or usd_per_month"
            ));
        }
        if r.usd_per_day < 0.0 || r.usd_per_month < 0.0 {
            problems.push(format!("`limits.rules[{i}]`: budgets cannot be negative"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::AuthInfo;

    fn principal(id: &str, team: &str) -> Principal {
        Principal {
            entity_type: "User".into(),
            id: id.into(),
            parents: Vec::new(),
            attrs: [("department".to_string(), serde_json::json!(team))].into(),
            auth: AuthInfo {
                method: "oidc",
                subject: id.into(),
                issuer: None,
            },
        }
    }

    fn limiter(rules: Vec<LimitRule>) -> Limiter {
        Limiter::new(LimitsConfig {
            rules,
            ..LimitsConfig::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_team_budget_is_shared_and_never_overspent() {
        let l = limiter(vec![LimitRule {
            name: "team-daily".into(),
            scope: "team".into(),
            value: "*".into(),
            usd_per_day: 1.0,
            ..LimitRule::default()
        }]);
        let (a, b) = (principal("a", "eng"), principal("b", "eng"));
        let r1 = l.reserve(&a, "m", 10, 600_000).await.unwrap().unwrap();
        assert_eq!(r1.remaining_micro_usd, Some(1_000_000));
        let refused = l.reserve(&b, "m", 10, 600_000).await.unwrap().unwrap_err();
        assert_eq!(refused.reason(), "budget_exceeded");
        assert_eq!(refused.used, 600_000);
        // The first request cost less than reserved: the difference comes back.
        l.reconcile(&r1, 5, 100_000, true).await.unwrap();
        let r2 = l.reserve(&b, "m", 10, 600_000).await.unwrap().unwrap();
        assert_eq!(r2.remaining_micro_usd, Some(900_000));
        // Another team has its own budget.
        assert!(
            l.reserve(&principal("c", "ops"), "m", 1, 900_000)
                .await
                .unwrap()
                .is_ok()
        );
    }

    #[tokio::test]
    async fn nothing_is_counted_when_one_counter_is_full() {
        let l = limiter(vec![
            LimitRule {
                name: "rpm".into(),
                scope: "user".into(),
                value: "*".into(),
                requests_per_minute: 10,
                ..LimitRule::default()
            },
            LimitRule {
                name: "tpm".into(),
                scope: "model".into(),
                value: "m".into(),
                tokens_per_minute: 100,
                ..LimitRule::default()
            },
        ]);
        let p = principal("a", "eng");
        assert!(l.reserve(&p, "m", 80, 0).await.unwrap().is_ok());
        let e = l.reserve(&p, "m", 30, 0).await.unwrap().unwrap_err();
        assert_eq!((e.rule.as_str(), e.reason()), ("tpm", "rate_limited"));
        // The refused request did not take a request slot: 9 more fit.
        for _ in 0..9 {
            assert!(l.reserve(&p, "other", 1, 0).await.unwrap().is_ok());
        }
        let e = l.reserve(&p, "other", 1, 0).await.unwrap().unwrap_err();
        assert_eq!(e.rule, "rpm");
        assert!(e.retry_after_s >= 1 && e.retry_after_s <= 60);
    }

    #[tokio::test]
    async fn tool_rules_count_tool_calls_and_model_rules_model_calls() {
        let l = limiter(vec![
            LimitRule {
                name: "per-user".into(),
                scope: "user".into(),
                value: "*".into(),
                requests_per_minute: 1,
                ..LimitRule::default()
            },
            LimitRule {
                name: "per-user-tool".into(),
                scope: "user_tool".into(),
                value: "*".into(),
                requests_per_minute: 1,
                ..LimitRule::default()
            },
        ]);
        let p = principal("a", "eng");
        assert!(l.reserve(&p, "m", 1, 0).await.unwrap().is_ok());
        // The model rule is spent; tool calls are not counted by it.
        assert!(
            l.reserve(&p, "tool:files/read", 0, 0)
                .await
                .unwrap()
                .is_ok()
        );
        assert!(
            l.reserve(&p, "tool:files/write", 0, 0)
                .await
                .unwrap()
                .is_ok()
        );
        let e = l
            .reserve(&p, "tool:files/read", 0, 0)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.rule, "per-user-tool");
        assert!(
            l.reserve(&principal("b", "eng"), "tool:files/read", 0, 0)
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            l.reserve(&p, "m2", 1, 0).await.unwrap().unwrap_err().rule,
            "per-user"
        );
    }

    #[test]
    fn configuration_problems_are_named() {
        let c = LimitsConfig {
            backend: "redis".into(),
            on_backend_error: "maybe".into(),
            rules: vec![LimitRule {
                name: "x".into(),
                scope: "planet".into(),
                ..LimitRule::default()
            }],
            ..LimitsConfig::default()
        };
        let p = check_config(&c);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(p[0].contains("limits.redis_url"));
    }
}
