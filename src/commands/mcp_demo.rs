//! The MCP server `cairn demo` fronts with the gateway: stdio, one JSON-RPC message per line,
//! the handshake era. Four tools over a directory of notes, one of each kind a policy tells
//! apart: `search_notes` and `read_file` (read-only), `write_file` (writes, not destructive),
//! `delete_note` (destructive). Paths outside the root are refused by the server itself too.

use std::io::{BufRead, Write};
use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

use crate::exit::{CliResult, Outcome};

pub fn serve(root: &Path) -> CliResult {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(id) = msg.get("id").cloned() else {
            continue;
        };
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let reply = match answer(root, method, &params) {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err((code, message)) => {
                json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
            }
        };
        let written = writeln!(stdout, "{reply}").and_then(|()| stdout.flush());
        if written.is_err() {
            break;
        }
    }
    Ok(Outcome::Success)
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
            "protocolVersion": "2025-11-25",
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "cairn-demo-notes", "version": env!("CARGO_PKG_VERSION") },
        })),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools() })),
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
