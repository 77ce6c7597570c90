//! API keys for service accounts. Only SHA-256 hashes are kept; a presented key is hashed and
//! compared with every stored hash in constant time, so timing says nothing about near misses.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthInfo, Principal};
use crate::config::ApiKeyConfig;

/// The hex SHA-256 of a key, as `auth.api_keys[].sha256` stores it.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

struct Entry {
    hash: [u8; 32],
    principal: Principal,
}

pub struct ApiKeys {
    entries: Vec<Entry>,
}

impl ApiKeys {
    /// Builds the key table; the config was checked (hex, uid) before.
    pub fn new(configs: &[ApiKeyConfig]) -> Result<Self, String> {
        let mut entries = Vec::new();
        for c in configs {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&c.sha256, &mut hash)
                .map_err(|e| format!("api key `{}`: bad sha256: {e}", c.id))?;
            let uid: policy_engine::cedar_policy::EntityUid = c
                .principal
                .parse()
                .map_err(|e| format!("api key `{}`: bad principal: {e}", c.id))?;
            let attrs: BTreeMap<String, Value> = c
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect();
            let group_type = "Group".to_string();
            entries.push(Entry {
                hash,
                principal: Principal {
                    entity_type: uid.type_name().to_string(),
                    id: uid.id().unescaped().to_string(),
                    parents: c
                        .groups
                        .iter()
                        .map(|g| (group_type.clone(), g.clone()))
                        .collect(),
                    attrs,
                    auth: AuthInfo {
                        method: "api_key",
                        subject: c.id.clone(),
                        issuer: None,
                    },
                },
            });
        }
        Ok(Self { entries })
    }

    /// Every configured key's principal (for checking a bundle against them).
    pub fn principals(&self) -> Vec<Principal> {
        self.entries.iter().map(|e| e.principal.clone()).collect()
    }

    pub fn check(&self, key: &str) -> Option<Principal> {
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        // Compare against every entry, matched or not.
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&presented)) {
                found = Some(e.principal.clone());
            }
        }
        found
    }
}

pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_key_matches() {
        let keys = ApiKeys::new(&[ApiKeyConfig {
            id: "ci".into(),
            sha256: hash_key("s3cret"),
            principal: "ServiceAccount::\"ci-bot\"".into(),
            groups: vec!["platform".into()],
            attributes: [("clearance".to_string(), toml::Value::Integer(1))].into(),
        }])
        .unwrap();
        let p = keys.check("s3cret").unwrap();
        assert_eq!(p.uid(), "ServiceAccount::\"ci-bot\"");
        assert_eq!(
            p.parents,
            vec![("Group".to_string(), "platform".to_string())]
        );
        assert_eq!(p.attrs["clearance"], 1);
        assert!(keys.check("s3cret ").is_none());
        assert!(keys.check("").is_none());
    }
}
