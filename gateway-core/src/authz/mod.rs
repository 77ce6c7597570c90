//! Authorization: Cedar decides every request. Entities are built per request from the
//! principal and the catalogue (nothing is fetched), policies come only from a bundle that
//! verified against the configured key, and a new bundle replaces the old one only after it
//! verified, validated and fit the gateway's requests.

mod reload;

use serde_json::{Value, json};

use policy_engine::PolicyEngine;
use policy_engine::cedar_policy::{Context, Entities, EntityUid, Request};

pub use reload::PolicyState;

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

fn uid_json(entity_type: &str, id: &str) -> Value {
    json!({ "type": entity_type, "id": id })
}

/// The entities of one request in Cedar's JSON form: the principal, its groups, the resource.
pub fn entities_json(
    principal: &Principal,
    resource_type: &str,
    resource_id: &str,
    resource_attrs: &Value,
) -> Value {
    let mut out = Vec::with_capacity(principal.parents.len() + 2);
    out.push(json!({
        "uid": uid_json(&principal.entity_type, &principal.id),
        "attrs": principal.attrs,
        "parents": principal.parents.iter().map(|(t, id)| uid_json(t, id)).collect::<Vec<_>>(),
    }));
    for (t, id) in &principal.parents {
        out.push(json!({ "uid": uid_json(t, id), "attrs": {}, "parents": [] }));
    }
    out.push(json!({ "uid": uid_json(resource_type, resource_id), "attrs": resource_attrs, "parents": [] }));
    Value::Array(out)
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
) -> Result<Decision, String> {
    let schema = engine.schema();
    let entities = Entities::from_json_value(
        entities_json(principal, resource_type, resource_id, resource_attrs),
        Some(schema),
    )
    .map_err(|e| format!("entities: {}", policy_engine::chain(&e)))?;
    let action: EntityUid = action.parse().map_err(|e| format!("action: {e}"))?;
    let context = Context::from_json_value(context.clone(), Some((schema, &action)))
        .map_err(|e| format!("context: {}", policy_engine::chain(&e)))?;
    let principal_uid: EntityUid = principal
        .uid()
        .parse()
        .map_err(|e| format!("principal: {e}"))?;
    let resource_uid: EntityUid = format!("{resource_type}::{}", Value::String(resource_id.into()))
        .parse()
        .map_err(|e| format!("resource: {e}"))?;
    let request = Request::new(principal_uid, action, resource_uid, context, Some(schema))
        .map_err(|e| format!("request: {}", policy_engine::chain(&e)))?;
    let response = engine.is_authorized(&request, &entities);
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
    Ok(Decision {
        allow: response.decision() == policy_engine::cedar_policy::Decision::Allow,
        reasons,
        errors,
    })
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
    Entities::from_json_value(
        json!([{ "uid": uid_json("Model", resource_id), "attrs": resource_attrs, "parents": [] }]),
        Some(schema),
    )
    .map_err(|e| format!("model entity: {}", policy_engine::chain(&e)))?;
    let action: EntityUid = INVOKE_MODEL.parse().map_err(|e| format!("action: {e}"))?;
    let context = Context::from_json_value(context.clone(), Some((schema, &action)))
        .map_err(|e| format!("context: {}", policy_engine::chain(&e)))?;
    let principal: EntityUid = format!("{principal_type}::\"cairn-probe\"")
        .parse()
        .map_err(|e| format!("principal type: {e}"))?;
    let resource: EntityUid = format!("Model::{}", Value::String(resource_id.into()))
        .parse()
        .map_err(|e| format!("resource: {e}"))?;
    Request::new(principal, action, resource, context, Some(schema))
        .map(|_| ())
        .map_err(|e| format!("request: {}", policy_engine::chain(&e)))
}
