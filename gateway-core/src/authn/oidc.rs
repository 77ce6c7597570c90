//! OIDC bearer tokens. Keys come from the issuer's JWKS (found through the discovery document
//! unless configured), are cached, and are fetched again when a token names an unknown key id,
//! at most once per `refresh_min_interval_ms`. The algorithm is pinned by the key: an RSA key
//! verifies only RS*/PS*, a P-256 key only ES256, an Ed25519 key only EdDSA, and symmetric keys
//! are never accepted, so `alg: none` and HS/RS confusion cannot work.
//!
//! A signature check costs hundreds of microseconds while clients reuse one token for many
//! requests, so tokens that verified are remembered by the SHA-256 of their whole text (any other
//! byte, signature included, is another entry). A remembered token is still refused once outside
//! `nbf`..`exp`, and every JWKS fetch forgets all of them, so a key dropped from the set stops
//! working at the same moment it did without the cache.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, errors::ErrorKind};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{AuthError, Principal, map_claims};
use crate::config::OidcConfig;

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Later ones are not times any issuer
/// means (and overflow the arithmetic of validity windows).
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// RSA moduli shorter than this are refused (NIST SP 800-131A: 2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// A NumericDate (RFC 7519 §2): a non-negative number of seconds, here bounded.
fn is_numeric_date(v: &Value) -> bool {
    v.as_f64()
        .is_some_and(|t| t.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(&t))
}

/// The token's JOSE header, decoded once. A header that names critical extensions (RFC 7515
/// §4.1.11) is refused: Cairn understands none, so it must not accept a token that depends on
/// one. `b64: false` (RFC 7797) changes what is signed and is refused too.
fn decode_strict_header(token: &str) -> Result<jsonwebtoken::Header, AuthError> {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| AuthError::InvalidToken("malformed header"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::InvalidToken("malformed header"))?;
    if header.contains_key("crit") {
        return Err(AuthError::InvalidToken(
            "the token names critical header parameters (`crit`) the gateway does not understand",
        ));
    }
    if header.contains_key("b64") {
        return Err(AuthError::InvalidToken(
            "unencoded payloads (`b64`) are not accepted",
        ));
    }
    serde_json::from_value(Value::Object(header))
        .map_err(|_| AuthError::InvalidToken("malformed header"))
}

/// Refuses keys too weak to trust, whatever the issuer publishes.
fn key_strength(jwk: &Jwk) -> Result<(), String> {
    use base64::Engine as _;
    if let AlgorithmParameters::RSA(rsa) = &jwk.algorithm {
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rsa.n.trim_end_matches('='))
            .map_err(|_| "its RSA modulus `n` is not base64url".to_string())?;
        let significant = n.iter().skip_while(|b| **b == 0).count();
        if significant < MIN_RSA_BYTES {
            return Err(format!(
                "its RSA modulus has {} bits; at least {} are required",
                significant * 8,
                MIN_RSA_BYTES * 8
            ));
        }
    }
    Ok(())
}

/// JWKS and discovery documents larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

struct VerifyKey {
    key: DecodingKey,
    alg: Algorithm,
}

#[derive(Default)]
struct KeySet {
    /// A key set may name two keys alike (rotation done carelessly): each is tried.
    by_kid: HashMap<String, Vec<Arc<VerifyKey>>>,
    /// Keys without a `kid`, tried only when the token has none either.
    anonymous: Vec<Arc<VerifyKey>>,
}

/// A token whose signature and claims checked out, and the key-set generation that checked it.
struct Verified {
    principal: Principal,
    exp: i64,
    nbf: Option<i64>,
    generation: u64,
}

pub struct OidcVerifier {
    config: OidcConfig,
    verified: Mutex<HashMap<[u8; 32], Arc<Verified>>>,
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
            verified: Mutex::new(HashMap::new()),
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
        // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched
        // for; anything else is someone else's key set.
        let issuer = doc["issuer"].as_str().unwrap_or_default();
        if issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
            return Err(format!(
                "{discovery} names issuer `{issuer}`, not the configured `{}`",
                self.config.issuer
            ));
        }
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
        Ok(self.install(&set))
    }

    /// A verifier whose keys are `set`, which never fetches (the fuzz targets' verifier).
    #[doc(hidden)]
    pub fn with_keys(mut config: OidcConfig, set: &JwkSet) -> Result<Self, String> {
        // No refresh is ever due, so no URL is ever fetched.
        config.refresh_min_interval_ms = u64::MAX;
        let verifier = Self::new(config)?;
        verifier.install(set);
        if let Ok(mut last) = verifier.refresh.try_lock() {
            *last = Some(Instant::now());
        }
        Ok(verifier)
    }

    /// Makes `set` the key set in force; returns how many keys were usable.
    fn install(&self, set: &JwkSet) -> usize {
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            // Encryption keys never verify signatures.
            if matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            ) {
                continue;
            }
            let Some(alg) = key_algorithm(jwk) else {
                continue;
            };
            if let Err(why) = key_strength(jwk) {
                tracing::warn!(kid = ?jwk.common.key_id, "JWKS key skipped: {why}");
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let entry = Arc::new(VerifyKey { key, alg });
            match &jwk.common.key_id {
                Some(kid) => keys.by_kid.entry(kid.clone()).or_default().push(entry),
                None => keys.anonymous.push(entry),
            }
        }
        let n = keys.by_kid.values().map(Vec::len).sum::<usize>() + keys.anonymous.len();
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::Release);
        n
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

    /// The keys a token with `kid` may be signed with (none found: `None`).
    fn lookup(&self, kid: Option<&str>) -> Option<Vec<Arc<VerifyKey>>> {
        let keys = self.keys.load();
        match kid {
            Some(k) => keys.by_kid.get(k).filter(|v| !v.is_empty()).cloned(),
            None => {
                let all: Vec<_> = keys
                    .by_kid
                    .values()
                    .flatten()
                    .chain(keys.anonymous.iter())
                    .collect();
                (all.len() == 1).then(|| vec![all[0].clone()])
            }
        }
    }

    /// The principal of a token verified before with the current keys, if it is still in its
    /// validity window; an expired one is forgotten and refused here, as a full check would.
    fn remembered(
        &self,
        digest: &[u8; 32],
        generation: u64,
    ) -> Option<Result<Principal, AuthError>> {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(digest)?.clone();
        if entry.generation != generation {
            cache.remove(digest);
            return None;
        }
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(self.config.leeway_seconds).unwrap_or(i64::MAX);
        if now > entry.exp.saturating_add(leeway) {
            cache.remove(digest);
            return Some(Err(AuthError::Expired));
        }
        if entry
            .nbf
            .is_some_and(|nbf| now < nbf.saturating_sub(leeway))
        {
            return Some(Err(AuthError::NotYetValid));
        }
        Some(Ok(entry.principal.clone()))
    }

    fn remember(&self, digest: [u8; 32], entry: Verified) {
        let capacity = self.config.verified_cache_entries;
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= capacity {
            let now = chrono::Utc::now().timestamp();
            cache.retain(|_, v| v.exp > now && v.generation == entry.generation);
            if cache.len() >= capacity / 2 {
                // Still mostly live tokens: start over rather than track recency on the hot
                // path, and so that the next sweep is at least capacity / 2 inserts away.
                cache.clear();
            }
        }
        cache.insert(digest, Arc::new(entry));
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        // Read before the key lookup: an entry is never tagged with a newer key set than the one
        // that verified it.
        let generation = self.generation.load(Ordering::Acquire);
        let digest: Option<[u8; 32]> = (self.config.verified_cache_entries > 0)
            .then(|| Sha256::digest(token.as_bytes()).into());
        if let Some(d) = &digest
            && let Some(found) = self.remembered(d, generation)
        {
            return found;
        }
        let header = decode_strict_header(token)?;
        let kid = header.kid.as_deref();
        let candidates = match self.lookup(kid) {
            Some(k) => k,
            None => {
                self.refresh(generation).await;
                if self.keys.load().by_kid.is_empty() && self.keys.load().anonymous.is_empty() {
                    return Err(AuthError::JwksUnavailable);
                }
                self.lookup(kid).ok_or(AuthError::UnknownKeyId)?
            }
        };
        // Keys of another algorithm than the header's are never tried (no algorithm confusion).
        let usable: Vec<_> = candidates
            .iter()
            .filter(|k| header.alg == k.alg && self.allowed.contains(&k.alg))
            .collect();
        if usable.is_empty() {
            return Err(AuthError::AlgorithmMismatch);
        }
        let mut last = AuthError::BadSignature;
        for key in usable {
            match self.check_with(token, key) {
                Ok(data) => return self.accept(data, digest, generation),
                // Another key with the same id may be the one that signed it.
                Err(AuthError::BadSignature) => last = AuthError::BadSignature,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Checks the signature and the registered claims with one key.
    fn check_with(
        &self,
        token: &str,
        key: &VerifyKey,
    ) -> Result<jsonwebtoken::TokenData<Map<String, Value>>, AuthError> {
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
        for claim in ["exp", "nbf", "iat"] {
            if let Some(v) = data.claims.get(claim)
                && !is_numeric_date(v)
            {
                return Err(AuthError::InvalidToken(
                    "`exp`, `nbf` and `iat` must be NumericDates (seconds, year 9999 at most)",
                ));
            }
        }
        Ok(data)
    }

    /// Maps a verified token's claims to its principal and remembers it.
    fn accept(
        &self,
        data: jsonwebtoken::TokenData<Map<String, Value>>,
        digest: Option<[u8; 32]>,
        generation: u64,
    ) -> Result<Principal, AuthError> {
        let principal = map_claims(&data.claims, &self.config.claims, &self.config.issuer)?;
        if let Some(digest) = digest
            && let Some(exp) = data.claims.get("exp").and_then(Value::as_i64)
        {
            self.remember(
                digest,
                Verified {
                    principal: principal.clone(),
                    exp,
                    nbf: data.claims.get("nbf").and_then(Value::as_i64),
                    generation,
                },
            );
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://issuer.test";

    fn verifier_with_key(signing: &SigningKey) -> OidcVerifier {
        let config = OidcConfig {
            issuer: ISSUER.into(),
            // Nothing listens here: a refresh fails, as an unreachable issuer would.
            jwks_url: "http://127.0.0.1:9/jwks".into(),
            refresh_min_interval_ms: 0,
            ..OidcConfig::default()
        };
        let verifier = OidcVerifier::new(config).expect("verifier");
        let key = DecodingKey::from_ed_der(signing.verifying_key().as_bytes());
        let mut keys = KeySet::default();
        keys.by_kid.insert(
            "k1".into(),
            vec![Arc::new(VerifyKey {
                key,
                alg: Algorithm::EdDSA,
            })],
        );
        verifier.keys.store(Arc::new(keys));
        verifier
    }

    fn token(signing: &SigningKey, exp: i64) -> String {
        let der = signing.to_pkcs8_der().expect("pkcs8");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let claims = json!({"iss": ISSUER, "aud": "cairn", "sub": "alice", "exp": exp});
        encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).expect("token")
    }

    fn cached(v: &OidcVerifier) -> usize {
        v.verified.lock().map(|c| c.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_until_the_key_set_changes() {
        let signing = SigningKey::from_bytes(&[3; 32]);
        let v = verifier_with_key(&signing);
        let t = token(&signing, chrono::Utc::now().timestamp() + 600);
        assert_eq!(v.verify(&t).await.expect("valid").id, "alice");
        assert_eq!(cached(&v), 1);
        // With the keys gone but no fetch seen, the remembered verdict answers.
        v.keys.store(Arc::new(KeySet::default()));
        assert_eq!(v.verify(&t).await.expect("remembered").id, "alice");
        // A fetch (a new generation) forgets it: the token is checked again and now fails.
        v.generation.fetch_add(1, Ordering::Release);
        assert_eq!(v.verify(&t).await, Err(AuthError::JwksUnavailable));
    }

    #[tokio::test]
    async fn a_remembered_token_still_expires_and_a_changed_one_is_checked() {
        let signing = SigningKey::from_bytes(&[4; 32]);
        let v = verifier_with_key(&signing);
        let t = token(&signing, chrono::Utc::now().timestamp() + 600);
        v.verify(&t).await.expect("valid");
        let digest: [u8; 32] = Sha256::digest(t.as_bytes()).into();
        {
            let mut cache = v.verified.lock().expect("lock");
            let entry = cache.get(&digest).expect("remembered").clone();
            let expired = Verified {
                principal: entry.principal.clone(),
                exp: chrono::Utc::now().timestamp() - 31,
                nbf: None,
                generation: entry.generation,
            };
            cache.insert(digest, Arc::new(expired));
        }
        assert_eq!(v.verify(&t).await, Err(AuthError::Expired));
        assert_eq!(cached(&v), 0);
        // One flipped signature byte is another token, verified from scratch.
        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert_eq!(v.verify(&forged).await, Err(AuthError::BadSignature));
    }

    #[tokio::test]
    async fn a_full_cache_stays_bounded() {
        let signing = SigningKey::from_bytes(&[5; 32]);
        let mut v = verifier_with_key(&signing);
        v.config.verified_cache_entries = 3;
        let now = chrono::Utc::now().timestamp();
        for i in 0..10 {
            v.verify(&token(&signing, now + 600 + i))
                .await
                .expect("valid");
            assert!(cached(&v) <= 3);
        }
    }

    /// A JWS signed by hand, so the header can carry what `jsonwebtoken` cannot write.
    fn raw_token(
        signing: &SigningKey,
        header: serde_json::Value,
        claims: serde_json::Value,
    ) -> String {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let sig = signing.sign(input.as_bytes());
        format!("{input}.{}", b64.encode(sig.to_bytes()))
    }

    #[tokio::test]
    async fn critical_header_parameters_are_refused() {
        let signing = SigningKey::from_bytes(&[5; 32]);
        let v = verifier_with_key(&signing);
        let exp = chrono::Utc::now().timestamp() + 600;
        let claims = json!({"iss": ISSUER, "aud": "cairn", "sub": "alice", "exp": exp});
        let plain = raw_token(
            &signing,
            json!({"alg": "EdDSA", "kid": "k1"}),
            claims.clone(),
        );
        assert_eq!(v.verify(&plain).await.expect("valid").id, "alice");
        for header in [
            json!({"alg": "EdDSA", "kid": "k1", "crit": ["urn:example:must-understand"], "urn:example:must-understand": 1}),
            json!({"alg": "EdDSA", "kid": "k1", "crit": ["b64"], "b64": false}),
        ] {
            let t = raw_token(&signing, header.clone(), claims.clone());
            assert!(
                matches!(v.verify(&t).await, Err(AuthError::InvalidToken(_))),
                "{header}"
            );
        }
    }

    #[tokio::test]
    async fn dates_past_year_9999_are_not_numeric_dates() {
        let signing = SigningKey::from_bytes(&[6; 32]);
        let v = verifier_with_key(&signing);
        let header = json!({"alg": "EdDSA", "kid": "k1"});
        let far = raw_token(
            &signing,
            header.clone(),
            json!({"iss": ISSUER, "aud": "cairn", "sub": "alice", "exp": 1e19}),
        );
        assert!(matches!(
            v.verify(&far).await,
            Err(AuthError::InvalidToken(_))
        ));
        let soon = chrono::Utc::now().timestamp() + 600;
        let bad_nbf = raw_token(
            &signing,
            header,
            json!({"iss": ISSUER, "aud": "cairn", "sub": "alice", "exp": soon, "nbf": -5}),
        );
        assert!(matches!(
            v.verify(&bad_nbf).await,
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[tokio::test]
    async fn every_key_of_a_repeated_kid_is_tried() {
        let first = SigningKey::from_bytes(&[7; 32]);
        let second = SigningKey::from_bytes(&[8; 32]);
        let v = verifier_with_key(&first);
        let mut keys = KeySet::default();
        keys.by_kid.insert(
            "k1".into(),
            [&first, &second]
                .iter()
                .map(|k| {
                    Arc::new(VerifyKey {
                        key: DecodingKey::from_ed_der(k.verifying_key().as_bytes()),
                        alg: Algorithm::EdDSA,
                    })
                })
                .collect(),
        );
        v.keys.store(Arc::new(keys));
        let exp = chrono::Utc::now().timestamp() + 600;
        for k in [&first, &second] {
            assert_eq!(v.verify(&token(k, exp)).await.expect("valid").id, "alice");
        }
        let stranger = SigningKey::from_bytes(&[9; 32]);
        assert_eq!(
            v.verify(&token(&stranger, exp)).await,
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn short_rsa_moduli_are_skipped() {
        let jwk: Jwk = serde_json::from_value(json!({
            "kty": "RSA", "kid": "weak", "n": "-1", "e": "AQAB"
        }))
        .expect("a JWK");
        assert!(key_strength(&jwk).is_err());
    }
}
