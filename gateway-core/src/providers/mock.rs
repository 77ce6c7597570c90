//! The mock provider: deterministic completions from the prompt, usage counted in words,
//! streaming in chunks, with configurable latency, chunk delay and failure injection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;

use super::{CallContext, EventStream, ModelProvider, ProviderCall, ProviderError, StreamEvent};
use crate::config::MockConfig;
use crate::decision_log::Usage;
use crate::openai::{ChatRequest, Completion};

const WORDS: &[&str] = &[
    "Cairn", "keeps", "a", "signed", "record", "of", "every", "decision", "so", "the", "audit",
    "trail", "stays", "whole", "while", "policies", "decide", "which", "model", "answers", "and",
    "who", "may", "ask",
];

/// The prefix of a prompt the mock answers by echoing (see [`MockProvider::answer`]).
pub const ECHO: &str = "mock:echo-base64 ";

/// Words in a completion when the request sets no limit.
const DEFAULT_WORDS: u64 = 24;

#[derive(Clone)]
pub struct MockProvider {
    config: Arc<MockConfig>,
    counter: Arc<AtomicU64>,
}

/// FNV-1a: a stable hash, so the same prompt always gets the same answer.
fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Mock "tokens" are whitespace-separated words.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

impl MockProvider {
    pub fn new(config: MockConfig) -> Self {
        Self {
            config: Arc::new(config),
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The answer to a request: its chunks (which concatenate to the content), finish reason
    /// and usage.
    ///
    /// A last message `mock:echo-base64 <base64>` is answered with the decoded text, cut into
    /// chunks at each U+001F (so tests can place chunk boundaries, e.g. inside a secret that
    /// the prompt itself does not show).
    pub fn answer(&self, request: &ChatRequest, model: &str) -> (Vec<String>, &'static str, Usage) {
        let prompt: String = request
            .messages
            .iter()
            .map(|m| m.text())
            .collect::<Vec<_>>()
            .join("\n");
        let input_tokens = count_tokens(&prompt).max(1);
        if let Some(text) = request
            .messages
            .last()
            .and_then(|m| m.text().strip_prefix(ECHO).map(str::to_string))
            && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text.trim())
        {
            let decoded = String::from_utf8_lossy(&bytes).into_owned();
            let chunks: Vec<String> = decoded.split('\u{1f}').map(str::to_string).collect();
            let usage = Usage {
                input_tokens,
                output_tokens: count_tokens(&chunks.concat()),
                ..Default::default()
            };
            return (chunks, "stop", usage);
        }
        let start = (fnv(&prompt) % WORDS.len() as u64) as usize;
        let limit = request.max_output_tokens();
        let wanted = DEFAULT_WORDS;
        let n = limit.map_or(wanted, |l| l.min(wanted)) as usize;
        let mut words = vec![format!("[{model}]")];
        words
            .extend((0..n.saturating_sub(1)).map(|i| WORDS[(start + i) % WORDS.len()].to_string()));
        words.truncate(n.max(1));
        let finish = if limit.is_some_and(|l| l < wanted) {
            "length"
        } else {
            "stop"
        };
        let usage = Usage {
            input_tokens,
            output_tokens: words.len() as u64,
            ..Default::default()
        };
        let per = self.config.chunk_words.max(1);
        let chunks = words
            .chunks(per)
            .enumerate()
            .map(|(i, c)| {
                let mut s = c.join(" ");
                if (i + 1) * per < words.len() {
                    s.push(' ');
                }
                s
            })
            .collect();
        (chunks, finish, usage)
    }

    fn injected_failure(&self) -> Option<ProviderError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let c = &self.config;
        let fail = if c.fail_status != 0 && c.fail_rate == 0.0 {
            true
        } else if c.fail_rate > 0.0 {
            // Deterministic spread: request n fails when its fraction crosses the rate.
            let bucket = (fnv(&n.to_string()) % 10_000) as f64 / 10_000.0;
            bucket < c.fail_rate
        } else {
            false
        };
        fail.then(|| {
            let status = if c.fail_status == 0 {
                503
            } else {
                c.fail_status
            };
            ProviderError::Status {
                status,
                message: format!("mock provider injected a {status}"),
                retry_after: (status == 429).then_some(1),
            }
        })
    }

    async fn wait(&self) {
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
        }
    }

    /// Answers `request` as `model` (what the mock upstream server serves).
    pub async fn reply(
        &self,
        request: &ChatRequest,
        model: &str,
    ) -> Result<Completion, ProviderError> {
        self.wait().await;
        if let Some(e) = self.injected_failure() {
            return Err(e);
        }
        let (chunks, finish, usage) = self.answer(request, model);
        if let Some(call) = tool_call(request) {
            return Ok(Completion {
                id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
                model: model.to_string(),
                content: String::new(),
                finish_reason: "tool_calls".into(),
                usage,
                tool_calls: Some(serde_json::Value::Array(vec![call])),
                guardrail: None,
                upstream_request_id: None,
            });
        }
        Ok(Completion {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            model: model.to_string(),
            content: chunks.concat(),
            finish_reason: finish.to_string(),
            usage,
            tool_calls: None,
            guardrail: None,
            upstream_request_id: None,
        })
    }

    /// Streams the answer to `request` as `model` (tool calls are answered only unstreamed).
    pub async fn reply_stream(
        &self,
        request: &ChatRequest,
        model: &str,
    ) -> Result<EventStream, ProviderError> {
        self.wait().await;
        if let Some(e) = self.injected_failure() {
            return Err(e);
        }
        let (chunks, finish, usage) = self.answer(request, model);
        let delay = Duration::from_millis(self.config.chunk_delay_ms);
        let break_after = self.config.fail_after_chunks;
        let mut events: Vec<Result<StreamEvent, ProviderError>> = Vec::new();
        for (i, c) in chunks.into_iter().enumerate() {
            if break_after > 0 && i == break_after {
                events.push(Err(ProviderError::Transport(
                    "mock stream broken on purpose".into(),
                )));
                break;
            }
            events.push(Ok(StreamEvent::Delta(c)));
        }
        if !events.iter().any(Result::is_err) {
            events.push(Ok(StreamEvent::Finish(finish.to_string())));
            events.push(Ok(StreamEvent::Usage(usage)));
        }
        let stream = futures::stream::iter(events).then(move |e| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            e
        });
        Ok(Box::pin(stream))
    }
}

impl ModelProvider for MockProvider {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn complete<'a>(&'a self, ctx: CallContext<'a>) -> ProviderCall<'a, Completion> {
        Box::pin(self.reply(ctx.request, &ctx.model.upstream_model))
    }

    fn stream<'a>(&'a self, ctx: CallContext<'a>) -> ProviderCall<'a, EventStream> {
        Box::pin(self.reply_stream(ctx.request, &ctx.model.upstream_model))
    }
}

/// An agent's first step: when tools are offered and the last message is the user's, the mock
/// calls the first tool, each required argument filled from the user's text (strings), 1
/// (numbers) or false (booleans). After a tool result it answers in words.
fn tool_call(request: &ChatRequest) -> Option<serde_json::Value> {
    use serde_json::{Value, json};
    let tool = request.tools.as_ref()?.first()?;
    let last = request.messages.last()?;
    if last.role != "user" {
        return None;
    }
    let function = tool.get("function")?;
    let name = function.get("name")?.as_str()?;
    let params = function.get("parameters");
    let mut args = serde_json::Map::new();
    for r in params
        .and_then(|p| p.get("required"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let kind = params
            .and_then(|p| p.pointer(&format!("/properties/{r}/type")))
            .and_then(Value::as_str)
            .unwrap_or("string");
        let v = match kind {
            "integer" | "number" => json!(1),
            "boolean" => json!(false),
            _ => json!(last.text()),
        };
        args.insert(r.to_string(), v);
    }
    Some(json!({
        "id": format!("call_{:016x}", fnv(name)),
        "type": "function",
        "function": { "name": name, "arguments": Value::Object(args).to_string() },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(text: &str, max: Option<u64>) -> ChatRequest {
        serde_json::from_value(json!({"model": "m", "max_tokens": max,
            "messages": [{"role": "user", "content": text}]}))
        .unwrap()
    }

    #[tokio::test]
    async fn offered_tools_are_called_once_then_answered_in_words() {
        let p = MockProvider::new(MockConfig::default());
        let tools = json!([{"type": "function", "function": {"name": "notes__search", "parameters": {
            "type": "object", "required": ["query", "limit"],
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}}}}]);
        let first: ChatRequest = serde_json::from_value(json!({"model": "m", "tools": tools,
            "messages": [{"role": "user", "content": "incident review"}]}))
        .unwrap();
        let c = p.reply(&first, "m").await.unwrap();
        assert_eq!(c.finish_reason, "tool_calls");
        let call = &c.tool_calls.expect("a tool call")[0]["function"];
        assert_eq!(call["name"], "notes__search");
        let args: serde_json::Value =
            serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"query": "incident review", "limit": 1}));
        let after: ChatRequest = serde_json::from_value(json!({"model": "m", "tools": tools,
            "messages": [{"role": "user", "content": "q"},
                         {"role": "tool", "tool_call_id": "c1", "content": "1 match"}]}))
        .unwrap();
        let c = p.reply(&after, "m").await.unwrap();
        assert!(c.tool_calls.is_none() && !c.content.is_empty());
    }

    #[tokio::test]
    async fn deterministic_and_counted() {
        let p = MockProvider::new(MockConfig::default());
        let a = p
            .reply(&request("hello there world", None), "m")
            .await
            .unwrap();
        let b = p
            .reply(&request("hello there world", None), "m")
            .await
            .unwrap();
        assert_eq!(a.content, b.content);
        assert_eq!(a.usage.input_tokens, 3);
        assert_eq!(a.usage.output_tokens, count_tokens(&a.content));
        assert_eq!(a.finish_reason, "stop");
    }

    #[tokio::test]
    async fn stream_concatenates_to_the_completion() {
        let p = MockProvider::new(MockConfig {
            chunk_words: 3,
            ..MockConfig::default()
        });
        let full = p.reply(&request("a b", Some(10)), "m").await.unwrap();
        let mut s = p
            .reply_stream(&request("a b", Some(10)), "m")
            .await
            .unwrap();
        let mut text = String::new();
        let mut usage = None;
        while let Some(e) = s.next().await {
            match e.unwrap() {
                StreamEvent::Delta(d) => text.push_str(&d),
                StreamEvent::Usage(u) => usage = Some(u),
                StreamEvent::Finish(f) => assert_eq!(f, "length"),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(text, full.content);
        assert_eq!(usage.unwrap(), full.usage);
    }

    #[tokio::test]
    async fn echo_places_chunk_boundaries() {
        use base64::Engine as _;
        let p = MockProvider::new(MockConfig::default());
        let text =
            base64::engine::general_purpose::STANDARD.encode("one AKIA\u{1f}IOSFODNN7EXAMPLE two");
        let mut s = p
            .reply_stream(&request(&format!("{ECHO}{text}"), None), "m")
            .await
            .unwrap();
        let mut deltas = Vec::new();
        while let Some(e) = s.next().await {
            if let StreamEvent::Delta(d) = e.unwrap() {
                deltas.push(d);
            }
        }
        assert_eq!(deltas, ["one AKIA", "IOSFODNN7EXAMPLE two"]);
    }

    #[tokio::test]
    async fn failures_are_injected() {
        let p = MockProvider::new(MockConfig {
            fail_status: 429,
            ..MockConfig::default()
        });
        let e = p.reply(&request("x", None), "m").await.unwrap_err();
        assert!(matches!(
            e,
            ProviderError::Status {
                status: 429,
                retry_after: Some(1),
                ..
            }
        ));
    }
}
