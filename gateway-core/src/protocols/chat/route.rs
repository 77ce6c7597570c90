//! Calling the deployments of an allowed request in order until one answers: retryable
//! failures (429, 5xx, timeouts, transport) move on to the next deployment after a jittered
//! backoff, up to `routing.max_attempts` calls; open circuits are skipped. A stream counts as
//! answered once its first event arrived, so it falls back only before the first byte.

use std::time::{Duration, Instant};

use futures::StreamExt;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use super::Allowed;
use crate::admission::StageClock;
use crate::catalogue::CatalogueModel;
use crate::openai::Completion;
use crate::providers::{CallContext, EventStream, ProviderError};
use crate::routing::{Attempt, Skip};
use crate::state::AppState;

pub enum Answer {
    Complete(Box<Completion>),
    Stream(EventStream),
}

/// The deployment that answered, what it answered, and when its call started.
pub type Routed = (Answer, CatalogueModel, StageClock);

/// Waits for a stream's first event: an error there is a failure of the call (worth falling
/// back); anything else commits to this deployment.
/// Metadata the provider gives before any content (its request id) is not an answer yet.
async fn first_event(mut events: EventStream) -> Result<EventStream, ProviderError> {
    let mut leading = Vec::new();
    loop {
        match events.next().await {
            Some(Err(e)) => return Err(e),
            Some(Ok(meta @ crate::providers::StreamEvent::UpstreamRequestId(_))) => {
                leading.push(Ok(meta));
            }
            Some(Ok(first)) => {
                leading.push(Ok(first));
                return Ok(Box::pin(futures::stream::iter(leading).chain(events)));
            }
            None => return Ok(Box::pin(futures::stream::iter(leading))),
        }
    }
}

pub async fn route(
    state: &AppState,
    allowed: &Allowed,
) -> (Result<Routed, ProviderError>, Vec<Attempt>) {
    let traceparent = allowed.scope.trace.header();
    let streaming = allowed.request.streaming();
    // Circuits protect the deployments of an alias; a plain model always gets its call.
    let breakers = !allowed.model.deployments.is_empty();
    let max = state.router.max_attempts();
    let mut attempts = Vec::new();
    let mut last: Option<ProviderError> = None;
    let mut tried = 0u32;
    let mut soonest: Option<Duration> = None;
    let mut round = 0;
    while tried < max {
        let mut tried_this_round = false;
        for dep in &allowed.plan {
            if tried >= max {
                break;
            }
            if breakers && let Err(Skip::CircuitOpen(wait)) = state.router.admit(&dep.id) {
                if round == 0 {
                    attempts.push(Attempt {
                        deployment: dep.id.clone(),
                        provider: dep.provider.clone(),
                        result: "skipped",
                        error: Some("circuit open".into()),
                        status: None,
                        latency_ms: 0,
                    });
                    state.metrics.attempt(&dep.id, "skipped");
                }
                soonest = Some(soonest.map_or(wait, |w| w.min(wait)));
                continue;
            }
            if tried > 0 {
                tokio::time::sleep(state.router.backoff(tried)).await;
            }
            tried += 1;
            tried_this_round = true;
            let clock = allowed.scope.begin();
            let started = Instant::now();
            let ctx = CallContext {
                request: &allowed.request,
                principal: &allowed.principal,
                model: dep,
                classification: &allowed.label,
                traceparent: Some(&traceparent),
            };
            let provider = state.provider_for(dep);
            let result = tokio::time::timeout(state.config.request_timeout, async {
                if streaming {
                    let events = provider.stream(ctx).await?;
                    first_event(events).await.map(Answer::Stream)
                } else {
                    provider
                        .complete(ctx)
                        .await
                        .map(|c| Answer::Complete(Box::new(c)))
                }
            })
            .await
            .unwrap_or(Err(ProviderError::Timeout));
            let latency_ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(answer) => {
                    if !streaming {
                        state.metrics.stage("upstream", started.elapsed());
                    }
                    if breakers {
                        state.router.success(&dep.id);
                    }
                    state.metrics.attempt(&dep.id, "ok");
                    attempts.push(Attempt {
                        deployment: dep.id.clone(),
                        provider: dep.provider.clone(),
                        result: "ok",
                        error: None,
                        status: None,
                        latency_ms,
                    });
                    return (Ok((answer, dep.clone(), clock)), attempts);
                }
                Err(e) => {
                    state.metrics.stage("upstream", started.elapsed());
                    state.metrics.attempt(&dep.id, "error");
                    let status = match &e {
                        ProviderError::Status { status, .. } => Some(*status),
                        _ => None,
                    };
                    attempts.push(Attempt {
                        deployment: dep.id.clone(),
                        provider: dep.provider.clone(),
                        result: "error",
                        error: Some(e.detail()),
                        status,
                        latency_ms,
                    });
                    allowed.scope.span(
                        format!("chat {}", dep.upstream_model),
                        SpanKind::Client,
                        clock,
                        super::respond::provider_attrs(dep, None, None),
                        Some(e.kind()),
                    );
                    if !e.retryable() {
                        if breakers {
                            state.router.neutral(&dep.id);
                        }
                        return (Err(e), attempts);
                    }
                    if breakers && state.router.failure(&dep.id) {
                        tracing::warn!(deployment = %dep.id, "circuit opened after repeated failures");
                        state.metrics.circuit_opened(&dep.id);
                    }
                    last = Some(e);
                }
            }
        }
        if !tried_this_round {
            break;
        }
        round += 1;
    }
    let err = last.unwrap_or(ProviderError::NoDeployment {
        retry_after: soonest.map(|w| w.as_secs().max(1)),
    });
    (Err(err), attempts)
}
