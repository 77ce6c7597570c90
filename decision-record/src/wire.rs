//! The version-1 body as it is on disk: one flat JSON object whose members come in a fixed
//! order (envelope, then the kind's fields, then the chain fields). Typed records are written
//! through a borrowing view and read through an owned one, so the bytes a record hashes to are
//! those every earlier version wrote.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{Body, BodyError, Decision, Outcome, Record, RecordKind, Seal, Usage};

/// A borrowed view of a record in the on-disk member order.
#[derive(Serialize)]
pub struct Line<'a> {
    v: u32,
    kind: RecordKind,
    seq: u64,
    id: &'a str,
    ts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_parents: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_attrs: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_attrs: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guardrails: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed_records: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seal_reason: Option<&'a str>,
    key_id: &'a str,
    prev: &'a str,
}

impl<'a> Line<'a> {
    pub fn of(r: &'a Record) -> Self {
        let mut line = Line {
            v: r.v,
            kind: r.kind(),
            seq: r.seq,
            id: &r.id,
            ts: &r.ts,
            principal: None,
            principal_parents: None,
            principal_attrs: None,
            action: None,
            resource: None,
            resource_attrs: None,
            context: None,
            decision: None,
            reasons: None,
            errors: None,
            status: None,
            reason: None,
            bundle: None,
            model: None,
            provider: None,
            guardrails: None,
            usage: None,
            cost_usd: None,
            latency_ms: None,
            trace_id: None,
            auth: None,
            stream: None,
            extra: None,
            decision_id: None,
            finish_reason: None,
            error: None,
            sealed_records: None,
            seal_reason: None,
            key_id: &r.key_id,
            prev: &r.prev,
        };
        match &r.body {
            Body::Decision(d) => {
                line.principal = d.principal.as_ref();
                line.principal_parents = d.principal_parents.as_ref();
                line.principal_attrs = d.principal_attrs.as_ref();
                line.action = d.action.as_ref();
                line.resource = d.resource.as_ref();
                line.resource_attrs = d.resource_attrs.as_ref();
                line.context = d.context.as_ref();
                line.decision = d.decision.as_ref();
                line.reasons = d.reasons.as_ref();
                line.errors = d.errors.as_ref();
                line.status = d.status;
                line.reason = d.reason.as_ref();
                line.bundle = d.bundle.as_ref();
                line.model = d.model.as_ref();
                line.provider = d.provider.as_ref();
                line.guardrails = d.guardrails.as_ref();
                line.usage = d.usage.as_ref();
                line.cost_usd = d.cost_usd;
                line.latency_ms = d.latency_ms;
                line.trace_id = d.trace_id.as_ref();
                line.auth = d.auth.as_ref();
                line.stream = d.stream;
                line.extra = d.extra.as_ref();
            }
            Body::Outcome(o) => {
                line.status = o.status;
                line.reason = o.reason.as_ref();
                line.model = o.model.as_ref();
                line.provider = o.provider.as_ref();
                line.guardrails = o.guardrails.as_ref();
                line.usage = o.usage.as_ref();
                line.cost_usd = o.cost_usd;
                line.latency_ms = o.latency_ms;
                line.trace_id = o.trace_id.as_ref();
                line.stream = o.stream;
                line.extra = o.extra.as_ref();
                line.decision_id = Some(&o.decision_id);
                line.finish_reason = o.finish_reason.as_ref();
                line.error = o.error.as_ref();
            }
            Body::Seal(s) => {
                line.sealed_records = Some(s.sealed_records);
                line.seal_reason = Some(&s.seal_reason);
            }
        }
        line
    }
}

/// Every member a version-1 body may have, owned, for reading.
#[derive(Deserialize)]
pub struct OwnedLine {
    v: u32,
    #[serde(default)]
    kind: RecordKind,
    seq: u64,
    id: String,
    ts: String,
    principal: Option<String>,
    principal_parents: Option<Vec<String>>,
    principal_attrs: Option<Value>,
    action: Option<String>,
    resource: Option<String>,
    resource_attrs: Option<Value>,
    context: Option<Value>,
    decision: Option<String>,
    reasons: Option<Vec<String>>,
    errors: Option<Vec<String>>,
    status: Option<u16>,
    reason: Option<String>,
    bundle: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    guardrails: Option<Value>,
    usage: Option<Usage>,
    cost_usd: Option<f64>,
    latency_ms: Option<u64>,
    trace_id: Option<String>,
    auth: Option<Value>,
    stream: Option<bool>,
    extra: Option<Value>,
    decision_id: Option<String>,
    finish_reason: Option<String>,
    error: Option<String>,
    sealed_records: Option<u64>,
    seal_reason: Option<String>,
    key_id: String,
    prev: String,
}

/// Refuses a member that is present but belongs to another kind.
fn absent<T>(kind: RecordKind, field: &'static str, v: &Option<T>) -> Result<(), BodyError> {
    match v {
        Some(_) => Err(BodyError::Foreign {
            kind: kind.name(),
            field,
        }),
        None => Ok(()),
    }
}

fn required<T>(kind: RecordKind, field: &'static str, v: Option<T>) -> Result<T, BodyError> {
    v.ok_or(BodyError::Missing {
        kind: kind.name(),
        field,
    })
}

impl OwnedLine {
    /// A seal carries only its count and reason besides the envelope.
    fn refuse_all_but_seal(&self) -> Result<(), BodyError> {
        let k = RecordKind::Seal;
        let present: [(&'static str, bool); 26] = [
            ("principal", self.principal.is_some()),
            ("principal_parents", self.principal_parents.is_some()),
            ("principal_attrs", self.principal_attrs.is_some()),
            ("action", self.action.is_some()),
            ("resource", self.resource.is_some()),
            ("resource_attrs", self.resource_attrs.is_some()),
            ("context", self.context.is_some()),
            ("decision", self.decision.is_some()),
            ("reasons", self.reasons.is_some()),
            ("errors", self.errors.is_some()),
            ("status", self.status.is_some()),
            ("reason", self.reason.is_some()),
            ("bundle", self.bundle.is_some()),
            ("model", self.model.is_some()),
            ("provider", self.provider.is_some()),
            ("guardrails", self.guardrails.is_some()),
            ("usage", self.usage.is_some()),
            ("cost_usd", self.cost_usd.is_some()),
            ("latency_ms", self.latency_ms.is_some()),
            ("trace_id", self.trace_id.is_some()),
            ("auth", self.auth.is_some()),
            ("stream", self.stream.is_some()),
            ("extra", self.extra.is_some()),
            ("decision_id", self.decision_id.is_some()),
            ("finish_reason", self.finish_reason.is_some()),
            ("error", self.error.is_some()),
        ];
        match present.iter().find(|(_, p)| *p) {
            Some((field, _)) => Err(BodyError::Foreign {
                kind: k.name(),
                field,
            }),
            None => Ok(()),
        }
    }

    pub fn into_record(self) -> Result<Record, BodyError> {
        let k = self.kind;
        let body = match k {
            RecordKind::Decision => {
                absent(k, "decision_id", &self.decision_id)?;
                absent(k, "finish_reason", &self.finish_reason)?;
                absent(k, "error", &self.error)?;
                absent(k, "sealed_records", &self.sealed_records)?;
                absent(k, "seal_reason", &self.seal_reason)?;
                Body::Decision(Decision {
                    principal: self.principal,
                    principal_parents: self.principal_parents,
                    principal_attrs: self.principal_attrs,
                    action: self.action,
                    resource: self.resource,
                    resource_attrs: self.resource_attrs,
                    context: self.context,
                    decision: self.decision,
                    reasons: self.reasons,
                    errors: self.errors,
                    status: self.status,
                    reason: self.reason,
                    bundle: self.bundle,
                    model: self.model,
                    provider: self.provider,
                    guardrails: self.guardrails,
                    usage: self.usage,
                    cost_usd: self.cost_usd,
                    latency_ms: self.latency_ms,
                    trace_id: self.trace_id,
                    auth: self.auth,
                    stream: self.stream,
                    extra: self.extra,
                })
            }
            RecordKind::Outcome => {
                absent(k, "principal", &self.principal)?;
                absent(k, "principal_parents", &self.principal_parents)?;
                absent(k, "principal_attrs", &self.principal_attrs)?;
                absent(k, "action", &self.action)?;
                absent(k, "resource", &self.resource)?;
                absent(k, "resource_attrs", &self.resource_attrs)?;
                absent(k, "context", &self.context)?;
                absent(k, "decision", &self.decision)?;
                absent(k, "reasons", &self.reasons)?;
                absent(k, "errors", &self.errors)?;
                absent(k, "bundle", &self.bundle)?;
                absent(k, "auth", &self.auth)?;
                absent(k, "sealed_records", &self.sealed_records)?;
                absent(k, "seal_reason", &self.seal_reason)?;
                Body::Outcome(Outcome {
                    decision_id: required(k, "decision_id", self.decision_id)?,
                    model: self.model,
                    provider: self.provider,
                    status: self.status,
                    reason: self.reason,
                    guardrails: self.guardrails,
                    usage: self.usage,
                    cost_usd: self.cost_usd,
                    latency_ms: self.latency_ms,
                    trace_id: self.trace_id,
                    stream: self.stream,
                    finish_reason: self.finish_reason,
                    error: self.error,
                    extra: self.extra,
                })
            }
            RecordKind::Seal => {
                self.refuse_all_but_seal()?;
                Body::Seal(Seal {
                    sealed_records: required(k, "sealed_records", self.sealed_records)?,
                    seal_reason: required(k, "seal_reason", self.seal_reason)?,
                })
            }
        };
        Ok(Record {
            v: self.v,
            seq: self.seq,
            id: self.id,
            ts: self.ts,
            body,
            key_id: self.key_id,
            prev: self.prev,
        })
    }
}
