//! OpenAI-compatible wire types: chat requests, responses, stream chunks, model lists, errors.
//! Requests keep unknown fields so they can be passed to an OpenAI-compatible upstream as sent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::decision_log::Usage;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Everything else, passed through to OpenAI-compatible upstreams.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }

    /// The requested completion limit (`max_completion_tokens` wins over `max_tokens`).
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Checks what serde cannot: a role on every message, sane sampling values and limits.
    pub fn check(&self) -> Result<(), String> {
        if self.messages.is_empty() {
            return Err("`messages` must contain at least one message".into());
        }
        for (i, m) in self.messages.iter().enumerate() {
            if !matches!(
                m.role.as_str(),
                "system" | "developer" | "user" | "assistant" | "tool"
            ) {
                return Err(format!(
                    "`messages[{i}].role` `{}` is not a chat role",
                    m.role
                ));
            }
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err("`temperature` must be between 0 and 2".into());
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err("`top_p` must be between 0 and 1".into());
        }
        for (name, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            match v {
                Some(0) => return Err(format!("`{name}` must be at least 1")),
                // Cedar's integers are 64-bit signed; no model produces anywhere near this.
                Some(n) if n > MAX_OUTPUT_TOKENS => {
                    return Err(format!("`{name}` must be at most {MAX_OUTPUT_TOKENS}"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The largest completion limit a request may ask for (2^31 - 1: far above any model's, and
/// within every integer type the limit reaches, Cedar's included).
pub const MAX_OUTPUT_TOKENS: u64 = i32::MAX as u64;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Message {
    pub role: String,
    /// A string, an array of content parts, or null (assistant tool calls).
    #[serde(default)]
    pub content: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// The text of the message: the string, or the text parts joined.
    pub fn text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

/// A finished completion, ready to be rendered in OpenAI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: String,
    pub model: String,
    pub content: String,
    pub finish_reason: String,
    pub usage: Usage,
    pub tool_calls: Option<Value>,
    /// A provider-side guardrail's assessment of the output, when it intervened.
    pub guardrail: Option<Value>,
    /// The provider's id of the call (Bedrock's `x-amzn-RequestId`, which CloudTrail records as
    /// `requestID`), so the audit lake can join the outcome to the provider's own log exactly.
    pub upstream_request_id: Option<String>,
}

pub fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    });
    if u.cache_read_tokens > 0 || u.cache_write_tokens > 0 {
        // OpenAI's shape: cached tokens are part of prompt_tokens.
        let prompt = u.input_tokens + u.cache_read_tokens + u.cache_write_tokens;
        v["prompt_tokens"] = json!(prompt);
        v["total_tokens"] = json!(prompt + u.output_tokens);
        v["prompt_tokens_details"] = json!({ "cached_tokens": u.cache_read_tokens });
    }
    v
}

pub fn completion_json(c: &Completion, created: i64) -> Value {
    let mut message = json!({ "role": "assistant", "content": c.content });
    if let Some(tc) = &c.tool_calls {
        message["tool_calls"] = tc.clone();
    }
    json!({
        "id": c.id,
        "object": "chat.completion",
        "created": created,
        "model": c.model,
        "choices": [{ "index": 0, "message": message, "finish_reason": c.finish_reason }],
        "usage": usage_json(&c.usage),
    })
}

/// One streamed chunk with a content delta (the first also carries the role).
pub fn chunk_json(
    id: &str,
    model: &str,
    created: i64,
    content: Option<&str>,
    role: bool,
    finish: Option<&str>,
) -> Value {
    let mut delta = Map::new();
    if role {
        delta.insert("role".into(), Value::String("assistant".into()));
    }
    if let Some(c) = content {
        delta.insert("content".into(), Value::String(c.into()));
    }
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    })
}

/// A piece of a streamed tool call: `id` and `name` come with the first piece of each call.
pub struct ToolCallPiece<'a> {
    pub index: u32,
    pub id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

/// A streamed piece of a tool call.
pub fn tool_call_chunk_json(
    id: &str,
    model: &str,
    created: i64,
    role: bool,
    piece: &ToolCallPiece<'_>,
) -> Value {
    let mut call = json!({ "index": piece.index, "function": { "arguments": piece.arguments } });
    if let Some(c) = piece.id {
        call["id"] = json!(c);
        call["type"] = json!("function");
    }
    if let Some(n) = piece.name {
        call["function"]["name"] = json!(n);
    }
    let mut delta = json!({ "tool_calls": [call] });
    if role {
        delta["role"] = json!("assistant");
    }
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": null }],
    })
}

/// The final chunk of `stream_options.include_usage`: no choices, only usage.
pub fn usage_chunk_json(id: &str, model: &str, created: i64, usage: &Usage) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_json(usage),
    })
}

pub fn sse_event(v: &Value) -> bytes::Bytes {
    let mut s = String::with_capacity(256);
    s.push_str("data: ");
    s.push_str(&v.to_string());
    s.push_str("\n\n");
    bytes::Bytes::from(s)
}

pub const SSE_DONE: &str = "data: [DONE]\n\n";

pub fn error_json(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

pub fn model_list_json(ids: &[(String, String)], created: i64) -> Value {
    json!({
        "object": "list",
        "data": ids.iter().map(|(id, owner)| json!({
            "id": id, "object": "model", "created": created, "owned_by": owner,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let v = json!({"model": "m", "messages": [{"role": "user", "content": "hi", "name": "x"}],
                       "seed": 7, "stream": true, "stream_options": {"include_usage": true}});
        let r: ChatRequest = serde_json::from_value(v).unwrap();
        assert!(r.streaming() && r.include_usage());
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["seed"], 7);
        assert_eq!(back["messages"][0]["name"], "x");
    }

    #[test]
    fn content_parts_are_text() {
        let m: Message = serde_json::from_value(json!({"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}, {"type": "text", "text": "b"}]})).unwrap();
        assert_eq!(m.text(), "a\nb");
    }

    #[test]
    fn checks_roles_and_ranges() {
        let mut r: ChatRequest = serde_json::from_value(
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
        )
        .unwrap();
        assert!(r.check().unwrap_err().contains("wizard"));
        r.messages[0].role = "user".into();
        r.temperature = Some(3.0);
        assert!(r.check().is_err());
        r.temperature = None;
        r.max_tokens = Some(1 << 63);
        assert!(r.check().unwrap_err().contains("at most"));
        r.max_tokens = Some(MAX_OUTPUT_TOKENS);
        assert!(r.check().is_ok());
    }
}
