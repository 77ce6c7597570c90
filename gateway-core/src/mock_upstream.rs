//! The mock provider served over HTTP as an OpenAI-compatible API, with no gateway in front:
//! the baseline of the gateway benchmark and an upstream for tests of the `openai` provider.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};

use crate::config::MockConfig;
use crate::openai::{self, ChatRequest};
use crate::providers::mock::MockProvider;
use crate::providers::{ProviderError, StreamEvent};

async fn chat(State(mock): State<Arc<MockProvider>>, body: Bytes) -> Response {
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(openai::error_json(
                    &e.to_string(),
                    "invalid_request_error",
                    None,
                )),
            )
                .into_response();
        }
    };
    let model = request.model.clone();
    let created = crate::clock::unix_seconds();
    if request.streaming() {
        match mock.reply_stream(&request, &model).await {
            Ok(events) => {
                let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
                let include_usage = request.include_usage();
                let mut first = true;
                let body = events
                    .filter_map(move |e| {
                        let out = match e {
                            Ok(StreamEvent::Delta(t)) => {
                                let c =
                                    openai::chunk_json(&id, &model, created, Some(&t), first, None);
                                first = false;
                                Some(openai::sse_event(&c))
                            }
                            Ok(StreamEvent::Finish(f)) => Some(openai::sse_event(
                                &openai::chunk_json(&id, &model, created, None, false, Some(&f)),
                            )),
                            Ok(StreamEvent::Usage(u)) if include_usage => Some(openai::sse_event(
                                &openai::usage_chunk_json(&id, &model, created, &u),
                            )),
                            Ok(
                                StreamEvent::Usage(_)
                                | StreamEvent::ToolCall { .. }
                                | StreamEvent::Guardrail(_)
                                | StreamEvent::UpstreamRequestId(_),
                            ) => None,
                            Err(e) => Some(openai::sse_event(&openai::error_json(
                                &e.to_string(),
                                "api_error",
                                None,
                            ))),
                        };
                        futures::future::ready(out.map(Ok::<_, std::io::Error>))
                    })
                    .chain(futures::stream::once(async {
                        Ok(Bytes::from_static(openai::SSE_DONE.as_bytes()))
                    }));
                let mut resp = Response::new(Body::from_stream(body));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                resp
            }
            Err(e) => failure(e),
        }
    } else {
        match mock.reply(&request, &model).await {
            Ok(c) => axum::Json(openai::completion_json(&c, created)).into_response(),
            Err(e) => failure(e),
        }
    }
}

fn failure(e: ProviderError) -> Response {
    let status = match &e {
        ProviderError::Status { status, .. } => {
            StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut resp = (
        status,
        axum::Json(openai::error_json(&e.to_string(), "api_error", None)),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

async fn models() -> Response {
    let ids: Vec<(String, String)> = crate::catalogue::default_models()
        .into_iter()
        .map(|m| (m.id, "mock".to_string()))
        .collect();
    axum::Json(openai::model_list_json(&ids, crate::clock::unix_seconds())).into_response()
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: MockConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .with_state(Arc::new(MockProvider::new(config)));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
