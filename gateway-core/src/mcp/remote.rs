//! A remote MCP server over Streamable HTTP. The gateway is its client: `initialize` (the
//! handshake era, keeping the `Mcp-Session-Id` it is given and opening a new session when the
//! server forgets it), or the stateless revision (per-request `_meta` and the mirrored
//! `Mcp-Method`/`Mcp-Name` headers) for a server that knows no `initialize`. Answers may be JSON
//! or an SSE stream; the stream is read until the response to the request arrives.
//!
//! The server gets the gateway's own credential for it (a bearer token from an environment
//! variable or a file, and fixed headers), never the client's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

use super::config::McpServerConfig;
use super::exchange::{ExchangeError, TokenExchanger};
use super::upstream::{Mode, UpstreamError, client_info, with_meta};
use super::wire;

struct Session {
    mode: Mode,
    id: Option<String>,
    info: Value,
    /// The gateway's credential and fixed headers, read once when the session opened.
    credentials: HeaderMap,
}

pub struct RemoteServer {
    pub config: McpServerConfig,
    url: String,
    client: reqwest::Client,
    headers: HeaderMap,
    max_message: usize,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    next_id: AtomicU64,
    pub tools_stale: Arc<AtomicBool>,
    exchanger: Option<TokenExchanger>,
}

impl RemoteServer {
    pub fn new(config: McpServerConfig, timeout: Duration, max_message: usize) -> Self {
        let url = config.url.clone().unwrap_or_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let exchanger = config
            .token_exchange
            .clone()
            .map(|x| TokenExchanger::new(x, &url, timeout));
        Self {
            exchanger,
            headers: HeaderMap::new(),
            url,
            client,
            max_message,
            session: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
            tools_stale: Arc::new(AtomicBool::new(true)),
            config,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn fail(&self, reason: impl Into<String>) -> UpstreamError {
        UpstreamError::Http {
            server: self.name().to_string(),
            reason: reason.into(),
        }
    }

    /// The gateway's credential and fixed headers for this server, read at each new session (a
    /// rotated token file is picked up when the server next opens one, without a restart).
    fn credentials(&self) -> Result<HeaderMap, UpstreamError> {
        let mut h = self.headers.clone();
        for (k, v) in &self.config.headers {
            let (Ok(n), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v))
            else {
                return Err(self.fail(format!("header `{k}` is not a valid HTTP header")));
            };
            h.insert(n, v);
        }
        let token = match (&self.config.bearer_env, &self.config.bearer_file) {
            (Some(var), _) => Some(std::env::var(var).map_err(|_| {
                self.fail(format!(
                    "the environment variable `{var}` (bearer_env) is not set"
                ))
            })?),
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| self.fail(format!("bearer_file `{file}`: {e}")))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if let Some(t) = token {
            let mut v = HeaderValue::try_from(format!("Bearer {t}"))
                .map_err(|_| self.fail("the bearer token is not a valid header value"))?;
            v.set_sensitive(true);
            h.insert(http::header::AUTHORIZATION, v);
        }
        Ok(h)
    }

    pub async fn running(&self) -> bool {
        self.session.lock().await.is_some()
    }

    pub async fn info(&self) -> Result<(Mode, Value), UpstreamError> {
        let s = self.session().await?;
        Ok((s.mode.clone(), s.info.clone()))
    }

    /// A caller's request: with an exchanged token when the server takes those.
    pub async fn request_for(
        &self,
        method: &str,
        params: Map<String, Value>,
        subject: Option<&str>,
    ) -> Result<Value, UpstreamError> {
        let Some(x) = &self.exchanger else {
            return self.request(method, params, None).await;
        };
        let exchange = |error| UpstreamError::Exchange {
            server: self.name().to_string(),
            error,
        };
        let subject = subject.ok_or_else(|| exchange(ExchangeError::NoSubjectToken))?;
        let token = x.token_for(subject).await.map_err(exchange)?;
        let Ok(mut bearer) = HeaderValue::try_from(format!("Bearer {token}")) else {
            return Err(exchange(ExchangeError::Refused(
                "the token is not a valid header value".into(),
            )));
        };
        bearer.set_sensitive(true);
        self.request(method, params, Some(&bearer)).await
    }

    /// One request, with `bearer` (a whole `Authorization` value) instead of the session's
    /// credential when given.
    pub async fn request(
        &self,
        method: &str,
        params: Map<String, Value>,
        bearer: Option<&HeaderValue>,
    ) -> Result<Value, UpstreamError> {
        let s = self.session().await?;
        match self.send(&s, method, params.clone(), bearer).await {
            // The server forgot the session (restarted, expired): a new one, once.
            Err(Forgotten) if s.id.is_some() => {
                self.forget(&s).await;
                let s = self.session().await?;
                self.send(&s, method, params, bearer)
                    .await
                    .map_err(|e| e.into_error(self))
            }
            other => other.map_err(|e| e.into_error(self)),
        }
    }

    async fn forget(&self, s: &Arc<Session>) {
        let mut current = self.session.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, s)) {
            *current = None;
            self.tools_stale.store(true, Ordering::Release);
        }
    }

    async fn session(&self) -> Result<Arc<Session>, UpstreamError> {
        let mut current = self.session.lock().await;
        if let Some(s) = current.as_ref() {
            return Ok(s.clone());
        }
        let s = Arc::new(self.open().await?);
        tracing::info!(server = %self.name(), revision = s.mode.version(), "MCP server connected");
        self.tools_stale.store(true, Ordering::Release);
        *current = Some(s.clone());
        Ok(s)
    }

    async fn open(&self) -> Result<Session, UpstreamError> {
        let credentials = self.credentials()?;
        let handshake = Session {
            mode: Mode::Handshake(wire::HANDSHAKE[0].to_string()),
            id: None,
            info: Value::Null,
            credentials: credentials.clone(),
        };
        let mut params = Map::new();
        params.insert("protocolVersion".into(), json!(wire::HANDSHAKE[0]));
        params.insert("capabilities".into(), json!({}));
        params.insert("clientInfo".into(), client_info());
        let (answer, session_id) = self
            .post(&handshake, "initialize", params, true, None)
            .await
            .map_err(|e| e.into_error(self))?;
        if let Some(result) = answer.get("result") {
            let version = result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(wire::HANDSHAKE[0])
                .to_string();
            let s = Session {
                mode: Mode::Handshake(version),
                id: session_id,
                info: result.clone(),
                credentials: credentials.clone(),
            };
            self.notify(&s, "notifications/initialized").await;
            return Ok(s);
        }
        let modern = Session {
            mode: Mode::Modern(wire::MODERN[0].to_string()),
            id: None,
            info: Value::Null,
            credentials: credentials.clone(),
        };
        let params = with_meta(&modern.mode, Map::new());
        let (answer, _) = self
            .post(&modern, "server/discover", params, true, None)
            .await
            .map_err(|e| e.into_error(self))?;
        match answer.get("result") {
            Some(result) => Ok(Session {
                info: result.clone(),
                ..modern
            }),
            None => Err(self.fail(format!(
                "neither initialize nor server/discover was answered: {}",
                answer.get("error").unwrap_or(&Value::Null)
            ))),
        }
    }

    async fn notify(&self, s: &Session, method: &str) {
        let body = json!({ "jsonrpc": "2.0", "method": method });
        let req = self.request_builder(s, method, None, None).json(&body);
        if let Err(e) = req.send().await {
            tracing::warn!(server = %self.name(), error = %e, "MCP notification not delivered");
        }
    }

    fn request_builder(
        &self,
        s: &Session,
        method: &str,
        name: Option<&str>,
        bearer: Option<&HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let mut headers = s.credentials.clone();
        if let Some(b) = bearer {
            headers.insert(http::header::AUTHORIZATION, b.clone());
        }
        let mut req = self
            .client
            .post(&self.url)
            .headers(headers)
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        if method != "initialize" {
            req = req.header(wire::PROTOCOL_VERSION_HEADER, s.mode.version());
        }
        if let Some(id) = &s.id {
            req = req.header(wire::SESSION_HEADER, id);
        }
        if matches!(s.mode, Mode::Modern(_)) {
            req = req.header(wire::METHOD_HEADER, method);
            if let Some(n) = name {
                req = req.header(wire::NAME_HEADER, wire::encode_header_value(n));
            }
        }
        req
    }

    async fn send(
        &self,
        s: &Session,
        method: &str,
        params: Map<String, Value>,
        bearer: Option<&HeaderValue>,
    ) -> Result<Value, Failure> {
        let params = with_meta(&s.mode, params);
        self.post(s, method, params, false, bearer)
            .await
            .map(|(v, _)| v)
    }

    /// One request; its response and the session id the server sent, if any.
    async fn post(
        &self,
        s: &Session,
        method: &str,
        params: Map<String, Value>,
        opening: bool,
        bearer: Option<&HeaderValue>,
    ) -> Result<(Value, Option<String>), Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = wire::name_param(method)
            .and_then(|k| params.get(k))
            .and_then(Value::as_str)
            .map(str::to_string);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let resp = self
            .request_builder(s, method, name.as_deref(), bearer)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                Failure::Upstream(if e.is_timeout() {
                    UpstreamError::Timeout {
                        server: self.name().to_string(),
                        ms: 0,
                    }
                } else {
                    self.fail(format!("{}: {e}", self.url))
                })
            })?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND && s.id.is_some() {
            return Err(Forgotten);
        }
        let session_id = resp
            .headers()
            .get(wire::SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let bytes = self.read_limited(resp).await.map_err(Failure::Upstream)?;
        let answer = if sse {
            sse_response(&bytes, id)
        } else {
            serde_json::from_slice::<Value>(&bytes).ok()
        };
        match answer {
            Some(a) if a.get("result").is_some() || a.get("error").is_some() => Ok((a, session_id)),
            // A refusal at the HTTP level while opening: a modern server's 400 to `initialize`.
            _ if opening && status.is_client_error() => Ok((
                json!({ "error": { "code": status.as_u16(), "message": "refused" } }),
                None,
            )),
            _ => Err(Failure::Upstream(self.fail(format!(
                "HTTP {status} with no JSON-RPC response to request {id}"
            )))),
        }
    }

    async fn read_limited(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
        let mut out = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.fail(format!("reading the answer: {e}")))?
        {
            out.extend_from_slice(&chunk);
            if out.len() > self.max_message {
                return Err(UpstreamError::TooLarge {
                    server: self.name().to_string(),
                    limit: self.max_message,
                });
            }
        }
        Ok(out)
    }
}

/// Why one POST did not give a response.
enum Failure {
    /// 404 on a session: the server no longer knows it.
    Forgotten,
    Upstream(UpstreamError),
}
use Failure::Forgotten;

impl Failure {
    fn into_error(self, s: &RemoteServer) -> UpstreamError {
        match self {
            Forgotten => s.fail("the server no longer knows the session"),
            Failure::Upstream(e) => e,
        }
    }
}

/// The JSON-RPC response to request `id` in an SSE body: the `data` of each event, joined per
/// event, parsed, until one answers `id`.
fn sse_response(body: &[u8], id: u64) -> Option<Value> {
    let text = String::from_utf8_lossy(body);
    let mut data = String::new();
    let mut events = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(std::mem::take(&mut data));
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    if !data.is_empty() {
        events.push(data);
    }
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .find(|v| v.get("id").and_then(Value::as_u64) == Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_is_found_among_the_stream_s_events() {
        let body = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
            event: message\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":7,\"result\":{}}\n\n";
        let v = sse_response(body, 7).expect("found");
        assert_eq!(v["result"], json!({}));
        assert!(sse_response(body, 8).is_none());
    }
}
