//! The upstream servers and their tools as the gateway sees them: each tool with its Cedar
//! attributes, and the namespacing rule that puts several servers behind one endpoint.
//!
//! Namespacing: at `/mcp` a tool is `{server}__{tool}`. Server names are lowercase letters,
//! digits and `-` (no `_`), so the first `__` always ends the server's part, and two servers
//! can never produce the same name; a server that lists one tool name twice keeps the first
//! (and the gateway logs it). At `/mcp/{server}` names are the server's own.

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

    async fn list(&self) -> Result<Vec<Arc<ToolDef>>, UpstreamError> {
        let mut out: Vec<Arc<ToolDef>> = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let mut params = Map::new();
            if let Some(c) = cursor.take() {
                params.insert("cursor".into(), c);
            }
            let answer = self.server.request("tools/list", params).await?;
            // An error (a server still warming up, a bad page) is not an empty list: the list
            // stays stale and is asked for again.
            let Some(result) = answer.get("result") else {
                let error = answer.get("error").cloned().unwrap_or(Value::Null);
                return Err(UpstreamError::Refused {
                    server: self.name().to_string(),
                    method: "tools/list".into(),
                    error: error.to_string(),
                });
            };
            for def in result
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match ToolDef::new(self.server.config(), def.clone()) {
                    Some(t) if out.iter().any(|o| o.name == t.name) => {
                        tracing::warn!(server = %self.name(), tool = %t.name, "the server lists this tool twice; the first is kept");
                    }
                    Some(t) => out.push(Arc::new(t)),
                    None => {
                        tracing::warn!(server = %self.name(), "the server listed a tool without a name");
                    }
                }
            }
            match result.get("nextCursor") {
                Some(c @ Value::String(_)) => cursor = Some(c.clone()),
                _ => break,
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
