//! Configuration: defaults, then the TOML file, then `CAIRN_<SECTION>__<KEY>` environment
//! variables, then command-line flags. Loading collects every problem before failing, and each
//! problem names the key.

mod collect;
mod raw;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::*;

use crate::error::ConfigError;

/// Top-level sections that environment variables may set.
const SECTIONS: &[&str] = &[
    "server",
    "policy",
    "auth",
    "records",
    "classification",
    "providers",
    "limits",
    "guardrails",
    "cache",
    "telemetry",
    "routing",
    "mcp",
];

/// Reads the file (when given) and applies environment overrides from `env`.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ConfigError> {
    let mut problems = Vec::new();
    let mut text = String::new();
    let mut table = match file {
        Some(path) => {
            text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: Some(path.to_path_buf()),
                problems: vec![format!("cannot read the config file: {e}")],
            })?;
            match text.parse::<toml::Table>() {
                Ok(t) => t,
                Err(e) => {
                    return Err(ConfigError {
                        file: Some(path.to_path_buf()),
                        problems: vec![format!("invalid TOML: {e}")],
                    });
                }
            }
        }
        None => toml::Table::new(),
    };
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("CAIRN_") else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if !SECTIONS.contains(&path[0].as_str()) {
            continue;
        }
        if let Err(e) = set_path(&mut table, &path, parse_env_value(&value)) {
            problems.push(format!("environment variable `{name}`: {e}"));
        }
    }
    match collect::read(table, file, &text) {
        Ok(raw) if problems.is_empty() => Ok(raw),
        Ok(_) => Err(ConfigError {
            file: file.map(Path::to_path_buf),
            problems,
        }),
        Err(more) => {
            problems.extend(more);
            Err(ConfigError {
                file: file.map(Path::to_path_buf),
                problems,
            })
        }
    }
}

/// An environment value is TOML when it parses as a TOML value (numbers, booleans, arrays),
/// otherwise a string.
fn parse_env_value(v: &str) -> toml::Value {
    format!("v = {v}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// A checked configuration with derived values.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub raw: RawConfig,
    pub bundle: PathBuf,
    pub public_key: PathBuf,
    pub records_dir: PathBuf,
    pub signing_key: PathBuf,
    pub shutdown_grace: Duration,
    pub request_timeout: Duration,
    /// The gateway's own AWS credentials (which assume the users' roles), for a program that
    /// embeds the gateway and has them in hand (the demo, against its stand-in); never read
    /// from a file or the environment. None: AWS's standard credential chain.
    pub aws_base_credentials: Option<aws_credential_types::Credentials>,
}

impl GatewayConfig {
    /// [`Self::resolve`], with each problem located in `file` (the configuration `raw` was
    /// read from) at the key it names.
    pub fn resolve_from(raw: RawConfig, file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::resolve(raw).map_err(|mut e| {
            if let Some(f) = file
                && let Ok(text) = std::fs::read_to_string(f)
            {
                e.problems = collect::locate_all(e.problems, f, &text);
                e.file = Some(f.to_path_buf());
            }
            e
        })
    }

    /// Checks values the types cannot, collecting every problem.
    pub fn resolve(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        if raw.server.max_body_bytes == 0 {
            problems.push("`server.max_body_bytes` must be positive".into());
        }
        if !(0.0..=1.0).contains(&raw.server.access_log_sample) {
            problems.push(format!(
                "`server.access_log_sample` {} must be a share, 0 to 1",
                raw.server.access_log_sample
            ));
        }
        if !raw
            .classification
            .levels
            .contains_key(&raw.classification.default)
        {
            problems.push(format!(
                "`classification.default` is `{}`, which is not one of `classification.levels` ({})",
                raw.classification.default,
                raw.classification.levels.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        for (i, k) in raw.auth.api_keys.iter().enumerate() {
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(format!(
                    "`auth.api_keys[{i}].sha256` must be 64 hex digits (the SHA-256 of the key, e.g. from `sha256sum`)"
                ));
            }
            if k.principal
                .parse::<policy_engine::cedar_policy::EntityUid>()
                .is_err()
            {
                problems.push(format!(
                    "`auth.api_keys[{i}].principal` `{}` is not a Cedar entity uid like ServiceAccount::\"ci-bot\"",
                    k.principal
                ));
            }
        }
        let oidc = &raw.auth.oidc;
        if !oidc.issuer.is_empty() {
            if !(oidc.issuer.starts_with("https://") || oidc.issuer.starts_with("http://")) {
                problems.push(format!(
                    "`auth.oidc.issuer` `{}` must be an http(s) URL",
                    oidc.issuer
                ));
            }
            for a in &oidc.algorithms {
                if !matches!(
                    a.as_str(),
                    "RS256"
                        | "RS384"
                        | "RS512"
                        | "PS256"
                        | "PS384"
                        | "PS512"
                        | "ES256"
                        | "ES384"
                        | "EdDSA"
                ) {
                    problems.push(format!(
                        "`auth.oidc.algorithms`: `{a}` is not an accepted asymmetric algorithm (RS256, ES256, EdDSA, ...)"
                    ));
                }
            }
            for (name, m) in &oidc.claims.attributes {
                if !matches!(m.kind.as_str(), "string" | "long" | "bool" | "set") {
                    problems.push(format!(
                        "`auth.oidc.claims.attributes.{name}.type` must be string, long, bool or set"
                    ));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        let ids: std::collections::BTreeMap<&str, &ModelConfig> =
            raw.models.iter().map(|m| (m.id.as_str(), m)).collect();
        for (i, m) in raw.models.iter().enumerate() {
            if !seen.insert(&m.id) {
                problems.push(format!("`models[{i}].id` `{}` appears twice", m.id));
            }
            if !matches!(m.provider.as_str(), "mock" | "openai" | "bedrock") {
                problems.push(format!(
                    "`models[{i}].provider` `{}` is not a provider (mock, openai, bedrock)",
                    m.provider
                ));
            }
            for (j, d) in m.deployments.iter().enumerate() {
                match ids.get(d.model.as_str()) {
                    None => problems.push(format!(
                        "`models[{i}].deployments[{j}].model` `{}` is not a model id of the catalogue",
                        d.model
                    )),
                    Some(target) if !target.deployments.is_empty() => problems.push(format!(
                        "`models[{i}].deployments[{j}].model` `{}` is itself an alias; deployments must be concrete models",
                        d.model
                    )),
                    Some(_) => {}
                }
                if d.weight == 0 {
                    problems.push(format!(
                        "`models[{i}].deployments[{j}].weight` must be at least 1"
                    ));
                }
            }
            if let Some(g) = &m.guardrail
                && !matches!(g.stream_processing.as_str(), "sync" | "async")
            {
                problems.push(format!(
                    "`models[{i}].guardrail.stream_processing` must be sync or async"
                ));
            }
            if m.provider == "openai" && raw.providers.openai.base_url.is_empty() {
                problems.push(format!(
                    "`models[{i}]` uses the openai provider but `providers.openai.base_url` is not set"
                ));
            }
        }
        let identity = &raw.providers.bedrock.identity;
        if !identity.role_arn.is_empty() {
            if crate::providers::bedrock::identity::parse_role_arn(&identity.role_arn).is_none() {
                problems.push(format!(
                    "`providers.bedrock.identity.role_arn` `{}` is not a role ARN like arn:aws:iam::123456789012:role/cairn-bedrock",
                    identity.role_arn
                ));
            }
            if !(900..=43_200).contains(&identity.session_duration_s) {
                problems.push("`providers.bedrock.identity.session_duration_s` must be between 900 and 43200 (STS limits)".into());
            }
            for (k, source) in &identity.session_tags {
                if !crate::providers::bedrock::identity::valid_tag_source(source) {
                    problems.push(format!(
                        "`providers.bedrock.identity.session_tags.{k}` = `{source}`: use id, uid, type, team, auth.subject, auth.issuer, auth.method or attr.<name>"
                    ));
                }
            }
            if identity.session_tags.len() > 50 {
                problems.push("`providers.bedrock.identity.session_tags`: STS accepts at most 50 session tags".into());
            }
        }
        for label in raw.providers.bedrock.guardrails_by_classification.keys() {
            if !raw.classification.levels.contains_key(label) {
                problems.push(format!(
                    "`providers.bedrock.guardrails_by_classification.{label}`: `{label}` is not a classification label"
                ));
            }
        }
        let (records, checkpoints) = (&raw.records.dir, &raw.records.checkpoint_dir);
        // Compared as absolute paths, so `./records/cp` and `records/cp` are the same place.
        let absolute =
            |p: &str| std::path::absolute(p).unwrap_or_else(|_| std::path::PathBuf::from(p));
        if !checkpoints.is_empty()
            && !checkpoints.starts_with("s3://")
            && absolute(checkpoints).starts_with(absolute(records))
        {
            problems.push(format!(
                "`records.checkpoint_dir` `{checkpoints}` is inside `records.dir` `{records}`: a checkpoint must be kept where whoever can remove records cannot remove it too"
            ));
        }
        if raw.routing.max_attempts == 0 {
            problems.push("`routing.max_attempts` must be at least 1".into());
        }
        if raw.routing.breaker_failures == 0 {
            problems.push("`routing.breaker_failures` must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&raw.providers.mock.fail_rate) {
            problems.push("`providers.mock.fail_rate` must be between 0.0 and 1.0".into());
        }
        problems.extend(crate::limits::check_config(&raw.limits));
        problems.extend(crate::mcp::config::check_config(&raw.mcp));
        let resource = &raw.mcp.resource;
        if !resource.is_empty()
            && !raw.auth.oidc.issuer.is_empty()
            && !raw.auth.oidc.audiences.contains(resource)
        {
            problems.push(format!(
                "`auth.oidc.audiences` must include `mcp.resource` `{resource}`: MCP clients get tokens for that resource (RFC 8707), and a token for any other audience must be refused"
            ));
        }
        problems.extend(crate::guardrails::check_config(
            &raw.guardrails,
            &raw.classification.levels,
        ));
        if !matches!(raw.cache.scope.as_str(), "principal" | "team" | "global") {
            problems.push(format!(
                "`cache.scope` `{}` must be principal, team or global",
                raw.cache.scope
            ));
        }
        let endpoint = &raw.telemetry.otlp_endpoint;
        let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !is_url {
            problems.push(format!(
                "`telemetry.otlp_endpoint` `{endpoint}` must be an http(s) URL such as http://127.0.0.1:4318"
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError {
                file: None,
                problems,
            });
        }
        Ok(Self {
            bundle: PathBuf::from(&raw.policy.bundle),
            public_key: PathBuf::from(&raw.policy.public_key),
            records_dir: PathBuf::from(&raw.records.dir),
            signing_key: PathBuf::from(&raw.records.signing_key),
            shutdown_grace: Duration::from_millis(raw.server.shutdown_grace_ms),
            request_timeout: Duration::from_millis(raw.server.request_timeout_ms),
            aws_base_credentials: None,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn no_file_is_a_working_default() {
        let raw = load(None, env(&[])).unwrap();
        let cfg = GatewayConfig::resolve(raw).unwrap();
        assert_eq!(cfg.raw.server.listen, "127.0.0.1:8080");
    }

    #[test]
    fn env_overrides_with_types() {
        let raw = load(
            None,
            env(&[
                ("CAIRN_SERVER__LISTEN", "127.0.0.1:0"),
                ("CAIRN_SERVER__MAX_BODY_BYTES", "2048"),
                ("CAIRN_AUTH__OIDC__AUDIENCES", "[\"a\", \"b\"]"),
                ("CAIRN_LOG", "debug"),
                ("CAIRN_BIN", "/x"),
            ]),
        )
        .unwrap();
        assert_eq!(raw.server.listen, "127.0.0.1:0");
        assert_eq!(raw.server.max_body_bytes, 2048);
        assert_eq!(raw.auth.oidc.audiences, vec!["a", "b"]);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load(None, env(&[("CAIRN_SERVER__LISTN", "x")])).unwrap_err();
        assert!(err.problems[0].contains("listn"), "{err:?}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[server]\nmax_body_bytes = \"big\"\n").unwrap();
        let err = load(Some(&f), env(&[])).unwrap_err();
        assert!(err.problems[0].contains("server.max_body_bytes"), "{err:?}");
    }

    #[test]
    fn resolve_collects_every_problem() {
        let mut raw = RawConfig::default();
        raw.classification.default = "secret".into();
        raw.auth.api_keys.push(ApiKeyConfig {
            id: "k".into(),
            sha256: "xyz".into(),
            principal: "not a uid".into(),
            ..Default::default()
        });
        let err = GatewayConfig::resolve(raw).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err:?}");
    }
}
