//! Any OpenAI-compatible chat completions API as an upstream: the request goes through as the
//! client sent it (model renamed), streams are parsed from server-sent events.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::{CallContext, EventStream, ModelProvider, ProviderCall, ProviderError, StreamEvent};
use crate::decision_log::Usage;
use crate::openai::{ChatRequest, Completion, StreamOptions};

#[derive(Clone)]
pub struct OpenAiProvider {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
}

impl OpenAiProvider {
    pub fn new(base_url: &str, api_key: Option<String>, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(timeout)
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
        })
    }

    fn post(&self, body: &ChatRequest, traceparent: Option<&str>) -> reqwest::RequestBuilder {
        let mut req = self.client.post(&self.url).json(body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        req
    }

    async fn send(
        &self,
        body: &ChatRequest,
        traceparent: Option<&str>,
    ) -> Result<reqwest::Response, ProviderError> {
        let resp = self.post(body, traceparent).send().await.map_err(|e| {
            if e.is_timeout() {
                ProviderError::Timeout
            } else {
                ProviderError::Transport(e.to_string())
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(ProviderError::Status {
            status: status.as_u16(),
            message,
            retry_after,
        })
    }

    pub async fn complete(&self, ctx: CallContext<'_>) -> Result<Completion, ProviderError> {
        let traceparent = ctx.traceparent;
        let mut body = ctx.request.clone();
        body.model = ctx.model.upstream_model.clone();
        body.stream = Some(false);
        body.stream_options = None;
        let resp = self.send(&body, traceparent).await?;
        let v: Value = resp
            .json()
            .await
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        parse_completion(&v)
    }

    pub async fn stream(&self, ctx: CallContext<'_>) -> Result<EventStream, ProviderError> {
        let traceparent = ctx.traceparent;
        let mut body = ctx.request.clone();
        body.model = ctx.model.upstream_model.clone();
        body.stream = Some(true);
        // Always ask for usage, so spend is known even when the client did not ask.
        body.stream_options = Some(StreamOptions {
            include_usage: true,
        });
        let resp = self.send(&body, traceparent).await?;
        let mut bytes = resp.bytes_stream();
        let stream = async_stream(move |mut emit| async move {
            let mut parser = SseParser::default();
            while let Some(chunk) = bytes.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        emit(Err(ProviderError::Transport(e.to_string())));
                        return;
                    }
                };
                for data in parser.push(&chunk) {
                    if data == "[DONE]" {
                        return;
                    }
                    match serde_json::from_str::<Value>(&data) {
                        Ok(v) => {
                            for e in parse_chunk(&v) {
                                emit(Ok(e));
                            }
                        }
                        Err(e) => {
                            emit(Err(ProviderError::Protocol(format!(
                                "bad stream chunk: {e}"
                            ))));
                            return;
                        }
                    }
                }
            }
        });
        Ok(stream)
    }
}

/// A tiny generator: runs `body`, which pushes items through the callback, as a stream.
fn async_stream<F, Fut>(body: F) -> EventStream
where
    F: FnOnce(Box<dyn FnMut(Result<StreamEvent, ProviderError>) + Send>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(body(Box::new(move |item| {
        let _ = tx.send(item);
    })));
    Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
}

fn usage_from(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    if u.is_null() {
        return None;
    }
    // OpenAI counts cached prompt tokens inside `prompt_tokens`; Cairn prices them apart.
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    Some(Usage {
        input_tokens: u["prompt_tokens"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(cached),
        output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
    })
}

pub fn parse_completion(v: &Value) -> Result<Completion, ProviderError> {
    let choice = v["choices"]
        .get(0)
        .ok_or_else(|| ProviderError::Protocol("no choices in the completion".into()))?;
    Ok(Completion {
        id: v["id"].as_str().unwrap_or("chatcmpl-upstream").to_string(),
        model: v["model"].as_str().unwrap_or("").to_string(),
        content: choice["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        finish_reason: choice["finish_reason"]
            .as_str()
            .unwrap_or("stop")
            .to_string(),
        usage: usage_from(v).unwrap_or_default(),
        tool_calls: choice["message"]
            .get("tool_calls")
            .filter(|t| !t.is_null())
            .cloned(),
        guardrail: None,
        upstream_request_id: None,
    })
}

pub fn parse_chunk(v: &Value) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    if let Some(choice) = v["choices"].get(0) {
        if let Some(c) = choice["delta"]["content"].as_str()
            && !c.is_empty()
        {
            out.push(StreamEvent::Delta(c.to_string()));
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push(StreamEvent::ToolCall {
                index: call["index"].as_u64().unwrap_or(0) as u32,
                id: call["id"].as_str().map(str::to_string),
                name: call["function"]["name"].as_str().map(str::to_string),
                arguments: call["function"]["arguments"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            });
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            out.push(StreamEvent::Finish(f.to_string()));
        }
    }
    if let Some(u) = usage_from(v) {
        out.push(StreamEvent::Usage(u));
    }
    out
}

impl ModelProvider for OpenAiProvider {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn complete<'a>(&'a self, ctx: CallContext<'a>) -> ProviderCall<'a, Completion> {
        Box::pin(OpenAiProvider::complete(self, ctx))
    }

    fn stream<'a>(&'a self, ctx: CallContext<'a>) -> ProviderCall<'a, EventStream> {
        Box::pin(OpenAiProvider::stream(self, ctx))
    }
}

/// Server-sent events: `data:` lines joined until a blank line.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Vec<String>,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                self.data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_reads() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").is_empty());
        assert_eq!(
            p.push(b":1}\n\ndata: [DONE]\n\n"),
            vec!["{\"a\":1}", "[DONE]"]
        );
        assert_eq!(p.push(b": comment\r\ndata: x\r\n\r\n"), vec!["x"]);
    }

    #[test]
    fn chunks_give_deltas_finish_and_usage() {
        let v: Value = serde_json::from_str(r#"{"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#).unwrap();
        assert_eq!(
            parse_chunk(&v),
            vec![
                StreamEvent::Delta("hi".into()),
                StreamEvent::Finish("stop".into()),
                StreamEvent::Usage(Usage {
                    input_tokens: 3,
                    output_tokens: 1,
                    ..Default::default()
                })
            ]
        );
    }
}
