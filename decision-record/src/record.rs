//! The on-disk decision record format (specified in `docs/decision-record.md`).
//!
//! A record is one JSON line. Its *body* is the compact JSON object without `hash` and `sig`; the
//! line is the body with `,"hash":"<hex>","sig":"<base64>"` inserted before the final `}`.
//! `hash` is the SHA-256 of the body bytes, `sig` the Ed25519 signature of
//! `"cairn.decision-record.v1\n" + hash`. Each body carries `prev`, the hash of the record before
//! it (64 zeros for the first), and `seq`, one more than the previous record's.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::wire;

pub const FORMAT_VERSION: u32 = 1;
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const SIGNING_CONTEXT: &[u8] = b"cairn.decision-record.v1\n";

/// What kind of entry a line is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// One per API request: who asked for what, and what was decided.
    #[default]
    Decision,
    /// What happened after an allowed request: usage, cost, latency, finish reason.
    Outcome,
    /// Closes a segment: written on rotation, on clean shutdown, and on recovery after a crash.
    Seal,
}

impl RecordKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Decision => "decision",
            Self::Outcome => "outcome",
            Self::Seal => "seal",
        }
    }
}

/// Token counts of a completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One record: the chain envelope every line has, and the body of its kind. `seq`, `prev` and
/// `key_id` are assigned by the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub v: u32,
    pub seq: u64,
    /// The decision id (a UUIDv7), also sent as `x-cairn-decision-id`; outcome and seal records
    /// have their own ids.
    pub id: String,
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    pub body: Body,
    pub key_id: String,
    pub prev: String,
}

/// What a record says, by kind.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a record is built once per request and moved whole into the writer's boxed message; boxing the decision would add an allocation per request"
)]
pub enum Body {
    Decision(Decision),
    Outcome(Outcome),
    Seal(Seal),
}

/// One per API request, allowed or denied: everything needed to replay the decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub principal: Option<String>,
    pub principal_parents: Option<Vec<String>>,
    pub principal_attrs: Option<Value>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub resource_attrs: Option<Value>,
    pub context: Option<Value>,
    pub decision: Option<String>,
    pub reasons: Option<Vec<String>>,
    pub errors: Option<Vec<String>>,
    /// HTTP status sent to the client; absent on an allowed decision (its outcome has it).
    pub status: Option<u16>,
    /// Low-cardinality why: `policy`, `unauthenticated`, `unknown_model`, `no_bundle`, ...
    pub reason: Option<String>,
    pub bundle: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub guardrails: Option<Value>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub latency_ms: Option<u64>,
    pub trace_id: Option<String>,
    /// How the caller authenticated: `{method, subject, issuer, key, error}`.
    pub auth: Option<Value>,
    pub stream: Option<bool>,
    /// Routing, assumed role, budgets, ... (`docs/decision-record.md` lists the fields).
    pub extra: Option<Value>,
}

/// What happened after an allowed request: usage, cost, latency, finish reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The `id` of the decision this outcome settles.
    pub decision_id: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub guardrails: Option<Value>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub latency_ms: Option<u64>,
    pub trace_id: Option<String>,
    pub stream: Option<bool>,
    pub finish_reason: Option<String>,
    pub error: Option<String>,
    pub extra: Option<Value>,
}

/// Closes a segment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seal {
    /// Records before the seal in the same segment.
    pub sealed_records: u64,
    pub seal_reason: String,
}

impl From<Decision> for Body {
    fn from(d: Decision) -> Self {
        Self::Decision(d)
    }
}

impl From<Outcome> for Body {
    fn from(o: Outcome) -> Self {
        Self::Outcome(o)
    }
}

impl From<Seal> for Body {
    fn from(s: Seal) -> Self {
        Self::Seal(s)
    }
}

impl Record {
    /// A record of `body` whose chain fields the writer fills in.
    pub fn new(id: String, ts: String, body: impl Into<Body>) -> Self {
        Self {
            v: FORMAT_VERSION,
            seq: 0,
            id,
            ts,
            body: body.into(),
            key_id: String::new(),
            prev: String::new(),
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self.body {
            Body::Decision(_) => RecordKind::Decision,
            Body::Outcome(_) => RecordKind::Outcome,
            Body::Seal(_) => RecordKind::Seal,
        }
    }

    pub fn decision(&self) -> Option<&Decision> {
        match &self.body {
            Body::Decision(d) => Some(d),
            _ => None,
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.body {
            Body::Outcome(o) => Some(o),
            _ => None,
        }
    }

    pub fn seal(&self) -> Option<&Seal> {
        match &self.body {
            Body::Seal(s) => Some(s),
            _ => None,
        }
    }

    /// The compact JSON body, members in the order of version 1 (`docs/decision-record.md`).
    pub fn to_body_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&wire::Line::of(self))
    }

    /// Parses a body; members that do not belong to the record's kind are refused.
    pub fn from_body_json(body: &str) -> Result<Self, BodyError> {
        let line: wire::OwnedLine = serde_json::from_str(body)?;
        line.into_record()
    }
}

/// The chain position of a body, read without checking the rest of it (crash recovery, and
/// keeping the chain going past a line that fails its checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Peek {
    pub seq: u64,
    #[serde(default)]
    pub kind: RecordKind,
}

pub fn peek(body: &str) -> Option<Peek> {
    serde_json::from_str(body).ok()
}

/// Why a body is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Json(String),
    #[error("a {kind} record has no `{field}`")]
    Missing {
        kind: &'static str,
        field: &'static str,
    },
    #[error("`{field}` does not belong in a {kind} record")]
    Foreign {
        kind: &'static str,
        field: &'static str,
    },
}

impl From<serde_json::Error> for BodyError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e.to_string())
    }
}

/// A line that was parsed and whose hash and signature fields were split off.
#[derive(Debug, Clone)]
pub struct SignedLine<'a> {
    pub body: &'a str,
    pub hash: &'a str,
    pub sig: &'a str,
}

/// Splits `...,"hash":"<64 hex>","sig":"<base64>"}` into body and fields, exactly as written.
pub fn split_line(line: &str) -> Option<SignedLine<'_>> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix("\"}")?;
    let sig_at = line.rfind(",\"sig\":\"")?;
    let sig = &line[sig_at + 8..];
    let before = &line[..sig_at];
    let hash_at = before.rfind(",\"hash\":\"")?;
    let hash = before[hash_at + 9..].strip_suffix('"')?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let body_len = hash_at;
    // The body is everything before `,"hash"` plus the closing brace, which it shares with the line.
    Some(SignedLine {
        body: &line[..body_len],
        hash,
        sig,
    })
}

/// Serialises a record (whose `prev`, `seq`, `key_id` are set) into its signed line, with a
/// trailing newline, and returns the line and its hash.
pub fn seal_line(
    record: &Record,
    key: &SigningKey,
) -> Result<(Vec<u8>, String), serde_json::Error> {
    let mut body = record.to_body_json()?;
    let hash = hex::encode(Sha256::digest(&body));
    let sig = key.sign(&signing_input(&hash));
    // Replace the final `}` with the hash and signature fields.
    body.pop();
    body.extend_from_slice(b",\"hash\":\"");
    body.extend_from_slice(hash.as_bytes());
    body.extend_from_slice(b"\",\"sig\":\"");
    body.extend_from_slice(STANDARD.encode(sig.to_bytes()).as_bytes());
    body.extend_from_slice(b"\"}\n");
    Ok((body, hash))
}

fn signing_input(hash: &str) -> Vec<u8> {
    let mut m = SIGNING_CONTEXT.to_vec();
    m.extend_from_slice(hash.as_bytes());
    m
}

/// Why one line does not check out on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not a complete signed line (cut short, or not in the format).
    Malformed,
    /// The body does not hash to the stated hash: the record was altered.
    HashMismatch,
    /// The signature does not verify with the key.
    BadSignature,
    /// Signed by a key not among those given.
    UnknownKey(String),
    /// The body is not a valid record.
    BadBody(BodyError),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed => write!(
                f,
                "the line is not a complete signed record (truncated or rewritten)"
            ),
            Self::HashMismatch => {
                write!(f, "the record's content does not match its hash (altered)")
            }
            Self::BadSignature => write!(f, "the signature does not verify (altered or forged)"),
            Self::UnknownKey(k) => {
                write!(f, "signed by key {k}, which is not among the given keys")
            }
            Self::BadBody(e) => write!(f, "the record is not valid: {e}"),
        }
    }
}

/// Checks one line's hash and signature and parses its body.
pub fn check_line(
    line: &str,
    keys: &[(String, VerifyingKey)],
) -> Result<(Record, String), LineError> {
    let signed = split_line(line).ok_or(LineError::Malformed)?;
    let mut body = String::with_capacity(signed.body.len() + 1);
    body.push_str(signed.body);
    body.push('}');
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    if hash != signed.hash {
        return Err(LineError::HashMismatch);
    }
    let record = Record::from_body_json(&body).map_err(LineError::BadBody)?;
    let key = keys
        .iter()
        .find(|(id, _)| *id == record.key_id)
        .map(|(_, k)| k)
        .ok_or_else(|| LineError::UnknownKey(record.key_id.clone()))?;
    let sig_bytes = STANDARD
        .decode(signed.sig)
        .map_err(|_| LineError::BadSignature)?;
    let sig = Signature::from_slice(&sig_bytes).map_err(|_| LineError::BadSignature)?;
    key.verify(&signing_input(&hash), &sig)
        .map_err(|_| LineError::BadSignature)?;
    Ok((record, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn record(seq: u64, prev: &str) -> Record {
        let mut r = Record::new(
            format!("r{seq}"),
            "2026-11-25T00:00:00.000Z".into(),
            Decision {
                decision: Some("allow".into()),
                ..Default::default()
            },
        );
        r.seq = seq;
        r.key_id = policy_engine::bundle::keys::key_id(&key().verifying_key());
        r.prev = prev.into();
        r
    }

    fn keys() -> Vec<(String, VerifyingKey)> {
        let vk = key().verifying_key();
        vec![(policy_engine::bundle::keys::key_id(&vk), vk)]
    }

    #[test]
    fn a_sealed_line_checks_and_round_trips() {
        let r = record(1, GENESIS);
        let (line, hash) = seal_line(&r, &key()).unwrap();
        let text = String::from_utf8(line).unwrap();
        assert!(text.ends_with("\"}\n"));
        let (back, h) = check_line(&text, &keys()).unwrap();
        assert_eq!(back, r);
        assert_eq!(h, hash);
    }

    #[test]
    fn any_change_is_caught() {
        let (line, _) = seal_line(&record(1, GENESIS), &key()).unwrap();
        let text = String::from_utf8(line).unwrap();
        let altered = text.replace("\"allow\"", "\"deny\"");
        assert_eq!(
            check_line(&altered, &keys()).unwrap_err(),
            LineError::HashMismatch
        );
        let cut = &text[..text.len() - 5];
        assert_eq!(check_line(cut, &keys()).unwrap_err(), LineError::Malformed);
        // Recomputing the hash of an altered body does not help without the key.
        let signed = split_line(&altered).unwrap();
        let body = format!("{}}}", signed.body);
        let forged_hash = hex::encode(Sha256::digest(body.as_bytes()));
        let forged = altered.replace(signed.hash, &forged_hash);
        assert_eq!(
            check_line(&forged, &keys()).unwrap_err(),
            LineError::BadSignature
        );
    }

    #[test]
    fn members_keep_the_version_1_order() {
        let mut r = record(3, GENESIS);
        if let Body::Decision(d) = &mut r.body {
            d.principal = Some("User::\"alice\"".into());
            d.status = Some(403);
            d.extra = Some(serde_json::json!({ "cache": "miss" }));
        }
        let body = String::from_utf8(r.to_body_json().unwrap()).unwrap();
        assert_eq!(
            body,
            format!(
                r#"{{"v":1,"kind":"decision","seq":3,"id":"r3","ts":"2026-11-25T00:00:00.000Z","principal":"User::\"alice\"","decision":"allow","status":403,"extra":{{"cache":"miss"}},"key_id":"{}","prev":"{GENESIS}"}}"#,
                r.key_id
            )
        );
        let outcome = Record::new(
            "o1".into(),
            "2026-11-25T00:00:00.001Z".into(),
            Outcome {
                decision_id: "r3".into(),
                status: Some(200),
                finish_reason: Some("stop".into()),
                ..Default::default()
            },
        );
        let body = String::from_utf8(outcome.to_body_json().unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"v":1,"kind":"outcome","seq":0,"id":"o1","ts":"2026-11-25T00:00:00.001Z","status":200,"decision_id":"r3","finish_reason":"stop","key_id":"","prev":""}"#
        );
    }

    #[test]
    fn bodies_are_typed_by_kind() {
        let seal = r#"{"v":1,"kind":"seal","seq":9,"id":"s","ts":"t","sealed_records":8,"seal_reason":"shutdown","key_id":"k","prev":"p"}"#;
        let r = Record::from_body_json(seal).unwrap();
        assert_eq!(r.kind(), RecordKind::Seal);
        assert_eq!(r.seal().map(|s| s.sealed_records), Some(8));
        let foreign = r#"{"v":1,"kind":"outcome","seq":9,"id":"o","ts":"t","decision_id":"d","principal":"User::\"x\"","key_id":"k","prev":"p"}"#;
        assert_eq!(
            Record::from_body_json(foreign).unwrap_err(),
            BodyError::Foreign {
                kind: "outcome",
                field: "principal"
            }
        );
        let seal_with_more = r#"{"v":1,"kind":"seal","seq":9,"id":"s","ts":"t","sealed_records":8,"seal_reason":"shutdown","status":200,"key_id":"k","prev":"p"}"#;
        assert_eq!(
            Record::from_body_json(seal_with_more).unwrap_err(),
            BodyError::Foreign {
                kind: "seal",
                field: "status"
            }
        );
        let missing =
            r#"{"v":1,"kind":"outcome","seq":9,"id":"o","ts":"t","key_id":"k","prev":"p"}"#;
        assert_eq!(
            Record::from_body_json(missing).unwrap_err(),
            BodyError::Missing {
                kind: "outcome",
                field: "decision_id"
            }
        );
    }
}
