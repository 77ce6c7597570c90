//! Model providers behind the gateway, behind one contract: [`ModelProvider`], called with one
//! [`CallContext`] (the request, the deployment, who asks, the classification, the trace) for a
//! completion or a stream. `mock` is the embedded default; `openai_compat` speaks to any
//! OpenAI-compatible API; `bedrock` calls Amazon Bedrock's Converse API as the calling user.
//! [`Providers::build`] is the one place that turns configuration into providers: adding one
//! touches its module, its configuration and that function.

pub mod bedrock;
pub mod mock;
pub mod openai_compat;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use http::StatusCode;
use serde_json::Value;

use crate::authn::Principal;
use crate::catalogue::{Catalogue, CatalogueModel};
use crate::config::RawConfig;
use crate::decision_log::Usage;
use crate::error::StartError;
use crate::openai::{ChatRequest, Completion};

/// One event of a streamed completion.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    /// A piece of a tool call: `id` and `name` come with the first piece of each call.
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Finish(String),
    Usage(Usage),
    /// A provider-side guardrail's assessment of the output (types and actions, never text).
    Guardrail(Value),
    /// The provider's id of the call (see `Completion::upstream_request_id`), sent first.
    UpstreamRequestId(String),
}

/// Everything a provider call gets: the request, who asks (Bedrock assumes a role as them), the
/// deployment called (its `upstream_model` replaces the client's name), the prompt's
/// classification (guardrails by classification) and the trace to propagate.
#[derive(Clone, Copy)]
pub struct CallContext<'a> {
    pub request: &'a ChatRequest,
    pub principal: &'a Principal,
    pub model: &'a CatalogueModel,
    pub classification: &'a str,
    pub traceparent: Option<&'a str>,
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("the model provider answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
    #[error("the model provider did not answer in time")]
    Timeout,
    #[error("the model provider could not be reached")]
    Transport(String),
    #[error("the model provider sent something unexpected")]
    Protocol(String),
    /// The caller's AWS identity could not be assumed; the request fails closed.
    #[error("the caller's identity could not be assumed in AWS")]
    Identity(String),
    /// A provider-side guardrail (Bedrock Guardrails) blocked the prompt.
    #[error("{message}")]
    GuardrailIntervened { message: String, assessment: Value },
    /// Every deployment of the model is unavailable (circuit open) or not allowed.
    #[error("no deployment of this model is available right now")]
    NoDeployment { retry_after: Option<u64> },
}

impl ProviderError {
    /// The status and OpenAI error type a client sees.
    pub fn classify(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Status { status: 429, .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            Self::Status { status: 400, .. } => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            Self::Status {
                status: 401 | 403, ..
            } => (StatusCode::FORBIDDEN, "permission_error"),
            Self::Status { status: 404, .. } => (StatusCode::NOT_FOUND, "invalid_request_error"),
            Self::Status { status: 413, .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error")
            }
            Self::Status { status: 408, .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            // The upstream found the request itself wrong. Other 4xx (402 out of credit, 423,
            // ...) are the provider's state, not the caller's fault, and 5xx its failure: 502
            // below (503 is the gateway's own unavailability).
            Self::Status {
                status: 405 | 409 | 415 | 422,
                ..
            } => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            Self::Status { .. } => (StatusCode::BAD_GATEWAY, "api_error"),
            Self::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Self::Transport(_) | Self::Protocol(_) => (StatusCode::BAD_GATEWAY, "api_error"),
            Self::Identity(_) | Self::NoDeployment { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
            }
            Self::GuardrailIntervened { .. } => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        }
    }

    /// The low-cardinality reason records and metrics carry.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Identity(_) => "identity_unavailable",
            Self::GuardrailIntervened { .. } => "bedrock_guardrail",
            Self::NoDeployment { .. } => "no_deployment",
            _ => "upstream",
        }
    }

    /// What the records keep: the message, with the internal detail clients are not sent.
    pub fn detail(&self) -> String {
        match self {
            Self::Identity(d) => format!("{self}: {d}"),
            Self::Transport(d) | Self::Protocol(d) => format!("{self}: {d}"),
            other => other.to_string(),
        }
    }

    /// Short, for routing attempts and `error.type`: the status, or the kind of failure.
    pub fn kind(&self) -> String {
        match self {
            Self::Status { status, .. } => status.to_string(),
            Self::Timeout => "timeout".into(),
            Self::Transport(_) => "transport".into(),
            Self::Protocol(_) => "protocol".into(),
            Self::Identity(_) => "identity".into(),
            Self::GuardrailIntervened { .. } => "guardrail".into(),
            Self::NoDeployment { .. } => "no_deployment".into(),
        }
    }

    /// Worth trying another deployment (rate limits, server errors, timeouts).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Timeout | Self::Transport(_) => true,
            Self::Protocol(_)
            | Self::Identity(_)
            | Self::GuardrailIntervened { .. }
            | Self::NoDeployment { .. } => false,
        }
    }
}

/// A provider call in flight.
pub type ProviderCall<'a, T> = Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// The contract every model provider implements.
pub trait ModelProvider: Send + Sync + 'static {
    /// The provider's kind, as configuration and records name it.
    fn name(&self) -> &'static str;

    /// One completion from the deployment `ctx.model`.
    fn complete<'a>(&'a self, ctx: CallContext<'a>) -> ProviderCall<'a, Completion>;

    /// A streamed completion; the call resolves once the stream is open.
    fn stream<'a>(&'a self, ctx: CallContext<'a>) -> ProviderCall<'a, EventStream>;
}

/// A configured provider.
pub type Provider = Arc<dyn ModelProvider>;

/// The provider of every catalogue model.
pub struct Providers {
    by_model: HashMap<String, Provider>,
    fallback: Provider,
    /// Present when some model is served by Bedrock (its STS sessions name the caller in records).
    pub bedrock: Option<bedrock::BedrockProvider>,
}

impl Providers {
    /// Builds the providers the catalogue's models name from the configuration.
    pub async fn build(
        raw: &RawConfig,
        catalogue: &Catalogue,
        aws_base_credentials: Option<&aws_credential_types::Credentials>,
    ) -> Result<Self, StartError> {
        let openai: Option<Provider> = if raw.providers.openai.base_url.is_empty() {
            None
        } else {
            let o = &raw.providers.openai;
            let key = std::env::var(&o.api_key_env).ok().filter(|k| !k.is_empty());
            Some(Arc::new(
                openai_compat::OpenAiProvider::new(
                    &o.base_url,
                    key,
                    Duration::from_millis(o.timeout_ms),
                )
                .map_err(|message| StartError::Provider {
                    provider: "openai",
                    message,
                })?,
            ))
        };
        let fallback: Provider = Arc::new(mock::MockProvider::new(raw.providers.mock.clone()));
        let bedrock = if catalogue.models().iter().any(|m| m.provider == "bedrock") {
            Some(bedrock::BedrockProvider::new(&raw.providers.bedrock, aws_base_credentials).await)
        } else {
            None
        };
        let by_model = catalogue
            .models()
            .iter()
            .map(|m| {
                let p: Provider = match (m.provider.as_str(), &openai, &bedrock, &m.mock) {
                    ("openai", Some(o), _, _) => o.clone(),
                    ("bedrock", _, Some(b), _) => Arc::new(b.clone()),
                    (_, _, _, Some(own)) => Arc::new(mock::MockProvider::new(own.clone())),
                    _ => fallback.clone(),
                };
                (m.id.clone(), p)
            })
            .collect();
        Ok(Self {
            by_model,
            fallback,
            bedrock,
        })
    }

    /// The provider that serves a (concrete) catalogue model.
    pub fn of(&self, model: &CatalogueModel) -> &dyn ModelProvider {
        self.by_model
            .get(&model.id)
            .unwrap_or(&self.fallback)
            .as_ref()
    }
}
