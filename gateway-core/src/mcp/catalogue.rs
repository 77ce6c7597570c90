//! The upstream servers and their tools, prompts and resources as the gateway sees them: each
//! with its Cedar attributes, and the namespacing rule that puts several servers behind one
//! endpoint.
//!
//! Namespacing: at `/mcp` a tool or a prompt is `{server}__{name}`, and a resource (or a
//! template) `cairn://{server}/{uri}` with the server's URI after the slash as it is. Server
//! names are lowercase letters, digits and `-` (no `_`, no `/`), so the first `__` (or the first
//! `/` after `cairn://`) always ends the server's part, and two servers can never produce the
//! same name; a server that lists one tool name twice keeps the first (and the gateway logs
//! it). At `/mcp/{server}` names and URIs are the server's own.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Map, Value, json};

use super::config::{McpConfig, McpServerConfig};
use super::upstream::{Server, UpstreamError};

/// At most this many `tools/list` pages are read from one server.
const MAX_PAGES: usize = 64;

/// The separator of a namespaced name.
pub const SEPARATOR: &str = "__";

pub fn namespaced(server: &str, tool: &str) -> String {
    format!("{server}{SEPARATOR}{tool}")
}

/// `(server, tool)` of a namespaced name.
pub fn split(name: &str) -> Option<(&str, &str)> {
    name.split_once(SEPARATOR)
        .filter(|(s, t)| !s.is_empty() && !t.is_empty())
}

/// The scheme of a namespaced resource URI.
pub const URI_PREFIX: &str = "cairn://";

pub fn namespaced_uri(server: &str, uri: &str) -> String {
    format!("{URI_PREFIX}{server}/{uri}")
}

/// `(server, uri)` of a namespaced resource URI.
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix(URI_PREFIX)?
        .split_once('/')
        .filter(|(s, u)| !s.is_empty() && !u.is_empty())
}

/// Resource links in content a server returned (a tool result's `content`, a prompt's
/// messages, a read's `contents`) namespaced, so a client at `/mcp` can read them back.
pub fn namespace_links(result: &mut Value, server: &str) {
    fn item(v: &mut Value, server: &str) {
        let uri = match v.get("type").and_then(Value::as_str) {
            Some("resource") => v.get_mut("resource").and_then(|r| r.get_mut("uri")),
            Some("resource_link") => v.get_mut("uri"),
            // A read's `contents` entries carry the URI with no type.
            None => v.get_mut("uri"),
            Some(_) => None,
        };
        if let Some(Value::String(u)) = uri {
            *u = namespaced_uri(server, u);
        }
    }
    for key in ["content", "contents"] {
        if let Some(Value::Array(items)) = result.get_mut(key) {
            items.iter_mut().for_each(|v| item(v, server));
        }
    }
    if let Some(Value::Array(messages)) = result.get_mut("messages") {
        for m in messages {
            if let Some(c) = m.get_mut("content") {
                item(c, server);
            }
        }
    }
}

/// A resource's Cedar attributes, from its URI on the server alone: a read and a listing see
/// the same entity, so what is listed is what can be read.
pub fn resource_attrs(server: &McpServerConfig, uri: &str) -> Value {
    let scheme = uri
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    json!({
        "server": server.name,
        "uri": uri,
        "scheme": scheme,
        "max_data_level": server.max_data_level,
    })
}

/// A prompt's Cedar attributes.
pub fn prompt_attrs(server: &McpServerConfig, name: &str) -> Value {
    json!({ "server": server.name, "name": name, "max_data_level": server.max_data_level })
}

/// One tool of one server.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub server: String,
    /// The tool's name on its server.
    pub name: String,
    /// The Cedar `Tool` entity's id: `server/name`.
    pub id: String,
    /// The definition as the server listed it.
    pub definition: Value,
    /// The Cedar `Tool` entity's attributes.
    pub attrs: Value,
}

impl ToolDef {
    pub fn new(server: &McpServerConfig, definition: Value) -> Option<Self> {
        let name = definition.get("name")?.as_str()?.to_string();
        let hints = definition.get("annotations");
        let hint = |key: &str, default: bool| {
            hints
                .and_then(|a| a.get(key))
                .and_then(Value::as_bool)
                .unwrap_or(default)
        };
        // The MCP defaults: not read-only, destructive, open-world.
        let read_only = hint("readOnlyHint", false);
        let destructive = !read_only && hint("destructiveHint", true);
        let open_world = hint("openWorldHint", true);
        let risk = server
            .tools
            .get(&name)
            .and_then(|t| t.risk.clone())
            .unwrap_or_else(|| {
                if read_only {
                    "read".into()
                } else if destructive {
                    "destructive".into()
                } else {
                    "write".into()
                }
            });
        Some(Self {
            id: format!("{}/{name}", server.name),
            attrs: json!({
                "risk": risk,
                "server": server.name,
                "name": name,
                "read_only": read_only,
                "destructive": destructive,
                "open_world": open_world,
                "max_data_level": server.max_data_level,
            }),
            server: server.name.clone(),
            name,
            definition,
        })
    }

    /// The definition under the name a client sees (namespaced at `/mcp`).
    pub fn listed(&self, namespace: bool) -> Value {
        let mut d = self.definition.clone();
        if namespace {
            d["name"] = json!(namespaced(&self.server, &self.name));
        }
        d
    }

    pub fn risk(&self) -> &str {
        self.attrs["risk"].as_str().unwrap_or("destructive")
    }
}

/// One upstream server and its last tool list.
pub struct Upstream {
    pub server: Server,
    /// The `McpServer` entity's attributes.
    pub entity_attrs: Value,
    tools: ArcSwap<Vec<Arc<ToolDef>>>,
    refresh: tokio::sync::Mutex<()>,
}

impl Upstream {
    pub fn name(&self) -> &str {
        self.server.name()
    }

    /// The tools, read again first when the server restarted or said they changed.
    pub async fn tools(&self) -> Result<Arc<Vec<Arc<ToolDef>>>, UpstreamError> {
        use std::sync::atomic::Ordering;
        if !self.server.tools_stale().load(Ordering::Acquire) && self.server.running().await {
            return Ok(self.tools.load_full());
        }
        let _one = self.refresh.lock().await;
        if !self.server.tools_stale().load(Ordering::Acquire) && self.server.running().await {
            return Ok(self.tools.load_full());
        }
        // Starting the process (when it is not running) marks the list stale; clear the mark
        // only once the list read after that start is in.
        self.server.info().await?;
        self.server.tools_stale().store(false, Ordering::Release);
        match self.list().await {
            Ok(list) => {
                let list = Arc::new(list);
                self.tools.store(list.clone());
                Ok(list)
            }
            Err(e) => {
                self.server.tools_stale().store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    pub async fn tool(&self, name: &str) -> Result<Option<Arc<ToolDef>>, UpstreamError> {
        Ok(self.tools().await?.iter().find(|t| t.name == name).cloned())
    }

    /// Whether the server declared a capability (`prompts`, `resources`) when it started.
    pub async fn offers(&self, capability: &str) -> Result<bool, UpstreamError> {
        let (_, info) = self.server.info().await?;
        Ok(info
            .get("capabilities")
            .and_then(|c| c.get(capability))
            .is_some())
    }

    /// Every page of a list method (`prompts/list`, `resources/list`, ...): the entries under
    /// `key`, in the server's order.
    pub async fn list_all(&self, method: &str, key: &str) -> Result<Vec<Value>, UpstreamError> {
        let mut out = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let mut params = Map::new();
            if let Some(c) = cursor.take() {
                params.insert("cursor".into(), c);
            }
            let mut answer = self.server.request(method, params).await?;
            // An error (a server still warming up, a bad page) is not an empty list.
            let Some(result) = answer.get_mut("result") else {
                let error = answer.get("error").cloned().unwrap_or(Value::Null);
                return Err(UpstreamError::Refused {
                    server: self.name().to_string(),
                    method: method.into(),
                    error: error.to_string(),
                });
            };
            if let Some(Value::Array(items)) = result.get_mut(key).map(Value::take) {
                out.extend(items);
            }
            match result.get("nextCursor") {
                Some(c @ Value::String(_)) => cursor = Some(c.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn list(&self) -> Result<Vec<Arc<ToolDef>>, UpstreamError> {
        let mut out: Vec<Arc<ToolDef>> = Vec::new();
        // An error leaves the list stale, asked for again.
        for def in self.list_all("tools/list", "tools").await? {
            match ToolDef::new(self.server.config(), def) {
                Some(t) if out.iter().any(|o| o.name == t.name) => {
                    tracing::warn!(server = %self.name(), tool = %t.name, "the server lists this tool twice; the first is kept");
                }
                Some(t) => out.push(Arc::new(t)),
                None => {
                    tracing::warn!(server = %self.name(), "the server listed a tool without a name");
                }
            }
        }
        Ok(out)
    }
}

/// Every configured upstream.
pub struct McpUpstreams {
    list: Vec<Arc<Upstream>>,
}

impl McpUpstreams {
    pub fn new(config: &McpConfig) -> Self {
        let timeout = Duration::from_millis(config.call_timeout_ms.max(1));
        let list = config
            .servers
            .iter()
            .map(|s| {
                Arc::new(Upstream {
                    entity_attrs: json!({
                        "owner_team": s.owner_team,
                        "max_data_level": s.max_data_level,
                    }),
                    server: Server::new(s.clone(), timeout, config.max_message_bytes),
                    tools: ArcSwap::from_pointee(Vec::new()),
                    refresh: tokio::sync::Mutex::new(()),
                })
            })
            .collect();
        Self { list }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.list
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.list.iter().find(|u| u.name() == name)
    }

    /// Starts every server and reads its tools; one that fails is logged and tried again on
    /// the next request that needs it.
    pub async fn start(&self) {
        let starts = self.list.iter().map(|u| async move {
            match u.tools().await {
                Ok(tools) => {
                    tracing::info!(server = %u.name(), tools = tools.len(), "MCP server ready")
                }
                Err(e) => tracing::warn!(error = %e, "MCP server not ready; retried on demand"),
            }
        });
        futures::future::join_all(starts).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::config::ToolSettings;

    fn server() -> McpServerConfig {
        McpServerConfig {
            owner_team: "platform".into(),
            tools: [(
                "wipe".to_string(),
                ToolSettings {
                    risk: Some("write".into()),
                },
            )]
            .into(),
            ..McpServerConfig::local("files", vec!["x".into()])
        }
    }

    #[test]
    fn namespaced_names_split_at_the_first_separator() {
        assert_eq!(namespaced("files", "read__all"), "files__read__all");
        assert_eq!(split("files__read__all"), Some(("files", "read__all")));
        assert_eq!(split("files"), None);
        assert_eq!(split("__read"), None);
        assert_eq!(split("files__"), None);
    }

    #[test]
    fn namespaced_uris_keep_the_server_s_uri_whole() {
        let u = namespaced_uri("notes", "note:///a/b.txt");
        assert_eq!(u, "cairn://notes/note:///a/b.txt");
        assert_eq!(split_uri(&u), Some(("notes", "note:///a/b.txt")));
        assert_eq!(split_uri("cairn://notes/"), None);
        assert_eq!(split_uri("cairn:///x"), None);
        assert_eq!(split_uri("file:///x"), None);
        let mut result = json!({
            "content": [{"type": "text", "text": "x"}, {"type": "resource_link", "uri": "file:///a"},
                        {"type": "resource", "resource": {"uri": "file:///b", "text": "b"}}],
            "messages": [{"role": "user", "content": {"type": "resource_link", "uri": "note:///c"}}],
            "contents": [{"uri": "note:///d", "text": "d"}],
        });
        namespace_links(&mut result, "s");
        assert_eq!(result["content"][1]["uri"], "cairn://s/file:///a");
        assert_eq!(
            result["content"][2]["resource"]["uri"],
            "cairn://s/file:///b"
        );
        assert_eq!(
            result["messages"][0]["content"]["uri"],
            "cairn://s/note:///c"
        );
        assert_eq!(result["contents"][0]["uri"], "cairn://s/note:///d");
        assert_eq!(result["content"][0], json!({"type": "text", "text": "x"}));
    }

    #[test]
    fn resource_attributes_name_the_scheme() {
        let s = server();
        let a = resource_attrs(&s, "NOTE:///a");
        assert_eq!(a["scheme"], "note");
        assert_eq!(a["uri"], "NOTE:///a");
        assert_eq!(resource_attrs(&s, "no-scheme")["scheme"], "");
    }

    #[test]
    fn risk_follows_the_annotations_and_their_defaults() {
        let s = server();
        let risk = |def: Value| ToolDef::new(&s, def).expect("named").risk().to_string();
        assert_eq!(risk(json!({"name": "a"})), "destructive");
        assert_eq!(
            risk(json!({"name": "a", "annotations": {"readOnlyHint": true}})),
            "read"
        );
        assert_eq!(
            risk(json!({"name": "a", "annotations": {"destructiveHint": false}})),
            "write"
        );
        assert_eq!(
            risk(json!({"name": "wipe"})),
            "write",
            "the operator's setting wins"
        );
        let t = ToolDef::new(&s, json!({"name": "a"})).expect("named");
        assert_eq!(t.id, "files/a");
        assert_eq!(t.listed(true)["name"], "files__a");
        assert_eq!(t.listed(false)["name"], "a");
        assert!(ToolDef::new(&s, json!({"title": "no name"})).is_none());
    }
}
