//! OpenAI chat format to and from Bedrock's Converse API: messages (system, user, assistant,
//! tool calls and results), sampling parameters, tools, finish reasons, usage with cache
//! tokens, and guardrail assessments summarised without the text they matched.

use std::collections::HashMap;

use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ConversationRole, GuardrailAssessment,
    InferenceConfiguration, Message, SpecificToolChoice, StopReason, SystemContentBlock,
    TokenUsage, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use serde_json::{Map, Value, json};

use crate::decision_log::Usage;
use crate::openai::ChatRequest;
use crate::providers::ProviderError;

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::Status {
        status: 400,
        message: message.into(),
        retry_after: None,
    }
}

pub fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Document::Number(Number::PosInt(u))
            } else if let Some(i) = n.as_i64() {
                Document::Number(Number::NegInt(i))
            } else {
                Document::Number(Number::Float(n.as_f64().unwrap_or(0.0)))
            }
        }
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => Document::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

pub fn from_document(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => json!(b),
        Document::Number(Number::PosInt(u)) => json!(u),
        Document::Number(Number::NegInt(i)) => json!(i),
        Document::Number(Number::Float(f)) => json!(f),
        Document::String(s) => json!(s),
        Document::Array(a) => Value::Array(a.iter().map(from_document).collect()),
        Document::Object(o) => {
            // Sorted keys: tool-call arguments are stable across calls.
            let sorted: std::collections::BTreeMap<_, _> = o.iter().collect();
            Value::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), from_document(v)))
                    .collect::<Map<_, _>>(),
            )
        }
    }
}

/// The text parts of a message's content; anything else is refused (Cairn sends text only).
fn text_parts(content: &Value, at: usize) -> Result<Vec<String>, ProviderError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(if s.is_empty() {
            Vec::new()
        } else {
            vec![s.clone()]
        }),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text") | None, Some(t)) => Ok(t.to_string()),
                (kind, _) => Err(invalid(format!(
                    "`messages[{at}]` has a `{}` content part; Bedrock models take text parts here",
                    kind.unwrap_or("unknown")
                ))),
            })
            .collect(),
        _ => Err(invalid(format!("`messages[{at}].content` must be text"))),
    }
}

/// A Converse request's messages, system prompt, inference settings and tools.
pub struct ConverseInput {
    pub system: Vec<SystemContentBlock>,
    pub messages: Vec<Message>,
    pub inference: InferenceConfiguration,
    pub tools: Option<ToolConfiguration>,
}

fn build_err(e: impl std::fmt::Display) -> ProviderError {
    invalid(format!("cannot express the request for Bedrock: {e}"))
}

pub fn converse_input(request: &ChatRequest) -> Result<ConverseInput, ProviderError> {
    let mut system = Vec::new();
    // (role, blocks): consecutive messages of one role become one Bedrock message, which must
    // alternate between user and assistant.
    let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
    let mut push = |role: ConversationRole, blocks: Vec<ContentBlock>| {
        if blocks.is_empty() {
            return;
        }
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    };
    for (i, m) in request.messages.iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" => {
                system.extend(
                    text_parts(&m.content, i)?
                        .into_iter()
                        .map(SystemContentBlock::Text),
                );
            }
            "user" => push(
                ConversationRole::User,
                text_parts(&m.content, i)?
                    .into_iter()
                    .map(ContentBlock::Text)
                    .collect(),
            ),
            "assistant" => {
                let mut blocks: Vec<ContentBlock> = text_parts(&m.content, i)?
                    .into_iter()
                    .map(ContentBlock::Text)
                    .collect();
                for call in m
                    .extra
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let args = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).map_err(|e| {
                        invalid(format!(
                            "`messages[{i}].tool_calls`: arguments are not JSON: {e}"
                        ))
                    })?;
                    let block = ToolUseBlock::builder()
                        .tool_use_id(call["id"].as_str().unwrap_or_default())
                        .name(call["function"]["name"].as_str().unwrap_or_default())
                        .input(to_document(&input))
                        .build()
                        .map_err(build_err)?;
                    blocks.push(ContentBlock::ToolUse(block));
                }
                push(ConversationRole::Assistant, blocks);
            }
            "tool" => {
                let id = m
                    .extra
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("`messages[{i}]` needs a `tool_call_id`")))?;
                let block = ToolResultBlock::builder()
                    .tool_use_id(id)
                    .set_content(Some(
                        text_parts(&m.content, i)?
                            .into_iter()
                            .map(ToolResultContentBlock::Text)
                            .collect(),
                    ))
                    .build()
                    .map_err(build_err)?;
                push(
                    ConversationRole::User,
                    vec![ContentBlock::ToolResult(block)],
                );
            }
            other => return Err(invalid(format!("`messages[{i}].role` `{other}`"))),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| {
            Message::builder()
                .role(role)
                .set_content(Some(content))
                .build()
                .map_err(build_err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if messages.is_empty() {
        return Err(invalid("Bedrock needs at least one user message"));
    }
    let stop = match &request.stop {
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    };
    let inference = InferenceConfiguration::builder()
        .set_max_tokens(
            request
                .max_output_tokens()
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        )
        .set_temperature(request.temperature.map(|t| t as f32))
        .set_top_p(request.top_p.map(|t| t as f32))
        .set_stop_sequences(stop)
        .build();
    Ok(ConverseInput {
        system,
        messages,
        inference,
        tools: tool_config(request)?,
    })
}

fn tool_config(request: &ChatRequest) -> Result<Option<ToolConfiguration>, ProviderError> {
    let Some(tools) = &request.tools else {
        return Ok(None);
    };
    // Converse has no "none" choice: leaving the tools out says it. But a conversation that
    // already holds tool calls or results needs the tool configuration, or Converse refuses it
    // (400); then the tools stay and the model chooses (`auto`).
    let none = request.tool_choice.as_ref().and_then(Value::as_str) == Some("none");
    let history_uses_tools = request
        .messages
        .iter()
        .any(|m| m.role == "tool" || m.extra.contains_key("tool_calls"));
    if tools.is_empty() || (none && !history_uses_tools) {
        return Ok(None);
    }
    let specs = tools
        .iter()
        .map(|t| {
            let f = &t["function"];
            let params = if f["parameters"].is_object() {
                f["parameters"].clone()
            } else {
                json!({ "type": "object", "properties": {} })
            };
            ToolSpecification::builder()
                .name(f["name"].as_str().unwrap_or_default())
                .set_description(f["description"].as_str().map(str::to_string))
                .input_schema(ToolInputSchema::Json(to_document(&params)))
                .build()
                .map(Tool::ToolSpec)
                .map_err(build_err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let choice = match &request.tool_choice {
        Some(Value::String(s)) if s == "required" => {
            Some(ToolChoice::Any(AnyToolChoice::builder().build()))
        }
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            Some(ToolChoice::Tool(
                SpecificToolChoice::builder()
                    .name(name)
                    .build()
                    .map_err(build_err)?,
            ))
        }
        Some(Value::String(s)) if s == "auto" => {
            Some(ToolChoice::Auto(AutoToolChoice::builder().build()))
        }
        _ => None,
    };
    ToolConfiguration::builder()
        .set_tools(Some(specs))
        .set_tool_choice(choice)
        .build()
        .map(Some)
        .map_err(build_err)
}

pub fn finish_reason(r: &StopReason) -> &'static str {
    match r {
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::GuardrailIntervened | StopReason::ContentFiltered => "content_filter",
        _ => "stop",
    }
}

pub fn usage(u: Option<&TokenUsage>) -> Usage {
    u.map(|u| Usage {
        input_tokens: u.input_tokens.max(0) as u64,
        output_tokens: u.output_tokens.max(0) as u64,
        cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0).max(0) as u64,
        cache_write_tokens: u.cache_write_input_tokens.unwrap_or(0).max(0) as u64,
    })
    .unwrap_or_default()
}

/// Text and tool calls (OpenAI's `tool_calls` shape) of an answer.
pub fn answer(message: &Message) -> (String, Option<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in message.content() {
        match block {
            ContentBlock::Text(t) => text.push_str(t),
            ContentBlock::ToolUse(u) => calls.push(json!({
                "id": u.tool_use_id(),
                "type": "function",
                "function": {
                    "name": u.name(),
                    "arguments": from_document(u.input()).to_string(),
                },
            })),
            _ => {}
        }
    }
    (text, (!calls.is_empty()).then_some(Value::Array(calls)))
}

/// What a guardrail assessment found: policy, type or name, and action; never the matched text.
pub fn summarise(a: &GuardrailAssessment) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(p) = a.topic_policy() {
        for t in p.topics() {
            out.push(json!({"policy": "topic", "name": t.name(), "type": t.r#type().as_str(), "action": t.action().as_str()}));
        }
    }
    if let Some(p) = a.content_policy() {
        for f in p.filters() {
            out.push(json!({"policy": "content", "type": f.r#type().as_str(), "confidence": f.confidence().as_str(), "action": f.action().as_str()}));
        }
    }
    if let Some(p) = a.word_policy() {
        for w in p.custom_words() {
            out.push(json!({"policy": "word", "type": "custom", "action": w.action().as_str()}));
        }
        for w in p.managed_word_lists() {
            out.push(json!({"policy": "word", "type": w.r#type().as_str(), "action": w.action().as_str()}));
        }
    }
    if let Some(p) = a.sensitive_information_policy() {
        for e in p.pii_entities() {
            out.push(json!({"policy": "sensitive_information", "type": e.r#type().as_str(), "action": e.action().as_str()}));
        }
        for r in p.regexes() {
            out.push(json!({"policy": "sensitive_information", "name": r.name(), "type": "regex", "action": r.action().as_str()}));
        }
    }
    if let Some(p) = a.contextual_grounding_policy() {
        for f in p.filters() {
            out.push(json!({"policy": "contextual_grounding", "type": f.r#type().as_str(), "score": f.score(), "threshold": f.threshold(), "action": f.action().as_str()}));
        }
    }
    out
}

/// The assessment record of one guardrail: which guardrail, on what, and what it found.
pub fn assessment_json<'a>(
    guardrail: &str,
    version: &str,
    source: &str,
    assessments: impl IntoIterator<Item = &'a GuardrailAssessment>,
    action_reason: Option<&str>,
) -> Value {
    let findings: Vec<Value> = assessments.into_iter().flat_map(summarise).collect();
    json!({
        "guardrail": guardrail,
        "version": version,
        "source": source,
        "action_reason": action_reason,
        "findings": findings,
    })
}

/// A one-line reason for a client, from an assessment record.
pub fn intervention_message(a: &Value) -> String {
    let what: Vec<String> = a["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["action"] != "NONE")
        .map(|f| {
            let label = f["name"]
                .as_str()
                .or_else(|| f["type"].as_str())
                .unwrap_or("?");
            format!(
                "{} {label} ({})",
                f["policy"].as_str().unwrap_or("policy"),
                f["action"].as_str().unwrap_or("?")
            )
        })
        .collect();
    format!(
        "the prompt was blocked by the Bedrock guardrail {} (version {}){}",
        a["guardrail"].as_str().unwrap_or("?"),
        a["version"].as_str().unwrap_or("?"),
        if what.is_empty() {
            String::new()
        } else {
            format!(": {}", what.join(", "))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn messages_tools_and_settings_map_to_converse() {
        let r = req(json!({
            "model": "m", "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": ["END"],
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather?"},
                {"role": "user", "content": [{"type": "text", "text": "in Paris"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        }));
        let c = converse_input(&r).unwrap();
        assert_eq!(c.system.len(), 1);
        assert_eq!(c.messages.len(), 3, "two user messages merged");
        assert_eq!(c.messages[0].content().len(), 2);
        assert!(matches!(
            c.messages[1].content()[0],
            ContentBlock::ToolUse(_)
        ));
        assert!(matches!(
            c.messages[2].content()[0],
            ContentBlock::ToolResult(_)
        ));
        assert_eq!(c.inference.max_tokens(), Some(50));
        assert_eq!(c.inference.stop_sequences(), ["END"]);
        let tools = c.tools.unwrap();
        assert!(matches!(tools.tool_choice(), Some(ToolChoice::Any(_))));
    }

    #[test]
    fn tool_choice_none_keeps_tools_only_when_the_conversation_used_them() {
        let tools = json!([{"type": "function", "function": {"name": "weather"}}]);
        let fresh = req(json!({"model": "m", "tool_choice": "none", "tools": tools,
            "messages": [{"role": "user", "content": "hi"}]}));
        assert!(converse_input(&fresh).unwrap().tools.is_none());
        let used = req(json!({"model": "m", "tool_choice": "none", "tools": tools,
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"}]}));
        let config = converse_input(&used).unwrap().tools.unwrap();
        assert_eq!(config.tools().len(), 1);
        assert!(config.tool_choice().is_none(), "the model chooses");
    }

    #[test]
    fn documents_round_trip() {
        let v = json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": {}}});
        assert_eq!(from_document(&to_document(&v)), v);
    }

    #[test]
    fn images_are_refused_with_the_message_index() {
        let r = req(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:"}}]}]}),
        );
        let e = converse_input(&r).err().unwrap();
        assert!(
            e.to_string().contains("400") || matches!(e, ProviderError::Status { status: 400, .. })
        );
    }
}
