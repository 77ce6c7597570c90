//! A solver's counterexample, decided again by Cedar before anyone sees it.

use cedar_policy::{Authorizer, Decision, Entities, PolicySet, Request, Response};

use crate::{EnvName, ProofError};

#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    DenyToAllow,
    AllowToDeny,
}

/// A concrete request whose decision differs between base and head, with
/// the entities it needs and the policies that decide it on each side.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Witness {
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub context: serde_json::Value,
    /// Cedar's entities JSON: every entity the request reads.
    pub entities: serde_json::Value,
    pub base_decision: String,
    pub head_decision: String,
    /// Policies that determined base's decision (empty: the default deny).
    pub base_reasons: Vec<String>,
    pub head_reasons: Vec<String>,
}

fn name(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
    }
}

fn reasons(r: &Response) -> Vec<String> {
    let mut ids: Vec<String> = r.diagnostics().reason().map(|p| p.to_string()).collect();
    ids.sort();
    ids
}

fn uid(u: Option<&cedar_policy::EntityUid>) -> String {
    u.map_or_else(|| "unknown".to_owned(), |u| u.to_string())
}

impl Witness {
    pub(crate) fn checked(
        env: cedar_policy_symcc::Env,
        base: &PolicySet,
        head: &PolicySet,
        direction: Direction,
        env_name: &EnvName,
    ) -> Result<Self, ProofError> {
        let cedar_policy_symcc::Env { request, entities } = env;
        let (base_r, head_r) = decide(&request, base, head, &entities);
        let (want_base, want_head, expected) = match direction {
            Direction::DenyToAllow => (Decision::Deny, Decision::Allow, "base deny, head allow"),
            Direction::AllowToDeny => (Decision::Allow, Decision::Deny, "base allow, head deny"),
        };
        if base_r.decision() != want_base || head_r.decision() != want_head {
            return Err(ProofError::WitnessDisagrees {
                env: env_name.to_string(),
                expected,
                base: name(base_r.decision()),
                head: name(head_r.decision()),
            });
        }
        let context = match request.context() {
            Some(c) => c.to_json_value().map_err(|e| witness_err(env_name, e))?,
            None => serde_json::json!({}),
        };
        let entities = entities
            .to_json_value()
            .map_err(|e| witness_err(env_name, e))?;
        Ok(Self {
            principal: uid(request.principal()),
            action: uid(request.action()),
            resource: uid(request.resource()),
            context,
            entities,
            base_decision: name(base_r.decision()).to_owned(),
            head_decision: name(head_r.decision()).to_owned(),
            base_reasons: reasons(&base_r),
            head_reasons: reasons(&head_r),
        })
    }
}

fn decide(
    request: &Request,
    base: &PolicySet,
    head: &PolicySet,
    entities: &Entities,
) -> (Response, Response) {
    let authorizer = Authorizer::new();
    (
        authorizer.is_authorized(request, base, entities),
        authorizer.is_authorized(request, head, entities),
    )
}

fn witness_err(env: &EnvName, e: impl std::fmt::Display) -> ProofError {
    ProofError::Solve {
        env: env.to_string(),
        reason: format!("the counterexample cannot be written as JSON: {e}"),
    }
}
