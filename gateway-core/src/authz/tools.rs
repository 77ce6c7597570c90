//! Cedar for MCP: a tool call (`call_tool` on a `Tool`), a prompt (`get_prompt` on a `Prompt`)
//! and a resource read (`read_resource` on an `McpResource`), each entity in its `McpServer`.
//! A call's or a prompt's arguments are the tags of an arguments entity. A listing asks "could
//! some request for this item be allowed?", answered by partial evaluation with what the
//! listing cannot know (the arguments; for a resource template, the resource) left unknown.

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
pub const GET_PROMPT: &str = "Action::\"get_prompt\"";
pub const READ_RESOURCE: &str = "Action::\"read_resource\"";

/// What an MCP request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
}

impl Kind {
    pub fn action(self) -> &'static str {
        match self {
            Self::Tool => CALL_TOOL,
            Self::Prompt => GET_PROMPT,
            Self::Resource => READ_RESOURCE,
        }
    }

    pub fn entity_type(self) -> &'static str {
        match self {
            Self::Tool => "Tool",
            Self::Prompt => "Prompt",
            Self::Resource => "McpResource",
        }
    }

    /// The entity type of the arguments in the context, for kinds that have them.
    pub fn arguments_type(self) -> Option<&'static str> {
        match self {
            Self::Tool => Some("ToolArguments"),
            Self::Prompt => Some("PromptArguments"),
            Self::Resource => None,
        }
    }
}

/// An item of a server as Cedar sees it.
#[derive(Debug, Clone, Copy)]
pub struct McpAsk<'a> {
    pub kind: Kind,
    pub server: &'a str,
    /// The `McpServer` entity's attributes.
    pub server_attrs: &'a Value,
    /// `server/name` (a resource: `server/uri`).
    pub id: &'a str,
    pub attrs: &'a Value,
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

/// Decides one request: the item known, its arguments (if its kind has them) given.
pub fn decide(
    engine: &PolicyEngine,
    principal: &Principal,
    ask: McpAsk<'_>,
    arguments_id: &str,
    arguments: &Map<String, Value>,
) -> Result<Decision, DecideError> {
    let mut extra = Vec::new();
    let args = match ask.kind.arguments_type() {
        Some(t) => {
            let args_uid = uid(t, arguments_id).map_err(|e| format!("arguments: {e}"))?;
            let tags = argument_tags(arguments)
                .into_iter()
                .map(|(k, v)| (k, RestrictedExpression::new_string(v)));
            extra.push(
                Entity::new_with_tags(args_uid.clone(), [], [], tags).map_err(|e| e.to_string())?,
            );
            Some(RestrictedExpression::new_entity_uid(args_uid))
        }
        None => None,
    };
    let (request, entities) = build(engine, principal, ask, args, Unknowns::None, extra)?;
    Ok(super::decision_of(
        &engine.is_authorized(&request, &entities),
    ))
}

/// What a listing leaves unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknowns {
    None,
    /// The arguments (a tool or a prompt in a listing).
    Arguments,
    /// A resource's URI (a template in a listing: which resource it names is not known).
    Uri,
}

/// Whether some request for the item could be allowed: the decision with the unknowns left
/// unknown is not a denial. An item is listed exactly when this holds, so a listed item is
/// one a request can reach, and an item left out is one every request for would be denied.
pub fn could(
    engine: &PolicyEngine,
    principal: &Principal,
    ask: McpAsk<'_>,
    unknowns: Unknowns,
) -> Result<bool, DecideError> {
    let args = match ask.kind.arguments_type() {
        Some(t) => Some(RestrictedExpression::new_entity_uid(
            uid(t, "").map_err(|e| format!("arguments: {e}"))?,
        )),
        None => None,
    };
    let (request, entities) = build(engine, principal, ask, args, unknowns, Vec::new())?;
    let partial = Authorizer::new().is_authorized_partial(&request, engine.policies(), &entities);
    Ok(partial.decision() != Some(CedarDecision::Deny))
}

fn build(
    engine: &PolicyEngine,
    principal: &Principal,
    ask: McpAsk<'_>,
    arguments: Option<RestrictedExpression>,
    unknowns: Unknowns,
    extra: Vec<Entity>,
) -> Result<(Request, Entities), DecideError> {
    let schema = engine.schema();
    let action: EntityUid = ask
        .kind
        .action()
        .parse()
        .map_err(|e| format!("action: {e}"))?;
    let server = uid("McpServer", ask.server).map_err(|e| format!("server: {e}"))?;
    let item = uid(ask.kind.entity_type(), ask.id).map_err(|e| format!("item: {e}"))?;
    let principal_uid =
        uid(&principal.entity_type, &principal.id).map_err(|e| format!("principal: {e}"))?;
    let mut list = cedar_values::principal_entities(principal)?;
    list.push(cedar_values::entity(
        server.clone(),
        ask.server_attrs,
        HashSet::new(),
    )?);
    let parents = HashSet::from([server]);
    list.push(if unknowns == Unknowns::Uri {
        // A template's scheme is known unless the template varies it (`{scheme}://...`).
        let uri = ask
            .attrs
            .get("uri")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let scheme_varies = uri.split(':').next().is_none_or(|s| s.contains('{'));
        let unknown = |k: &str| k == "uri" || (k == "scheme" && scheme_varies);
        let fields = ask.attrs.as_object().into_iter().flatten();
        let mut attrs = cedar_values::attrs(fields.filter(|(k, _)| !unknown(k)))?;
        attrs.insert("uri".into(), RestrictedExpression::new_unknown("uri"));
        if scheme_varies {
            attrs.insert("scheme".into(), RestrictedExpression::new_unknown("scheme"));
        }
        Entity::new(item.clone(), attrs, parents).map_err(|e| e.to_string())?
    } else {
        cedar_values::entity(item.clone(), ask.attrs, parents)?
    });
    list.extend(extra);
    let mut entities = Entities::from_entities(list, Some(schema))
        .map_err(|e| format!("entities: {}", policy_engine::chain(&e)))?;
    if unknowns == Unknowns::Arguments {
        // The arguments entity is absent: what reads it stays a residual.
        entities = entities.partial();
    }
    let mut pairs = cedar_values::context_pairs(ask.context)?;
    if let Some(a) = arguments {
        pairs.push(("arguments".to_string(), a));
    }
    let context = Context::from_pairs(pairs).map_err(|e| policy_engine::chain(&e))?;
    let request = Request::new(principal_uid, action, item, context, Some(schema))
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

    fn ask<'a>(id: &'a str, attrs: &'a Value, server: &'a Value, ctx: &'a Value) -> McpAsk<'a> {
        McpAsk {
            kind: Kind::Tool,
            server: "files",
            server_attrs: server,
            id,
            attrs,
            context: ctx,
        }
    }

    fn could_call(e: &PolicyEngine, p: &Principal, a: McpAsk<'_>) -> Result<bool, DecideError> {
        could(e, p, a, Unknowns::Arguments)
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
        let ok =
            decide(&e, &alice, a, "1", &args(json!({"path": "/srv/scratch/a"}))).expect("decides");
        assert!(ok.allow, "{ok:?}");
        let no =
            decide(&e, &alice, a, "2", &args(json!({"path": "/etc/passwd"}))).expect("decides");
        assert!(!no.allow);
        assert_eq!(no.reasons, ["file-writes-only-in-scratch"]);

        // No permit whatever the arguments: not listed, and no call is allowed.
        assert!(!could_call(&e, &bob, a).expect("decides"));
        let denied =
            decide(&e, &bob, a, "3", &args(json!({"path": "/srv/scratch/a"}))).expect("decides");
        assert!(!denied.allow);

        // A session above the server's approval sees nothing.
        let read = tool("read_file", "read");
        let high = context(2);
        assert!(!could_call(&e, &bob, ask("files/read_file", &read, &server, &high)).expect("ok"));
        assert!(could_call(&e, &bob, ask("files/read_file", &read, &server, &ctx)).expect("ok"));
    }

    fn resource<'a>(
        id: &'a str,
        attrs: &'a Value,
        server: &'a Value,
        ctx: &'a Value,
    ) -> McpAsk<'a> {
        McpAsk {
            kind: Kind::Resource,
            server: "notes",
            server_attrs: server,
            id,
            attrs,
            context: ctx,
        }
    }

    #[test]
    fn resources_and_templates_listed_as_read() {
        let e = default_engine();
        let server = json!({"owner_team": "platform", "max_data_level": 1});
        let ctx = |level: i64| {
            json!({"data_classification": "internal", "data_level": level,
                         "source_ip": "10.1.2.3", "request_time": "2026-11-25T14:00:00Z"})
        };
        let (low, high) = (ctx(1), ctx(2));
        let attrs = |uri: &str| json!({"server": "notes", "uri": uri, "scheme": "note", "max_data_level": 1});
        let (open, private) = (attrs("note:///a.txt"), attrs("note:///private/b.txt"));
        let bob = user("bob", &["sales"]);
        let erin = user("erin", &["sre"]);
        let none = Map::new();
        let read = |p: &Principal, id: &str, a: &Value| {
            decide(&e, p, resource(id, a, &server, &low), "1", &none).expect("decides")
        };
        assert!(read(&bob, "notes/note:///a.txt", &open).allow);
        let d = read(&bob, "notes/note:///private/b.txt", &private);
        assert!(!d.allow);
        assert_eq!(d.reasons, ["private-resources-for-sre"]);
        assert!(read(&erin, "notes/note:///private/b.txt", &private).allow);

        // A template names no resource yet: listed when some read could be allowed, and not
        // above the server's approval (known without the URI).
        let template = attrs("note:///{name}");
        let id = "notes/note:///{name}";
        let listed = |ctx: &Value| {
            could(
                &e,
                &bob,
                resource(id, &template, &server, ctx),
                Unknowns::Uri,
            )
            .expect("decides")
        };
        assert!(listed(&low));
        assert!(!listed(&high));
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
