//! Cedar for MCP tool calls: the `Tool` entity in its `McpServer`, the call's arguments as the
//! tags of a `ToolArguments` entity, and a listing's question "could any call of this tool be
//! allowed?" answered by partial evaluation with the arguments unknown.

use std::collections::HashSet;

use policy_engine::PolicyEngine;
use policy_engine::cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityUid, Request,
    RestrictedExpression,
};
use serde_json::{Map, Value};

use super::cedar_values::{self, uid};
use super::{DecideError, Decision};
use crate::authn::Principal;

pub const CALL_TOOL: &str = "Action::\"call_tool\"";

/// A tool as Cedar sees it.
#[derive(Debug, Clone, Copy)]
pub struct ToolAsk<'a> {
    pub server: &'a str,
    /// The `McpServer` entity's attributes.
    pub server_attrs: &'a Value,
    /// `server/name`.
    pub tool_id: &'a str,
    pub tool_attrs: &'a Value,
    /// The context without `arguments` (which this module adds).
    pub context: &'a Value,
}

/// The arguments as entity tags: top-level strings as they are, numbers and booleans as their
/// JSON text; other values (objects, arrays, null) are named in `argument_names` only.
pub fn argument_tags(arguments: &Map<String, Value>) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = arguments
        .iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k.clone(), s.clone())),
            Value::Number(_) | Value::Bool(_) => Some((k.clone(), v.to_string())),
            _ => None,
        })
        .collect();
    tags.sort();
    tags
}

/// Decides one call with its arguments.
pub fn decide_call(
    engine: &PolicyEngine,
    principal: &Principal,
    ask: ToolAsk<'_>,
    arguments_id: &str,
    arguments: &Map<String, Value>,
) -> Result<Decision, DecideError> {
    let args_uid = uid("ToolArguments", arguments_id).map_err(|e| format!("arguments: {e}"))?;
    let tags = argument_tags(arguments)
        .into_iter()
        .map(|(k, v)| (k, RestrictedExpression::new_string(v)));
    let args = Entity::new_with_tags(args_uid.clone(), [], [], tags).map_err(|e| e.to_string())?;
    let (request, entities) = build(
        engine,
        principal,
        ask,
        RestrictedExpression::new_entity_uid(args_uid),
        Some(args),
    )?;
    Ok(super::decision_of(
        &engine.is_authorized(&request, &entities),
    ))
}

/// Whether some call of the tool could be allowed: the decision with the arguments unknown is
/// not a denial. A tool is listed exactly when this holds, so a listed tool is one a call can
/// reach, and a tool left out is one every call to would be denied.
pub fn could_call(
    engine: &PolicyEngine,
    principal: &Principal,
    ask: ToolAsk<'_>,
) -> Result<bool, DecideError> {
    let unknown = uid("ToolArguments", "").map_err(|e| format!("arguments: {e}"))?;
    let (request, entities) = build(
        engine,
        principal,
        ask,
        RestrictedExpression::new_entity_uid(unknown),
        None,
    )?;
    let partial = Authorizer::new().is_authorized_partial(&request, engine.policies(), &entities);
    Ok(partial.decision() != Some(CedarDecision::Deny))
}

fn build(
    engine: &PolicyEngine,
    principal: &Principal,
    ask: ToolAsk<'_>,
    arguments: RestrictedExpression,
    arguments_entity: Option<Entity>,
) -> Result<(Request, Entities), DecideError> {
    let schema = engine.schema();
    let action: EntityUid = CALL_TOOL.parse().map_err(|e| format!("action: {e}"))?;
    let server = uid("McpServer", ask.server).map_err(|e| format!("server: {e}"))?;
    let tool = uid("Tool", ask.tool_id).map_err(|e| format!("tool: {e}"))?;
    let principal_uid =
        uid(&principal.entity_type, &principal.id).map_err(|e| format!("principal: {e}"))?;
    let mut list = cedar_values::principal_entities(principal)?;
    list.push(cedar_values::entity(
        server.clone(),
        ask.server_attrs,
        HashSet::new(),
    )?);
    list.push(cedar_values::entity(
        tool.clone(),
        ask.tool_attrs,
        HashSet::from([server]),
    )?);
    let known = arguments_entity.is_some();
    list.extend(arguments_entity);
    let mut entities = Entities::from_entities(list, Some(schema))
        .map_err(|e| format!("entities: {}", policy_engine::chain(&e)))?;
    if !known {
        // The arguments entity is absent: what reads it stays a residual.
        entities = entities.partial();
    }
    let mut pairs = cedar_values::context_pairs(ask.context)?;
    pairs.push(("arguments".to_string(), arguments));
    let context = Context::from_pairs(pairs).map_err(|e| policy_engine::chain(&e))?;
    let request = Request::new(principal_uid, action, tool, context, Some(schema))
        .map_err(|e| format!("request: {}", policy_engine::chain(&e)))?;
    Ok((request, entities))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::authz::fixtures::{default_engine, principal};

    fn user(id: &str, groups: &[&str]) -> Principal {
        principal(
            "User",
            id,
            groups,
            json!({"department": "eng", "clearance": 2}),
        )
    }

    fn tool(name: &str, risk: &str) -> Value {
        json!({"risk": risk, "server": "files", "name": name, "read_only": risk == "read",
               "destructive": risk == "destructive", "open_world": false, "max_data_level": 1})
    }

    fn context(level: i64) -> Value {
        json!({"data_classification": "internal", "data_level": level, "source_ip": "10.1.2.3",
               "request_time": "2026-11-25T14:00:00Z", "argument_names": [], "guardrail_findings": []})
    }

    fn ask<'a>(id: &'a str, attrs: &'a Value, server: &'a Value, ctx: &'a Value) -> ToolAsk<'a> {
        ToolAsk {
            server: "files",
            server_attrs: server,
            tool_id: id,
            tool_attrs: attrs,
            context: ctx,
        }
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn listing_and_calling_agree() {
        let e = default_engine();
        let server = json!({"owner_team": "platform", "max_data_level": 1});
        let ctx = context(1);
        let alice = user("alice", &["engineering"]);
        let bob = user("bob", &["sales"]);

        // Arguments decide: listed, and some call is allowed and another is not.
        let write = tool("write_file", "write");
        let a = ask("files/write_file", &write, &server, &ctx);
        assert!(could_call(&e, &alice, a).expect("decides"));
        let ok = decide_call(&e, &alice, a, "1", &args(json!({"path": "/srv/scratch/a"})))
            .expect("decides");
        assert!(ok.allow, "{ok:?}");
        let no = decide_call(&e, &alice, a, "2", &args(json!({"path": "/etc/passwd"})))
            .expect("decides");
        assert!(!no.allow);
        assert_eq!(no.reasons, ["file-writes-only-in-scratch"]);

        // No permit whatever the arguments: not listed, and no call is allowed.
        assert!(!could_call(&e, &bob, a).expect("decides"));
        let denied = decide_call(&e, &bob, a, "3", &args(json!({"path": "/srv/scratch/a"})))
            .expect("decides");
        assert!(!denied.allow);

        // A session above the server's approval sees nothing.
        let read = tool("read_file", "read");
        let high = context(2);
        assert!(!could_call(&e, &bob, ask("files/read_file", &read, &server, &high)).expect("ok"));
        assert!(could_call(&e, &bob, ask("files/read_file", &read, &server, &ctx)).expect("ok"));
    }

    #[test]
    fn arguments_become_string_tags() {
        let tags = argument_tags(&args(
            json!({"p": "x", "n": 4, "b": true, "o": {}, "z": null}),
        ));
        assert_eq!(
            tags,
            [
                ("b".to_string(), "true".to_string()),
                ("n".to_string(), "4".to_string()),
                ("p".to_string(), "x".to_string())
            ]
        );
    }
}
