//! Token claims to a Cedar principal, as configured in `auth.oidc.claims`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{AuthError, AuthInfo, Principal};
use crate::config::ClaimsMapping;

/// Reads a claim, following dots into nested objects (`realm_access.roles`).
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => s
            .split([' ', ','])
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

pub fn map_claims(
    claims: &Map<String, Value>,
    mapping: &ClaimsMapping,
    issuer: &str,
) -> Result<Principal, AuthError> {
    let id = claim(claims, &mapping.id_claim)
        .and_then(|v| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            // `sub` is a StringOrURI (RFC 7519 §4.1.2); another claim chosen as the id may be
            // a number, such as an employee number.
            Value::Number(n) if mapping.id_claim != "sub" => Some(n.to_string()),
            _ => None,
        })
        .ok_or_else(|| {
            AuthError::Claims(format!(
                "no `{}` claim of the right type (a non-empty string{})",
                mapping.id_claim,
                if mapping.id_claim == "sub" {
                    ""
                } else {
                    " or a number"
                }
            ))
        })?;
    let groups = claim(claims, &mapping.groups_claim)
        .map(strings)
        .unwrap_or_default();
    let mut attrs = BTreeMap::new();
    for (name, m) in &mapping.attributes {
        let raw = claim(claims, &m.claim).cloned();
        let value = match raw {
            Some(v) => convert(&v, &m.kind, &m.map).ok_or_else(|| {
                AuthError::Claims(format!(
                    "claim `{}` cannot be read as {} for `{name}`",
                    m.claim, m.kind
                ))
            })?,
            None => match &m.default {
                Some(d) => super::api_key::toml_to_json(d),
                None => continue,
            },
        };
        attrs.insert(name.clone(), value);
    }
    Ok(Principal {
        entity_type: mapping.principal_type.clone(),
        id: id.clone(),
        parents: groups
            .into_iter()
            .map(|g| (mapping.group_type.clone(), g))
            .collect(),
        attrs,
        auth: AuthInfo {
            method: "oidc",
            subject: id,
            issuer: Some(issuer.to_string()),
        },
    })
}

fn convert(v: &Value, kind: &str, map: &BTreeMap<String, i64>) -> Option<Value> {
    match kind {
        "string" => match v {
            Value::String(_) => Some(v.clone()),
            Value::Number(n) => Some(Value::String(n.to_string())),
            Value::Bool(b) => Some(Value::String(b.to_string())),
            _ => None,
        },
        "long" => match v {
            Value::Number(n) => n.as_i64().map(Value::from),
            Value::String(s) => map
                .get(&s.to_ascii_lowercase())
                .copied()
                .or_else(|| s.parse().ok())
                .map(Value::from),
            _ => None,
        },
        "bool" => match v {
            Value::Bool(_) => Some(v.clone()),
            Value::String(s) => s.parse::<bool>().ok().map(Value::Bool),
            _ => None,
        },
        "set" => Some(Value::Array(
            strings(v).into_iter().map(Value::String).collect(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_numeric_sub_is_not_a_subject() {
        let claims = json!({"sub": 42});
        let err = map_claims(
            claims.as_object().expect("object"),
            &ClaimsMapping::default(),
            "https://issuer.test",
        )
        .expect_err("refused");
        assert!(matches!(err, AuthError::Claims(_)), "{err}");
    }

    #[test]
    fn default_mapping_reads_sub_groups_and_attributes() {
        let claims = json!({"sub": "alice", "groups": ["engineering", "break-glass"],
                            "department": "eng", "clearance": "confidential"});
        let p = map_claims(
            claims.as_object().unwrap(),
            &ClaimsMapping::default(),
            "https://idp",
        )
        .unwrap();
        assert_eq!(p.uid(), "User::\"alice\"");
        assert_eq!(p.parents.len(), 2);
        assert_eq!(p.attrs["clearance"], 2);
        assert_eq!(p.attrs["department"], "eng");
        assert!(!p.attrs.contains_key("email"));
    }

    #[test]
    fn defaults_fill_missing_claims_and_bad_ones_fail() {
        let claims = json!({"sub": "bob"});
        let p = map_claims(claims.as_object().unwrap(), &ClaimsMapping::default(), "i").unwrap();
        assert_eq!(p.attrs["clearance"], 0);
        assert_eq!(p.attrs["department"], "unknown");
        let claims = json!({"sub": "bob", "clearance": {"x": 1}});
        assert!(map_claims(claims.as_object().unwrap(), &ClaimsMapping::default(), "i").is_err());
        let claims = json!({"groups": []});
        assert!(map_claims(claims.as_object().unwrap(), &ClaimsMapping::default(), "i").is_err());
    }
}
