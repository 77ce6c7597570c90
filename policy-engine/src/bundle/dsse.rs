//! DSSE (Dead Simple Signing Envelope, as used by in-toto and Sigstore) with Ed25519: the
//! signature covers PAE(payloadType, payload), so any DSSE implementation can verify it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::keys::key_id;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    /// Standard base64 of the payload bytes.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvelopeSignature {
    pub keyid: String,
    /// Standard base64 of the 64-byte Ed25519 signature over PAE.
    pub sig: String,
}

/// The pre-authentication encoding of the DSSE spec:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
    let sig = key.sign(&pae(payload_type, payload));
    Envelope {
        payload: STANDARD.encode(payload),
        payload_type: payload_type.to_string(),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(&key.verifying_key()),
            sig: STANDARD.encode(sig.to_bytes()),
        }],
    }
}

/// Why an envelope did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    BadPayloadEncoding,
    NoSignatures,
    /// Signed, but by other keys (their ids).
    OtherKey(Vec<String>),
    /// A signature claims our key id but does not verify: the payload or signature was altered.
    BadSignature,
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadPayloadEncoding => write!(f, "`payload` is not valid base64"),
            Self::NoSignatures => write!(f, "the envelope has no signatures"),
            Self::OtherKey(ids) => write!(f, "signed by {} , not by the given key", ids.join(", ")),
            Self::BadSignature => write!(f, "the signature does not match the payload"),
        }
    }
}

fn decode(s: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .ok()
}

/// True when `sig` is the standard base64 of a 64-byte signature, spelled as `sign` spells it.
pub fn canonical_signature(sig: &str) -> bool {
    STANDARD
        .decode(sig)
        .is_ok_and(|b| b.len() == 64 && STANDARD.encode(&b) == sig)
}

/// Verifies the envelope with `key` and returns the payload bytes.
pub fn verify(envelope: &Envelope, key: &VerifyingKey) -> Result<Vec<u8>, EnvelopeError> {
    let payload = decode(&envelope.payload).ok_or(EnvelopeError::BadPayloadEncoding)?;
    if envelope.signatures.is_empty() {
        return Err(EnvelopeError::NoSignatures);
    }
    let message = pae(&envelope.payload_type, &payload);
    let ours = key_id(key);
    let mut saw_ours = false;
    for s in &envelope.signatures {
        let Some(bytes) = decode(&s.sig) else {
            continue;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            continue;
        };
        if key.verify(&message, &sig).is_ok() {
            return Ok(payload);
        }
        if s.keyid == ours || s.keyid.is_empty() {
            saw_ours = true;
        }
    }
    if saw_ours {
        Err(EnvelopeError::BadSignature)
    } else {
        Err(EnvelopeError::OtherKey(
            envelope
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn round_trip_and_failures() {
        let k = key(1);
        let env = sign("t", b"{}", &k);
        assert_eq!(verify(&env, &k.verifying_key()).unwrap(), b"{}");
        assert!(matches!(
            verify(&env, &key(2).verifying_key()),
            Err(EnvelopeError::OtherKey(_))
        ));
        let mut tampered = env.clone();
        tampered.payload = STANDARD.encode(b"{ }");
        assert_eq!(
            verify(&tampered, &k.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
        let mut retyped = env;
        retyped.payload_type = "u".into();
        assert_eq!(
            verify(&retyped, &k.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
    }
}
