//! Authentication: who is calling. A bearer token with three dot-separated parts is an OIDC JWT
//! (when an issuer is configured); anything else is an API key. The result is a [`Principal`]:
//! the Cedar entity of the caller with its parents and attributes.

mod api_key;
mod claims;
mod oidc;

use std::collections::BTreeMap;

use http::HeaderMap;
use serde_json::{Value, json};

pub use api_key::{ApiKeys, hash_key};
pub use claims::map_claims;
pub use oidc::OidcVerifier;

/// The authenticated caller, as Cedar will see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub entity_type: String,
    pub id: String,
    /// (type, id) of each parent group.
    pub parents: Vec<(String, String)>,
    /// Attributes in Cedar's JSON entity form.
    pub attrs: BTreeMap<String, Value>,
    pub auth: AuthInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    /// `api_key` or `oidc`.
    pub method: &'static str,
    /// The API key's name, or the token's `sub`.
    pub subject: String,
    pub issuer: Option<String>,
}

impl Principal {
    /// `Type::"id"`.
    pub fn uid(&self) -> String {
        format!("{}::{}", self.entity_type, Value::String(self.id.clone()))
    }

    pub fn parent_uids(&self) -> Vec<String> {
        self.parents
            .iter()
            .map(|(t, id)| format!("{t}::{}", Value::String(id.clone())))
            .collect()
    }

    pub fn auth_json(&self) -> Value {
        json!({
            "method": self.auth.method,
            "subject": self.auth.subject,
            "issuer": self.auth.issuer,
        })
    }
}

/// Why a caller was not authenticated. `reason()` is the low-cardinality form for records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <key or token>`")]
    Missing,
    #[error("the Authorization header is not a bearer token")]
    Malformed,
    #[error("more than one Authorization header: send exactly one")]
    Ambiguous,
    #[error("the bearer token is longer than {0} bytes")]
    TooLarge(usize),
    #[error("invalid API key")]
    UnknownApiKey,
    #[error("OIDC tokens are not accepted by this gateway")]
    OidcDisabled,
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("the token's key id is not in the issuer's key set")]
    UnknownKeyId,
    #[error("the token's algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's claims cannot be mapped to a principal: {0}")]
    Claims(String),
    #[error("the issuer's keys cannot be fetched")]
    JwksUnavailable,
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing_credentials",
            Self::Malformed => "malformed_credentials",
            Self::Ambiguous => "ambiguous_credentials",
            Self::TooLarge(_) => "token_too_large",
            Self::UnknownApiKey => "unknown_api_key",
            Self::OidcDisabled => "oidc_disabled",
            Self::InvalidToken(_) => "invalid_token",
            Self::UnknownKeyId => "unknown_kid",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::BadSignature => "bad_signature",
            Self::Claims(_) => "unmappable_claims",
            Self::JwksUnavailable => "jwks_unavailable",
        }
    }
}

/// Checks credentials on a request.
pub struct Authenticator {
    api_keys: ApiKeys,
    oidc: Option<OidcVerifier>,
    max_token_bytes: usize,
}

impl Authenticator {
    pub fn new(api_keys: ApiKeys, oidc: Option<OidcVerifier>, max_token_bytes: usize) -> Self {
        Self {
            api_keys,
            oidc,
            max_token_bytes,
        }
    }

    pub fn oidc(&self) -> Option<&OidcVerifier> {
        self.oidc.as_ref()
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let value = values.next().ok_or(AuthError::Missing)?;
        if values.next().is_some() {
            // Which one a proxy or the upstream would read is anybody's guess: refuse both.
            return Err(AuthError::Ambiguous);
        }
        if value.len() > self.max_token_bytes + 16 {
            return Err(AuthError::TooLarge(self.max_token_bytes));
        }
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .ok_or(AuthError::Malformed)?
            .trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge(self.max_token_bytes));
        }
        if token.matches('.').count() == 2 {
            return match &self.oidc {
                Some(v) => v.verify(token).await,
                None => {
                    // Not a JWT gateway: treat it as a key, which fails in constant time too.
                    self.api_keys.check(token).ok_or(AuthError::OidcDisabled)
                }
            };
        }
        self.api_keys.check(token).ok_or(AuthError::UnknownApiKey)
    }
}
