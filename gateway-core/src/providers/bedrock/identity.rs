//! The end user's identity in AWS: per principal, STS AssumeRole into the configured role with
//! session tags from the principal, `SourceIdentity` set to the user and a role session name
//! derived from the user, so CloudTrail shows who made each model call.
//!
//! Credentials are cached per session (role, name, source identity, tags) and refreshed
//! `refresh_before_s` before they expire: by one background refresh while they are still good,
//! or, when they are not, by one caller while the others for the same session wait for it (no
//! thundering herd on STS).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_sts::types::Tag;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::authn::Principal;
use crate::config::IdentityConfig;
use crate::providers::ProviderError;

/// Credentials this close to expiry are not used at all.
const MIN_VALID: Duration = Duration::from_secs(30);
/// Sessions kept; beyond this the cache is cleared of expired entries, then emptied.
const MAX_SESSIONS: usize = 50_000;

/// `(partition, account, role name)` of `arn:<partition>:iam::<account>:role[/path]/<name>`.
pub fn parse_role_arn(arn: &str) -> Option<(String, String, String)> {
    let mut parts = arn.splitn(6, ':');
    let (scheme, partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if scheme != "arn" || service != "iam" || account.len() != 12 {
        return None;
    }
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    (!name.is_empty()).then(|| (partition.to_string(), account.to_string(), name.to_string()))
}

pub fn valid_tag_source(s: &str) -> bool {
    matches!(
        s,
        "id" | "uid" | "type" | "team" | "auth.subject" | "auth.issuer" | "auth.method"
    ) || s.strip_prefix("attr.").is_some_and(|a| !a.is_empty())
}

/// Keeps the characters STS accepts in session names and source identities (`[\w+=,.@-]`),
/// replacing others with `_`; long or altered values get a hash suffix so they stay distinct.
fn sts_name(prefix: &str, id: &str, max: usize) -> String {
    // Only ASCII survives, so the byte truncation below is always on a character boundary.
    let allowed = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let clean = allowed(id);
    let mut name = format!("{}{clean}", allowed(prefix));
    if clean != id || name.len() > max {
        let digest = hex::encode(&Sha256::digest(id.as_bytes())[..4]);
        name.truncate(max - 9);
        name = format!("{name}-{digest}");
    }
    if name.len() < 2 {
        name = format!("{name}__");
    }
    name
}

/// Tag keys and values keep the characters STS accepts (`[\p{L}\p{Z}\p{N}_.:/=+\-@]`: letters,
/// digits, space separators but no tabs or newlines, and `_.:/=+-@`).
fn tag_text(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            let separator = c.is_whitespace() && !c.is_control();
            if c.is_alphanumeric() || separator || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// A tag key STS takes: sanitised, not in the reserved `aws:` namespace.
fn tag_key(k: &str) -> String {
    let key = tag_text(k, 128);
    if key.to_ascii_lowercase().starts_with("aws:") {
        format!("_{}", &key[4..]).chars().take(128).collect()
    } else {
        key
    }
}

fn tag_value(principal: &Principal, source: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .or_else(|| x.get("id").and_then(Value::as_str).map(str::to_string))
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    };
    match source {
        "id" => Some(principal.id.clone()),
        "uid" => Some(principal.uid()),
        "type" => Some(principal.entity_type.clone()),
        "team" => crate::limits::team_of(principal),
        "auth.subject" => Some(principal.auth.subject.clone()),
        "auth.issuer" => principal.auth.issuer.clone(),
        "auth.method" => Some(principal.auth.method.to_string()),
        other => other
            .strip_prefix("attr.")
            .and_then(|a| principal.attrs.get(a))
            .and_then(text),
    }
}

/// The STS session one principal gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    pub role_arn: String,
    pub session_name: String,
    pub source_identity: String,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`: what CloudTrail names the caller.
    pub assumed_role_arn: String,
}

impl SessionSpec {
    pub fn new(config: &IdentityConfig, principal: &Principal) -> Option<Self> {
        let (partition, account, role) = parse_role_arn(&config.role_arn)?;
        let session_name = sts_name(&config.session_name_prefix, &principal.id, 64);
        let source_identity = sts_name("", &principal.id, 64);
        let mut seen = std::collections::HashSet::new();
        let tags: Vec<(String, String)> = config
            .session_tags
            .iter()
            .filter_map(|(k, source)| {
                tag_value(principal, source).map(|v| (tag_key(k), tag_text(&v, 256)))
            })
            // STS compares keys without case: the first of two that differ only in case wins.
            .filter(|(k, _)| !k.is_empty() && seen.insert(k.to_lowercase()))
            .collect();
        let keys: Vec<&String> = tags.iter().map(|(k, _)| k).collect();
        let transitive_tag_keys = config
            .transitive_tag_keys
            .iter()
            .map(|k| tag_key(k))
            .filter(|k| keys.contains(&k))
            .collect();
        Some(Self {
            assumed_role_arn: format!(
                "arn:{partition}:sts::{account}:assumed-role/{role}/{session_name}"
            ),
            role_arn: config.role_arn.clone(),
            session_name,
            source_identity,
            tags,
            transitive_tag_keys,
        })
    }

    fn key(&self) -> String {
        let mut k = format!(
            "{}\n{}\n{}",
            self.role_arn, self.session_name, self.source_identity
        );
        for (t, v) in &self.tags {
            k.push('\n');
            k.push_str(t);
            k.push('=');
            k.push_str(v);
        }
        k
    }

    /// What the decision record carries, so a report can join it with CloudTrail.
    pub fn record_fields(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("assumed_role_arn", json!(self.assumed_role_arn)),
            ("role_session_name", json!(self.session_name)),
            ("source_identity", json!(self.source_identity)),
            (
                "session_tags",
                Value::Object(
                    self.tags
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect(),
                ),
            ),
        ]
    }
}

struct Session {
    credentials: Credentials,
    expires: SystemTime,
}

#[derive(Default)]
struct Slot {
    current: RwLock<Option<Session>>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl Slot {
    fn get(&self) -> Option<(Credentials, SystemTime)> {
        let g = self.current.read().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|s| (s.credentials.clone(), s.expires))
    }
}

#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    sts: aws_sdk_sts::Client,
    duration: Duration,
    refresh_before: Duration,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// AssumeRole calls made (for metrics and tests of the cache).
    pub calls: std::sync::atomic::AtomicU64,
}

impl Identity {
    pub fn new(sts: aws_sdk_sts::Client, config: &IdentityConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                sts,
                duration: Duration::from_secs(config.session_duration_s),
                refresh_before: Duration::from_secs(config.refresh_before_s),
                slots: Mutex::new(HashMap::new()),
                calls: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    pub fn assume_role_calls(&self) -> u64 {
        self.inner.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn slot(&self, key: String) -> Arc<Slot> {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= MAX_SESSIONS && !slots.contains_key(&key) {
            let now = SystemTime::now();
            slots.retain(|_, s| s.get().is_some_and(|(_, exp)| exp > now));
            if slots.len() >= MAX_SESSIONS {
                slots.clear();
            }
        }
        slots.entry(key).or_default().clone()
    }

    /// Credentials for the session: cached, refreshed ahead of expiry, fetched once at a time.
    pub async fn credentials(&self, spec: &SessionSpec) -> Result<Credentials, ProviderError> {
        let slot = self.slot(spec.key());
        let now = SystemTime::now();
        if let Some((creds, expires)) = slot.get() {
            if expires > now + self.inner.refresh_before {
                return Ok(creds);
            }
            if expires > now + MIN_VALID {
                // Still good: one background refresh, nobody waits.
                if let Ok(guard) = slot.refreshing.clone().try_lock_owned() {
                    let me = self.clone();
                    let spec = spec.clone();
                    let slot2 = slot.clone();
                    tokio::spawn(async move {
                        let _guard = guard;
                        if let Err(e) = me.assume(&spec, &slot2).await {
                            tracing::warn!(error = %e, session = %spec.session_name, "background credential refresh failed");
                        }
                    });
                }
                return Ok(creds);
            }
        }
        let _guard = slot.refreshing.lock().await;
        if let Some((creds, expires)) = slot.get()
            && expires > SystemTime::now() + MIN_VALID
        {
            return Ok(creds);
        }
        self.assume(spec, &slot).await
    }

    async fn assume(&self, spec: &SessionSpec, slot: &Slot) -> Result<Credentials, ProviderError> {
        self.inner
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tags = spec
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProviderError::Identity(format!("session tag: {e}")))?;
        let out = self
            .inner
            .sts
            .assume_role()
            .role_arn(&spec.role_arn)
            .role_session_name(&spec.session_name)
            .source_identity(&spec.source_identity)
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_transitive_tag_keys(
                (!spec.transitive_tag_keys.is_empty()).then(|| spec.transitive_tag_keys.clone()),
            )
            .duration_seconds(self.inner.duration.as_secs().min(i32::MAX as u64) as i32)
            .send()
            .await
            .map_err(|e| {
                use aws_sdk_sts::error::ProvideErrorMetadata;
                let detail = match &e {
                    aws_sdk_sts::error::SdkError::ServiceError(se) => format!(
                        "{}: {}",
                        se.err().code().unwrap_or("error"),
                        se.err().message().unwrap_or("")
                    ),
                    other => aws_sdk_sts::error::DisplayErrorContext(other).to_string(),
                };
                ProviderError::Identity(format!(
                    "AssumeRole into {} as {} failed: {detail}",
                    spec.role_arn, spec.session_name
                ))
            })?;
        let c = out
            .credentials()
            .ok_or_else(|| ProviderError::Identity("AssumeRole returned no credentials".into()))?;
        let expires = SystemTime::try_from(*c.expiration())
            .unwrap_or_else(|_| SystemTime::now() + self.inner.duration);
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expires),
            "cairn-assume-role",
        );
        let mut g = slot.current.write().unwrap_or_else(|e| e.into_inner());
        *g = Some(Session {
            credentials: credentials.clone(),
            expires,
        });
        Ok(credentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::AuthInfo;

    fn principal(id: &str) -> Principal {
        Principal {
            entity_type: "User".into(),
            id: id.into(),
            parents: vec![("Group".into(), "engineering".into())],
            attrs: [
                ("department".to_string(), json!("engineering")),
                ("clearance".to_string(), json!(2)),
            ]
            .into(),
            auth: AuthInfo {
                method: "oidc",
                subject: id.into(),
                issuer: Some("https://idp".into()),
            },
        }
    }

    fn config() -> IdentityConfig {
        IdentityConfig {
            role_arn: "arn:aws:iam::123456789012:role/teams/cairn-bedrock".into(),
            ..IdentityConfig::default()
        }
    }

    #[test]
    fn sessions_are_named_after_the_user() {
        let s = SessionSpec::new(&config(), &principal("alice")).unwrap();
        assert_eq!(s.session_name, "cairn-alice");
        assert_eq!(s.source_identity, "alice");
        assert_eq!(
            s.assumed_role_arn,
            "arn:aws:sts::123456789012:assumed-role/cairn-bedrock/cairn-alice"
        );
        assert_eq!(
            s.tags,
            vec![
                ("cairn-clearance".to_string(), "2".to_string()),
                ("cairn-team".to_string(), "engineering".to_string()),
                ("cairn-user".to_string(), "alice".to_string()),
            ]
        );
        assert_eq!(s.transitive_tag_keys, ["cairn-user", "cairn-team"]);
    }

    #[test]
    fn names_are_made_valid_for_sts_and_stay_distinct() {
        let a = SessionSpec::new(&config(), &principal("jane doe/ops#1")).unwrap();
        let b = SessionSpec::new(&config(), &principal("jane doe/ops#2")).unwrap();
        assert!(a.session_name.starts_with("cairn-jane_doe_ops_1-"));
        assert_ne!(a.session_name, b.session_name);
        assert!(
            a.session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        );
        let long = SessionSpec::new(&config(), &principal(&"x".repeat(100))).unwrap();
        assert_eq!(long.session_name.len(), 64);
        assert_eq!(long.source_identity.len(), 64);
    }

    #[test]
    fn odd_prefixes_keys_and_values_are_made_valid_for_sts() {
        let mut c = config();
        c.session_name_prefix = "équipe-".repeat(12);
        c.session_tags = [
            ("aws:user".to_string(), "id".to_string()),
            ("Team".to_string(), "team".to_string()),
            ("team".to_string(), "id".to_string()),
            ("dept\nx".to_string(), "attr.department".to_string()),
        ]
        .into();
        let mut p = principal("zoë");
        p.attrs.insert("department".into(), json!("R&D\tlab\nA"));
        let s = SessionSpec::new(&c, &p).unwrap();
        assert!(
            s.session_name.len() <= 64 && s.session_name.is_ascii(),
            "{}",
            s.session_name
        );
        let ok = |t: &str| {
            t.chars()
                .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
        };
        for (k, v) in &s.tags {
            assert!(ok(k) && ok(v), "{k:?}={v:?}");
            assert!(!k.to_ascii_lowercase().starts_with("aws:"), "{k}");
        }
        let lower: std::collections::HashSet<String> =
            s.tags.iter().map(|(k, _)| k.to_lowercase()).collect();
        assert_eq!(lower.len(), s.tags.len(), "{:?}", s.tags);
    }

    #[test]
    fn role_arns_are_checked() {
        assert!(parse_role_arn("arn:aws:iam::123456789012:role/r").is_some());
        assert!(parse_role_arn("arn:aws-us-gov:iam::123456789012:role/a/b/r").is_some());
        assert!(parse_role_arn("arn:aws:iam::123:role/r").is_none());
        assert!(parse_role_arn("arn:aws:iam::123456789012:user/r").is_none());
    }
}
