//! The configuration file as written (TOML), with defaults for everything: an empty file (or no
//! file) is a working development gateway. Every field can be set from the environment as
//! `CAIRN_<SECTION>__<KEY>` (see `load.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::cache::CacheConfig;
pub use crate::guardrails::GuardrailsConfig;
pub use crate::limits::{LimitRule, LimitsConfig};
pub use crate::mcp::config::{McpConfig, McpServerConfig, ToolSettings};
pub use crate::telemetry::otlp::TelemetryConfig;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: ServerConfig,
    pub policy: PolicyConfig,
    pub auth: AuthConfig,
    pub records: RecordsConfig,
    pub classification: ClassificationConfig,
    /// The model catalogue; when empty, the built-in mock catalogue is used.
    pub models: Vec<ModelConfig>,
    pub providers: ProvidersConfig,
    pub limits: LimitsConfig,
    pub guardrails: GuardrailsConfig,
    pub cache: CacheConfig,
    pub telemetry: TelemetryConfig,
    pub routing: RoutingConfig,
    /// Upstream MCP servers, served at `/mcp`.
    pub mcp: McpConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    pub listen: String,
    /// Largest accepted request body, in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
    /// Longest a whole request may take, upstream included.
    pub request_timeout_ms: u64,
    /// One log line per request on the `cairn::access` target at info level (who, what, the
    /// decision, status, latency, tokens; never content).
    pub access_log: bool,
    /// The share of allowed requests logged, 0 to 1 (refusals are always logged).
    pub access_log_sample: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_ms: 10_000,
            request_timeout_ms: 300_000,
            access_log: true,
            access_log_sample: 1.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The signed bundle to enforce.
    pub bundle: String,
    /// The Ed25519 public key (PEM) the bundle must verify against.
    pub public_key: String,
    /// Reload when the bundle file changes (SIGHUP always reloads).
    pub watch: bool,
    /// A directory each bundle the gateway loads is copied into, as `<sha256 of the
    /// manifest>.tar`, before it decides anything, so the audit lake (`cairn ingest bundles`)
    /// holds every bundle that decided something. Empty: not kept.
    pub deposit_dir: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            bundle: ".cairn/bundle.tar".into(),
            public_key: ".cairn/keys/signing.pub".into(),
            watch: true,
            deposit_dir: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// API keys for service accounts, stored only as SHA-256 hashes.
    pub api_keys: Vec<ApiKeyConfig>,
    /// OIDC bearer tokens; disabled when `issuer` is empty.
    pub oidc: OidcConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for the key (appears in records, never the key itself).
    pub id: String,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
    /// The Cedar principal, e.g. `ServiceAccount::"ci-bot"`.
    pub principal: String,
    /// Parent groups (ids of the group entity type).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Principal attributes as JSON-compatible values (strings, numbers, booleans, lists).
    #[serde(default)]
    pub attributes: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The issuer URL; tokens must carry it in `iss`. Empty disables OIDC.
    pub issuer: String,
    /// Accepted audiences; tokens must carry one of them in `aud`.
    pub audiences: Vec<String>,
    /// JWKS URL; by default taken from the issuer's discovery document.
    pub jwks_url: String,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Algorithms accepted (each key's type still pins the one it can verify).
    pub algorithms: Vec<String>,
    /// Shortest time between two JWKS fetches triggered by unknown key ids.
    pub refresh_min_interval_ms: u64,
    /// Refresh the JWKS in the background this often.
    pub refresh_interval_s: u64,
    /// Tokens longer than this are rejected unread.
    pub max_token_bytes: usize,
    /// Tokens whose signature verified are remembered (by SHA-256 of the whole token) so a
    /// client reusing its token skips the signature check; `exp`/`nbf` are still checked on every
    /// use and a JWKS change forgets them all. 0 turns the cache off.
    pub verified_cache_entries: usize,
    /// How claims become the Cedar principal.
    pub claims: ClaimsMapping,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audiences: vec!["cairn".into()],
            jwks_url: String::new(),
            leeway_seconds: 30,
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            refresh_min_interval_ms: 10_000,
            refresh_interval_s: 600,
            max_token_bytes: 8 * 1024,
            verified_cache_entries: 10_000,
            claims: ClaimsMapping::default(),
        }
    }
}

/// Token claims to a Cedar principal, in the manner of Verified Permissions'
/// `IsAuthorizedWithToken`: the id claim names the entity, a groups claim its parents, and
/// chosen claims its attributes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsMapping {
    pub principal_type: String,
    /// Claim holding the principal id (dots reach into nested objects).
    pub id_claim: String,
    /// Claim holding group names (a list, or a space/comma separated string).
    pub groups_claim: String,
    pub group_type: String,
    /// Cedar attribute name to its source claim.
    pub attributes: BTreeMap<String, AttributeMapping>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMapping {
    pub claim: String,
    /// `string`, `long`, `bool` or `set` (of strings).
    #[serde(rename = "type", default = "default_attr_type")]
    pub kind: String,
    /// For `long` attributes read from string claims: label to number.
    #[serde(default)]
    pub map: BTreeMap<String, i64>,
    /// Used when the claim is absent; without it the attribute is left out.
    #[serde(default)]
    pub default: Option<toml::Value>,
}

fn default_attr_type() -> String {
    "string".into()
}

impl Default for ClaimsMapping {
    fn default() -> Self {
        let mut attributes = BTreeMap::new();
        attributes.insert(
            "department".into(),
            AttributeMapping {
                claim: "department".into(),
                kind: "string".into(),
                map: BTreeMap::new(),
                default: Some(toml::Value::String("unknown".into())),
            },
        );
        attributes.insert(
            "clearance".into(),
            AttributeMapping {
                claim: "clearance".into(),
                kind: "long".into(),
                map: default_levels(),
                default: Some(toml::Value::Integer(0)),
            },
        );
        attributes.insert(
            "email".into(),
            AttributeMapping {
                claim: "email".into(),
                kind: "string".into(),
                map: BTreeMap::new(),
                default: None,
            },
        );
        Self {
            principal_type: "User".into(),
            id_claim: "sub".into(),
            groups_claim: "groups".into(),
            group_type: "Group".into(),
            attributes,
        }
    }
}

pub fn default_levels() -> BTreeMap<String, i64> {
    [
        ("public", 0),
        ("internal", 1),
        ("confidential", 2),
        ("restricted", 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsConfig {
    /// Where decision record segments are written.
    pub dir: String,
    /// Ed25519 private key (PKCS#8 PEM) that signs records.
    pub signing_key: String,
    pub segment_max_bytes: u64,
    pub segment_max_age_s: u64,
    pub max_batch: usize,
    /// A directory outside `dir` where a signed checkpoint of the log (its record count and
    /// newest hash) is kept, so `cairn audit verify --checkpoints` detects records removed from
    /// the end. Empty: no checkpoints.
    pub checkpoint_dir: String,
    /// Seconds between checkpoints while records arrive; every seal writes one too.
    pub checkpoint_interval_s: u64,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        Self {
            dir: ".cairn/records".into(),
            signing_key: ".cairn/keys/signing.key".into(),
            segment_max_bytes: 64 * 1024 * 1024,
            segment_max_age_s: 3600,
            max_batch: 1024,
            checkpoint_dir: String::new(),
            checkpoint_interval_s: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassificationConfig {
    /// Request header carrying the prompt's data classification label.
    pub header: String,
    /// Label used when the header is absent.
    pub default: String,
    /// Label to level, lowest first.
    pub levels: BTreeMap<String, i64>,
}

impl Default for ClassificationConfig {
    fn default() -> Self {
        Self {
            header: "x-cairn-data-classification".into(),
            default: "internal".into(),
            levels: default_levels(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients use in `model`.
    pub id: String,
    /// `mock`, `openai` (an OpenAI-compatible upstream) or `bedrock`.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// The model name sent upstream; defaults to `id`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// The AWS Region of a Bedrock model; empty: `providers.bedrock.region`.
    #[serde(default)]
    pub region: String,
    /// Highest data classification level the model is approved for; 0 (public) unless set.
    #[serde(default)]
    pub max_data_level: i64,
    /// `low`, `standard` or `premium`.
    #[serde(default = "default_cost_tier")]
    pub cost_tier: String,
    /// Price per million input tokens, USD.
    #[serde(default)]
    pub input_usd_per_mtok: f64,
    /// Price per million output tokens, USD.
    #[serde(default)]
    pub output_usd_per_mtok: f64,
    /// Price per million prompt tokens read from the provider's prompt cache; defaults to a
    /// tenth of the input price.
    #[serde(default)]
    pub cache_read_usd_per_mtok: Option<f64>,
    /// Price per million prompt tokens written to the provider's prompt cache; defaults to
    /// 1.25 times the input price.
    #[serde(default)]
    pub cache_write_usd_per_mtok: Option<f64>,
    /// Serve identical requests from the gateway's response cache for this long (0: off, unless
    /// a policy opts in with `@cache_ttl`).
    #[serde(default)]
    pub cache_ttl_s: u64,
    /// Makes this entry an alias: requests are routed to these catalogue models in order
    /// (by `priority`, then weighted at random within a priority), falling back on failures.
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
    /// A Bedrock guardrail applied to this model's calls.
    #[serde(default)]
    pub guardrail: Option<BedrockGuardrailConfig>,
    /// Mock provider settings for this model only (e.g. to make one deployment fail).
    #[serde(default)]
    pub mock: Option<MockConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The catalogue id of the model that serves this deployment.
    pub model: String,
    /// Lower is tried first.
    #[serde(default)]
    pub priority: u32,
    /// Share of traffic among deployments of the same priority.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BedrockGuardrailConfig {
    /// Guardrail id or ARN.
    pub id: String,
    pub version: String,
    /// How streamed output is checked: `sync` (held until checked) or `async`.
    #[serde(default = "sync_mode")]
    pub stream_processing: String,
}

fn sync_mode() -> String {
    "sync".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Upstream calls per request at most, across deployments (1: no retries).
    pub max_attempts: u32,
    /// Backoff before a retry: a random wait up to `backoff_base_ms * 2^(attempt-1)`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failures that open a deployment's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit skips its deployment before one trial request.
    pub breaker_cooldown_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_base_ms: 25,
            backoff_max_ms: 1000,
            breaker_failures: 5,
            breaker_cooldown_ms: 30_000,
        }
    }
}

fn default_cost_tier() -> String {
    "standard".into()
}

fn default_provider() -> String {
    "mock".into()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    pub mock: MockConfig,
    pub openai: OpenAiConfig,
    pub bedrock: BedrockConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BedrockConfig {
    /// Region for models that do not name one (a model's `region` is where it is called).
    pub region: String,
    /// Bedrock Runtime endpoint, e.g. a PrivateLink VPC endpoint
    /// `https://vpce-0123-abcd.bedrock-runtime.us-east-1.vpce.amazonaws.com`; empty: the public one.
    /// Used for every Region not in `endpoint_urls`.
    pub endpoint_url: String,
    /// Region -> Bedrock Runtime endpoint, for models in several Regions: a VPC endpoint serves
    /// its own Region only, so each Region names its own.
    pub endpoint_urls: BTreeMap<String, String>,
    pub timeout_ms: u64,
    /// Calls carry the end user's identity through STS AssumeRole (empty role: the gateway's
    /// own credentials).
    pub identity: IdentityConfig,
    /// Bedrock guardrail per data classification label (overrides the model's).
    pub guardrails_by_classification: BTreeMap<String, BedrockGuardrailConfig>,
}

impl Default for BedrockConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint_url: String::new(),
            endpoint_urls: BTreeMap::new(),
            timeout_ms: 120_000,
            identity: IdentityConfig::default(),
            guardrails_by_classification: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The role assumed for each caller, e.g. `arn:aws:iam::123456789012:role/cairn-bedrock`.
    pub role_arn: String,
    /// STS endpoint (e.g. a VPC endpoint); empty: the regional default.
    pub sts_endpoint_url: String,
    pub sts_region: String,
    pub session_duration_s: u64,
    /// Credentials are refreshed this long before they expire.
    pub refresh_before_s: u64,
    /// Session tag key -> what it carries: `id`, `uid`, `type`, `team`, `auth.subject`,
    /// `auth.issuer`, `auth.method` or `attr.<attribute>`.
    pub session_tags: BTreeMap<String, String>,
    /// Tag keys that stay on the session through role chaining.
    pub transitive_tag_keys: Vec<String>,
    /// Prefix of the role session name (the rest is the principal's id).
    pub session_name_prefix: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            role_arn: String::new(),
            sts_endpoint_url: String::new(),
            sts_region: "us-east-1".into(),
            session_duration_s: 3600,
            refresh_before_s: 300,
            session_tags: [
                ("cairn-user", "id"),
                ("cairn-team", "team"),
                ("cairn-clearance", "attr.clearance"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            transitive_tag_keys: vec!["cairn-user".into(), "cairn-team".into()],
            session_name_prefix: "cairn-".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockConfig {
    /// Delay before the first byte, in milliseconds.
    pub latency_ms: u64,
    /// Delay between streamed chunks, in milliseconds.
    pub chunk_delay_ms: u64,
    /// Words per streamed chunk.
    pub chunk_words: usize,
    /// Answer every request with this HTTP status instead (0: never).
    pub fail_status: u16,
    /// Fail this fraction of requests (0.0 to 1.0) with `fail_status` (or 503).
    pub fail_rate: f64,
    /// Break streams after this many chunks (0: never).
    pub fail_after_chunks: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            chunk_delay_ms: 0,
            chunk_words: 4,
            fail_status: 0,
            fail_rate: 0.0,
            fail_after_chunks: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// Base URL of an OpenAI-compatible API, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: String,
    pub timeout_ms: u64,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout_ms: 120_000,
        }
    }
}
