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

/// One record as the gateway fills it in. `seq`, `prev`, `key_id` are assigned by the writer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    pub kind: RecordKind,
    pub seq: u64,
    /// The decision id (a UUIDv7), also sent as `x-cairn-decision-id`; outcome and seal records
    /// have their own ids.
    pub id: String,
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    // Decision fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_parents: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_attrs: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_attrs: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
    /// HTTP status sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Low-cardinality why: `policy`, `unauthenticated`, `unknown_model`, `no_bundle`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// How the caller authenticated: `{method, subject, issuer, key, error}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Anything a later issue adds (routing attempts, assumed role, budgets, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
    // Outcome fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    // Seal fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_records: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_reason: Option<String>,
    // Chain fields, assigned by the writer.
    pub key_id: String,
    pub prev: String,
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
    let mut body = serde_json::to_vec(record)?;
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
    BadBody(String),
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
    let record: Record =
        serde_json::from_str(&body).map_err(|e| LineError::BadBody(e.to_string()))?;
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
        Record {
            v: FORMAT_VERSION,
            kind: RecordKind::Decision,
            seq,
            id: format!("r{seq}"),
            ts: "2026-11-25T00:00:00.000Z".into(),
            decision: Some("allow".into()),
            key_id: policy_engine::bundle::keys::key_id(&key().verifying_key()),
            prev: prev.into(),
            ..Default::default()
        }
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
}
