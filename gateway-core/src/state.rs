//! What every request handler shares: configuration, the controls and the evidence. Built once
//! by [`crate::server::bind`], read by the admission stages and the protocol adapters.

use std::sync::Arc;

use crate::authn::Authenticator;
use crate::authz::PolicyState;
use crate::cache::ResponseCache;
use crate::catalogue::{Catalogue, CatalogueModel};
use crate::config::GatewayConfig;
use crate::decision_log::DecisionLog;
use crate::guardrails::Guardrails;
use crate::limits::Limiter;
use crate::mcp::Mcp;
use crate::providers::bedrock::BedrockProvider;
use crate::providers::{ModelProvider, Providers};
use crate::routing::Router as ModelRouter;
use crate::telemetry::Metrics;
use crate::telemetry::otlp::Exporter;

pub struct AppState {
    pub config: GatewayConfig,
    pub catalogue: Catalogue,
    pub authn: Authenticator,
    pub policy: Arc<PolicyState>,
    pub log: DecisionLog,
    pub metrics: Arc<Metrics>,
    pub guardrails: Arc<Guardrails>,
    pub limiter: Arc<Limiter>,
    pub cache: ResponseCache,
    pub exporter: Option<Exporter>,
    pub router: ModelRouter,
    pub providers: Providers,
    pub mcp: Mcp,
}

impl AppState {
    /// The provider that serves a (concrete) catalogue model.
    pub fn provider_for(&self, model: &CatalogueModel) -> &dyn ModelProvider {
        self.providers.of(model)
    }

    /// The Bedrock provider, when some model is served by Bedrock.
    pub fn bedrock(&self) -> Option<&BedrockProvider> {
        self.providers.bedrock.as_ref()
    }
}
