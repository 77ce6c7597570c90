//! Authorization: Cedar decides every request. Entities are built per request from the
//! principal and the catalogue (nothing is fetched), policies come only from a bundle that
//! verified against the configured key, and a new bundle replaces the old one only after it
//! verified, validated and fit the gateway's requests.

mod cedar_values;
mod reload;
pub mod tools;

use std::sync::OnceLock;

use serde_json::Value;

use policy_engine::PolicyEngine;
use policy_engine::cedar_policy::{Context, Entities, EntityUid, Request};

pub use reload::{PolicyState, Probes};

use crate::authn::Principal;

pub const INVOKE_MODEL: &str = "Action::\"invoke_model\"";

/// What Cedar said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// Determining policy ids, sorted.
    pub reasons: Vec<String>,
    /// `policy id: error` for policies whose evaluation failed.
    pub errors: Vec<String>,
}

/// Why a request could not be decided: the bundle's schema does not fit what the gateway sends
/// (the request is refused, fail closed). The message names the part that did not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecideError(String);

impl From<String> for DecideError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

/// The action every model request is decided under, parsed once.
fn invoke_model() -> &'static EntityUid {
    static ACTION: OnceLock<EntityUid> = OnceLock::new();
    ACTION.get_or_init(|| {
        cedar_values::uid("Action", "invoke_model").unwrap_or_else(|_| unreachable!("valid name"))
    })
}

fn action_uid(action: &str) -> Result<EntityUid, String> {
    if action == INVOKE_MODEL {
        return Ok(invoke_model().clone());
    }
    action.parse().map_err(|e| format!("action: {e}"))
}

/// Decides one request. An error means the bundle's schema does not fit what the gateway sends
/// (the request is refused, fail closed).
pub fn decide(
    engine: &PolicyEngine,
    principal: &Principal,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    resource_attrs: &Value,
    context: &Value,
) -> Result<Decision, DecideError> {
    let schema = engine.schema();
    let action = action_uid(action)?;
    let resource =
        cedar_values::uid(resource_type, resource_id).map_err(|e| format!("resource: {e}"))?;
    let principal_uid = cedar_values::uid(&principal.entity_type, &principal.id)
        .map_err(|e| format!("principal: {e}"))?;
    // Values built directly are right whenever the schema accepts them; when it does not (an
    // attribute the schema types as an extension value or a record shaped like an entity
    // reference, a bundle with another context type), Cedar's schema-guided JSON parser decides
    // what the JSON means, exactly as it would have without the direct path.
    let direct = || -> Result<(Request, Entities), String> {
        let entities = cedar_values::entities(schema, principal, resource.clone(), resource_attrs)?;
        let context = cedar_values::context(context)?;
        let request = Request::new(
            principal_uid.clone(),
            action.clone(),
            resource.clone(),
            context,
            Some(schema),
        )
        .map_err(|e| policy_engine::chain(&e))?;
        Ok((request, entities))
    };
    let (request, entities) = match direct() {
        Ok(built) => built,
        Err(_) => {
            let entities =
                cedar_values::entities_from_json(schema, principal, &resource, resource_attrs)
                    .map_err(|e| format!("entities: {e}"))?;
            let context = Context::from_json_value(context.clone(), Some((schema, &action)))
                .map_err(|e| format!("context: {}", policy_engine::chain(&e)))?;
            let request = Request::new(principal_uid, action, resource, context, Some(schema))
                .map_err(|e| format!("request: {}", policy_engine::chain(&e)))?;
            (request, entities)
        }
    };
    Ok(decision_of(&engine.is_authorized(&request, &entities)))
}

/// Cedar's answer as the record keeps it: determining policies sorted, evaluation errors as
/// `policy id: error`.
fn decision_of(response: &policy_engine::cedar_policy::Response) -> Decision {
    let mut reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    reasons.sort();
    let errors = response
        .diagnostics()
        .errors()
        .map(|e| match e {
            policy_engine::cedar_policy::AuthorizationError::PolicyEvaluationError(pe) => {
                format!("{}: {}", pe.policy_id(), pe.inner())
            }
        })
        .collect();
    Decision {
        allow: response.decision() == policy_engine::cedar_policy::Decision::Allow,
        reasons,
        errors,
    }
}

/// Checks that a bundle's schema accepts what the gateway sends: the model entity, and a request
/// of `principal_type` with this context. Principal attributes are the claims mapping's business
/// and are checked per request.
pub fn check_fit(
    engine: &PolicyEngine,
    principal_type: &str,
    resource_id: &str,
    resource_attrs: &Value,
    context: &Value,
) -> Result<(), String> {
    let schema = engine.schema();
    let resource = cedar_values::uid("Model", resource_id).map_err(|e| format!("resource: {e}"))?;
    Entities::from_json_value(
        serde_json::json!([{
            "uid": { "type": "Model", "id": resource_id },
            "attrs": resource_attrs,
            "parents": [],
        }]),
        Some(schema),
    )
    .map_err(|e| format!("model entity: {}", policy_engine::chain(&e)))?;
    let context = Context::from_json_value(context.clone(), Some((schema, invoke_model())))
        .map_err(|e| format!("context: {}", policy_engine::chain(&e)))?;
    let principal = cedar_values::uid(principal_type, "cairn-probe")
        .map_err(|e| format!("principal type: {e}"))?;
    Request::new(
        principal,
        invoke_model().clone(),
        resource,
        context,
        Some(schema),
    )
    .map(|_| ())
    .map_err(|e| format!("request: {}", policy_engine::chain(&e)))
}

#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;
    use std::path::Path;

    use ed25519_dalek::SigningKey;
    use policy_engine::PolicyEngine;
    use policy_engine::bundle::{self, BundleMeta};
    use policy_engine::load::{self, PolicySources};
    use serde_json::Value;

    use crate::authn::{AuthInfo, Principal};

    pub fn default_engine() -> PolicyEngine {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let sources = PolicySources::discover(&root, None).expect("policies/");
        let loaded = load::load_and_validate(&sources).expect("policies load");
        let key = SigningKey::from_bytes(&[9; 32]);
        let meta = BundleMeta {
            version: "test".into(),
            source_commit: "test".into(),
            source_repository: None,
            created: chrono::Utc::now(),
        };
        let bytes = bundle::create(&loaded, None, &meta, &key).expect("bundle");
        let verified = bundle::verify(&bytes, &key.verifying_key()).expect("verifies");
        PolicyEngine::from_bundle(verified).expect("engine")
    }

    pub fn principal(entity_type: &str, id: &str, groups: &[&str], attrs: Value) -> Principal {
        let attrs: BTreeMap<String, Value> =
            serde_json::from_value(attrs).expect("attributes object");
        Principal {
            entity_type: entity_type.into(),
            id: id.into(),
            parents: groups
                .iter()
                .map(|g| ("Group".to_string(), g.to_string()))
                .collect(),
            attrs,
            auth: AuthInfo {
                method: "test",
                subject: id.into(),
                issuer: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fixtures::{default_engine, principal};
    use super::*;

    fn alice() -> Principal {
        principal(
            "User",
            "alice",
            &[],
            json!({"department": "eng", "clearance": 2}),
        )
    }

    fn model(cost_tier: &str) -> Value {
        json!({"provider": "mock", "region": "us-east-1", "max_data_level": 2, "cost_tier": cost_tier})
    }

    fn context(level: i64) -> Value {
        json!({
            "data_classification": "internal",
            "data_level": level,
            "streaming": false,
            "max_tokens": 256,
            "source_ip": "10.1.2.3",
            "request_time": "2026-11-25T14:00:00Z",
            "guardrail_findings": [],
        })
    }

    fn decide_model(
        e: &PolicyEngine,
        p: &Principal,
        id: &str,
        attrs: &Value,
        ctx: &Value,
    ) -> Decision {
        decide(e, p, INVOKE_MODEL, "Model", id, attrs, ctx).expect("decides")
    }

    #[test]
    fn decisions_name_the_determining_policies() {
        let e = default_engine();
        let intern = principal(
            "User",
            "ivan",
            &["interns"],
            json!({"department": "eng", "clearance": 1}),
        );
        let d = decide_model(&e, &intern, "cheap", &model("low"), &context(1));
        assert!(d.allow);
        assert_eq!(d.reasons, ["users-invoke-models"]);
        let d = decide_model(&e, &intern, "big", &model("standard"), &context(1));
        assert!(!d.allow);
        assert_eq!(d.reasons, ["interns-low-cost-only"]);
        let d = decide_model(&e, &intern, "cheap", &model("low"), &context(2));
        assert_eq!(d.reasons, ["principal-cleared-for-data"]);
        let mut poor = context(1);
        poor["budget_remaining_usd"] = json!("0.0000");
        let d = decide_model(&e, &intern, "cheap", &model("low"), &poor);
        assert_eq!(d.reasons, ["budget-exhausted"]);
    }

    #[test]
    fn entity_references_in_attributes_and_odd_ids_are_kept_exactly() {
        let e = default_engine();
        let bot = principal(
            "ServiceAccount",
            "ci \"bot\" \\ ü",
            &[],
            json!({"owner_team": "platform", "clearance": 1,
                   "allowed_models": [{"type": "Model", "id": "claude-haiku"}]}),
        );
        assert!(decide_model(&e, &bot, "claude-haiku", &model("low"), &context(1)).allow);
        assert!(!decide_model(&e, &bot, "claude-opus", &model("low"), &context(1)).allow);
    }

    #[test]
    fn what_only_the_json_reading_understands_still_decides() {
        let e = default_engine();
        let user = alice();
        let mut ctx = context(1);
        ctx["source_ip"] = json!({"__extn": {"fn": "ip", "arg": "10.9.9.9"}});
        assert!(decide_model(&e, &user, "m", &model("standard"), &ctx).allow);
    }

    #[test]
    fn a_context_the_schema_refuses_fails_closed() {
        let e = default_engine();
        let user = alice();
        let mut ctx = context(1);
        ctx["source_ip"] = json!("not-an-address");
        let err = decide(&e, &user, INVOKE_MODEL, "Model", "m", &model("low"), &ctx)
            .expect_err("refused");
        assert!(err.to_string().starts_with("context:"), "{err}");
        let mut ctx = context(1);
        ctx.as_object_mut().expect("object").remove("streaming");
        assert!(decide(&e, &user, INVOKE_MODEL, "Model", "m", &model("low"), &ctx).is_err());
        let missing_attr = principal("User", "bob", &[], json!({"clearance": 2}));
        assert!(
            decide(
                &e,
                &missing_attr,
                INVOKE_MODEL,
                "Model",
                "m",
                &model("low"),
                &context(1)
            )
            .is_err()
        );
    }
}
