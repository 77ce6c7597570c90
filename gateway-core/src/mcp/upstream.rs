//! What the gateway needs of an upstream MCP server, whatever its transport: a local one over
//! stdio ([`super::stdio`]) or a remote one over Streamable HTTP ([`super::remote`]).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::config::McpServerConfig;
use super::remote::RemoteServer;
use super::stdio::StdioServer;
use super::wire::{META_CAPABILITIES, META_CLIENT_INFO, META_VERSION};

/// Why an upstream call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("the MCP server `{server}` could not be started: {reason}")]
    Start { server: String, reason: String },
    #[error("the MCP server `{server}` exited before answering")]
    Exited { server: String },
    #[error("the MCP server `{server}` did not answer within {ms} ms")]
    Timeout { server: String, ms: u64 },
    #[error("the MCP server `{server}` sent a message larger than {limit} bytes")]
    TooLarge { server: String, limit: usize },
    #[error("the MCP server `{server}` could not be reached: {reason}")]
    Http { server: String, reason: String },
    #[error("the MCP server `{server}` refused `{method}`: {error}")]
    Refused {
        server: String,
        method: String,
        error: String,
    },
    #[error("no token for the MCP server `{server}`: {error}")]
    Exchange {
        server: String,
        error: super::exchange::ExchangeError,
    },
}

impl UpstreamError {
    /// What a client may be told: the kind of failure, without paths, URLs or messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Start { .. } => "it could not be started",
            Self::Exited { .. } => "it exited before answering",
            Self::Timeout { .. } => "it did not answer in time",
            Self::TooLarge { .. } => "its answer was too large",
            Self::Http { .. } => "it could not be reached",
            Self::Refused { .. } => "it refused the request",
            Self::Exchange {
                error: super::exchange::ExchangeError::NoSubjectToken,
                ..
            } => {
                "it takes only exchanged OAuth tokens, and the caller authenticated with an API key"
            }
            Self::Exchange { .. } => "no token could be obtained for it (token exchange)",
        }
    }

    /// Low-cardinality name for records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Start { .. } => "upstream_start",
            Self::Exited { .. } => "upstream_exited",
            Self::Timeout { .. } => "upstream_timeout",
            Self::TooLarge { .. } => "upstream_too_large",
            Self::Http { .. } => "upstream_unreachable",
            Self::Refused { .. } => "upstream_refused",
            Self::Exchange { .. } => "token_exchange",
        }
    }
}

/// How the gateway talks to a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// After `initialize`: the revision the server answered.
    Handshake(String),
    /// Stateless (2026-07-28): `_meta` on every request.
    Modern(String),
}

impl Mode {
    pub fn version(&self) -> &str {
        match self {
            Self::Handshake(v) | Self::Modern(v) => v,
        }
    }
}

/// One upstream server.
pub enum Server {
    Stdio(Box<StdioServer>),
    Remote(Box<RemoteServer>),
}

impl Server {
    pub fn new(config: McpServerConfig, timeout: Duration, max_message: usize) -> Self {
        if config.url.is_some() {
            Self::Remote(Box::new(RemoteServer::new(config, timeout, max_message)))
        } else {
            Self::Stdio(Box::new(StdioServer::new(config, timeout, max_message)))
        }
    }

    pub fn config(&self) -> &McpServerConfig {
        match self {
            Self::Stdio(s) => &s.config,
            Self::Remote(s) => &s.config,
        }
    }

    pub fn name(&self) -> &str {
        &self.config().name
    }

    /// Set when the tool list must be read again (a restart, a new session, a change notice).
    pub fn tools_stale(&self) -> &Arc<AtomicBool> {
        match self {
            Self::Stdio(s) => &s.tools_stale,
            Self::Remote(s) => &s.tools_stale,
        }
    }

    /// Whether it is connected (a running process, an open session).
    pub async fn running(&self) -> bool {
        match self {
            Self::Stdio(s) => s.running().await,
            Self::Remote(s) => s.running().await,
        }
    }

    /// The revision spoken and the server's self-description, connecting first when needed.
    pub async fn info(&self) -> Result<(Mode, Value), UpstreamError> {
        match self {
            Self::Stdio(s) => s.info().await,
            Self::Remote(s) => s.info().await,
        }
    }

    /// One request of the gateway's own; its response object as the server wrote it.
    pub async fn request(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        match self {
            Self::Stdio(s) => s.request(method, params).await,
            Self::Remote(s) => s.request(method, params, None).await,
        }
    }

    /// One request on a caller's behalf: `subject` is the caller's OAuth token, exchanged for
    /// one for this server when the server is configured so (and never sent itself).
    pub async fn request_for(
        &self,
        method: &str,
        params: Map<String, Value>,
        subject: Option<&str>,
    ) -> Result<Value, UpstreamError> {
        match self {
            Self::Stdio(s) => s.request(method, params).await,
            Self::Remote(s) => s.request_for(method, params, subject).await,
        }
    }
}

/// How the gateway names itself to upstream servers.
pub fn client_info() -> Value {
    json!({ "name": "cairn-gateway", "version": env!("CARGO_PKG_VERSION") })
}

/// `_meta` for a stateless server; the handshake era carries none.
pub fn with_meta(mode: &Mode, mut params: Map<String, Value>) -> Map<String, Value> {
    if let Mode::Modern(version) = mode {
        let meta = params
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = meta.as_object_mut() {
            m.insert(META_VERSION.into(), json!(version));
            m.entry(META_CAPABILITIES).or_insert(json!({}));
            m.entry(META_CLIENT_INFO).or_insert_with(client_info);
        }
    }
    params
}
