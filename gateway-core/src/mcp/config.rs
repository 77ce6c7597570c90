//! The `[mcp]` section: the upstream MCP servers the gateway fronts at `/mcp`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// The upstream servers, served together at `/mcp` (names namespaced `server__name`) and
    /// each alone at `/mcp/{server}`.
    pub servers: Vec<McpServerConfig>,
    /// Browser origins allowed to call `/mcp`. A request whose `Origin` header names another
    /// is refused with 403 (DNS rebinding); a request without one is not a browser's.
    pub allowed_origins: Vec<String>,
    /// The resource URI clients get tokens for (RFC 8707), named in the protected-resource
    /// metadata; empty means `http://{listen}/mcp`.
    pub resource: String,
    /// Authorization servers named in the protected-resource metadata; empty means the
    /// configured OIDC issuer.
    pub authorization_servers: Vec<String>,
    /// Longest one upstream call may take.
    pub call_timeout_ms: u64,
    /// Largest message accepted from an upstream server.
    pub max_message_bytes: usize,
    /// Sessions of the handshake-era revisions (2025-06-18, 2025-11-25): how long one lives
    /// unused, and how many the gateway keeps.
    pub session_idle_s: u64,
    pub max_sessions: usize,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            allowed_origins: Vec::new(),
            resource: String::new(),
            authorization_servers: Vec::new(),
            call_timeout_ms: 60_000,
            max_message_bytes: 4 * 1024 * 1024,
            session_idle_s: 3_600,
            max_sessions: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Lowercase letters, digits and `-`: the namespace of the server's tools (`name__tool`),
    /// its path (`/mcp/{name}`) and the `McpServer` entity's id.
    pub name: String,
    /// A local server: the program and its arguments, spawned by the gateway with stdio as the
    /// transport, restarted when it exits; its stderr goes to the gateway's log.
    #[serde(default)]
    pub command: Vec<String>,
    /// A remote server: its Streamable HTTP endpoint (instead of `command`).
    #[serde(default)]
    pub url: Option<String>,
    /// A remote server's credential, the gateway's own (never the client's): `Authorization:
    /// Bearer` with the value of this environment variable, or of this file (read when a
    /// session opens, so a rotated file is picked up with the next one).
    #[serde(default)]
    pub bearer_env: Option<String>,
    #[serde(default)]
    pub bearer_file: Option<String>,
    /// Fixed headers sent to a remote server.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A remote server that must know the caller: each call carries a token obtained by RFC
    /// 8693 token exchange for the caller's OAuth token (the gateway's own requests, such as
    /// listing tools, keep `bearer_env`/`bearer_file`).
    #[serde(default)]
    pub token_exchange: Option<super::exchange::TokenExchangeConfig>,
    /// Environment of the spawned program, on top of a minimal one (`PATH`, `HOME`, `LANG`):
    /// the gateway's own environment, secrets included, is not passed on.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the spawned program.
    #[serde(default)]
    pub cwd: Option<String>,
    /// The `McpServer` entity's `owner_team`.
    #[serde(default)]
    pub owner_team: String,
    /// Highest data classification level the server is approved for (the `max_data_level` of
    /// its tools in Cedar).
    #[serde(default = "default_max_data_level")]
    pub max_data_level: i64,
    /// What the guardrails do with findings in this server's arguments and results: `block`,
    /// `redact`, or empty for the gateway's configured actions.
    #[serde(default)]
    pub guardrails: String,
    /// Per-tool settings, by the tool's own name on the server.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolSettings>,
}

impl McpServerConfig {
    /// A local server with every other setting at its default.
    pub fn local(name: &str, command: Vec<String>) -> Self {
        Self {
            name: name.to_string(),
            command,
            url: None,
            bearer_env: None,
            bearer_file: None,
            headers: BTreeMap::new(),
            token_exchange: None,
            env: BTreeMap::new(),
            cwd: None,
            owner_team: String::new(),
            max_data_level: default_max_data_level(),
            guardrails: String::new(),
            tools: BTreeMap::new(),
        }
    }
}

fn default_max_data_level() -> i64 {
    1
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSettings {
    /// `read`, `write` or `destructive`, instead of what the tool's annotations suggest.
    #[serde(default)]
    pub risk: Option<String>,
}

/// Problems with the section, each naming its key.
pub fn check_config(c: &McpConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in c.servers.iter().enumerate() {
        let key = format!("mcp.servers[{i}]");
        if !valid_server_name(&s.name) {
            problems.push(format!(
                "`{key}.name` `{}` must be 1 to 32 lowercase letters, digits or `-`, starting with a letter",
                s.name
            ));
        }
        if !seen.insert(s.name.as_str()) {
            problems.push(format!(
                "`{key}.name` `{}` is used by another server",
                s.name
            ));
        }
        match (&s.url, s.command.first()) {
            (Some(_), Some(_)) => problems.push(format!(
                "`{key}`: set `command` (a local server) or `url` (a remote one), not both"
            )),
            (Some(url), None) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                problems.push(format!("`{key}.url` `{url}` must be an http(s) URL"));
            }
            (None, None) | (None, Some(_)) if s.command.first().is_none_or(String::is_empty) => {
                problems.push(format!(
                    "`{key}.command` must name the program to run, e.g. [\"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"], or `url` a remote server"
                ));
            }
            _ => {}
        }
        if s.url.is_none()
            && (s.bearer_env.is_some() || s.bearer_file.is_some() || !s.headers.is_empty())
        {
            problems.push(format!(
                "`{key}`: `bearer_env`, `bearer_file` and `headers` are for a remote server (`url`)"
            ));
        }
        if let Some(x) = &s.token_exchange {
            if s.url.is_none() {
                problems.push(format!(
                    "`{key}.token_exchange` is for a remote server (`url`)"
                ));
            }
            problems.extend(x.check(&format!("{key}.token_exchange")));
        }
        if s.bearer_env.is_some() && s.bearer_file.is_some() {
            problems.push(format!(
                "`{key}`: set `bearer_env` or `bearer_file`, not both"
            ));
        }
        if !matches!(s.guardrails.as_str(), "" | "block" | "redact") {
            problems.push(format!(
                "`{key}.guardrails` `{}` must be block, redact or empty",
                s.guardrails
            ));
        }
        if !(0..=3).contains(&s.max_data_level) {
            problems.push(format!(
                "`{key}.max_data_level` {} must be a classification level, 0 to 3",
                s.max_data_level
            ));
        }
        for (tool, t) in &s.tools {
            if let Some(risk) = &t.risk
                && !matches!(risk.as_str(), "read" | "write" | "destructive")
            {
                problems.push(format!(
                    "`{key}.tools.{tool}.risk` `{risk}` must be read, write or destructive"
                ));
            }
        }
    }
    if c.call_timeout_ms == 0 {
        problems.push("`mcp.call_timeout_ms` must be at least 1".into());
    }
    if c.max_message_bytes < 1024 {
        problems.push("`mcp.max_message_bytes` must be at least 1024".into());
    }
    problems
}

/// Server names cannot contain `_`, so the first `__` of a namespaced name always ends the
/// server's part.
pub fn valid_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 32
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_exclude_the_namespace_separator() {
        assert!(valid_server_name("files"));
        assert!(valid_server_name("k8s-prod"));
        assert!(!valid_server_name("my_files"));
        assert!(!valid_server_name("Files"));
        assert!(!valid_server_name("9lives"));
        assert!(!valid_server_name(""));
        assert!(!valid_server_name(&"a".repeat(33)));
    }

    #[test]
    fn every_problem_is_named() {
        let c = McpConfig {
            servers: vec![McpServerConfig {
                max_data_level: 7,
                guardrails: "warn".into(),
                tools: [(
                    "t".to_string(),
                    ToolSettings {
                        risk: Some("scary".into()),
                    },
                )]
                .into(),
                ..McpServerConfig::local("a_b", vec![])
            }],
            ..McpConfig::default()
        };
        let problems = check_config(&c).join("\n");
        for key in [
            "mcp.servers[0].name",
            "mcp.servers[0].command",
            "mcp.servers[0].guardrails",
            "mcp.servers[0].max_data_level",
            "mcp.servers[0].tools.t.risk",
        ] {
            assert!(problems.contains(key), "{key} missing from {problems}");
        }
    }
}
