//! Model providers behind the gateway. Dispatch is an enum (no boxed futures on the hot path).
//! `mock` is the embedded default; `openai_compat` speaks to any OpenAI-compatible API.

pub mod mock;
pub mod openai_compat;

use std::pin::Pin;

use futures::Stream;
use http::StatusCode;

use crate::decision_log::Usage;
use crate::openai::{ChatRequest, Completion};

/// One event of a streamed completion.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    Finish(String),
    Usage(Usage),
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
            Self::Status { .. } => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            Self::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Self::Transport(_) | Self::Protocol(_) => (StatusCode::BAD_GATEWAY, "api_error"),
        }
    }

    /// Worth trying another deployment (rate limits, server errors, timeouts).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Timeout | Self::Transport(_) => true,
            Self::Protocol(_) => false,
        }
    }
}

/// A configured provider.
#[derive(Clone)]
pub enum Provider {
    Mock(mock::MockProvider),
    OpenAi(openai_compat::OpenAiProvider),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mock(_) => "mock",
            Self::OpenAi(_) => "openai",
        }
    }

    /// `upstream_model` replaces the client's model name.
    pub async fn complete(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
        traceparent: Option<&str>,
    ) -> Result<Completion, ProviderError> {
        match self {
            Self::Mock(p) => p.complete(request, upstream_model).await,
            Self::OpenAi(p) => p.complete(request, upstream_model, traceparent).await,
        }
    }

    pub async fn stream(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
        traceparent: Option<&str>,
    ) -> Result<EventStream, ProviderError> {
        match self {
            Self::Mock(p) => p.stream(request, upstream_model).await,
            Self::OpenAi(p) => p.stream(request, upstream_model, traceparent).await,
        }
    }
}
