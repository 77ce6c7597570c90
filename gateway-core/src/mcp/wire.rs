//! JSON-RPC 2.0 as MCP uses it, kept to what a gateway reads: the envelope (`id`, `method`,
//! `params`), the per-request metadata of 2026-07-28 and the headers that must mirror the body.
//! Results pass through as the upstream wrote them (a typed model would drop fields it does not
//! know), so only the parts decided on are parsed.

use base64::Engine;
use http::HeaderMap;
use serde_json::{Map, Value, json};

/// The stateless revision: per-request `_meta`, `server/discover`, `Mcp-Method`/`Mcp-Name`.
pub const MODERN: &[&str] = &["2026-07-28"];
/// Handshake-era revisions (`initialize` and `Mcp-Session-Id`), newest first.
pub const HANDSHAKE: &[&str] = &["2025-11-25", "2025-06-18"];

pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

pub const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Error codes: JSON-RPC's, the MCP specification's (-32020..-32099) and Cairn's own, from the
/// implementation-defined range -32000..-32019.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    pub const HEADER_MISMATCH: i64 = -32020;
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// Cedar denied the request.
    pub const DENIED: i64 = -32010;
    /// A guardrail blocked the arguments or the result.
    pub const BLOCKED: i64 = -32011;
    /// The upstream server failed, timed out or is not running.
    pub const UPSTREAM: i64 = -32012;
    /// The caller did not authenticate.
    pub const UNAUTHENTICATED: i64 = -32013;
    /// The gateway cannot decide or record right now (no bundle, records unavailable).
    pub const UNAVAILABLE: i64 = -32014;
    /// A rate limit was reached.
    pub const LIMITED: i64 = -32015;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn json(&self) -> Value {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

/// One client message: a request (with `id`) or a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Option<Value>,
    pub method: String,
    pub params: Map<String, Value>,
}

impl Message {
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// `params._meta`, when it is an object.
    pub fn meta(&self) -> Option<&Map<String, Value>> {
        self.params.get("_meta").and_then(Value::as_object)
    }

    /// The revision named in `params._meta` (2026-07-28 and later carry it on every request).
    pub fn meta_version(&self) -> Option<&Value> {
        self.meta().and_then(|m| m.get(META_VERSION))
    }

    /// A string parameter.
    pub fn str_param(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }
}

/// Parses one POST body. Batches are not part of MCP since 2025-06-18; a client never sends a
/// response, as the gateway sends no requests to clients.
pub fn parse(bytes: &[u8]) -> Result<Message, RpcError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| RpcError::new(code::PARSE_ERROR, format!("the body is not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(RpcError::new(
            code::INVALID_REQUEST,
            if value.is_array() {
                "JSON-RPC batches are not part of MCP: send one message per POST"
            } else {
                "the body must be a JSON-RPC request object"
            },
        ));
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::new(
            code::INVALID_REQUEST,
            "`jsonrpc` must be \"2.0\"",
        ));
    }
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_)))
            if id.is_string() || id.is_i64() || id.is_u64() =>
        {
            Some(id)
        }
        Some(_) => {
            return Err(RpcError::new(
                code::INVALID_REQUEST,
                "`id` must be a string or an integer",
            ));
        }
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => {
            return Err(RpcError::new(
                code::INVALID_REQUEST,
                "`method` must be a string",
            ));
        }
        None if obj.contains_key("result") || obj.contains_key("error") => {
            return Err(RpcError::new(
                code::INVALID_REQUEST,
                "the gateway sends no requests to clients, so it takes no responses",
            ));
        }
        None => return Err(RpcError::new(code::INVALID_REQUEST, "`method` is missing")),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                "`params` must be an object",
            ));
        }
    };
    Ok(Message { id, method, params })
}

/// A response carrying `result`.
pub fn result(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A response carrying `error`; `id` is null when the request's could not be read.
pub fn error(id: Option<&Value>, e: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": e.json() })
}

/// The body parameter a method's `Mcp-Name` header mirrors.
pub fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// A header value as the client meant it: the `=?base64?...?=` sentinel decoded. `None` when
/// the sentinel's content is not base64 of UTF-8.
pub fn decode_header_value(v: &str) -> Option<String> {
    match v
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(v.to_string()),
    }
}

/// A header value encoded for an upstream request, the sentinel used when the value is not
/// plain visible ASCII (or looks like the sentinel itself).
pub fn encode_header_value(v: &str) -> String {
    let visible = v.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let padded = v.starts_with(' ') || v.ends_with(' ');
    let sentinel = v.starts_with("=?base64?") && v.ends_with("?=");
    if !v.is_empty() && visible && !padded && !sentinel {
        v.to_string()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, RpcError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            RpcError::new(
                code::HEADER_MISMATCH,
                format!("the `{name}` header is not visible ASCII"),
            )
        }),
    }
}

/// The 2026-07-28 checks, in the specification's order: the envelope's metadata, then the
/// headers against the body (so a client that disagrees with itself is told so), then the
/// revision. `Ok` carries the revision.
pub fn check_modern(headers: &HeaderMap, msg: &Message) -> Result<String, RpcError> {
    let Some(meta) = msg.meta() else {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            format!(
                "params._meta must be an object carrying `{META_VERSION}` and `{META_CAPABILITIES}`"
            ),
        ));
    };
    let missing: Vec<&str> = [META_VERSION, META_CAPABILITIES]
        .into_iter()
        .filter(|k| !meta.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            format!("params._meta is missing {}", missing.join(" and ")),
        ));
    }
    let version = meta.get(META_VERSION);
    match header(headers, PROTOCOL_VERSION_HEADER)? {
        Some(h) if Some(h) == version.and_then(Value::as_str) => {}
        Some(h) => {
            return Err(RpcError::new(
                code::HEADER_MISMATCH,
                format!(
                    "MCP-Protocol-Version header `{h}` does not match the body's protocol version"
                ),
            ));
        }
        None => {
            return Err(RpcError::new(
                code::HEADER_MISMATCH,
                "the MCP-Protocol-Version header is missing",
            ));
        }
    }
    match header(headers, METHOD_HEADER)? {
        Some(h) if h == msg.method => {}
        Some(h) => {
            return Err(RpcError::new(
                code::HEADER_MISMATCH,
                format!(
                    "Mcp-Method header `{h}` does not match the body's method `{}`",
                    msg.method
                ),
            ));
        }
        None => {
            return Err(RpcError::new(
                code::HEADER_MISMATCH,
                "the Mcp-Method header is missing",
            ));
        }
    }
    if let Some(key) = name_param(&msg.method) {
        let body = msg.str_param(key);
        let mirrored = header(headers, NAME_HEADER)?;
        match (mirrored, body) {
            (Some(h), Some(b)) => {
                let decoded = decode_header_value(h).ok_or_else(|| {
                    RpcError::new(
                        code::HEADER_MISMATCH,
                        "the Mcp-Name header's base64 value does not decode",
                    )
                })?;
                if decoded != b {
                    return Err(RpcError::new(
                        code::HEADER_MISMATCH,
                        format!(
                            "Mcp-Name header `{decoded}` does not match the body's {key} `{b}`"
                        ),
                    ));
                }
            }
            (None, Some(_)) => {
                return Err(RpcError::new(
                    code::HEADER_MISMATCH,
                    format!("the Mcp-Name header is missing ({} needs it)", msg.method),
                ));
            }
            (_, None) => {}
        }
    }
    let Some(version) = version.and_then(Value::as_str) else {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            format!("`{META_VERSION}` must be a string"),
        ));
    };
    if !MODERN.contains(&version) {
        return Err(RpcError::new(
            code::UNSUPPORTED_PROTOCOL_VERSION,
            format!("protocol version `{version}` is not supported"),
        )
        .with_data(json!({ "supported": MODERN, "requested": version })));
    }
    Ok(version.to_string())
}

/// The `x-mcp-header` annotations of an input schema: (header name part, property path), for
/// properties reached from the root through `properties` alone (the only place the annotation
/// is valid).
pub fn param_headers(schema: &Value) -> Vec<(String, Vec<String>)> {
    fn walk(schema: &Value, path: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (k, p) in props {
            path.push(k.clone());
            if let Some(h) = p.get("x-mcp-header").and_then(Value::as_str) {
                out.push((h.to_string(), path.clone()));
            }
            if path.len() < 16 {
                walk(p, path, out);
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(schema, &mut Vec::new(), &mut out);
    out
}

/// The 2026-07-28 check of `Mcp-Param-{Name}` headers: every annotated argument present in the
/// body must be mirrored, and match once decoded (integers compared as numbers).
pub fn check_param_headers(
    headers: &HeaderMap,
    schema: &Value,
    arguments: &Map<String, Value>,
) -> Result<(), RpcError> {
    for (name, path) in param_headers(schema) {
        let mut v = arguments.get(&path[0]);
        for step in &path[1..] {
            v = v.and_then(|x| x.get(step));
        }
        let Some(body) = v.filter(|b| !b.is_null()) else {
            continue;
        };
        let header_name = format!("mcp-param-{}", name.to_ascii_lowercase());
        let mismatch = |what: &str| {
            RpcError::new(
                code::HEADER_MISMATCH,
                format!("Mcp-Param-{name} {what} (argument `{}`)", path.join(".")),
            )
        };
        let Some(raw) = header(headers, &header_name)? else {
            return Err(mismatch("is missing"));
        };
        let decoded = decode_header_value(raw).ok_or_else(|| mismatch("does not decode"))?;
        let same = match body {
            Value::String(s) => *s == decoded,
            Value::Bool(b) => decoded == b.to_string(),
            Value::Number(n) => decoded
                .parse::<f64>()
                .ok()
                .zip(n.as_f64())
                .is_some_and(|(a, b)| a == b),
            _ => false,
        };
        if !same {
            return Err(mismatch("does not match the body"));
        }
    }
    Ok(())
}

/// The revision answered to an `initialize` offering `offered`: the same when the gateway
/// speaks it, else the newest handshake revision (the client then decides whether to go on).
pub fn negotiate_handshake(offered: Option<&str>) -> &'static str {
    HANDSHAKE
        .iter()
        .find(|v| Some(**v) == offered)
        .copied()
        .unwrap_or(HANDSHAKE[0])
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn modern(method: &str, params: Value) -> (HeaderMap, Message) {
        let mut p = params.as_object().cloned().unwrap_or_default();
        p.insert(
            "_meta".into(),
            json!({ META_VERSION: "2026-07-28", META_CAPABILITIES: {} }),
        );
        let msg = Message {
            id: Some(json!(1)),
            method: method.into(),
            params: p,
        };
        let mut h = HeaderMap::new();
        h.insert(
            PROTOCOL_VERSION_HEADER,
            HeaderValue::from_static("2026-07-28"),
        );
        h.insert(METHOD_HEADER, HeaderValue::from_str(method).expect("ascii"));
        (h, msg)
    }

    #[test]
    fn envelopes_are_read_and_refused_with_the_reason() {
        let m = parse(br#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#).expect("parses");
        assert_eq!(m.id, Some(json!("a")));
        assert!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
                .expect("parses")
                .is_notification()
        );
        for (body, code, says) in [
            (&b"{"[..], code::PARSE_ERROR, "not JSON"),
            (b"[]", code::INVALID_REQUEST, "batches"),
            (
                br#"{"id":1,"method":"x"}"#,
                code::INVALID_REQUEST,
                "jsonrpc",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
                code::INVALID_REQUEST,
                "`id`",
            ),
            (
                br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
                code::INVALID_REQUEST,
                "`id`",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                code::INVALID_REQUEST,
                "responses",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#,
                code::INVALID_PARAMS,
                "params",
            ),
        ] {
            let e = parse(body).expect_err("refused");
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(body));
            assert!(e.message.contains(says), "{}: {}", says, e.message);
        }
    }

    #[test]
    fn headers_must_mirror_the_body() {
        let (mut h, m) = modern("tools/call", json!({"name": "files__read"}));
        let e = check_modern(&h, &m).expect_err("no Mcp-Name");
        assert_eq!(e.code, code::HEADER_MISMATCH);
        h.insert(NAME_HEADER, HeaderValue::from_static("files__write"));
        let e = check_modern(&h, &m).expect_err("wrong Mcp-Name");
        assert!(e.message.contains("files__write"), "{}", e.message);
        h.insert(NAME_HEADER, HeaderValue::from_static("files__read"));
        assert_eq!(check_modern(&h, &m).expect("matches"), "2026-07-28");
        let encoded = encode_header_value("files__read");
        assert_eq!(encoded, "files__read");
        let odd = encode_header_value("Grüße");
        assert!(odd.starts_with("=?base64?"));
        assert_eq!(decode_header_value(&odd).as_deref(), Some("Grüße"));

        h.insert(METHOD_HEADER, HeaderValue::from_static("tools/list"));
        assert_eq!(
            check_modern(&h, &m).expect_err("method").code,
            code::HEADER_MISMATCH
        );
    }

    #[test]
    fn annotated_arguments_must_be_mirrored_in_param_headers() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"n": {"type": "integer", "x-mcp-header": "N"}}},
            "query": {"type": "string"}}});
        assert_eq!(param_headers(&schema).len(), 2);
        let args = |v: Value| v.as_object().cloned().unwrap_or_default();
        let mut h = HeaderMap::new();
        // Absent arguments need no header.
        assert!(check_param_headers(&h, &schema, &args(json!({"query": "q"}))).is_ok());
        let a = args(json!({"region": "us-west1", "opts": {"n": 42}}));
        let e = check_param_headers(&h, &schema, &a).expect_err("missing");
        assert_eq!(e.code, code::HEADER_MISMATCH);
        h.insert("mcp-param-region", HeaderValue::from_static("us-west1"));
        h.insert("mcp-param-n", HeaderValue::from_static("42.0"));
        assert!(
            check_param_headers(&h, &schema, &a).is_ok(),
            "numbers compare as numbers"
        );
        h.insert("mcp-param-region", HeaderValue::from_static("eu-west1"));
        assert!(check_param_headers(&h, &schema, &a).is_err());
    }

    #[test]
    fn unknown_revisions_are_refused_with_the_supported_ones() {
        let (mut h, mut m) = modern("tools/list", json!({}));
        m.params["_meta"][META_VERSION] = json!("2099-01-01");
        h.insert(
            PROTOCOL_VERSION_HEADER,
            HeaderValue::from_static("2099-01-01"),
        );
        let e = check_modern(&h, &m).expect_err("unsupported");
        assert_eq!(e.code, code::UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(e.data.expect("data")["supported"], json!(["2026-07-28"]));
        assert_eq!(negotiate_handshake(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate_handshake(Some("2024-11-05")), "2025-11-25");
    }
}
