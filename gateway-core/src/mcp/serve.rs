//! `POST /mcp` and `POST /mcp/{server}`: MCP over Streamable HTTP, through the same admission
//! stages as a model call. Reads top to bottom: [`post`] admits (origin, authenticate, the
//! body, the revision's checks, then the method) and answers; every answered request, refusals
//! included, has its decision record durable before the answer leaves.
//!
//! What is decided: `tools/call` by Cedar (`call_tool` on the `Tool`, arguments as tags),
//! `prompts/get` (`get_prompt` on the `Prompt`, arguments as tags) and `resources/read`
//! (`read_resource` on the `McpResource`); the lists per item: a tool or a prompt is listed
//! when some request for it could be allowed (its arguments unknown), a resource when reading
//! it is allowed, a resource template when some read of a URI it names could be. `initialize`,
//! `server/discover`, `ping` and notifications are answered by the gateway after
//! authentication. Methods the gateway does not serve (completion, subscriptions, logging) are
//! refused as unknown, so nothing reaches an upstream undecided.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::catalogue::{self, Upstream};
use super::upstream::UpstreamError;
use super::wire::{self, Message, RpcError, code};
use crate::admission::resource::{self, Classification};
use crate::admission::{
    Admission, McpSpan, SpanEnd, authenticate, body, extra, guard, refuse_with,
};
use crate::admission::{decide, reserve};
use crate::authn::Principal;
use crate::authz::tools::{self as cedar_mcp, Kind, McpAsk, Unknowns};
use crate::decision_log::{Outcome, Record};
use crate::error::GatewayError;
use crate::guardrails::{Action, Verdict};
use crate::state::AppState;
use crate::{clock, mcp};

/// Requests the gateway answers itself after authentication: `initialize`, `server/discover`,
/// `ping`, notifications, the end of a session.
pub const MCP_REQUEST: &str = "Action::\"mcp_request\"";
/// A tool listing (each tool decided as `call_tool` with the arguments unknown).
pub const LIST_TOOLS: &str = "Action::\"list_tools\"";
/// A prompt listing (each prompt decided as `get_prompt` with the arguments unknown).
pub const LIST_PROMPTS: &str = "Action::\"list_prompts\"";
/// A resource or template listing (each decided as `read_resource`).
pub const LIST_RESOURCES: &str = "Action::\"list_resources\"";

/// Which revision a request speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Era {
    /// 2026-07-28: stateless, `_meta` on every request.
    Modern(String),
    /// 2025-06-18 / 2025-11-25: a session opened by `initialize`.
    Handshake { version: String },
}

impl Era {
    fn version(&self) -> &str {
        match self {
            Self::Modern(v) | Self::Handshake { version: v } => v,
        }
    }

    fn modern(&self) -> bool {
        matches!(self, Self::Modern(_))
    }
}

/// What is known of the request so far, for its record, its span and an error's `id`.
#[derive(Default)]
struct Seen {
    id: Option<Value>,
    method: Option<String>,
    /// The tool's or prompt's name, or the resource's URI, as the client asked for it.
    name: Option<String>,
    server: Option<String>,
    session: Option<String>,
    version: Option<String>,
    extra: Map<String, Value>,
}

/// A request refused before it was served.
struct Fail {
    status: StatusCode,
    error: RpcError,
    reason: &'static str,
    /// The gateway-level error, when the refusal came from an admission stage.
    cause: Option<String>,
    /// Seconds for `Retry-After` (rate limits).
    retry_after: Option<u64>,
}

impl Fail {
    fn new(
        status: StatusCode,
        code: i64,
        message: impl Into<String>,
        reason: &'static str,
    ) -> Box<Self> {
        Self::rpc(status, RpcError::new(code, message), reason)
    }

    fn rpc(status: StatusCode, error: RpcError, reason: &'static str) -> Box<Self> {
        Box::new(Self {
            status,
            error,
            reason,
            cause: None,
            retry_after: None,
        })
    }

    /// An admission stage's error in JSON-RPC's terms. A decided refusal (policy, guardrail) is
    /// a JSON-RPC error on 200, as an MCP server answers; what is not the client's to fix keeps
    /// its HTTP status.
    fn gateway(e: GatewayError, decision_id: &str) -> Box<Self> {
        let (status, _, reason) = e.classify();
        let message = e.to_string();
        let retry_after = e.retry_after();
        let (status, code, data) = match &e {
            GatewayError::Unauthenticated(_) => (status, code::UNAUTHENTICATED, None),
            GatewayError::Denied { reasons } => (
                StatusCode::OK,
                code::DENIED,
                Some(json!({ "decision_id": decision_id, "policies": reasons })),
            ),
            GatewayError::GuardrailBlocked(kinds) => (
                StatusCode::OK,
                code::BLOCKED,
                Some(json!({ "decision_id": decision_id, "detectors": kinds })),
            ),
            GatewayError::LimitExceeded(_) => (status, code::LIMITED, None),
            GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyUnreadable(_)
            | GatewayError::InvalidBody(_) => (status, code::INVALID_REQUEST, None),
            GatewayError::InvalidRequest(_) => {
                (StatusCode::BAD_REQUEST, code::INVALID_PARAMS, None)
            }
            GatewayError::NoBundle
            | GatewayError::PolicyMismatch(_)
            | GatewayError::RecordsUnavailable
            | GatewayError::LimitsUnavailable(_) => (status, code::UNAVAILABLE, None),
            _ => (status, code::INTERNAL_ERROR, None),
        };
        let mut error = RpcError::new(code, message);
        error.data = data;
        let cause = match e {
            GatewayError::Denied { .. } => None,
            other => Some(other.to_string()),
        };
        Box::new(Self {
            status,
            error,
            reason,
            cause,
            retry_after,
        })
    }

    /// The client learns what kind of failure it was; the record keeps the detail (program
    /// paths, URLs and upstream messages stay with the gateway).
    fn upstream(e: &UpstreamError, decision_id: &str) -> Box<Self> {
        let mut f = Self::rpc(
            StatusCode::OK,
            RpcError::new(
                code::UPSTREAM,
                format!("the tool's server failed: {}", e.kind()),
            )
            .with_data(json!({ "decision_id": decision_id })),
            e.reason(),
        );
        f.cause = Some(e.to_string());
        f
    }
}

/// Who asked what, where: the inputs of the method handlers.
#[derive(Clone, Copy)]
struct Asked<'a> {
    state: &'a AppState,
    principal: &'a Principal,
    peer: SocketAddr,
    headers: &'a HeaderMap,
    scope: Option<&'a str>,
}

/// What an admitted request gets.
enum Plan {
    /// Answered by the gateway.
    Local {
        result: Value,
        reason: &'static str,
        resource: Option<String>,
        /// A session minted by `initialize`.
        opened: Option<String>,
    },
    /// A notification: 202, no body.
    Accepted,
    /// A tool call, a prompt or a read, allowed: forwarded once its record is durable.
    Call(Box<Call>),
}

struct Call {
    upstream: Arc<Upstream>,
    kind: Kind,
    /// The tool's or the prompt's name on its server, or the resource's URI there.
    target: String,
    params: Map<String, Value>,
    classification: String,
    force: Option<Action>,
    era: Era,
    /// Rate limits: the call counts once it is forwarded.
    reservation: Option<crate::limits::Reservation>,
    /// At `/mcp`: resource links in the answer are namespaced.
    namespace: bool,
    /// The caller's OAuth token, for servers that take a token exchanged for it.
    subject: Option<String>,
}

impl Call {
    fn method(&self) -> &'static str {
        match self.kind {
            Kind::Tool => "tools/call",
            Kind::Prompt => "prompts/get",
            Kind::Resource => "resources/read",
        }
    }
}

pub async fn post(
    state: Arc<AppState>,
    peer: SocketAddr,
    headers: HeaderMap,
    scope: Option<String>,
    body: Body,
) -> Response {
    let mut adm = Admission::new(&headers, state.exporter.is_some(), MCP_REQUEST);
    let mut seen = Seen {
        server: scope.clone(),
        ..Seen::default()
    };
    match admit(
        &state,
        &mut adm,
        &mut seen,
        peer,
        &headers,
        scope.as_deref(),
        body,
    )
    .await
    {
        // A call runs in its own task: a client that goes away mid-call cancels nothing, and
        // the call still gets its outcome record, its span and its metrics.
        Ok(plan @ Plan::Call(_)) => {
            let task_state = state.clone();
            let task = tokio::spawn(async move { answer(&task_state, adm, seen, plan).await });
            match task.await {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::error!(error = %e, "an MCP call's task failed");
                    let body =
                        wire::error(None, &RpcError::new(code::INTERNAL_ERROR, "internal error"));
                    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
                }
            }
        }
        Ok(plan) => answer(&state, adm, seen, plan).await,
        Err(fail) => refuse(&state, adm, seen, fail, &headers).await,
    }
}

/// `DELETE /mcp`: a handshake-era client ends its session.
pub async fn delete(state: Arc<AppState>, headers: HeaderMap) -> Response {
    let mut adm = Admission::new(&headers, state.exporter.is_some(), MCP_REQUEST);
    let seen = Seen {
        method: Some("session/delete".into()),
        ..Seen::default()
    };
    if let Err(fail) = check_origin(&state, &headers) {
        return refuse(&state, adm, seen, fail, &headers).await;
    }
    let principal = match authenticate::run(&state, &mut adm, &headers).await {
        Ok(p) => p,
        Err(e) => {
            let fail = Fail::gateway(e, &adm.scope.decision_id);
            return refuse(&state, adm, seen, fail, &headers).await;
        }
    };
    let id = headers
        .get(wire::SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !state.mcp.sessions.close(id, &principal.uid()) {
        let fail = Fail::new(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "no such session",
            "unknown_session",
        );
        return refuse(&state, adm, seen, fail, &headers).await;
    }
    let plan = Plan::Local {
        result: Value::Null,
        reason: "session_end",
        resource: None,
        opened: None,
    };
    let mut resp = answer(&state, adm, seen, plan).await;
    if resp.status() == StatusCode::OK {
        *resp.status_mut() = StatusCode::NO_CONTENT;
        *resp.body_mut() = Body::empty();
    }
    resp
}

async fn admit(
    state: &AppState,
    adm: &mut Admission,
    seen: &mut Seen,
    peer: SocketAddr,
    headers: &HeaderMap,
    scope: Option<&str>,
    body: Body,
) -> Result<Plan, Box<Fail>> {
    let gw = |e: GatewayError, adm: &Admission| Fail::gateway(e, &adm.scope.decision_id);
    check_origin(state, headers)?;
    let principal = match authenticate::run(state, adm, headers).await {
        Ok(p) => p,
        Err(e) => return Err(gw(e, adm)),
    };
    // After authentication: who may not connect does not learn which servers exist.
    if let Some(s) = scope
        && state.mcp.upstreams.get(s).is_none()
    {
        return Err(Fail::new(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            format!("no MCP server is named `{s}`"),
            "unknown_server",
        ));
    }
    let bytes = match body::read(state, body).await {
        Ok(b) => b,
        Err(e) => return Err(gw(e, adm)),
    };
    let msg =
        wire::parse(&bytes).map_err(|e| Fail::rpc(StatusCode::BAD_REQUEST, e, "invalid_body"))?;
    seen.id = msg.id.clone();
    seen.method = Some(msg.method.clone());
    let era = era(state, seen, headers, &msg, &principal)?;
    seen.version = Some(era.version().to_string());
    if msg.is_notification() {
        return Ok(Plan::Accepted);
    }
    let asked = Asked {
        state,
        principal: &principal,
        peer,
        headers,
        scope,
    };
    match msg.method.as_str() {
        "initialize" => initialize(state, &msg, &principal, seen),
        "ping" => Ok(local(json!({}), "ping")),
        "server/discover" if era.modern() => Ok(local(discover(state), "discover")),
        "tools/list" => {
            let result = list_tools(&asked, adm, seen, &era).await?;
            adm.record.action = Some(LIST_TOOLS.into());
            Ok(Plan::Local {
                result,
                reason: "list",
                resource: Some("Tool::\"*\"".into()),
                opened: None,
            })
        }
        "tools/call" => call_tool(&asked, adm, seen, msg, era).await,
        "prompts/list" => {
            let result = list_items(&asked, adm, seen, &era, &PROMPTS).await?;
            adm.record.action = Some(LIST_PROMPTS.into());
            Ok(listed(result, "Prompt::\"*\""))
        }
        "resources/list" => {
            let result = list_items(&asked, adm, seen, &era, &RESOURCES).await?;
            adm.record.action = Some(LIST_RESOURCES.into());
            Ok(listed(result, "McpResource::\"*\""))
        }
        "resources/templates/list" => {
            let result = list_items(&asked, adm, seen, &era, &TEMPLATES).await?;
            adm.record.action = Some(LIST_RESOURCES.into());
            Ok(listed(result, "McpResource::\"*\""))
        }
        "prompts/get" => get_prompt(&asked, adm, seen, msg, era).await,
        "resources/read" => read_resource(&asked, adm, seen, &msg, era).await,
        other => Err(Fail::new(
            if era.modern() {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            },
            code::METHOD_NOT_FOUND,
            format!("the gateway does not serve `{other}`"),
            "unknown_method",
        )),
    }
}

fn listed(result: Value, resource: &str) -> Plan {
    Plan::Local {
        result,
        reason: "list",
        resource: Some(resource.into()),
        opened: None,
    }
}

fn local(result: Value, reason: &'static str) -> Plan {
    Plan::Local {
        result,
        reason,
        resource: None,
        opened: None,
    }
}

/// The DNS-rebinding check: a browser's request names its origin, which must be allowed.
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), Box<Fail>> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    if state
        .config
        .raw
        .mcp
        .allowed_origins
        .iter()
        .any(|o| o == origin)
    {
        return Ok(());
    }
    Err(Fail::new(
        StatusCode::FORBIDDEN,
        code::INVALID_REQUEST,
        format!("origin `{origin}` is not allowed (mcp.allowed_origins)"),
        "origin",
    ))
}

/// The revision of a request: its `_meta` (2026-07-28, with the header checks), an
/// `initialize`, or the session it names.
fn era(
    state: &AppState,
    seen: &mut Seen,
    headers: &HeaderMap,
    msg: &Message,
    principal: &Principal,
) -> Result<Era, Box<Fail>> {
    if msg.meta_version().is_some() {
        // Header mismatches, unsupported revisions and malformed `_meta` are all 400.
        return wire::check_modern(headers, msg)
            .map(Era::Modern)
            .map_err(|e| Fail::rpc(StatusCode::BAD_REQUEST, e, "protocol"));
    }
    if msg.method == "initialize" {
        let offered = msg.str_param("protocolVersion");
        return Ok(Era::Handshake {
            version: wire::negotiate_handshake(offered).to_string(),
        });
    }
    let session = headers
        .get(wire::SESSION_HEADER)
        .and_then(|v| v.to_str().ok());
    let Some(id) = session else {
        return Err(Fail::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "no session: send `initialize` first (2025-11-25 and earlier), or carry the protocol version in params._meta (2026-07-28)",
            "no_session",
        ));
    };
    seen.session = Some(id.to_string());
    let Some(version) = state.mcp.sessions.touch(id, &principal.uid()) else {
        return Err(Fail::new(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "unknown or expired session: initialize again",
            "unknown_session",
        ));
    };
    if let Some(h) = headers.get(wire::PROTOCOL_VERSION_HEADER)
        && h.to_str().ok() != Some(version.as_str())
    {
        return Err(Fail::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            format!("MCP-Protocol-Version does not match the session's revision `{version}`"),
            "protocol",
        ));
    }
    Ok(Era::Handshake { version })
}

fn server_info() -> Value {
    json!({ "name": "cairn-gateway", "title": "Cairn MCP gateway", "version": env!("CARGO_PKG_VERSION") })
}

const INSTRUCTIONS: &str = "Tools of several servers, named server__tool. Every call is authorized by policy and recorded.";

fn initialize(
    state: &AppState,
    msg: &Message,
    principal: &Principal,
    seen: &mut Seen,
) -> Result<Plan, Box<Fail>> {
    let version = wire::negotiate_handshake(msg.str_param("protocolVersion"));
    let Some(session) = state.mcp.sessions.open(&principal.uid(), version) else {
        return Err(Fail::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::UNAVAILABLE,
            "the gateway holds as many sessions as it may (mcp.max_sessions); retry later",
            "sessions_full",
        ));
    };
    if let Some(info) = msg.params.get("clientInfo") {
        seen.extra.insert("client".into(), client_summary(info));
    }
    seen.session = Some(session.clone());
    Ok(Plan::Local {
        result: json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": { "listChanged": false },
                "prompts": { "listChanged": false },
                "resources": { "listChanged": false, "subscribe": false },
            },
            "serverInfo": server_info(),
            "instructions": INSTRUCTIONS,
        }),
        reason: "initialize",
        resource: None,
        opened: Some(session),
    })
}

fn discover(_state: &AppState) -> Value {
    json!({
        "resultType": "complete",
        "supportedVersions": wire::MODERN,
        "capabilities": { "tools": {}, "prompts": {}, "resources": {} },
        "_meta": { (wire::META_SERVER_INFO): server_info() },
        "instructions": INSTRUCTIONS,
        "ttlMs": 0,
        "cacheScope": "private",
    })
}

/// The client's self-description, cut to name and version.
fn client_summary(info: &Value) -> Value {
    let cut = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(64).collect::<String>())
    };
    json!({ "name": cut("name"), "version": cut("version") })
}

/// The servers a request reaches: one at `/mcp/{server}`, all at `/mcp`.
fn servers<'a>(state: &'a AppState, scope: Option<&str>) -> Vec<&'a Arc<Upstream>> {
    match scope {
        Some(s) => state.mcp.upstreams.get(s).into_iter().collect(),
        None => state.mcp.upstreams.all().iter().collect(),
    }
}

/// The Cedar context of a tool call, without `arguments` (added by the decision).
fn tool_context(
    c: &Classification,
    peer: &SocketAddr,
    names: Vec<String>,
    findings: Vec<&str>,
) -> Value {
    json!({
        "data_classification": c.label,
        "data_level": c.level,
        "source_ip": peer.ip().to_string(),
        "request_time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "argument_names": names,
        "guardrail_findings": findings,
    })
}

async fn list_tools(
    asked: &Asked<'_>,
    adm: &mut Admission,
    seen: &mut Seen,
    era: &Era,
) -> Result<Value, Box<Fail>> {
    let Asked {
        state,
        principal,
        peer,
        headers,
        scope,
    } = *asked;
    let engine =
        decide::engine(adm, state).map_err(|e| Fail::gateway(e, &adm.scope.decision_id))?;
    let class = resource::classification(state, headers)
        .map_err(|e| Fail::gateway(e, &adm.scope.decision_id))?;
    let context = tool_context(&class, &peer, Vec::new(), Vec::new());
    let mut listed = Vec::new();
    let mut filtered = 0usize;
    let mut unavailable = Vec::new();
    let stage = adm.scope.stage(state, "policy");
    for up in servers(state, scope) {
        let tools = match up.tools().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "tools/list: a server's tools are left out");
                unavailable.push(up.name().to_string());
                continue;
            }
        };
        for t in tools.iter() {
            let ask = McpAsk {
                kind: Kind::Tool,
                server: &t.server,
                server_attrs: &up.entity_attrs,
                id: &t.id,
                attrs: &t.attrs,
                context: &context,
            };
            let could =
                cedar_mcp::could(&engine, principal, ask, Unknowns::Arguments).map_err(|e| {
                    Fail::gateway(GatewayError::PolicyMismatch(e), &adm.scope.decision_id)
                })?;
            if could {
                listed.push(t.listed(scope.is_none()));
            } else {
                filtered += 1;
            }
        }
    }
    drop(stage);
    seen.extra.insert("listed".into(), json!(listed.len()));
    seen.extra.insert("filtered".into(), json!(filtered));
    if !unavailable.is_empty() {
        seen.extra.insert("unavailable".into(), json!(unavailable));
    }
    adm.record.context = Some(context);
    let mut result = json!({ "tools": listed });
    if era.modern() {
        result["resultType"] = json!("complete");
        // Filtered per principal, and a bundle reload can change it: not for shared caches.
        result["ttlMs"] = json!(0);
        result["cacheScope"] = json!("private");
    }
    Ok(result)
}

async fn call_tool(
    asked: &Asked<'_>,
    adm: &mut Admission,
    seen: &mut Seen,
    mut msg: Message,
    era: Era,
) -> Result<Plan, Box<Fail>> {
    let (state, principal, scope) = (asked.state, asked.principal, asked.scope);
    adm.record.action = Some(cedar_mcp::CALL_TOOL.into());
    let decision_id = adm.scope.decision_id.clone();
    let gw = |e: GatewayError| Fail::gateway(e, &decision_id);
    let invalid = |m: String, reason: &'static str| {
        Fail::rpc(
            StatusCode::OK,
            RpcError::new(code::INVALID_PARAMS, m),
            reason,
        )
    };
    let Some(name) = msg.str_param("name").map(str::to_string) else {
        return Err(invalid(
            "`params.name` must be a string".into(),
            "invalid_params",
        ));
    };
    seen.name = Some(name.clone());
    let (upstream, tool_name) = resolve(state, scope, &name, catalogue::split);
    let unknown = || {
        invalid(
            format!(
                "unknown tool `{name}`{}",
                if scope.is_none() {
                    ": tools here are named server__tool (see tools/list)"
                } else {
                    ""
                }
            ),
            "unknown_tool",
        )
    };
    let Some(upstream) = upstream else {
        return Err(unknown());
    };
    seen.server = Some(upstream.name().to_string());
    let tool = upstream
        .tool(tool_name)
        .await
        .map_err(|e| Fail::upstream(&e, &decision_id))?
        .ok_or_else(unknown)?;
    adm.record.resource = Some(format!("Tool::{}", Value::String(tool.id.clone())));
    adm.record.resource_attrs = Some(tool.attrs.clone());
    seen.extra.insert("tool".into(), json!(tool.name));

    let mut arguments = match msg.params.remove("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(invalid(
                "`params.arguments` must be an object".into(),
                "invalid_arguments",
            ));
        }
    };
    seen.extra
        .insert("arguments".into(), argument_summary(&arguments));
    if era.modern()
        && let Some(schema) = tool.definition.get("inputSchema")
    {
        wire::check_param_headers(asked.headers, schema, &arguments)
            .map_err(|e| Fail::rpc(StatusCode::BAD_REQUEST, e, "protocol"))?;
    }
    if let Err(problem) = check_arguments(&tool.definition, &arguments) {
        return Err(invalid(
            format!("arguments of `{name}` do not match its input schema: {problem}"),
            "invalid_arguments",
        ));
    }

    let class = resource::classification(state, asked.headers).map_err(gw)?;
    let force = Action::parse(&upstream.server.config().guardrails);
    let mut args_value = Value::Object(std::mem::take(&mut arguments));
    let verdict = if state.guardrails.enabled() {
        guard::input(state, adm, &class.label, |g| {
            g.check_json(&mut args_value, &class.label, force)
        })
    } else {
        Verdict::default()
    };
    if let Value::Object(m) = args_value {
        arguments = m;
    }
    let context = tool_context(
        &class,
        &asked.peer,
        arguments.keys().cloned().collect(),
        verdict.kinds(),
    );
    let ask = McpAsk {
        kind: Kind::Tool,
        server: upstream.name(),
        server_attrs: &upstream.entity_attrs,
        id: &tool.id,
        attrs: &tool.attrs,
        context: &context,
    };
    decide_item(asked, adm, ask, &arguments)?;
    guard::enforce(&verdict).map_err(gw)?;
    let estimate = reserve::Estimate {
        tokens: 0,
        micro_usd: 0,
    };
    let resource = format!("{}{}", crate::limits::TOOL_PREFIX, tool.id);
    let reservation = reserve::run(state, adm, principal, &resource, estimate)
        .await
        .map_err(gw)?;

    let mut params = Map::new();
    params.insert("name".into(), json!(tool.name));
    params.insert("arguments".into(), Value::Object(arguments));
    let decided = Decided {
        upstream,
        kind: Kind::Tool,
        target: tool.name.clone(),
        params,
    };
    Ok(forwarded(
        asked,
        adm,
        decided,
        class.label,
        era,
        reservation,
    ))
}

/// A request Cedar allowed, as its upstream is to get it.
struct Decided {
    upstream: Arc<Upstream>,
    kind: Kind,
    /// The tool's or the prompt's name on its server, or the resource's URI there.
    target: String,
    /// The item's own parameters (`name`, `arguments`, `uri`).
    params: Map<String, Value>,
}

/// The plan of a decided request: the trace context added for the upstream (the MCP `_meta`
/// convention; the client's own `_meta` stays with the client), the server's guardrail
/// action, namespacing at `/mcp`, and the caller's token for a server that exchanges it.
fn forwarded(
    asked: &Asked<'_>,
    adm: &Admission,
    decided: Decided,
    classification: String,
    era: Era,
    reservation: Option<crate::limits::Reservation>,
) -> Plan {
    let Decided {
        upstream,
        kind,
        target,
        mut params,
    } = decided;
    params.insert(
        "_meta".into(),
        json!({ "traceparent": adm.scope.trace.header() }),
    );
    let force = Action::parse(&upstream.server.config().guardrails);
    Plan::Call(Box::new(Call {
        upstream,
        kind,
        target,
        params,
        classification,
        force,
        era,
        reservation,
        namespace: asked.scope.is_none(),
        subject: subject_token(asked),
    }))
}

/// Decides one request for an item with Cedar, and records what Cedar saw (the arguments as
/// a reference to their entity: the record keeps their names, sizes and hashes, not their
/// text) and what it decided; a denial is the refusal.
fn decide_item(
    asked: &Asked<'_>,
    adm: &mut Admission,
    ask: McpAsk<'_>,
    arguments: &Map<String, Value>,
) -> Result<(), Box<Fail>> {
    let state = asked.state;
    let decision_id = adm.scope.decision_id.clone();
    let gw = |e: GatewayError| Fail::gateway(e, &decision_id);
    let engine = decide::engine(adm, state).map_err(gw)?;
    let decision = {
        let mut stage = adm.scope.stage(state, "policy");
        let d = cedar_mcp::decide(&engine, asked.principal, ask, &decision_id, arguments);
        match &d {
            Ok(d) => stage.attr("cairn.decision", if d.allow { "allow" } else { "deny" }),
            Err(e) => stage.fail(e),
        }
        d
    };
    let mut recorded = ask.context.clone();
    if let Some(t) = ask.kind.arguments_type() {
        recorded["arguments"] = json!({ "__entity": { "type": t, "id": decision_id } });
    }
    adm.record.context = Some(recorded);
    let decision = decision.map_err(|e| gw(GatewayError::PolicyMismatch(e)))?;
    adm.record.reasons = Some(decision.reasons.clone());
    adm.record.errors = Some(decision.errors.clone());
    if !decision.allow {
        return Err(gw(GatewayError::Denied {
            reasons: decision.reasons,
        }));
    }
    Ok(())
}

/// A list method the gateway aggregates from its servers and filters per entry.
struct Listing {
    method: &'static str,
    /// The key of the entries in a result.
    key: &'static str,
    /// The field that names an entry.
    field: &'static str,
    /// The server capability that offers the method.
    capability: &'static str,
    kind: Kind,
    unknowns: Unknowns,
}

const PROMPTS: Listing = Listing {
    method: "prompts/list",
    key: "prompts",
    field: "name",
    capability: "prompts",
    kind: Kind::Prompt,
    unknowns: Unknowns::Arguments,
};

const RESOURCES: Listing = Listing {
    method: "resources/list",
    key: "resources",
    field: "uri",
    capability: "resources",
    kind: Kind::Resource,
    unknowns: Unknowns::None,
};

const TEMPLATES: Listing = Listing {
    method: "resources/templates/list",
    key: "resourceTemplates",
    field: "uriTemplate",
    capability: "resources",
    kind: Kind::Resource,
    unknowns: Unknowns::Uri,
};

/// The Cedar context of a resource read.
fn resource_context(c: &Classification, peer: &SocketAddr) -> Value {
    json!({
        "data_classification": c.label,
        "data_level": c.level,
        "source_ip": peer.ip().to_string(),
        "request_time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// Every server's entries of a list method (read afresh: prompts and resources change without
/// notice), each decided, the allowed ones named as the endpoint names them.
async fn list_items(
    asked: &Asked<'_>,
    adm: &mut Admission,
    seen: &mut Seen,
    era: &Era,
    listing: &Listing,
) -> Result<Value, Box<Fail>> {
    let Asked {
        state,
        principal,
        peer,
        headers,
        scope,
    } = *asked;
    let decision_id = adm.scope.decision_id.clone();
    let gw = |e: GatewayError| Fail::gateway(e, &decision_id);
    let engine = decide::engine(adm, state).map_err(gw)?;
    let class = resource::classification(state, headers).map_err(gw)?;
    let context = match listing.kind {
        Kind::Resource => resource_context(&class, &peer),
        _ => tool_context(&class, &peer, Vec::new(), Vec::new()),
    };
    let mut listed = Vec::new();
    let (mut filtered, mut unnamed) = (0usize, 0usize);
    let mut unavailable = Vec::new();
    for up in servers(state, scope) {
        let entries = match up.offers(listing.capability).await {
            Ok(false) => continue,
            Ok(true) => up.list_all(listing.method, listing.key).await,
            Err(e) => Err(e),
        };
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, method = listing.method, "a server's entries are left out");
                unavailable.push(up.name().to_string());
                continue;
            }
        };
        let _stage = adm.scope.stage(state, "policy");
        let config = up.server.config();
        for mut entry in entries {
            let Some(name) = entry
                .get(listing.field)
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
            else {
                unnamed += 1;
                continue;
            };
            let attrs = match listing.kind {
                Kind::Prompt => catalogue::prompt_attrs(config, &name),
                _ => catalogue::resource_attrs(config, &name),
            };
            let id = format!("{}/{name}", up.name());
            let ask = McpAsk {
                kind: listing.kind,
                server: up.name(),
                server_attrs: &up.entity_attrs,
                id: &id,
                attrs: &attrs,
                context: &context,
            };
            let allowed = match listing.unknowns {
                Unknowns::None => {
                    cedar_mcp::decide(&engine, principal, ask, &decision_id, &Map::new())
                        .map(|d| d.allow)
                }
                unknowns => cedar_mcp::could(&engine, principal, ask, unknowns),
            }
            .map_err(|e| gw(GatewayError::PolicyMismatch(e)))?;
            if !allowed {
                filtered += 1;
                continue;
            }
            if scope.is_none() {
                entry[listing.field] = json!(match listing.kind {
                    Kind::Prompt => catalogue::namespaced(up.name(), &name),
                    _ => catalogue::namespaced_uri(up.name(), &name),
                });
            }
            listed.push(entry);
        }
    }
    if unnamed > 0 {
        tracing::warn!(
            method = listing.method,
            unnamed,
            "servers listed entries without a name; left out"
        );
        seen.extra.insert("unnamed".into(), json!(unnamed));
    }
    seen.extra.insert("listed".into(), json!(listed.len()));
    seen.extra.insert("filtered".into(), json!(filtered));
    if !unavailable.is_empty() {
        seen.extra.insert("unavailable".into(), json!(unavailable));
    }
    adm.record.context = Some(context);
    let mut result = Map::new();
    result.insert(listing.key.into(), Value::Array(listed));
    if era.modern() {
        result.insert("resultType".into(), json!("complete"));
        result.insert("ttlMs".into(), json!(0));
        result.insert("cacheScope".into(), json!("private"));
    }
    Ok(Value::Object(result))
}

/// The server a name reaches and the name on that server: a namespaced name at `/mcp`, the
/// server's own at `/mcp/{server}`.
fn resolve<'n>(
    state: &AppState,
    scope: Option<&str>,
    name: &'n str,
    split: Splitter,
) -> (Option<Arc<Upstream>>, &'n str) {
    match scope {
        Some(s) => (state.mcp.upstreams.get(s).cloned(), name),
        None => match split(name) {
            Some((s, n)) => (state.mcp.upstreams.get(s).cloned(), n),
            None => (None, name),
        },
    }
}

fn invalid_params(message: String, reason: &'static str) -> Box<Fail> {
    Fail::rpc(
        StatusCode::OK,
        RpcError::new(code::INVALID_PARAMS, message),
        reason,
    )
}

/// What `extra.mcp` and an outcome call the item: `tool`, `prompt` or `resource`.
fn item_key(kind: Kind) -> &'static str {
    match kind {
        Kind::Tool => "tool",
        Kind::Prompt => "prompt",
        Kind::Resource => "resource",
    }
}

/// How a name at `/mcp` splits into its server and its name there.
type Splitter = fn(&str) -> Option<(&str, &str)>;

/// The prompt or resource a request names.
struct Target {
    upstream: Arc<Upstream>,
    /// Its name (a resource: its URI) on its server.
    own: String,
    /// The Cedar entity's id, `server/own`.
    id: String,
    attrs: Value,
}

/// Finds the server and the item a prompt or resource request names, and puts the item in
/// the record.
fn target(
    asked: &Asked<'_>,
    adm: &mut Admission,
    seen: &mut Seen,
    kind: Kind,
    msg: &Message,
) -> Result<Target, Box<Fail>> {
    let (state, scope) = (asked.state, asked.scope);
    let (param, split, rule): (_, Splitter, _) = match kind {
        Kind::Resource => (
            "uri",
            catalogue::split_uri,
            "cairn://server/uri (see resources/list)",
        ),
        _ => (
            "name",
            catalogue::split,
            "server__prompt (see prompts/list)",
        ),
    };
    let Some(name) = msg.str_param(param).map(str::to_string) else {
        return Err(invalid_params(
            format!("`params.{param}` must be a string"),
            "invalid_params",
        ));
    };
    seen.name = Some(name.clone());
    let (upstream, own) = resolve(state, scope, &name, split);
    let Some(upstream) = upstream else {
        let key = item_key(kind);
        let hint = if scope.is_none() {
            format!(": {key}s here are named {rule}")
        } else {
            String::new()
        };
        return Err(invalid_params(
            format!("unknown {key} `{name}`{hint}"),
            if kind == Kind::Resource {
                "unknown_resource"
            } else {
                "unknown_prompt"
            },
        ));
    };
    let own = own.to_string();
    seen.server = Some(upstream.name().to_string());
    let id = format!("{}/{own}", upstream.name());
    let config = upstream.server.config();
    let attrs = match kind {
        Kind::Resource => catalogue::resource_attrs(config, &own),
        _ => catalogue::prompt_attrs(config, &own),
    };
    adm.record.resource = Some(format!(
        "{}::{}",
        kind.entity_type(),
        Value::String(id.clone())
    ));
    adm.record.resource_attrs = Some(attrs.clone());
    seen.extra.insert(item_key(kind).into(), json!(own));
    Ok(Target {
        upstream,
        own,
        id,
        attrs,
    })
}

async fn get_prompt(
    asked: &Asked<'_>,
    adm: &mut Admission,
    seen: &mut Seen,
    mut msg: Message,
    era: Era,
) -> Result<Plan, Box<Fail>> {
    let state = asked.state;
    adm.record.action = Some(cedar_mcp::GET_PROMPT.into());
    let decision_id = adm.scope.decision_id.clone();
    let gw = |e: GatewayError| Fail::gateway(e, &decision_id);
    let Target {
        upstream,
        own: prompt,
        id,
        attrs,
    } = target(asked, adm, seen, Kind::Prompt, &msg)?;

    let arguments = match msg.params.remove("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => m,
        Some(_) => {
            return Err(invalid_params(
                "`params.arguments` must be an object of strings".into(),
                "invalid_arguments",
            ));
        }
    };
    seen.extra
        .insert("arguments".into(), argument_summary(&arguments));
    let class = resource::classification(state, asked.headers).map_err(gw)?;
    let force = Action::parse(&upstream.server.config().guardrails);
    let mut args_value = Value::Object(arguments);
    let verdict = if state.guardrails.enabled() {
        guard::input(state, adm, &class.label, |g| {
            g.check_json(&mut args_value, &class.label, force)
        })
    } else {
        Verdict::default()
    };
    let arguments = match args_value {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let context = tool_context(
        &class,
        &asked.peer,
        arguments.keys().cloned().collect(),
        verdict.kinds(),
    );
    let ask = McpAsk {
        kind: Kind::Prompt,
        server: upstream.name(),
        server_attrs: &upstream.entity_attrs,
        id: &id,
        attrs: &attrs,
        context: &context,
    };
    decide_item(asked, adm, ask, &arguments)?;
    guard::enforce(&verdict).map_err(gw)?;
    let mut params = Map::new();
    params.insert("name".into(), json!(prompt));
    params.insert("arguments".into(), Value::Object(arguments));
    let decided = Decided {
        upstream,
        kind: Kind::Prompt,
        target: prompt,
        params,
    };
    Ok(forwarded(asked, adm, decided, class.label, era, None))
}

async fn read_resource(
    asked: &Asked<'_>,
    adm: &mut Admission,
    seen: &mut Seen,
    msg: &Message,
    era: Era,
) -> Result<Plan, Box<Fail>> {
    let state = asked.state;
    adm.record.action = Some(cedar_mcp::READ_RESOURCE.into());
    let decision_id = adm.scope.decision_id.clone();
    let gw = |e: GatewayError| Fail::gateway(e, &decision_id);
    let Target {
        upstream,
        own,
        id,
        attrs,
    } = target(asked, adm, seen, Kind::Resource, msg)?;

    let class = resource::classification(state, asked.headers).map_err(gw)?;
    let context = resource_context(&class, &asked.peer);
    let ask = McpAsk {
        kind: Kind::Resource,
        server: upstream.name(),
        server_attrs: &upstream.entity_attrs,
        id: &id,
        attrs: &attrs,
        context: &context,
    };
    decide_item(asked, adm, ask, &Map::new())?;
    let mut params = Map::new();
    params.insert("uri".into(), json!(own));
    let decided = Decided {
        upstream,
        kind: Kind::Resource,
        target: own,
        params,
    };
    Ok(forwarded(asked, adm, decided, class.label, era, None))
}

/// The caller's bearer token when it authenticated with one from the OIDC issuer (an API key
/// is never exchanged).
fn subject_token(asked: &Asked<'_>) -> Option<String> {
    if asked.principal.auth.method != "oidc" {
        return None;
    }
    let value = asked.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Names, sizes and hashes of the arguments: what a record keeps instead of their text.
fn argument_summary(arguments: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (k, v) in arguments {
        let text = serde_json::to_vec(v).unwrap_or_default();
        out.insert(
            k.chars().take(128).collect(),
            json!({ "bytes": text.len(), "sha256": hex::encode(Sha256::digest(&text)) }),
        );
    }
    Value::Object(out)
}

/// The checks of a tool's `inputSchema` the gateway makes before deciding: required arguments
/// present, top-level types as declared, no undeclared argument where
/// `additionalProperties` is false. The server validates the rest.
pub fn check_arguments(definition: &Value, arguments: &Map<String, Value>) -> Result<(), String> {
    let Some(schema) = definition.get("inputSchema") else {
        return Ok(());
    };
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !arguments.contains_key(r) {
            return Err(format!("`{r}` is required"));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    for (k, v) in arguments {
        let Some(p) = props.and_then(|p| p.get(k)) else {
            if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                return Err(format!("`{k}` is not an argument of this tool"));
            }
            continue;
        };
        let types: Vec<&str> = match p.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        let fits = |t: &str| match t {
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "object" => v.is_object(),
            "array" => v.is_array(),
            "null" => v.is_null(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            _ => true,
        };
        if !types.iter().any(|t| fits(t)) {
            return Err(format!("`{k}` must be {}", types.join(" or ")));
        }
    }
    Ok(())
}

async fn answer(state: &Arc<AppState>, adm: Admission, mut seen: Seen, mut plan: Plan) -> Response {
    let Admission { scope, mut record } = adm;
    record.decision = Some("allow".into());
    if record.principal.is_none() {
        record.principal = Some(crate::admission::ANONYMOUS.into());
    }
    let (reason, status) = match &plan {
        Plan::Local { reason, .. } => (*reason, StatusCode::OK),
        Plan::Accepted => ("notification", StatusCode::ACCEPTED),
        Plan::Call(_) => ("policy", StatusCode::OK),
    };
    record.reason = Some(reason.into());
    if !matches!(plan, Plan::Call(_)) {
        record.status = Some(status.as_u16());
    }
    if let Plan::Local {
        resource: Some(r), ..
    } = &plan
    {
        record.resource = Some(r.clone());
    }
    if let Plan::Local {
        opened: Some(s), ..
    } = &plan
    {
        seen.session = Some(s.clone());
    }
    extra(&mut record.extra, "mcp", mcp_extra(&seen));
    record.latency_ms = Some(scope.started.elapsed().as_millis() as u64);
    let label = server_label(state, seen.server.as_deref());
    if let Plan::Call(call) = &mut plan
        && let Some(r) = call.reservation.take()
    {
        r.settle_reserved();
    }
    // The decision is durable before the answer leaves; for a call, before the upstream is
    // called at all (unlike a model call, which overlaps the fsync): a tool acts on the world,
    // so none runs unrecorded.
    let appending = std::time::Instant::now();
    let appended = state.log.append(scope.decision_record(record)).await;
    state.metrics.stage("record", appending.elapsed());
    if appended.is_err() {
        let resp = unavailable(state, &scope, &seen, &label);
        finish_span(state, &scope, &seen, 503, "none", "records_unavailable");
        return resp;
    }
    let (resp, outcome_status) = match plan {
        Plan::Call(call) => call_upstream(state, &scope, &seen, &call).await,
        Plan::Accepted => (StatusCode::ACCEPTED.into_response(), None),
        Plan::Local { result, opened, .. } => {
            let id = seen.id.clone().unwrap_or(Value::Null);
            let mut resp = axum::Json(wire::result(&id, result)).into_response();
            if let Some(s) = opened
                && let Ok(v) = HeaderValue::from_str(&s)
            {
                resp.headers_mut().insert(wire::SESSION_HEADER, v);
            }
            (resp, None)
        }
    };
    let mut resp = resp;
    scope.headers(&mut resp);
    let status = resp.status().as_u16();
    state.metrics.request("allow", &label, status, reason);
    finish_span(
        state,
        &scope,
        &seen,
        status,
        "allow",
        outcome_status.unwrap_or(reason),
    );
    resp
}

/// An allowed call: the upstream asked, its span, then [`forward`].
async fn call_upstream(
    state: &AppState,
    scope: &crate::admission::RequestScope,
    seen: &Seen,
    call: &Call,
) -> (Response, Option<&'static str>) {
    let clock = scope.begin();
    let method = call.method();
    let started = std::time::Instant::now();
    let answered = call
        .upstream
        .server
        .request_for(method, call.params.clone(), call.subject.as_deref())
        .await;
    state.metrics.stage("upstream", started.elapsed());
    let mut attrs = vec![
        ("mcp.method.name", method.into()),
        ("server.address", call.upstream.name().to_string().into()),
    ];
    let name = match call.kind {
        Kind::Tool => {
            attrs.push(("gen_ai.tool.name", call.target.clone().into()));
            format!("{method} {}", call.target)
        }
        Kind::Prompt => {
            attrs.push(("gen_ai.prompt.name", call.target.clone().into()));
            format!("{method} {}", call.target)
        }
        Kind::Resource => {
            attrs.push(("mcp.resource.uri", call.target.clone().into()));
            method.to_string()
        }
    };
    scope.span(
        name,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Client,
        clock,
        attrs,
        answered.as_ref().err().map(ToString::to_string),
    );
    forward(state, scope, seen, call, answered)
}

/// The upstream's answer to an allowed call, through the output guardrails, and its outcome
/// record. Returns the response and the outcome's reason.
fn forward(
    state: &AppState,
    scope: &crate::admission::RequestScope,
    seen: &Seen,
    call: &Call,
    answered: Result<Value, UpstreamError>,
) -> (Response, Option<&'static str>) {
    let id = seen.id.clone().unwrap_or(Value::Null);
    let mut outcome = Outcome {
        decision_id: scope.decision_id.clone(),
        status: Some(200),
        trace_id: Some(scope.trace.trace_id.clone()),
        latency_ms: Some(scope.started.elapsed().as_millis() as u64),
        ..Outcome::default()
    };
    let mut mcp = Map::new();
    mcp.insert("server".into(), json!(call.upstream.name()));
    mcp.insert(item_key(call.kind).into(), json!(call.target));
    let (body, reason) = match answered {
        Err(e) => {
            outcome.error = Some(e.to_string());
            mcp.insert("upstream".into(), json!(e.reason()));
            let f = Fail::upstream(&e, &scope.decision_id);
            (wire::error(Some(&id), &f.error), e.reason())
        }
        Ok(mut msg) => {
            let upstream_error = msg.get("error").is_some();
            let mut payload = msg
                .get_mut(if upstream_error { "error" } else { "result" })
                .map(Value::take)
                .unwrap_or_else(|| json!({}));
            // Results and error objects alike: a server's error message is its text too.
            let verdict = if state.guardrails.checks_output() || call.force.is_some() {
                state
                    .guardrails
                    .check_json(&mut payload, &call.classification, call.force)
            } else {
                Verdict::default()
            };
            if !verdict.counts.is_empty() {
                guard::count_findings(state, &verdict, &call.classification, "output");
                outcome.guardrails = Some(json!({ "output": verdict.json() }));
                scope.set_redacted(&verdict.redacted_kinds);
            }
            let is_error = upstream_error
                || payload
                    .get("isError")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            mcp.insert("is_error".into(), json!(is_error));
            mcp.insert(
                "result_bytes".into(),
                json!(serde_json::to_vec(&payload).map(|v| v.len()).unwrap_or(0)),
            );
            if upstream_error {
                mcp.insert("upstream".into(), json!("error"));
                mcp.insert(
                    "upstream_code".into(),
                    payload.get("code").cloned().unwrap_or(Value::Null),
                );
            }
            if !verdict.blocked.is_empty() {
                mcp.insert("blocked".into(), json!("output"));
                let kinds: Vec<&str> = verdict.blocked.iter().map(|k| k.name()).collect();
                let e = RpcError::new(
                    code::BLOCKED,
                    format!(
                        "the tool's result was blocked by the gateway's guardrails ({})",
                        kinds.join(", ")
                    ),
                )
                .with_data(json!({ "decision_id": scope.decision_id, "detectors": kinds }));
                (wire::error(Some(&id), &e), "guardrail_output")
            } else if upstream_error {
                (
                    json!({ "jsonrpc": "2.0", "id": id, "error": payload }),
                    "upstream_error",
                )
            } else {
                if call.era.modern()
                    && let Some(o) = payload.as_object_mut()
                {
                    o.entry("resultType").or_insert_with(|| json!("complete"));
                }
                if call.kind == Kind::Resource {
                    let dropped = keep_contents_of(&mut payload, &call.target);
                    if dropped > 0 {
                        mcp.insert("dropped_contents".into(), json!(dropped));
                    }
                }
                if call.namespace {
                    catalogue::namespace_links(&mut payload, call.upstream.name());
                }
                (
                    wire::result(&id, payload),
                    if is_error { "tool_error" } else { "ok" },
                )
            }
        }
    };
    outcome.reason = Some(reason.into());
    outcome.extra = Some(json!({ "mcp": mcp }));
    state.log.append_detached(Record::new(
        uuid::Uuid::now_v7().to_string(),
        clock::now_rfc3339(),
        outcome,
    ));
    (axum::Json(body).into_response(), Some(reason))
}

/// A read answers for the resource it was decided on: contents under any other URI (a server
/// answering for a directory, say) were not decided, and are left out. Returns how many.
fn keep_contents_of(result: &mut Value, uri: &str) -> usize {
    let Some(Value::Array(contents)) = result.get_mut("contents") else {
        return 0;
    };
    let before = contents.len();
    contents.retain(|c| c.get("uri").and_then(Value::as_str) == Some(uri));
    before - contents.len()
}

/// The metrics' label for the server a request reached: `*` for none, a configured server's
/// name, or `unknown` (a name in a client's path is not a label value).
fn server_label(state: &AppState, server: Option<&str>) -> String {
    match server {
        None => "*".into(),
        Some(s) if state.mcp.upstreams.get(s).is_some() => s.to_string(),
        Some(_) => crate::admission::UNKNOWN_LABEL.into(),
    }
}

/// The record's `extra.mcp`.
fn mcp_extra(seen: &Seen) -> Value {
    let mut m = seen.extra.clone();
    if let Some(v) = &seen.method {
        m.insert("method".into(), json!(v));
    }
    if let Some(v) = &seen.server {
        m.insert("server".into(), json!(v));
    }
    if let Some(v) = &seen.name {
        m.insert("name".into(), json!(v));
    }
    if let Some(v) = &seen.session {
        m.insert("session".into(), json!(v));
    }
    if let Some(v) = &seen.version {
        m.insert("revision".into(), json!(v));
    }
    if let Some(v) = &seen.id {
        m.insert("request_id".into(), v.clone());
    }
    Value::Object(m)
}

fn span(seen: &Seen) -> McpSpan {
    McpSpan {
        method: seen.method.clone().unwrap_or_default(),
        tool: seen
            .name
            .clone()
            .filter(|_| seen.method.as_deref() == Some("tools/call")),
        session: seen.session.clone(),
        version: seen.version.clone(),
    }
}

fn finish_span(
    state: &AppState,
    scope: &crate::admission::RequestScope,
    seen: &Seen,
    status: u16,
    decision: &'static str,
    reason: &str,
) {
    scope.finish(
        state,
        SpanEnd {
            status,
            decision,
            reason: reason.to_string(),
            mcp: Some(span(seen)),
            ..SpanEnd::default()
        },
    );
}

/// The answer when the record cannot be made durable: 503, no decision id.
fn unavailable(
    state: &AppState,
    scope: &crate::admission::RequestScope,
    seen: &Seen,
    label: &str,
) -> Response {
    let e = GatewayError::RecordsUnavailable;
    state
        .metrics
        .request("none", label, 503, "records_unavailable");
    let body = wire::error(
        seen.id.as_ref(),
        &RpcError::new(code::UNAVAILABLE, e.to_string()),
    );
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    scope.headers(&mut resp);
    resp.headers_mut().remove("x-cairn-decision-id");
    resp
}

async fn refuse(
    state: &AppState,
    mut adm: Admission,
    seen: Seen,
    fail: Box<Fail>,
    headers: &HeaderMap,
) -> Response {
    extra(&mut adm.record.extra, "mcp", mcp_extra(&seen));
    if adm.record.errors.is_none() {
        adm.record.errors = Some(fail.cause.iter().cloned().collect());
    }
    let label = server_label(state, seen.server.as_deref());
    let end = SpanEnd {
        status: fail.status.as_u16(),
        decision: "deny",
        reason: fail.reason.to_string(),
        error_type: Some(fail.reason.to_string()),
        mcp: Some(span(&seen)),
        ..SpanEnd::default()
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    refuse_with(state, adm, fail.status, fail.reason, &label, end, |scope| {
        let body = wire::error(seen.id.as_ref(), &fail.error);
        let mut resp = (fail.status, axum::Json(body)).into_response();
        if let Some(secs) = fail.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if fail.status == StatusCode::UNAUTHORIZED {
            let value = format!(
                "Bearer resource_metadata=\"{}\"",
                mcp::metadata_url(state, host.as_deref())
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        scope.headers(&mut resp);
        resp
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_answers_only_for_the_resource_decided() {
        let mut r = json!({"contents": [{"uri": "note:///a", "text": "a"},
                                        {"uri": "note:///private/b", "text": "b"}, {"text": "no uri"}]});
        assert_eq!(keep_contents_of(&mut r, "note:///a"), 2);
        assert_eq!(r["contents"], json!([{"uri": "note:///a", "text": "a"}]));
        assert_eq!(keep_contents_of(&mut json!("not an object"), "x"), 0);
    }

    #[test]
    fn arguments_are_checked_against_the_schema_s_top_level() {
        let def = json!({"inputSchema": {"type": "object", "required": ["path"],
            "properties": {"path": {"type": "string"}, "n": {"type": ["integer", "null"]}},
            "additionalProperties": false}});
        let args = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(check_arguments(&def, &args(json!({"path": "/a"}))).is_ok());
        assert!(check_arguments(&def, &args(json!({"path": "/a", "n": 2.0}))).is_ok());
        let e = check_arguments(&def, &args(json!({}))).expect_err("required");
        assert!(e.contains("`path` is required"), "{e}");
        let e = check_arguments(&def, &args(json!({"path": 3}))).expect_err("type");
        assert!(e.contains("`path` must be string"), "{e}");
        let e = check_arguments(&def, &args(json!({"path": "/a", "n": 1.5}))).expect_err("int");
        assert!(e.contains("integer or null"), "{e}");
        let e = check_arguments(&def, &args(json!({"path": "/a", "x": 1}))).expect_err("extra");
        assert!(e.contains("`x` is not an argument"), "{e}");
        assert!(check_arguments(&json!({}), &args(json!({"any": 1}))).is_ok());
    }

    #[test]
    fn argument_summaries_hold_no_text() {
        let s = argument_summary(json!({"password": "hunter2"}).as_object().expect("object"));
        let text = s.to_string();
        assert!(!text.contains("hunter2"));
        assert_eq!(s["password"]["bytes"], 9);
    }
}
