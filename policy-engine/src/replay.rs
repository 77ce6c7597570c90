//! Replaying recorded decisions under two policy sets, to show what a policy change does to
//! real traffic before it merges. A decision record keeps everything Cedar saw (principal with
//! parents and attributes, action, resource with attributes, context), so each one can be
//! decided again by the base and by the proposed policies and the two answers compared.
//!
//! Except what a record keeps only as hashes: a tool call's or a prompt's arguments are an
//! entity the context names (`ToolArguments`, `PromptArguments`) whose tags are not in the
//! record. Such a case is decided with that entity unknown (Cedar's partial evaluation): a
//! side whose answer does not depend on the arguments gives it, and one whose answer does is
//! `depends`, with the policies that read them, never a guess.

use cedar_policy::{Authorizer, Decision, Entities, EntityUid, Policy, PolicySet, Schema};
use serde::Serialize;
use serde_json::{Value, json};

use crate::authorize::{RequestSpec, build_request};

/// One recorded request, as Cedar saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: String,
    pub ts: String,
    pub principal: String,
    pub parents: Vec<String>,
    pub principal_attrs: Value,
    pub action: String,
    pub resource: String,
    pub resource_attrs: Value,
    pub context: Value,
}

impl Case {
    /// The Cedar inputs of a decision record (a parsed JSON line); `None` for records Cedar did
    /// not decide (authentication failures, malformed requests, limits, other record kinds).
    pub fn from_record(r: &Value) -> Option<Self> {
        if r["kind"] != "decision" || r.get("reasons").is_none() {
            return None;
        }
        let s = |k: &str| r[k].as_str().map(str::to_string);
        Some(Self {
            id: s("id")?,
            ts: s("ts").unwrap_or_default(),
            principal: s("principal")?,
            parents: r["principal_parents"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            principal_attrs: r
                .get("principal_attrs")
                .cloned()
                .unwrap_or_else(|| json!({})),
            action: s("action")?,
            resource: s("resource")?,
            resource_attrs: r
                .get("resource_attrs")
                .cloned()
                .unwrap_or_else(|| json!({})),
            context: r.get("context").cloned()?,
        })
    }
}

/// A policy set and the schema to read requests with.
pub struct Side<'a> {
    pub schema: &'a Schema,
    pub policies: &'a PolicySet,
}

/// What one side decided: `allow`, `deny`, `depends` when the answer depends on arguments the
/// record does not keep (`reasons` then names the policies that read them), or `error` when
/// the request could not be decided (e.g. the side's schema rejects the recorded context).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub decision: &'static str,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `depends`: the text of each policy that reads the unknown, so an edit to one is a
    /// change even when its id stays.
    #[serde(skip)]
    pub residuals: Vec<String>,
}

impl Outcome {
    fn error(e: String) -> Self {
        Self {
            decision: "error",
            reasons: Vec::new(),
            error: Some(e),
            residuals: Vec::new(),
        }
    }
}

/// How one case came out under the base and under the head.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub id: String,
    pub ts: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub base: Outcome,
    pub head: Outcome,
}

impl Compared {
    /// `allow→deny`, `deny→allow`, `arguments` (one side's answer depends on arguments the
    /// record does not keep, and the other's does not, or on other policies), `reasons`,
    /// `error` or `same`.
    pub fn change(&self) -> &'static str {
        let (b, h) = (&self.base, &self.head);
        if b.error.is_some() || h.error.is_some() {
            "error"
        } else if (b.decision == "depends" || h.decision == "depends")
            && (b.decision != h.decision || b.reasons != h.reasons || b.residuals != h.residuals)
        {
            "arguments"
        } else if b.decision != h.decision {
            if h.decision == "deny" {
                "allow→deny"
            } else {
                "deny→allow"
            }
        } else if b.reasons != h.reasons {
            "reasons"
        } else {
            "same"
        }
    }
}

fn uid_json(uid: &str) -> Result<Value, String> {
    let parsed: EntityUid = uid.parse().map_err(|e| format!("`{uid}`: {e}"))?;
    Ok(json!({ "type": parsed.type_name().to_string(), "id": parsed.id().unescaped() }))
}

fn decide(side: &Side<'_>, case: &Case) -> Outcome {
    try_decide(side, case).unwrap_or_else(Outcome::error)
}

fn try_decide(side: &Side<'_>, case: &Case) -> Result<Outcome, String> {
    let parents = case
        .parents
        .iter()
        .map(|p| uid_json(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut entities = vec![json!({
        "uid": uid_json(&case.principal)?,
        "attrs": case.principal_attrs,
        "parents": parents,
    })];
    for uid in parents {
        entities.push(json!({ "uid": uid, "attrs": {}, "parents": [] }));
    }
    if case.resource != case.principal {
        entities.push(json!({ "uid": uid_json(&case.resource)?, "attrs": case.resource_attrs, "parents": [] }));
    }
    let mut unknown = Vec::new();
    context_refs(&case.context, &mut unknown);
    let known: Vec<&Value> = entities.iter().map(|e| &e["uid"]).collect();
    unknown.retain(|r| !known.contains(&r));
    let entities = Entities::from_json_value(Value::Array(entities), Some(side.schema))
        .map_err(|e| format!("entities: {}", crate::chain(&e)))?;
    // The same checks as `cairn policy authorize` (uids, context and request against the schema).
    let request = build_request(
        &RequestSpec {
            principal: case.principal.clone(),
            action: case.action.clone(),
            resource: case.resource.clone(),
            context: case.context.clone(),
        },
        Some(side.schema),
    )
    .map_err(|p| p.message)?;
    // Named by `@id` when the policy has one (as the loader names them).
    let name = |p: &Policy| {
        p.annotation("id")
            .map_or_else(|| p.id().to_string(), str::to_string)
    };
    if !unknown.is_empty() {
        // The entities the record names but does not hold are unknown, not missing.
        let entities = entities.partial();
        let partial = Authorizer::new().is_authorized_partial(&request, side.policies, &entities);
        let mut outcome = match partial.decision() {
            Some(d) => Outcome {
                decision: if d == Decision::Allow {
                    "allow"
                } else {
                    "deny"
                },
                reasons: partial.must_be_determining().map(|p| name(&p)).collect(),
                error: None,
                residuals: Vec::new(),
            },
            None => {
                let policies: Vec<Policy> = partial.nontrivial_residuals().collect();
                Outcome {
                    decision: "depends",
                    reasons: policies.iter().map(name).collect(),
                    error: None,
                    // The policies as written, not their residuals (which differ per request).
                    residuals: policies
                        .iter()
                        .filter_map(|p| side.policies.policy(p.id()).map(ToString::to_string))
                        .collect(),
                }
            }
        };
        outcome.reasons.sort();
        outcome.residuals.sort();
        return Ok(outcome);
    }
    let response = Authorizer::new().is_authorized(&request, side.policies, &entities);
    let mut reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|id| {
            side.policies
                .policy(id)
                .map_or_else(|| id.to_string(), &name)
        })
        .collect();
    reasons.sort();
    Ok(Outcome {
        decision: if response.decision() == Decision::Allow {
            "allow"
        } else {
            "deny"
        },
        reasons,
        error: None,
        residuals: Vec::new(),
    })
}

/// The entity references (`{"__entity": {"type", "id"}}`) anywhere in a context, as uid JSON.
fn context_refs(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(r)) = m.get("__entity") {
                out.push(json!({ "type": r.get("type"), "id": r.get("id") }));
                return;
            }
            m.values().for_each(|v| context_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| context_refs(v, out)),
        _ => {}
    }
}

/// Decides every case under both sides.
pub fn compare<'c>(
    base: &Side<'_>,
    head: &Side<'_>,
    cases: impl IntoIterator<Item = &'c Case>,
) -> Vec<Compared> {
    cases
        .into_iter()
        .map(|c| Compared {
            id: c.id.clone(),
            ts: c.ts.clone(),
            principal: c.principal.clone(),
            action: c.action.clone(),
            resource: c.resource.clone(),
            base: decide(base, c),
            head: decide(head, c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"
entity Group;
entity User in [Group] { clearance: Long };
entity Model { tier: String };
action invoke_model appliesTo { principal: [User], resource: [Model], context: { level: Long } };
"#;

    fn side(src: &str) -> (Schema, PolicySet) {
        let (schema, _) = Schema::from_cedarschema_str(SCHEMA).unwrap();
        (schema, src.parse().unwrap())
    }

    fn record(user: &str, tier: &str, level: i64) -> Value {
        json!({
            "kind": "decision", "id": format!("{user}-{tier}-{level}"), "ts": "t",
            "principal": format!("User::\"{user}\""), "principal_parents": ["Group::\"eng\""],
            "principal_attrs": {"clearance": 1}, "action": "Action::\"invoke_model\"",
            "resource": format!("Model::\"{tier}\""), "resource_attrs": {"tier": tier},
            "context": {"level": level}, "reasons": [], "decision": "allow",
        })
    }

    fn compare_sides(
        (s1, p1): (&Schema, &PolicySet),
        (s2, p2): (&Schema, &PolicySet),
        cases: &[Case],
    ) -> Vec<Compared> {
        let base = Side {
            schema: s1,
            policies: p1,
        };
        let head = Side {
            schema: s2,
            policies: p2,
        };
        compare(&base, &head, cases)
    }

    #[test]
    fn a_new_forbid_shows_as_allow_to_deny() {
        let (s1, p1) = side(r#"@id("all") permit(principal, action, resource);"#);
        let (s2, p2) = side(
            r#"@id("all") permit(principal, action, resource);
               @id("no-premium") forbid(principal, action, resource) when { resource.tier == "premium" };
               @id("cleared") forbid(principal in Group::"eng", action, resource) when { context.level > principal.clearance };"#,
        );
        let cases: Vec<Case> = [
            record("a", "low", 1),
            record("b", "premium", 1),
            record("c", "low", 2),
        ]
        .iter()
        .filter_map(Case::from_record)
        .collect();
        let out = compare_sides((&s1, &p1), (&s2, &p2), &cases);
        let changes: Vec<&str> = out.iter().map(Compared::change).collect();
        assert_eq!(changes, ["same", "allow→deny", "allow→deny"]);
        assert_eq!(out[1].head.reasons, ["no-premium"]);
        assert_eq!(out[2].head.reasons, ["cleared"]);
    }

    #[test]
    fn argument_dependent_decisions_are_shown_as_such_never_guessed() {
        const TOOLS: &str = r#"
entity User;
entity Tool { risk: String };
entity ToolArguments tags String;
action call_tool appliesTo { principal: [User], resource: [Tool], context: { arguments: ToolArguments } };
"#;
        let (schema, _) = Schema::from_cedarschema_str(TOOLS).unwrap();
        let base: PolicySet = r#"@id("all") permit(principal, action, resource);"#
            .parse()
            .unwrap();
        let head: PolicySet = r#"@id("all") permit(principal, action, resource);
            @id("scratch") forbid(principal, action, resource)
              unless { context.arguments.hasTag("path") && context.arguments.getTag("path") like "/scratch/*" };
            @id("no-destructive") forbid(principal, action, resource) when { resource.risk == "destructive" };"#
            .parse()
            .unwrap();
        let call = |risk: &str| {
            json!({
                "kind": "decision", "id": risk, "ts": "t", "principal": "User::\"a\"",
                "action": "Action::\"call_tool\"", "resource": "Tool::\"files/write\"",
                "resource_attrs": {"risk": risk}, "reasons": ["all"], "decision": "allow",
                "context": {"arguments": {"__entity": {"type": "ToolArguments", "id": risk}}},
            })
        };
        let cases: Vec<Case> = [call("write"), call("destructive")]
            .iter()
            .filter_map(Case::from_record)
            .collect();
        let out = compare_sides((&schema, &base), (&schema, &head), &cases);
        // The base allows whatever the arguments; the head's answer depends on them.
        assert_eq!(out[0].base.decision, "allow");
        assert_eq!(out[0].head.decision, "depends");
        assert_eq!(out[0].head.reasons, ["scratch"]);
        assert_eq!(out[0].change(), "arguments");
        // A forbid that holds whatever the arguments decides concretely.
        assert_eq!(out[1].head.decision, "deny");
        assert_eq!(out[1].head.reasons, ["no-destructive"]);
        assert_eq!(out[1].change(), "allow→deny");
        // Unchanged policies replay unchanged.
        let same = compare_sides((&schema, &head), (&schema, &head), &cases);
        assert!(same.iter().all(|c| c.change() == "same"), "{same:?}");
        // An edit to a policy that reads the arguments is a change, under the same id.
        let edited: PolicySet = r#"@id("all") permit(principal, action, resource);
            @id("scratch") forbid(principal, action, resource)
              unless { context.arguments.hasTag("path") && context.arguments.getTag("path") like "/*" };
            @id("no-destructive") forbid(principal, action, resource) when { resource.risk == "destructive" };"#
            .parse()
            .unwrap();
        let out = compare_sides((&schema, &head), (&schema, &edited), &cases);
        assert_eq!(out[0].change(), "arguments");
    }

    #[test]
    fn a_rule_that_reads_recorded_names_first_decides_without_the_arguments() {
        const TOOLS: &str = r#"
entity Group;
entity User in [Group];
entity Tool;
entity ToolArguments tags String;
action call_tool appliesTo { principal: [User], resource: [Tool],
  context: { arguments: ToolArguments, argument_names: Set<String> } };
"#;
        let (schema, _) = Schema::from_cedarschema_str(TOOLS).unwrap();
        let policies: PolicySet = r#"@id("all") permit(principal, action, resource);
            @id("paths") forbid(principal, action, resource)
              when { context.argument_names.contains("path") && context.arguments.hasTag("path") }
              unless { principal in Group::"sre" };"#
            .parse()
            .unwrap();
        let r = json!({
            "kind": "decision", "id": "1", "ts": "t", "principal": "User::\"a\"",
            "principal_parents": ["Group::\"eng\""],
            "action": "Action::\"call_tool\"", "resource": "Tool::\"t\"", "resource_attrs": {},
            "reasons": ["all"], "decision": "allow",
            "context": {"arguments": {"__entity": {"type": "ToolArguments", "id": "1"}},
                        "argument_names": ["query"]},
        });
        let case = Case::from_record(&r).unwrap();
        let out = compare_sides((&schema, &policies), (&schema, &policies), &[case]);
        assert_eq!(out[0].base.decision, "allow", "{:?}", out[0].base);
    }

    #[test]
    fn records_cedar_did_not_decide_are_skipped() {
        let mut r = record("a", "low", 1);
        r.as_object_mut().unwrap().remove("reasons");
        assert!(Case::from_record(&r).is_none());
        assert!(Case::from_record(&json!({"kind": "outcome"})).is_none());
    }

    #[test]
    fn a_context_the_head_schema_rejects_is_an_error_not_a_panic() {
        let (s1, p1) = side(r#"permit(principal, action, resource);"#);
        let (s2, p2) = side(r#"permit(principal, action, resource);"#);
        let mut r = record("a", "low", 1);
        r["context"] = json!({"level": "high"});
        let cases = vec![Case::from_record(&r).unwrap()];
        let out = compare_sides((&s1, &p1), (&s2, &p2), &cases);
        assert_eq!(out[0].change(), "error");
    }
}
