//! The admission stages every protocol runs, in this order, each in its own module and each
//! returning `Result<_, GatewayError>` so a protocol adapter chains them with `?`:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | authenticate | [`authenticate`] | bearer credential → `Principal` (API key or OIDC JWT) |
//! | read the body | [`body`] | bounded read, JSON parse |
//! | resolve the resource | [`resource`] | catalogue model, data classification |
//! | guard the input | [`guard`] | local guardrails: redact in place, findings into the context |
//! | reserve | [`reserve`] | budgets and rate limits: one atomic reservation of the estimate |
//! | decide | [`decide`] | Cedar, from the verified bundle in force |
//!
//! An [`Admission`] carries the request's scope (decision id, trace, clocks, spans) and the
//! decision record being filled in; [`refuse`] is the one exit for a request that ends before
//! it is served: it records the refusal durably and answers with the error, or 503 when the
//! record cannot be made durable.
//!
//! INVARIANT: no response byte (status line included) leaves before the request's decision
//! record is durable; when it cannot be made durable the answer is 503 and nothing else.

pub mod authenticate;
pub mod body;
pub mod decide;
pub mod guard;
pub mod reserve;
pub mod resource;
mod scope;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::authn::Principal;
use crate::decision_log::Decision;
use crate::error::GatewayError;
use crate::openai;
use crate::state::AppState;

pub use scope::{McpSpan, RequestScope, SpanEnd, Stage, StageClock, genai_provider};

/// The anonymous principal of a request that did not authenticate.
pub const ANONYMOUS: &str = "Anonymous::\"anonymous\"";

/// A request being admitted: its scope and its decision record so far.
pub struct Admission {
    pub scope: RequestScope,
    pub record: Decision,
}

impl Admission {
    pub fn new(headers: &HeaderMap, collect_spans: bool, action: &str) -> Self {
        let scope = RequestScope::new(headers, collect_spans);
        let record = scope.decision(action);
        Self { scope, record }
    }

    /// Adds `key: value` to the decision record's `extra`.
    pub fn extra(&mut self, key: &str, value: Value) {
        extra(&mut self.record.extra, key, value);
    }
}

/// Adds `key: value` to a record's `extra` object.
pub fn extra(slot: &mut Option<Value>, key: &str, value: Value) {
    let obj = slot.get_or_insert_with(|| json!({}));
    if let Some(map) = obj.as_object_mut() {
        map.insert(key.to_string(), value);
    }
}

/// Fills the principal's part of a decision record.
pub fn record_principal(record: &mut Decision, principal: &Principal) {
    record.principal = Some(principal.uid());
    record.principal_parents = Some(principal.parent_uids());
    record.principal_attrs = Some(json!(principal.attrs));
    record.auth = Some(principal.auth_json());
}

/// The error in OpenAI's shape, with the request's headers.
pub fn error_response(scope: &RequestScope, e: &GatewayError) -> Response {
    let (status, kind, _) = e.classify();
    let body = openai::error_json(&e.to_string(), kind, e.code());
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(secs) = e.retry_after()
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    scope.headers(&mut resp);
    resp
}

/// Records a request that ends in an error before it is served, then answers it. If the record
/// cannot be made durable, the answer is 503 instead.
pub async fn refuse(state: &AppState, adm: Admission, e: GatewayError) -> Response {
    let (status, _, reason) = e.classify();
    let mut adm = adm;
    if adm.record.errors.is_none() {
        adm.record.errors = Some(match &e {
            GatewayError::Denied { .. } => Vec::new(),
            other => vec![other.to_string()],
        });
    }
    // A label value must come from the configuration, never from the client: any other name
    // would let a client create metric series without bound.
    let model = adm
        .record
        .model
        .as_deref()
        .map(|m| metric_label(state, m))
        .unwrap_or_default();
    let span_end = SpanEnd {
        request_model: adm.record.model.clone(),
        provider: adm.record.provider.clone(),
        status: status.as_u16(),
        decision: "deny",
        reason: reason.to_string(),
        error_type: Some(reason.to_string()),
        ..SpanEnd::default()
    };
    refuse_with(state, adm, status, reason, &model, span_end, |scope| {
        error_response(scope, &e)
    })
    .await
}

/// [`refuse`] for a protocol with its own error shape: the refusal is recorded (status, reason,
/// latency; `errors` as the caller left them), then `respond` builds the answer, or it is 503
/// when the record cannot be made durable. `label` is the metrics' model label.
pub async fn refuse_with(
    state: &AppState,
    adm: Admission,
    status: StatusCode,
    reason: &str,
    label: &str,
    span_end: SpanEnd,
    respond: impl FnOnce(&RequestScope) -> Response,
) -> Response {
    let Admission { scope, mut record } = adm;
    if record.principal.is_none() {
        record.principal = Some(ANONYMOUS.into());
    }
    record.decision = Some("deny".into());
    record.status = Some(status.as_u16());
    record.reason = Some(reason.into());
    record.latency_ms = Some(scope.started.elapsed().as_millis() as u64);
    let durable = {
        let mut stage = scope.stage(state, "record");
        let durable = state.log.append(scope.decision_record(record)).await;
        if let Err(e) = &durable {
            stage.fail(e);
        }
        durable
    };
    match durable {
        Ok(_) => {
            state
                .metrics
                .request("deny", label, status.as_u16(), reason);
            let resp = respond(&scope);
            scope.finish(state, span_end);
            resp
        }
        Err(_) => records_unavailable(state, &scope, label),
    }
}

/// The `model` label of a request's metrics: the catalogue's name for it, or `unknown`.
pub fn metric_label(state: &AppState, model: &str) -> String {
    if state.catalogue.get(model).is_some() {
        model.to_string()
    } else {
        UNKNOWN_LABEL.to_string()
    }
}

/// The label value of every name that is not in the configuration.
pub const UNKNOWN_LABEL: &str = "unknown";

/// The answer when a request's decision record cannot be made durable.
pub fn records_unavailable(state: &AppState, scope: &RequestScope, model: &str) -> Response {
    let e = GatewayError::RecordsUnavailable;
    let (status, _, reason) = e.classify();
    state
        .metrics
        .request("none", model, status.as_u16(), reason);
    let mut resp = error_response(scope, &e);
    // No record carries this id: handing it out would point an auditor at nothing.
    resp.headers_mut().remove("x-cairn-decision-id");
    scope.finish(
        state,
        SpanEnd {
            status: status.as_u16(),
            decision: "none",
            reason: reason.to_string(),
            error_type: Some(reason.to_string()),
            ..SpanEnd::default()
        },
    );
    resp
}
