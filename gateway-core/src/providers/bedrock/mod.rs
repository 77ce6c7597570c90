//! Amazon Bedrock through the Converse and ConverseStream APIs (`aws-sdk-bedrockruntime`).
//!
//! Each call is made in the model's region (a model id, an inference profile id such as
//! `us.anthropic...`, or a profile ARN), optionally through a PrivateLink endpoint, and, when
//! `identity.role_arn` is set, with credentials of a role session assumed as the calling user
//! ([`identity`]). The SDK's own retries are off: the gateway's router decides what to retry.
//!
//! Bedrock Guardrails: a guardrail (the model's, or the prompt classification's) is passed as
//! Converse's `guardrailConfig`; for streams the prompt is first checked with ApplyGuardrail (so a
//! blocked prompt is a 400 before any byte is streamed) and the output is checked by
//! ConverseStream's stream guardrail configuration.

pub mod convert;
pub mod identity;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_bedrockruntime::config::{IdentityCache, Region};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::RequestId;
use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockStart, ConverseStreamOutput as Event, GuardrailAction,
    GuardrailConfiguration, GuardrailContentBlock, GuardrailContentSource,
    GuardrailStreamConfiguration, GuardrailStreamProcessingMode, GuardrailTextBlock,
    GuardrailTrace, GuardrailTraceAssessment, StopReason,
};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use serde_json::Value;

use self::identity::{Identity, SessionSpec};
use super::{CallContext, EventStream, ModelProvider, ProviderCall, ProviderError, StreamEvent};
use crate::authn::Principal;
use crate::catalogue::CatalogueModel;
use crate::config::{BedrockConfig, BedrockGuardrailConfig};
use crate::openai::{ChatRequest, Completion};

#[derive(Clone)]
pub struct BedrockProvider {
    inner: Arc<Inner>,
}

struct Inner {
    base: aws_config::SdkConfig,
    config: BedrockConfig,
    identity: Option<Identity>,
    clients: Mutex<HashMap<String, aws_sdk_bedrockruntime::Client>>,
}

/// Maps an SDK error to the status a client sees: throttling 429, validation 400, access
/// denied 403, model not ready and service errors 503.
fn sdk_error<E, R>(e: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::TimeoutError(_) => ProviderError::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => ProviderError::Timeout,
        SdkError::DispatchFailure(_) => ProviderError::Transport(
            aws_sdk_bedrockruntime::error::DisplayErrorContext(&e).to_string(),
        ),
        SdkError::ServiceError(se) => service_error(se.err().code(), se.err().message()),
        _ => ProviderError::Protocol(
            aws_sdk_bedrockruntime::error::DisplayErrorContext(&e).to_string(),
        ),
    }
}

fn service_error(code: Option<&str>, message: Option<&str>) -> ProviderError {
    let code = code.unwrap_or("UnknownError");
    let status = match code
        .trim_end_matches("Exception")
        .to_ascii_lowercase()
        .as_str()
    {
        "throttling" | "servicequotaexceeded" | "toomanyrequests" => 429,
        "validation" => 400,
        "accessdenied" | "unrecognizedclient" | "invalidsignature" | "expiredtoken" => 403,
        "resourcenotfound" => 404,
        "modeltimeout" => return ProviderError::Timeout,
        _ => 503,
    };
    ProviderError::Status {
        status,
        message: format!("Bedrock {code}: {}", message.unwrap_or("")),
        retry_after: (status == 429).then_some(1),
    }
}

fn trace_assessment(
    g: &GuardrailTraceAssessment,
    guardrail: &BedrockGuardrailConfig,
    source: &str,
) -> Value {
    let assessments: Vec<&aws_sdk_bedrockruntime::types::GuardrailAssessment> = match source {
        "input" => g
            .input_assessment()
            .map(|m| m.values().collect())
            .unwrap_or_default(),
        _ => g
            .output_assessments()
            .map(|m| m.values().flatten().collect())
            .unwrap_or_default(),
    };
    convert::assessment_json(
        &guardrail.id,
        &guardrail.version,
        source,
        assessments,
        g.action_reason(),
    )
}

/// Whether an input assessment blocked the prompt (as opposed to the output).
fn input_blocked(g: &GuardrailTraceAssessment) -> bool {
    g.input_assessment().is_some_and(|m| {
        m.values()
            .flat_map(convert::summarise)
            .any(|f| f["action"] != "NONE")
    })
}

/// Turns ConverseStream events into the gateway's stream events.
struct Decoder {
    rx: aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<
        Event,
        aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError,
    >,
    /// Bedrock numbers content blocks; OpenAI numbers tool calls.
    tools: HashMap<i32, u32>,
    guardrail: Option<BedrockGuardrailConfig>,
    pending: std::collections::VecDeque<StreamEvent>,
    done: bool,
}

impl Decoder {
    fn decode(&mut self, event: Event) {
        match event {
            Event::ContentBlockDelta(d) => match d.delta() {
                Some(ContentBlockDelta::Text(t)) => {
                    self.pending.push_back(StreamEvent::Delta(t.clone()));
                }
                Some(ContentBlockDelta::ToolUse(u)) => {
                    let index = self
                        .tools
                        .get(&d.content_block_index())
                        .copied()
                        .unwrap_or(0);
                    self.pending.push_back(StreamEvent::ToolCall {
                        index,
                        id: None,
                        name: None,
                        arguments: u.input().to_string(),
                    });
                }
                _ => {}
            },
            Event::ContentBlockStart(s) => {
                if let Some(ContentBlockStart::ToolUse(u)) = s.start() {
                    let index = self.tools.len() as u32;
                    self.tools.insert(s.content_block_index(), index);
                    self.pending.push_back(StreamEvent::ToolCall {
                        index,
                        id: Some(u.tool_use_id().to_string()),
                        name: Some(u.name().to_string()),
                        arguments: String::new(),
                    });
                }
            }
            Event::MessageStop(m) => self.pending.push_back(StreamEvent::Finish(
                convert::finish_reason(m.stop_reason()).to_string(),
            )),
            Event::Metadata(m) => {
                if let (Some(g), Some(t)) = (&self.guardrail, m.trace().and_then(|t| t.guardrail()))
                    && t.output_assessments().is_some_and(|o| !o.is_empty())
                {
                    self.pending
                        .push_back(StreamEvent::Guardrail(trace_assessment(t, g, "output")));
                }
                self.pending
                    .push_back(StreamEvent::Usage(convert::usage(m.usage())));
            }
            _ => {}
        }
    }
}

impl BedrockProvider {
    /// `base_credentials`: the gateway's own, when the embedding program gives them; else AWS's
    /// standard chain (environment, profile, container or instance role).
    pub async fn new(
        config: &BedrockConfig,
        base_credentials: Option<&aws_credential_types::Credentials>,
    ) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()));
        if let Some(c) = base_credentials {
            loader = loader.credentials_provider(c.clone());
        }
        let base = loader.load().await;
        let identity = (!config.identity.role_arn.is_empty()).then(|| {
            let mut b = aws_sdk_sts::config::Builder::from(&base)
                .region(aws_sdk_sts::config::Region::new(
                    config.identity.sts_region.clone(),
                ))
                .retry_config(RetryConfig::standard().with_max_attempts(2))
                // A hung STS must fail the request (503) soon, not hold a user's requests for
                // the whole request timeout.
                .timeout_config(
                    TimeoutConfig::builder()
                        .operation_attempt_timeout(Duration::from_secs(5))
                        .operation_timeout(Duration::from_secs(10))
                        .build(),
                );
            if !config.identity.sts_endpoint_url.is_empty() {
                b = b.endpoint_url(&config.identity.sts_endpoint_url);
            }
            Identity::new(aws_sdk_sts::Client::from_conf(b.build()), &config.identity)
        });
        Self {
            inner: Arc::new(Inner {
                base,
                config: config.clone(),
                identity,
                clients: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The role session a principal's calls use (none without `identity.role_arn`).
    pub fn session(&self, principal: &Principal) -> Option<SessionSpec> {
        self.inner
            .identity
            .as_ref()
            .and_then(|_| SessionSpec::new(&self.inner.config.identity, principal))
    }

    pub fn assume_role_calls(&self) -> u64 {
        self.inner
            .identity
            .as_ref()
            .map_or(0, Identity::assume_role_calls)
    }

    /// The client for the model's region; one per region, per-user credentials are passed per
    /// call.
    fn client(&self, model: &CatalogueModel) -> aws_sdk_bedrockruntime::Client {
        let region = match model.attrs["region"].as_str() {
            Some(r) if !r.is_empty() => r,
            _ => self.inner.config.region.as_str(),
        };
        let mut clients = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(region) {
            return client.clone();
        }
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let c = &self.inner.config;
                let mut b = aws_sdk_bedrockruntime::config::Builder::from(&self.inner.base)
                    .region(Region::new(region.to_string()))
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(10))
                            .operation_timeout(Duration::from_millis(c.timeout_ms))
                            .build(),
                    );
                let endpoint = c
                    .endpoint_urls
                    .get(region)
                    .filter(|u| !u.is_empty())
                    .unwrap_or(&c.endpoint_url);
                if !endpoint.is_empty() {
                    b = b.endpoint_url(endpoint);
                }
                if self.inner.identity.is_some() {
                    // Credentials come with each call; nothing to cache per client.
                    b = b.identity_cache(IdentityCache::no_cache());
                }
                aws_sdk_bedrockruntime::Client::from_conf(b.build())
            })
            .clone()
    }

    /// Per-call configuration: the caller's assumed-role credentials, when identity is on.
    async fn call_config(
        &self,
        principal: &Principal,
    ) -> Result<Option<aws_sdk_bedrockruntime::config::Builder>, ProviderError> {
        let (Some(identity), Some(spec)) = (&self.inner.identity, self.session(principal)) else {
            return Ok(None);
        };
        let creds = identity.credentials(&spec).await?;
        Ok(Some(
            aws_sdk_bedrockruntime::config::Builder::default().credentials_provider(creds),
        ))
    }

    fn guardrail<'a>(&'a self, ctx: &CallContext<'a>) -> Option<&'a BedrockGuardrailConfig> {
        self.inner
            .config
            .guardrails_by_classification
            .get(ctx.classification)
            .or(ctx.model.guardrail.as_ref())
    }

    pub async fn complete(&self, ctx: CallContext<'_>) -> Result<Completion, ProviderError> {
        let input = convert::converse_input(ctx.request)?;
        let client = self.client(ctx.model);
        let guardrail = self.guardrail(&ctx);
        let mut call = client
            .converse()
            .model_id(&ctx.model.upstream_model)
            .set_system((!input.system.is_empty()).then_some(input.system))
            .set_messages(Some(input.messages))
            .inference_config(input.inference)
            .set_tool_config(input.tools);
        if let Some(g) = guardrail {
            call = call.guardrail_config(
                GuardrailConfiguration::builder()
                    .guardrail_identifier(&g.id)
                    .guardrail_version(&g.version)
                    .trace(GuardrailTrace::Enabled)
                    .build(),
            );
        }
        let out = match self.call_config(ctx.principal).await? {
            Some(conf) => call.customize().config_override(conf).send().await,
            None => call.send().await,
        }
        .map_err(sdk_error)?;
        let trace = out.trace().and_then(|t| t.guardrail());
        if out.stop_reason() == &StopReason::GuardrailIntervened
            && let (Some(g), Some(t)) = (guardrail, trace)
            && input_blocked(t)
        {
            let assessment = trace_assessment(t, g, "input");
            return Err(ProviderError::GuardrailIntervened {
                message: convert::intervention_message(&assessment),
                assessment,
            });
        }
        let (content, tool_calls) = out
            .output()
            .and_then(|o| o.as_message().ok())
            .map(convert::answer)
            .unwrap_or_default();
        let guardrail_output = match (guardrail, trace) {
            (Some(g), Some(t)) if out.stop_reason() == &StopReason::GuardrailIntervened => {
                Some(trace_assessment(t, g, "output"))
            }
            _ => None,
        };
        Ok(Completion {
            id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
            model: ctx.model.upstream_model.clone(),
            content,
            finish_reason: convert::finish_reason(out.stop_reason()).to_string(),
            usage: convert::usage(out.usage()),
            tool_calls,
            guardrail: guardrail_output,
            upstream_request_id: out.request_id().map(str::to_string),
        })
    }

    /// Checks the prompt with ApplyGuardrail; an intervention is an error.
    async fn check_input(
        &self,
        client: &aws_sdk_bedrockruntime::Client,
        conf: Option<aws_sdk_bedrockruntime::config::Builder>,
        g: &BedrockGuardrailConfig,
        request: &ChatRequest,
    ) -> Result<(), ProviderError> {
        let blocks = request
            .messages
            .iter()
            .filter(|m| m.role != "assistant")
            .map(|m| m.text())
            .filter(|t| !t.is_empty())
            .map(|t| {
                GuardrailTextBlock::builder()
                    .text(t)
                    .build()
                    .map(GuardrailContentBlock::Text)
                    .map_err(|e| ProviderError::Protocol(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let call = client
            .apply_guardrail()
            .guardrail_identifier(&g.id)
            .guardrail_version(&g.version)
            .source(GuardrailContentSource::Input)
            .set_content(Some(blocks));
        let out = match conf {
            Some(conf) => call.customize().config_override(conf).send().await,
            None => call.send().await,
        }
        .map_err(sdk_error)?;
        if out.action() == &GuardrailAction::GuardrailIntervened {
            let assessment = convert::assessment_json(
                &g.id,
                &g.version,
                "input",
                out.assessments(),
                out.action_reason(),
            );
            return Err(ProviderError::GuardrailIntervened {
                message: convert::intervention_message(&assessment),
                assessment,
            });
        }
        Ok(())
    }

    pub async fn stream(&self, ctx: CallContext<'_>) -> Result<EventStream, ProviderError> {
        let input = convert::converse_input(ctx.request)?;
        let client = self.client(ctx.model);
        let guardrail = self.guardrail(&ctx).cloned();
        let conf = self.call_config(ctx.principal).await?;
        if let Some(g) = &guardrail {
            self.check_input(&client, conf.clone(), g, ctx.request)
                .await?;
        }
        let mut call = client
            .converse_stream()
            .model_id(&ctx.model.upstream_model)
            .set_system((!input.system.is_empty()).then_some(input.system))
            .set_messages(Some(input.messages))
            .inference_config(input.inference)
            .set_tool_config(input.tools);
        if let Some(g) = &guardrail {
            let mode = if g.stream_processing == "async" {
                GuardrailStreamProcessingMode::Async
            } else {
                GuardrailStreamProcessingMode::Sync
            };
            call = call.guardrail_config(
                GuardrailStreamConfiguration::builder()
                    .guardrail_identifier(&g.id)
                    .guardrail_version(&g.version)
                    .trace(GuardrailTrace::Enabled)
                    .stream_processing_mode(mode)
                    .build(),
            );
        }
        let out = match conf {
            Some(conf) => call.customize().config_override(conf).send().await,
            None => call.send().await,
        }
        .map_err(sdk_error)?;
        let mut pending = std::collections::VecDeque::new();
        if let Some(id) = out.request_id() {
            pending.push_back(StreamEvent::UpstreamRequestId(id.to_string()));
        }
        let state = Decoder {
            rx: out.stream,
            tools: HashMap::new(),
            guardrail,
            pending,
            done: false,
        };
        let events = futures::stream::unfold(state, |mut d| async move {
            loop {
                if let Some(e) = d.pending.pop_front() {
                    return Some((Ok(e), d));
                }
                if d.done {
                    return None;
                }
                match d.rx.recv().await {
                    Ok(Some(event)) => d.decode(event),
                    Ok(None) => d.done = true,
                    Err(e) => {
                        d.done = true;
                        return Some((Err(sdk_error(e)), d));
                    }
                }
            }
        });
        Ok(Box::pin(events))
    }
}

impl ModelProvider for BedrockProvider {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn complete<'a>(&'a self, ctx: CallContext<'a>) -> ProviderCall<'a, Completion> {
        Box::pin(BedrockProvider::complete(self, ctx))
    }

    fn stream<'a>(&'a self, ctx: CallContext<'a>) -> ProviderCall<'a, EventStream> {
        Box::pin(BedrockProvider::stream(self, ctx))
    }
}
