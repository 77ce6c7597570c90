//! OIDC bearer tokens. Keys come from the issuer's JWKS (found through the discovery document
//! unless configured), are cached, and are fetched again when a token names an unknown key id,
//! at most once per `refresh_min_interval_ms`. The algorithm is pinned by the key: an RSA key
//! verifies only RS*/PS*, a P-256 key only ES256, an Ed25519 key only EdDSA, and symmetric keys
//! are never accepted, so `alg: none` and HS/RS confusion cannot work.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde_json::{Map, Value};

use super::{AuthError, Principal, map_claims};
use crate::config::OidcConfig;

/// JWKS and discovery documents larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

struct VerifyKey {
    key: DecodingKey,
    alg: Algorithm,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    /// Keys without a `kid`, tried only when the token has none either.
    anonymous: Vec<Arc<VerifyKey>>,
}

pub struct OidcVerifier {
    config: OidcConfig,
    allowed: Vec<Algorithm>,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    generation: AtomicU64,
    refresh: tokio::sync::Mutex<Option<Instant>>,
    jwks_url: tokio::sync::Mutex<Option<String>>,
}

/// The one algorithm a key may verify.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk
        .common
        .key_algorithm
        .and_then(|a| Algorithm::from_str(&format!("{a:?}")).ok());
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => match declared {
            Some(
                a @ (Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512),
            ) => a,
            Some(_) => return None,
            None => Algorithm::RS256,
        },
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => Algorithm::EdDSA,
            _ => return None,
        },
        // Shared secrets in a public key set would let anyone forge tokens; unknown key types
        // are skipped.
        _ => return None,
    };
    match declared {
        Some(d) if d != by_type => None,
        _ => Some(by_type),
    }
}

impl OidcVerifier {
    pub fn new(config: OidcConfig) -> Result<Self, String> {
        let allowed = config
            .algorithms
            .iter()
            .map(|a| Algorithm::from_str(a).map_err(|e| format!("algorithm `{a}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let jwks_url = (!config.jwks_url.is_empty()).then(|| config.jwks_url.clone());
        Ok(Self {
            config,
            allowed,
            client,
            keys: ArcSwap::from_pointee(KeySet::default()),
            generation: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(None),
            jwks_url: tokio::sync::Mutex::new(jwks_url),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status()));
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url} sent more than {MAX_DOCUMENT_BYTES} bytes"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))
    }

    async fn jwks_url(&self) -> Result<String, String> {
        let mut cached = self.jwks_url.lock().await;
        if let Some(u) = cached.as_ref() {
            return Ok(u.clone());
        }
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let doc = self.get_json(&discovery).await?;
        let url = doc["jwks_uri"]
            .as_str()
            .ok_or_else(|| format!("{discovery} has no `jwks_uri`"))?
            .to_string();
        *cached = Some(url.clone());
        Ok(url)
    }

    /// Fetches the key set now.
    pub async fn fetch(&self) -> Result<usize, String> {
        let url = self.jwks_url().await?;
        let doc = self.get_json(&url).await?;
        let set: JwkSet =
            serde_json::from_value(doc).map_err(|e| format!("{url}: not a JWKS: {e}"))?;
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            let Some(alg) = key_algorithm(jwk) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let entry = Arc::new(VerifyKey { key, alg });
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), entry);
                }
                None => keys.anonymous.push(entry),
            }
        }
        let n = keys.by_kid.len() + keys.anonymous.len();
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(n)
    }

    /// Fetches again unless a fetch happened recently; concurrent callers share one fetch.
    async fn refresh(&self, seen_generation: u64) {
        let mut last = self.refresh.lock().await;
        if self.generation.load(Ordering::Acquire) != seen_generation {
            return; // someone else refreshed while we waited
        }
        let min = Duration::from_millis(self.config.refresh_min_interval_ms);
        if last.is_some_and(|t| t.elapsed() < min) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.fetch().await {
            tracing::warn!(error = %e, "JWKS refresh failed");
        }
    }

    fn lookup(&self, kid: Option<&str>) -> Option<Arc<VerifyKey>> {
        let keys = self.keys.load();
        match kid {
            Some(k) => keys.by_kid.get(k).cloned(),
            None => {
                let all: Vec<_> = keys.by_kid.values().chain(keys.anonymous.iter()).collect();
                (all.len() == 1).then(|| all[0].clone())
            }
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header =
            decode_header(token).map_err(|_| AuthError::InvalidToken("malformed header"))?;
        let kid = header.kid.as_deref();
        let generation = self.generation.load(Ordering::Acquire);
        let key = match self.lookup(kid) {
            Some(k) => k,
            None => {
                self.refresh(generation).await;
                if self.keys.load().by_kid.is_empty() && self.keys.load().anonymous.is_empty() {
                    return Err(AuthError::JwksUnavailable);
                }
                self.lookup(kid).ok_or(AuthError::UnknownKeyId)?
            }
        };
        if header.alg != key.alg || !self.allowed.contains(&key.alg) {
            return Err(AuthError::AlgorithmMismatch);
        }
        let mut validation = Validation::new(key.alg);
        validation.algorithms = vec![key.alg];
        validation.leeway = self.config.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[self.config.issuer.as_str()]);
        let mut required = vec!["exp", "iss"];
        if self.config.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.config.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let data =
            decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    ErrorKind::InvalidAudience => AuthError::WrongAudience,
                    ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    ErrorKind::InvalidAlgorithm => AuthError::AlgorithmMismatch,
                    ErrorKind::MissingRequiredClaim(_) => {
                        AuthError::InvalidToken("a required claim is missing")
                    }
                    _ => AuthError::InvalidToken("malformed token"),
                }
            })?;
        map_claims(&data.claims, &self.config.claims, &self.config.issuer)
    }
}
