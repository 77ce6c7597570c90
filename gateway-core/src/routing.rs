//! Routing a model alias to its deployments: the order to try them (priority, then weighted at
//! random within a priority), jittered exponential backoff between attempts, and a circuit
//! breaker per deployment that skips a failing deployment for a cooldown, then lets one trial
//! request through (half-open) and closes again on its success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use crate::catalogue::{Catalogue, CatalogueModel};
use crate::config::RoutingConfig;

/// One try at one deployment, as the outcome record lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub deployment: String,
    pub provider: String,
    /// `ok`, `error` or `skipped`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub latency_ms: u64,
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// After the cooldown one request may try; others keep skipping until it reports.
    trial_in_flight: bool,
}

pub struct Router {
    config: RoutingConfig,
    breakers: Mutex<HashMap<String, Breaker>>,
}

/// Why a deployment was not tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Open circuit; tries again after this long.
    CircuitOpen(Duration),
}

impl Router {
    pub fn new(config: RoutingConfig) -> Self {
        Self {
            config,
            breakers: Mutex::new(HashMap::new()),
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.config.max_attempts.max(1)
    }

    /// The deployments of `model` in the order to try them; a plain model is its own plan.
    pub fn plan(&self, catalogue: &Catalogue, model: &CatalogueModel) -> Vec<CatalogueModel> {
        if model.deployments.is_empty() {
            return vec![model.clone()];
        }
        let mut rng = rand::thread_rng();
        let mut by_priority: Vec<(u32, f64, CatalogueModel)> = model
            .deployments
            .iter()
            .filter_map(|d| {
                let m = catalogue.get(&d.model)?.clone();
                // Weighted order without replacement (Efraimidis-Spirakis keys).
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                Some((d.priority, u.powf(1.0 / f64::from(d.weight.max(1))), m))
            })
            .collect();
        by_priority.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        by_priority.into_iter().map(|(_, _, m)| m).collect()
    }

    /// Whether `deployment` may be tried now.
    pub fn admit(&self, deployment: &str) -> Result<(), Skip> {
        let mut g = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let b = g.entry(deployment.to_string()).or_default();
        match b.open_until {
            None => Ok(()),
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Err(Skip::CircuitOpen(until - now))
                } else if b.trial_in_flight {
                    Err(Skip::CircuitOpen(Duration::from_millis(
                        self.config.breaker_cooldown_ms.min(1000),
                    )))
                } else {
                    b.trial_in_flight = true;
                    Ok(())
                }
            }
        }
    }

    pub fn success(&self, deployment: &str) {
        let mut g = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = g.get_mut(deployment) {
            *b = Breaker::default();
        }
    }

    /// Counts a failure; returns true when this failure opened the circuit.
    pub fn failure(&self, deployment: &str) -> bool {
        let mut g = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let b = g.entry(deployment.to_string()).or_default();
        b.consecutive_failures += 1;
        let reopen = b.trial_in_flight;
        b.trial_in_flight = false;
        if reopen || b.consecutive_failures >= self.config.breaker_failures.max(1) {
            let was_closed = b.open_until.is_none();
            b.open_until =
                Some(Instant::now() + Duration::from_millis(self.config.breaker_cooldown_ms));
            return was_closed || reopen;
        }
        false
    }

    /// A failure that says nothing about the deployment's health (e.g. a 400) ends a trial
    /// without reopening the circuit.
    pub fn neutral(&self, deployment: &str) {
        let mut g = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = g.get_mut(deployment) {
            b.trial_in_flight = false;
        }
    }

    /// `open` or `closed`, for metrics.
    pub fn is_open(&self, deployment: &str) -> bool {
        let g = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        g.get(deployment)
            .and_then(|b| b.open_until)
            .is_some_and(|u| Instant::now() < u)
    }

    /// The wait before retry number `retry` (1-based): uniform in [0, base * 2^(retry-1)],
    /// capped ("full jitter").
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .config
            .backoff_base_ms
            .saturating_mul(1u64 << retry.saturating_sub(1).min(20))
            .min(self.config.backoff_max_ms);
        if cap == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::thread_rng().gen_range(0..=cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeploymentConfig, ModelConfig};

    fn catalogue() -> Catalogue {
        let mut models = crate::catalogue::default_models();
        let mut alias: ModelConfig = models[0].clone();
        alias.id = "alias".into();
        alias.deployments = vec![
            DeploymentConfig {
                model: "claude-haiku".into(),
                priority: 0,
                weight: 3,
            },
            DeploymentConfig {
                model: "llama-apac".into(),
                priority: 0,
                weight: 1,
            },
            DeploymentConfig {
                model: "gpt-4o-mini".into(),
                priority: 1,
                weight: 1,
            },
        ];
        models.push(alias);
        Catalogue::new(&models)
    }

    #[test]
    fn priorities_first_and_weights_within() {
        let c = catalogue();
        let r = Router::new(RoutingConfig::default());
        let alias = c.get("alias").unwrap();
        let mut haiku_first = 0;
        for _ in 0..2000 {
            let plan: Vec<String> = r.plan(&c, alias).into_iter().map(|m| m.id).collect();
            assert_eq!(plan.len(), 3);
            assert_eq!(plan[2], "gpt-4o-mini");
            haiku_first += usize::from(plan[0] == "claude-haiku");
        }
        // Weight 3 of 4: about 1500 of 2000.
        assert!((1350..1650).contains(&haiku_first), "{haiku_first}");
    }

    #[test]
    fn the_breaker_opens_then_lets_one_trial_through() {
        let r = Router::new(RoutingConfig {
            breaker_failures: 2,
            breaker_cooldown_ms: 50,
            ..RoutingConfig::default()
        });
        assert!(r.admit("d").is_ok());
        assert!(!r.failure("d"));
        assert!(r.failure("d"), "second failure opens");
        assert!(matches!(r.admit("d"), Err(Skip::CircuitOpen(_))));
        std::thread::sleep(Duration::from_millis(60));
        assert!(r.admit("d").is_ok(), "half-open: one trial");
        assert!(r.admit("d").is_err(), "only one");
        assert!(r.failure("d"), "a failed trial reopens");
        std::thread::sleep(Duration::from_millis(60));
        assert!(r.admit("d").is_ok());
        r.success("d");
        assert!(r.admit("d").is_ok() && r.admit("d").is_ok(), "closed again");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Router::new(RoutingConfig {
            backoff_base_ms: 10,
            backoff_max_ms: 35,
            ..RoutingConfig::default()
        });
        for _ in 0..100 {
            assert!(r.backoff(1) <= Duration::from_millis(10));
            assert!(r.backoff(5) <= Duration::from_millis(35));
        }
    }
}
