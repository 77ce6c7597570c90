//! The model catalogue: what clients may name in `model`, which provider serves it, and the
//! attributes Cedar sees on the `Model` entity.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::config::{BedrockGuardrailConfig, DeploymentConfig, MockConfig, ModelConfig};

#[derive(Debug, Clone)]
pub struct CatalogueModel {
    pub id: String,
    pub provider: String,
    pub upstream_model: String,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub cache_read_usd_per_mtok: f64,
    pub cache_write_usd_per_mtok: f64,
    /// Response cache lifetime for this model, in seconds (0: only when a policy opts in).
    pub cache_ttl_s: u64,
    /// Non-empty for an alias: the models that serve it.
    pub deployments: Vec<DeploymentConfig>,
    pub guardrail: Option<BedrockGuardrailConfig>,
    pub mock: Option<MockConfig>,
    /// Cedar attributes of the `Model` entity.
    pub attrs: Value,
}

impl CatalogueModel {
    /// `Model::"id"`.
    pub fn uid(&self) -> String {
        format!("Model::{}", Value::String(self.id.clone()))
    }

    /// The price of a usage. `input_tokens` excludes prompt-cache reads and writes, which are
    /// priced separately.
    pub fn cost_usd(&self, usage: &crate::decision_log::Usage) -> f64 {
        let usd = (usage.input_tokens as f64 * self.input_usd_per_mtok
            + usage.output_tokens as f64 * self.output_usd_per_mtok
            + usage.cache_read_tokens as f64 * self.cache_read_usd_per_mtok
            + usage.cache_write_tokens as f64 * self.cache_write_usd_per_mtok)
            / 1_000_000.0;
        (usd * 1e9).round() / 1e9
    }

    /// The price of a usage in millionths of a dollar, rounded up so budgets never undercount.
    pub fn cost_micro_usd(&self, usage: &crate::decision_log::Usage) -> i64 {
        // From whole nano-dollars, so float noise cannot add a micro-dollar.
        let nano = (self.cost_usd(usage) * 1e9).round() as i64;
        nano.div_euclid(1000) + i64::from(nano.rem_euclid(1000) != 0)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    models: Vec<CatalogueModel>,
    by_id: HashMap<String, usize>,
}

impl Catalogue {
    pub fn new(configs: &[ModelConfig]) -> Self {
        let configs = if configs.is_empty() {
            default_models()
        } else {
            configs.to_vec()
        };
        let models: Vec<CatalogueModel> = configs
            .into_iter()
            .map(|m| CatalogueModel {
                attrs: json!({
                    "provider": m.provider,
                    "region": m.region,
                    "max_data_level": m.max_data_level,
                    "cost_tier": m.cost_tier,
                }),
                upstream_model: m.upstream_model.clone().unwrap_or_else(|| m.id.clone()),
                id: m.id,
                provider: m.provider,
                input_usd_per_mtok: m.input_usd_per_mtok,
                output_usd_per_mtok: m.output_usd_per_mtok,
                cache_read_usd_per_mtok: m
                    .cache_read_usd_per_mtok
                    .unwrap_or(m.input_usd_per_mtok / 10.0),
                cache_write_usd_per_mtok: m
                    .cache_write_usd_per_mtok
                    .unwrap_or(m.input_usd_per_mtok * 1.25),
                cache_ttl_s: m.cache_ttl_s,
                deployments: m.deployments,
                guardrail: m.guardrail,
                mock: m.mock,
            })
            .collect();
        // An alias without prices of its own is estimated at its dearest deployment, so budget
        // reservations stay an upper bound whichever deployment answers.
        let prices: HashMap<String, [f64; 4]> = models
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    [
                        m.input_usd_per_mtok,
                        m.output_usd_per_mtok,
                        m.cache_read_usd_per_mtok,
                        m.cache_write_usd_per_mtok,
                    ],
                )
            })
            .collect();
        let models: Vec<CatalogueModel> = models
            .into_iter()
            .map(|mut m| {
                if m.input_usd_per_mtok == 0.0 && m.output_usd_per_mtok == 0.0 {
                    for d in &m.deployments {
                        if let Some(p) = prices.get(&d.model) {
                            m.input_usd_per_mtok = m.input_usd_per_mtok.max(p[0]);
                            m.output_usd_per_mtok = m.output_usd_per_mtok.max(p[1]);
                            m.cache_read_usd_per_mtok = m.cache_read_usd_per_mtok.max(p[2]);
                            m.cache_write_usd_per_mtok = m.cache_write_usd_per_mtok.max(p[3]);
                        }
                    }
                }
                m
            })
            .collect();
        let by_id = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Self { models, by_id }
    }

    pub fn get(&self, id: &str) -> Option<&CatalogueModel> {
        self.by_id.get(id).map(|i| &self.models[*i])
    }

    pub fn models(&self) -> &[CatalogueModel] {
        &self.models
    }

    /// Whether calls to `model` (or any of its deployments) go to Bedrock.
    pub fn uses_bedrock(&self, model: &CatalogueModel) -> bool {
        model.provider == "bedrock"
            || model
                .deployments
                .iter()
                .any(|d| self.get(&d.model).is_some_and(|m| m.provider == "bedrock"))
    }
}

/// The built-in catalogue, served by the mock provider. It mirrors the default policy bundle's
/// test entities, with list prices of comparable hosted models.
pub fn default_models() -> Vec<ModelConfig> {
    let m = |id: &str, region: &str, level: i64, tier: &str, input: f64, output: f64| ModelConfig {
        id: id.into(),
        provider: "mock".into(),
        upstream_model: None,
        region: region.into(),
        max_data_level: level,
        cost_tier: tier.into(),
        input_usd_per_mtok: input,
        output_usd_per_mtok: output,
        cache_read_usd_per_mtok: None,
        cache_write_usd_per_mtok: None,
        cache_ttl_s: 0,
        deployments: Vec::new(),
        guardrail: None,
        mock: None,
    };
    vec![
        m("claude-haiku", "us-east-1", 1, "low", 0.8, 4.0),
        m("claude-sonnet", "us-west-2", 2, "standard", 3.0, 15.0),
        m("claude-opus", "us-east-1", 3, "premium", 15.0, 75.0),
        m("llama-apac", "ap-northeast-1", 1, "low", 0.2, 0.2),
        m("gpt-4o-mini", "us-east-1", 0, "low", 0.15, 0.6),
    ]
}
