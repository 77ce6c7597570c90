//! The gateway's entities and context as Cedar values, built directly rather than through
//! Cedar's schema-guided JSON parser, which costs about twice as much per request. The schema
//! still has the last word: `Entities::from_entities` and `Request::new` both check against it,
//! and whatever they refuse is built again through the JSON parser (`entities_from_json`), whose
//! reading of the JSON is the reference.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use policy_engine::cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema,
};
use serde_json::Value;

use crate::authn::Principal;

/// Context keys the gateway sends as Cedar extension values; their JSON form is the string the
/// extension constructor takes. Every other key is converted by its JSON type.
fn extension(key: &str, text: &str) -> Option<RestrictedExpression> {
    match key {
        "source_ip" => Some(RestrictedExpression::new_ip(text)),
        "request_time" => Some(RestrictedExpression::new_datetime(text)),
        "budget_remaining_usd" => Some(RestrictedExpression::new_decimal(text)),
        _ => None,
    }
}

pub fn uid(entity_type: &str, id: &str) -> Result<EntityUid, String> {
    let t = EntityTypeName::from_str(entity_type)
        .map_err(|e| format!("entity type `{entity_type}`: {e}"))?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

/// A JSON value as a Cedar value: strings, booleans, integers, sets and records.
pub fn restricted(v: &Value) -> Result<RestrictedExpression, String> {
    Ok(match v {
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => RestrictedExpression::new_long(
            n.as_i64()
                .ok_or_else(|| format!("{n} is not a 64-bit integer (Cedar has no fractions)"))?,
        ),
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .map(restricted)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Object(fields) if let Some(uid) = entity_reference(fields) => {
            RestrictedExpression::new_entity_uid(uid)
        }
        Value::Object(fields) => RestrictedExpression::new_record(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), restricted(v)?)))
                .collect::<Result<Vec<_>, String>>()?,
        )
        .map_err(|e| e.to_string())?,
        Value::Null => return Err("null has no Cedar value".into()),
    })
}

/// `{"type": T, "id": I}` or `{"__entity": {...}}`: how Cedar's JSON names an entity. A record
/// of that shape is read as a reference here; the schema refuses it where a record is meant and
/// the JSON parser then reads it as one.
fn entity_reference(fields: &serde_json::Map<String, Value>) -> Option<EntityUid> {
    let fields = match fields.get("__entity") {
        Some(Value::Object(inner)) if fields.len() == 1 => inner,
        _ => fields,
    };
    match (fields.len(), fields.get("type"), fields.get("id")) {
        (2, Some(Value::String(t)), Some(Value::String(id))) => uid(t, id).ok(),
        _ => None,
    }
}

pub fn attrs<'a>(
    fields: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> Result<HashMap<String, RestrictedExpression>, String> {
    fields
        .into_iter()
        .map(|(k, v)| Ok((k.clone(), restricted(v).map_err(|e| format!("`{k}`: {e}"))?)))
        .collect()
}

/// The request context; `context` is the JSON object the decision record keeps.
pub fn context(context: &Value) -> Result<Context, String> {
    Context::from_pairs(context_pairs(context)?).map_err(|e| policy_engine::chain(&e))
}

/// The context's fields as Cedar values, for a caller that adds more.
pub fn context_pairs(context: &Value) -> Result<Vec<(String, RestrictedExpression)>, String> {
    let Value::Object(fields) = context else {
        return Err("the context is not an object".into());
    };
    fields
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(text) => extension(k, text)
                    .unwrap_or_else(|| RestrictedExpression::new_string(text.clone())),
                _ => restricted(v).map_err(|e| format!("`{k}`: {e}"))?,
            };
            Ok((k.clone(), value))
        })
        .collect()
}

/// The principal, its groups and the resource, checked against the schema.
pub fn entities(
    schema: &Schema,
    principal: &Principal,
    resource: EntityUid,
    resource_attrs: &Value,
) -> Result<Entities, String> {
    let mut list = principal_entities(principal)?;
    list.push(entity(resource, resource_attrs, HashSet::new())?);
    Entities::from_entities(list, Some(schema)).map_err(|e| policy_engine::chain(&e))
}

/// The principal and its groups.
pub fn principal_entities(principal: &Principal) -> Result<Vec<Entity>, String> {
    let parents = principal
        .parents
        .iter()
        .map(|(t, id)| uid(t, id))
        .collect::<Result<HashSet<_>, _>>()?;
    let mut list = Vec::with_capacity(parents.len() + 3);
    for parent in &parents {
        list.push(Entity::new_no_attrs(parent.clone(), HashSet::new()));
    }
    list.push(
        Entity::new(
            uid(&principal.entity_type, &principal.id)?,
            attrs(&principal.attrs)?,
            parents,
        )
        .map_err(|e| e.to_string())?,
    );
    Ok(list)
}

/// One entity whose attributes are a JSON object (or null for none).
pub fn entity(
    uid: EntityUid,
    attributes: &Value,
    parents: HashSet<EntityUid>,
) -> Result<Entity, String> {
    let attributes = match attributes {
        Value::Object(fields) => attrs(fields)?,
        Value::Null => HashMap::new(),
        _ => return Err(format!("the attributes of {uid} are not an object")),
    };
    Entity::new(uid, attributes, parents).map_err(|e| e.to_string())
}

/// The same entities through Cedar's schema-guided JSON parser.
pub fn entities_from_json(
    schema: &Schema,
    principal: &Principal,
    resource: &EntityUid,
    resource_attrs: &Value,
) -> Result<Entities, String> {
    let uid_json = |t: &str, id: &str| serde_json::json!({ "type": t, "id": id });
    let mut list = vec![serde_json::json!({
        "uid": uid_json(&principal.entity_type, &principal.id),
        "attrs": principal.attrs,
        "parents": principal.parents.iter().map(|(t, id)| uid_json(t, id)).collect::<Vec<_>>(),
    })];
    for (t, id) in &principal.parents {
        list.push(serde_json::json!({ "uid": uid_json(t, id), "attrs": {}, "parents": [] }));
    }
    list.push(serde_json::json!({
        "uid": uid_json(&resource.type_name().to_string(), resource.id().unescaped()),
        "attrs": resource_attrs,
        "parents": [],
    }));
    Entities::from_json_value(Value::Array(list), Some(schema))
        .map_err(|e| policy_engine::chain(&e))
}
