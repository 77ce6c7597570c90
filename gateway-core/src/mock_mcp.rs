//! The MCP server `cairn demo` fronts with the gateway (and `benches/mcp.sh` calls directly and
//! through it): over stdio, one JSON-RPC message per line, or over stateless Streamable HTTP
//! (JSON answers, no session). Four tools over a directory of notes, one of each kind a policy
//! tells apart: `search_notes` and `read_file` (read-only), `write_file` (writes, not
//! destructive), `delete_note` (destructive); each note as a resource `note:///NAME` (and the
//! template `note:///{name}`); one prompt, `summarize_note`. Paths outside the root are refused
//! by the server itself too.

use std::io::{BufRead, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

/// One JSON-RPC message in, its answer out (`None` for a notification or a line that is not
/// JSON-RPC).
fn reply(root: &Path, text: &[u8]) -> Option<Value> {
    let msg = serde_json::from_slice::<Value>(text).ok()?;
    let id = msg.get("id").cloned()?;
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    Some(match answer(root, method, &params) {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err((code, message)) => {
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
        }
    })
}

/// Serves stdin/stdout until stdin ends.
pub fn serve_stdio(root: &Path) {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Some(out) = reply(root, line.as_bytes()) else {
            continue;
        };
        let written = writeln!(stdout, "{out}").and_then(|()| stdout.flush());
        if written.is_err() {
            break;
        }
    }
}

/// Serves `POST` on every path, statelessly, until `shutdown`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    root: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(axum::routing::post(http_post))
        .with_state(Arc::new(root));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn http_post(State(root): State<Arc<PathBuf>>, body: axum::body::Bytes) -> Response {
    match reply(&root, &body) {
        Some(out) => axum::Json(out).into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

fn tools() -> Value {
    let string = |d: &str| json!({ "type": "string", "description": d });
    json!([
        { "name": "search_notes", "description": "Searches the notes for a phrase.",
          "inputSchema": { "type": "object", "properties": { "query": string("what to look for") }, "required": ["query"] },
          "annotations": { "readOnlyHint": true, "openWorldHint": false } },
        { "name": "read_file", "description": "Reads a file under the notes directory.",
          "inputSchema": { "type": "object", "properties": { "path": string("path under the root") }, "required": ["path"] },
          "annotations": { "readOnlyHint": true, "openWorldHint": false } },
        { "name": "write_file", "description": "Writes a file under the notes directory.",
          "inputSchema": { "type": "object", "properties": { "path": string("path under the root"), "content": string("the text") },
                           "required": ["path", "content"] },
          "annotations": { "readOnlyHint": false, "destructiveHint": false, "openWorldHint": false } },
        { "name": "delete_note", "description": "Deletes a note.",
          "inputSchema": { "type": "object", "properties": { "note_id": string("the note's file name") }, "required": ["note_id"] },
          "annotations": { "readOnlyHint": false, "destructiveHint": true, "openWorldHint": false } },
    ])
}

fn answer(root: &Path, method: &str, params: &Value) -> Result<Value, (i64, String)> {
    match method {
        "initialize" => Ok(json!({
            "protocolVersion": params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .filter(|v| matches!(*v, "2025-06-18" | "2025-11-25"))
                .unwrap_or("2025-11-25"),
            "capabilities": { "tools": {}, "resources": {}, "prompts": {} },
            "serverInfo": { "name": "cairn-demo-notes", "version": env!("CARGO_PKG_VERSION") },
        })),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools() })),
        "resources/list" => Ok(json!({ "resources": notes(root)?.iter().map(|n| json!({
            "uri": format!("note:///{n}"), "name": n, "mimeType": "text/plain",
        })).collect::<Vec<_>>() })),
        "resources/templates/list" => Ok(json!({ "resourceTemplates": [{
            "uriTemplate": "note:///{name}", "name": "note", "mimeType": "text/plain",
            "description": "A note by its file name.",
        }] })),
        "resources/read" => {
            let uri = params
                .get("uri")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(name) = uri.strip_prefix("note:///") else {
                return Err((-32602, format!("unknown resource `{uri}`")));
            };
            let text = inside(root, name)
                .and_then(|p| std::fs::read_to_string(p).map_err(|e| e.to_string()))
                .map_err(|e| (-32002, format!("resource `{uri}`: {e}")))?;
            Ok(json!({ "contents": [{ "uri": uri, "mimeType": "text/plain", "text": text }] }))
        }
        "prompts/list" => Ok(json!({ "prompts": [{
            "name": "summarize_note", "description": "Asks for a summary of one note.",
            "arguments": [{ "name": "note_id", "description": "the note's file name", "required": true }],
        }] })),
        "prompts/get" => {
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if name != "summarize_note" {
                return Err((-32602, format!("unknown prompt `{name}`")));
            }
            let note = params
                .pointer("/arguments/note_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(json!({ "description": "Summarize a note", "messages": [{
                "role": "user",
                "content": { "type": "resource_link", "uri": format!("note:///{note}"), "name": note },
            }, {
                "role": "user",
                "content": { "type": "text", "text": format!("Summarize the note {note} in three lines.") },
            }] }))
        }
        "tools/call" => {
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let args = params.get("arguments").cloned().unwrap_or(Value::Null);
            let arg = |k: &str| {
                args.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let text = match name {
                "search_notes" => search(root, &arg("query")),
                "read_file" => inside(root, &arg("path"))
                    .and_then(|p| std::fs::read_to_string(p).map_err(|e| e.to_string())),
                "write_file" => inside(root, &arg("path")).and_then(|p| {
                    let content = arg("content");
                    if let Some(dir) = p.parent() {
                        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                    }
                    std::fs::write(&p, &content)
                        .map(|()| format!("wrote {} bytes", content.len()))
                        .map_err(|e| e.to_string())
                }),
                "delete_note" => inside(root, &arg("note_id")).and_then(|p| {
                    std::fs::remove_file(p)
                        .map(|()| "deleted".to_string())
                        .map_err(|e| e.to_string())
                }),
                other => return Err((-32602, format!("unknown tool `{other}`"))),
            };
            Ok(match text {
                Ok(t) => json!({ "content": [{ "type": "text", "text": t }], "isError": false }),
                Err(e) => json!({ "content": [{ "type": "text", "text": e }], "isError": true }),
            })
        }
        other => Err((-32601, format!("method `{other}` not found"))),
    }
}

/// `path` (relative, or absolute under the root) as a path under the root; `..` refused.
fn inside(root: &Path, path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    let rel = p.strip_prefix(root).unwrap_or(p);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("`{path}` is outside {}", root.display()));
    }
    Ok(root.join(rel))
}

/// The notes' paths under the root (files there and one directory down), sorted.
fn notes(root: &Path) -> Result<Vec<String>, (i64, String)> {
    let entries = std::fs::read_dir(root).map_err(|e| (-32603, e.to_string()))?;
    let mut names = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        match e.file_type() {
            Ok(t) if t.is_file() => names.push(name),
            Ok(t) if t.is_dir() => {
                for f in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                    if f.file_type().is_ok_and(|t| t.is_file()) {
                        names.push(format!("{name}/{}", f.file_name().to_string_lossy()));
                    }
                }
            }
            _ => {}
        }
    }
    names.sort();
    Ok(names)
}

fn search(root: &Path, query: &str) -> Result<String, String> {
    let needle = query.to_lowercase();
    let mut hits = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|e| e.to_string())?;
    for e in entries.flatten() {
        let path = e.path();
        if let Ok(text) = std::fs::read_to_string(&path)
            && needle
                .split_whitespace()
                .any(|w| text.to_lowercase().contains(w))
        {
            hits.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    hits.sort();
    Ok(if hits.is_empty() {
        "no note matches".into()
    } else {
        format!("{} note(s) match: {}", hits.len(), hits.join(", "))
    })
}
