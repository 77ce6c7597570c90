//! The MCP gateway: agents' tool calls through the same controls and the same signed record
//! as model calls. `docs/mcp.md` is the operator's description.
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | the `[mcp]` section: upstream servers, origins, limits |
//! | [`wire`] | JSON-RPC envelopes, the 2026-07-28 header checks, revision negotiation |
//! | [`upstream`] | an upstream server whatever its transport; the errors of a call |
//! | [`stdio`] | a local server, spawned, supervised and spoken to over stdio |
//! | [`remote`] | a remote server over Streamable HTTP, with the gateway's own credential |
//! | [`exchange`] | RFC 8693 token exchange for servers that must know the caller |
//! | [`catalogue`] | the servers' tools with their Cedar attributes; the namespacing rule |
//! | [`sessions`] | `Mcp-Session-Id` of the handshake-era revisions, bound to a principal |
//! | [`serve`] | the `/mcp` endpoint: admission, dispatch, forwarding, records |
//!
//! The official Rust SDK (`rmcp`) is not used: a gateway forwards results as the upstream
//! wrote them, and a typed model would re-serialise them (dropping what it does not know);
//! rmcp also speaks the handshake era only, while 2026-07-28's per-request `_meta` and header
//! checks are what a gateway in front of current clients must enforce. What the gateway
//! parses is kept to the envelope and the fields it decides on, each tested.

pub mod catalogue;
pub mod config;
pub mod exchange;
pub mod remote;
pub mod serve;
pub mod sessions;
pub mod stdio;
pub mod upstream;
pub mod wire;

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde_json::json;

use crate::state::AppState;
pub use catalogue::McpUpstreams;
pub use config::McpConfig;
use sessions::Sessions;

/// What the MCP endpoint shares across requests.
pub struct Mcp {
    pub upstreams: McpUpstreams,
    pub sessions: Sessions,
}

impl Mcp {
    pub fn new(config: &McpConfig) -> Self {
        Self {
            upstreams: McpUpstreams::new(config),
            sessions: Sessions::new(
                Duration::from_secs(config.session_idle_s),
                config.max_sessions,
            ),
        }
    }
}

/// The protected resource: the configured URI, else this gateway's `/mcp` as the client
/// reached it.
pub fn resource_uri(state: &AppState, host: Option<&str>) -> String {
    let configured = &state.config.raw.mcp.resource;
    if !configured.is_empty() {
        return configured.clone();
    }
    let host = host.unwrap_or(state.config.raw.server.listen.as_str());
    format!("http://{host}/mcp")
}

/// Where the protected-resource metadata of [`resource_uri`] is (RFC 9728: the well-known
/// path inserted before the resource's path).
pub fn metadata_url(state: &AppState, host: Option<&str>) -> String {
    let resource = resource_uri(state, host);
    match resource.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let path = if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            };
            format!("{scheme}://{authority}/.well-known/oauth-protected-resource{path}")
        }
        None => format!("{resource}/.well-known/oauth-protected-resource"),
    }
}

/// `GET /.well-known/oauth-protected-resource[/mcp]`: RFC 9728 metadata naming the
/// authorization servers whose tokens the gateway takes.
pub fn protected_resource(state: &AppState, headers: &HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let mcp = &state.config.raw.mcp;
    let servers = if mcp.authorization_servers.is_empty() {
        let issuer = &state.config.raw.auth.oidc.issuer;
        if issuer.is_empty() {
            Vec::new()
        } else {
            vec![issuer.clone()]
        }
    } else {
        mcp.authorization_servers.clone()
    };
    axum::Json(json!({
        "resource": resource_uri(state, host),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "Cairn MCP gateway",
    }))
    .into_response()
}

/// `GET /mcp`: no server-initiated stream (2026-07-28 removed it; earlier revisions let a
/// server refuse it with 405).
pub fn get_not_allowed() -> Response {
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({ "jsonrpc": "2.0", "id": null,
            "error": { "code": wire::code::INVALID_REQUEST, "message": "POST one JSON-RPC message per request; the gateway opens no GET stream" } })),
    )
        .into_response();
    resp.headers_mut().insert(
        header::ALLOW,
        http::HeaderValue::from_static("POST, DELETE"),
    );
    resp
}
