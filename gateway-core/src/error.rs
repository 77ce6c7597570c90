//! Errors. `GatewayError` is how a request ends badly; one exhaustive `match` gives its HTTP
//! status, its OpenAI error `type`, and a low-cardinality `reason` that the decision record and
//! metrics carry. Messages sent to clients never contain internal detail.

use std::path::PathBuf;

use http::StatusCode;
use miette::Diagnostic;
use thiserror::Error;

use crate::authn::AuthError;
use crate::limits::Exceeded;
use crate::providers::ProviderError;

/// The decision log could not make a record durable.
#[derive(Debug, Clone, Error)]
pub enum LogError {
    #[error("decision records cannot be written")]
    Unavailable,
    #[error("the decision log is closed")]
    Closed,
    #[error("a record could not be encoded: {0}")]
    Encode(String),
}

#[derive(Debug, Error, Diagnostic)]
#[error("invalid configuration{}:\n  - {}", file.as_ref().map(|f| format!(" in `{}`", f.display())).unwrap_or_default(), problems.join("\n  - "))]
#[diagnostic(
    code(cairn::config),
    help("see docs/gateway.md for every key and its default")
)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub problems: Vec<String>,
}

/// Why the gateway could not start.
#[derive(Debug, Error, Diagnostic)]
pub enum StartError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on `{addr}`: {source}")]
    #[diagnostic(
        code(cairn::gateway::listen),
        help("pick a free address with --listen, e.g. 127.0.0.1:0")
    )]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the record signing key: {0}")]
    #[diagnostic(
        code(cairn::gateway::signing_key),
        help("set `records.signing_key` to an Ed25519 private key (cairn keys generate)")
    )]
    SigningKey(String),
    #[error("cannot load the bundle public key: {0}")]
    #[diagnostic(
        code(cairn::gateway::public_key),
        help("set `policy.public_key` to the key that signs your bundles")
    )]
    PublicKey(String),
    #[error("invalid API key configuration: {0}")]
    #[diagnostic(
        code(cairn::gateway::api_keys),
        help(
            "each `[[auth.api_keys]]` needs a `sha256` of the key and a principal (docs/gateway.md)"
        )
    )]
    ApiKeys(String),
    #[error("invalid OIDC configuration: {0}")]
    #[diagnostic(
        code(cairn::gateway::oidc),
        help("see `[auth.oidc]` in docs/gateway.md")
    )]
    Oidc(String),
    #[error("invalid limits configuration: {0}")]
    #[diagnostic(
        code(cairn::gateway::limits),
        help("see `[limits]` in docs/gateway.md")
    )]
    Limits(String),
    #[error("cannot set up the `{provider}` provider: {message}")]
    #[diagnostic(
        code(cairn::gateway::provider),
        help("see `[providers]` in docs/gateway.md")
    )]
    Provider {
        provider: &'static str,
        message: String,
    },
    #[error("the record checkpoint store `records.checkpoint_dir` cannot be opened: {0}")]
    #[diagnostic(
        code(cairn::gateway::checkpoints),
        help(
            "a directory outside records.dir, or s3://bucket/prefix with AWS credentials in the environment"
        )
    )]
    Checkpoints(String),
    #[error("the bundle deposit store `policy.deposit_dir` cannot be opened: {0}")]
    #[diagnostic(
        code(cairn::gateway::deposit),
        help("a directory, or s3://bucket/prefix with AWS credentials in the environment")
    )]
    Deposit(String),
}

/// Why no verified bundle is in force: the last load's failure, kept for `/readyz` and startup.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct BundleError(pub String);

/// How a request ends when it does not get a completion.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("the request body could not be read: {0}")]
    BodyUnreadable(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Unauthenticated(AuthError),
    #[error("the model `{0}` does not exist or you do not have access to it")]
    UnknownModel(String),
    #[error("denied by policy: {}", if reasons.is_empty() { "no policy permits this request".to_string() } else { reasons.join(", ") })]
    Denied { reasons: Vec<String> },
    #[error("no verified policy bundle is loaded")]
    NoBundle,
    #[error("the policy bundle does not fit this request: {0}")]
    PolicyMismatch(crate::authz::DecideError),
    #[error("the decision could not be recorded")]
    RecordsUnavailable,
    #[error("{0}")]
    Upstream(ProviderError),
    #[error("the request took longer than {0} ms")]
    Timeout(u64),
    #[error("{}", .0.message())]
    LimitExceeded(Exceeded),
    /// The limits backend failed and the gateway fails closed. The detail goes to the record,
    /// not to the client.
    #[error("budgets and rate limits cannot be checked right now; retry shortly")]
    LimitsUnavailable(String),
    #[error("the prompt was blocked by the gateway's guardrails ({})", .0.join(", "))]
    GuardrailBlocked(Vec<&'static str>),
}

impl GatewayError {
    /// (HTTP status, OpenAI error type, reason for records and metrics).
    pub fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "body_too_large",
            ),
            Self::InvalidBody(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_body",
            ),
            Self::BodyUnreadable(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "body_unreadable",
            ),
            Self::InvalidRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
            ),
            Self::Unauthenticated(e) => {
                (StatusCode::UNAUTHORIZED, "authentication_error", e.reason())
            }
            Self::UnknownModel(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unknown_model",
            ),
            Self::Denied { .. } => (StatusCode::FORBIDDEN, "permission_error", "policy"),
            Self::NoBundle => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "no_bundle",
            ),
            Self::PolicyMismatch(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "policy_mismatch",
            ),
            Self::RecordsUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "records_unavailable",
            ),
            Self::Upstream(e) => {
                let (status, kind) = e.classify();
                (status, kind, e.reason())
            }
            Self::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout", "timeout"),
            Self::LimitExceeded(e) => {
                let kind = match e.metric {
                    "requests_per_minute" => "requests",
                    "tokens_per_minute" => "tokens",
                    _ => "insufficient_quota",
                };
                (StatusCode::TOO_MANY_REQUESTS, kind, e.reason())
            }
            Self::LimitsUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "limits_unavailable",
            ),
            Self::GuardrailBlocked(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "guardrail_blocked",
            ),
        }
    }

    /// The OpenAI `code` field.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::BodyTooLarge { .. } => Some("request_too_large"),
            Self::Unauthenticated(_) => Some("invalid_api_key"),
            Self::UnknownModel(_) => Some("model_not_found"),
            Self::Denied { .. } => Some("policy_denied"),
            Self::Upstream(ProviderError::Status { status: 429, .. }) => {
                Some("rate_limit_exceeded")
            }
            Self::Upstream(ProviderError::GuardrailIntervened { .. }) => {
                Some("guardrail_intervened")
            }
            Self::LimitExceeded(e) if e.reason() == "budget_exceeded" => Some("insufficient_quota"),
            Self::LimitExceeded(_) => Some("rate_limit_exceeded"),
            Self::GuardrailBlocked(_) => Some("content_policy_violation"),
            _ => None,
        }
    }

    /// Seconds for a `Retry-After` header.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Upstream(ProviderError::Status { retry_after, .. }) => *retry_after,
            Self::Upstream(ProviderError::NoDeployment { retry_after }) => retry_after.or(Some(1)),
            Self::Upstream(ProviderError::Identity(_)) => Some(1),
            Self::LimitExceeded(e) => Some(e.retry_after_s.max(1)),
            Self::NoBundle | Self::RecordsUnavailable | Self::LimitsUnavailable(_) => Some(1),
            _ => None,
        }
    }
}
