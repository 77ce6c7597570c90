//! RFC 8693 token exchange: a remote server that must know who is calling gets a token the
//! authorization server issued for it in exchange for the client's, never the client's own
//! token. The gateway authenticates to the token endpoint as a confidential client
//! (`client_secret_basic`); an exchanged token is kept until shortly before it expires, keyed
//! by a hash of the token it was exchanged for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// An exchanged token with no `expires_in` is reused this long at most.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Cached tokens at most; a full cache drops its expired entries, then everything.
const MAX_CACHED: usize = 10_000;
/// Largest token endpoint answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// `[mcp.servers.token_exchange]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// The authorization server's token endpoint.
    pub token_endpoint: String,
    /// The gateway's client id at that authorization server.
    pub client_id: String,
    /// The client secret: the value of this environment variable, or of this file.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// RFC 8693 `audience` of the token asked for; default the server's `url`.
    #[serde(default)]
    pub audience: Option<String>,
    /// RFC 8707 `resource` of the token asked for; default the server's `url`.
    #[serde(default)]
    pub resource: Option<String>,
    /// `scope` of the token asked for, if the authorization server needs one.
    #[serde(default)]
    pub scope: Option<String>,
}

impl TokenExchangeConfig {
    /// Problems, each naming its key under `key`.
    pub fn check(&self, key: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let url = &self.token_endpoint;
        // The caller's token and the gateway's secret travel to it: in clear only on this host.
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|h| {
                url.strip_prefix(h)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            });
        if !(url.starts_with("https://") || loopback) {
            problems.push(format!(
                "`{key}.token_endpoint` `{url}` must be an https URL (http only on the loopback interface)"
            ));
        }
        if self.client_id.is_empty() {
            problems.push(format!("`{key}.client_id` must name the gateway's client"));
        }
        match (&self.client_secret_env, &self.client_secret_file) {
            (Some(_), Some(_)) => problems.push(format!(
                "`{key}`: set `client_secret_env` or `client_secret_file`, not both"
            )),
            (None, None) => problems.push(format!(
                "`{key}`: set `client_secret_env` or `client_secret_file` (the gateway authenticates to the token endpoint)"
            )),
            _ => {}
        }
        problems
    }
}

/// Why no exchanged token is at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    #[error(
        "the caller has no OAuth token to exchange (it authenticated with an API key); this server takes only exchanged tokens"
    )]
    NoSubjectToken,
    #[error("the client secret for the token exchange is not available: {0}")]
    Secret(String),
    #[error("the token endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the token endpoint refused the exchange: {0}")]
    Refused(String),
}

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    issued_token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

pub struct TokenExchanger {
    config: TokenExchangeConfig,
    /// The server's URL: the default audience and resource.
    server_url: String,
    client: reqwest::Client,
    cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl TokenExchanger {
    pub fn new(config: TokenExchangeConfig, server_url: &str, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            config,
            server_url: server_url.to_string(),
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn secret(&self) -> Result<String, ExchangeError> {
        match (
            &self.config.client_secret_env,
            &self.config.client_secret_file,
        ) {
            (Some(var), _) => {
                std::env::var(var).map_err(|_| ExchangeError::Secret(format!("`{var}` is not set")))
            }
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|s| s.trim().to_string())
                .map_err(|e| ExchangeError::Secret(format!("`{file}`: {e}"))),
            (None, None) => Err(ExchangeError::Secret("none is configured".into())),
        }
    }

    /// A token for the server in exchange for `subject` (the client's access token).
    pub async fn token_for(&self, subject: &str) -> Result<String, ExchangeError> {
        let key: [u8; 32] = Sha256::digest(subject.as_bytes()).into();
        if let Some(t) = self.cached(&key) {
            return Ok(t);
        }
        let audience = self.config.audience.as_deref().unwrap_or(&self.server_url);
        let resource = self.config.resource.as_deref().unwrap_or(&self.server_url);
        let mut form = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("requested_token_type", ACCESS_TOKEN),
            ("audience", audience),
            ("resource", resource),
        ];
        if let Some(s) = &self.config.scope {
            form.push(("scope", s));
        }
        let secret = self.secret()?;
        let resp = self
            .client
            .post(&self.config.token_endpoint)
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(&secret)),
            )
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| ExchangeError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let body = read_limited(resp).await?;
        if !status.is_success() {
            // RFC 6749 §5.2: `error` (and maybe `error_description`) says why.
            let why = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    let e = v.get("error")?.as_str()?.to_string();
                    Some(match v.get("error_description").and_then(Value::as_str) {
                        Some(d) => format!("{e}: {}", d.chars().take(200).collect::<String>()),
                        None => e,
                    })
                })
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(ExchangeError::Refused(why));
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| ExchangeError::Refused(format!("an answer without access_token: {e}")))?;
        // What is sent as `Authorization: Bearer` must be a bearer access token.
        if answer
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
            || answer
                .issued_token_type
                .as_deref()
                .is_some_and(|t| t != ACCESS_TOKEN)
        {
            return Err(ExchangeError::Refused(
                "the token issued is not a bearer access token".into(),
            ));
        }
        let lifetime = answer
            .expires_in
            .map(|s| Duration::from_secs(s.saturating_mul(9) / 10))
            .unwrap_or(DEFAULT_LIFETIME);
        self.store(key, &answer.access_token, lifetime);
        Ok(answer.access_token)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<String> {
        let cache = self.cache.lock().ok()?;
        let (token, until) = cache.get(key)?;
        (Instant::now() < *until).then(|| token.clone())
    }

    fn store(&self, key: [u8; 32], token: &str, lifetime: Duration) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let now = Instant::now();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (token.to_string(), now + lifetime));
    }
}

/// RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic encoding.
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, ExchangeError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ExchangeError::Unreachable(e.without_url().to_string()))?
    {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_ANSWER {
            return Err(ExchangeError::Refused(format!(
                "an answer larger than {MAX_ANSWER} bytes"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TokenExchangeConfig {
        TokenExchangeConfig {
            token_endpoint: "https://as.example/token".into(),
            client_id: "cairn".into(),
            client_secret_env: Some("X".into()),
            client_secret_file: None,
            audience: None,
            resource: None,
            scope: None,
        }
    }

    #[test]
    fn the_section_is_checked() {
        assert!(config().check("k").is_empty());
        let both = TokenExchangeConfig {
            client_secret_file: Some("f".into()),
            ..config()
        };
        assert!(both.check("k")[0].contains("not both"));
        for ok in [
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:9/t",
        ] {
            let c = TokenExchangeConfig {
                token_endpoint: ok.into(),
                ..config()
            };
            assert!(c.check("k").is_empty(), "{ok}");
        }
        for bad in ["http://as.example/token", "http://127.0.0.1.evil.example/t"] {
            let c = TokenExchangeConfig {
                token_endpoint: bad.into(),
                ..config()
            };
            assert!(c.check("k")[0].contains("https"), "{bad}");
        }
        let bad = TokenExchangeConfig {
            token_endpoint: "as.example".into(),
            client_id: String::new(),
            client_secret_env: None,
            ..config()
        };
        assert_eq!(bad.check("k").len(), 3);
    }

    #[test]
    fn client_credentials_are_form_encoded_first() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }

    #[test]
    fn a_token_is_kept_until_its_lifetime_ends() {
        let x = TokenExchanger::new(config(), "https://up.example/mcp", Duration::from_secs(1));
        let key = [1u8; 32];
        x.store(key, "t1", Duration::from_secs(60));
        assert_eq!(x.cached(&key).as_deref(), Some("t1"));
        x.store(key, "t2", Duration::ZERO);
        assert_eq!(x.cached(&key), None);
    }
}
