//! Policies that cannot do what they look like they do: found by proof, per
//! environment, and reported at the policy.

use cedar_policy::{Effect, Policy, PolicySet, RequestEnv, Schema};
use std::collections::BTreeMap;

use cedar_policy_symcc::{CompiledPolicy, CompiledPolicySet};
use serde_json::{Value, json};

use crate::prover::{canonical, compile_set, may_apply, sorted_envs};
use crate::{EnvName, ProofError, Prover};

/// What is wrong with a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Issue {
    /// Matches no request of any environment.
    Dead,
    /// Its scope admits requests, but its condition errors on every one of them.
    AlwaysErrors,
    /// Matches every request of an environment (a permit allows it all, a forbid denies it all).
    MatchesAll,
    /// A permit whose every match is forbidden: it never allows anything.
    Shadowed,
    /// A permit whose matches other permits already allow: removing it changes no decision.
    Redundant,
    /// A forbid that denies only what no permit allows: removing it changes no decision.
    NeverFires,
}

impl Issue {
    /// A stable rule id for reports (SARIF, annotations).
    pub fn rule(self) -> &'static str {
        match self {
            Self::Dead => "dead",
            Self::AlwaysErrors => "always-errors",
            Self::MatchesAll => "matches-all",
            Self::Shadowed => "shadowed",
            Self::Redundant => "redundant",
            Self::NeverFires => "forbid-never-fires",
        }
    }

    pub fn describe(self, permit: bool) -> &'static str {
        match (self, permit) {
            (Self::Dead, _) => {
                "can never match: no request of the schema satisfies its scope and condition"
            }
            (Self::AlwaysErrors, _) => {
                "always errors: its scope admits requests, but evaluating its condition fails on every one"
            }
            (Self::MatchesAll, true) => "allows every request of",
            (Self::MatchesAll, false) => "denies every request of",
            (Self::Shadowed, _) => {
                "is shadowed: a forbid matches every request it matches, so it never allows anything"
            }
            (Self::Redundant, _) => {
                "is redundant: other permits already allow everything it allows (removing it changes no decision)"
            }
            (Self::NeverFires, _) => {
                "can never fire: no permit allows what it forbids (removing it changes no decision)"
            }
        }
    }
}

/// Runs one yes/no query on the prover's solver session, naming the
/// environment when it fails.
macro_rules! ask {
    ($prover:expr, $env:expr, $method:ident($($arg:expr),*)) => {
        $prover
            .runtime
            .block_on($prover.compiler.$method($($arg),*))
            .map_err(|e| ProofError::Solve {
                env: $env.to_string(),
                reason: e.to_string(),
            })
    };
}

/// One finding about one policy, with the environments it holds in.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PolicyIssue {
    pub policy: String,
    pub issue: Issue,
    pub permit: bool,
    pub envs: Vec<EnvName>,
    /// The policy says this finding is intended: `@analyze_allow("matches-all: why")`.
    pub acknowledged: bool,
}

/// The annotation by which a policy acknowledges a finding: rule names, comma-separated,
/// optionally followed by `: the reason`.
pub const ALLOW_ANNOTATION: &str = "analyze_allow";

fn acknowledged(policy: &Policy, issue: Issue) -> bool {
    policy.annotation(ALLOW_ANNOTATION).is_some_and(|v| {
        let rules = v.split(':').next().unwrap_or("");
        rules.split(',').any(|r| r.trim() == issue.rule())
    })
}

/// The same scope, with the condition removed or negated: what lets a proof
/// tell "never true" from "always errors".
fn rewritten(policy: &Policy, body: Option<Value>) -> Result<Policy, ProofError> {
    let err = |reason: String| ProofError::Rewrite {
        policy: policy.id().to_string(),
        reason,
    };
    let mut est = policy.to_json().map_err(|e| err(e.to_string()))?;
    est["conditions"] = match body {
        Some(b) => json!([{ "kind": "when", "body": b }]),
        None => json!([]),
    };
    Policy::from_json(Some(policy.id().clone()), est).map_err(|e| err(e.to_string()))
}

/// `!(c1 && !u2 && ...)`: true exactly where the original condition is false,
/// erroring where it errors.
fn negated_condition(policy: &Policy) -> Result<Value, ProofError> {
    let est = policy.to_json().map_err(|e| ProofError::Rewrite {
        policy: policy.id().to_string(),
        reason: e.to_string(),
    })?;
    let mut conj: Option<Value> = None;
    for c in est["conditions"].as_array().into_iter().flatten() {
        let term = if c["kind"] == "unless" {
            json!({ "!": { "arg": c["body"] } })
        } else {
            c["body"].clone()
        };
        conj = Some(match conj {
            None => term,
            Some(left) => json!({ "&&": { "left": left, "right": term } }),
        });
    }
    let conj = conj.unwrap_or_else(|| json!({ "Value": true }));
    Ok(json!({ "!": { "arg": conj } }))
}

/// The policies of `set` that `keep` selects, as a set of their own.
fn subset(
    set: &PolicySet,
    about: &Policy,
    keep: impl Fn(&Policy) -> bool,
) -> Result<PolicySet, ProofError> {
    PolicySet::from_policies(set.policies().filter(|q| keep(q)).cloned()).map_err(|e| {
        ProofError::Rewrite {
            policy: about.id().to_string(),
            reason: e.to_string(),
        }
    })
}

impl Prover {
    /// Every issue of every policy of `set` (validated against `schema`),
    /// ordered by policy id.
    pub fn analyze(
        &mut self,
        set: &PolicySet,
        schema: &Schema,
    ) -> Result<Vec<PolicyIssue>, ProofError> {
        let envs = sorted_envs(schema);
        let mut policies: Vec<&Policy> = set.policies().collect();
        policies.sort_by_key(|p| p.id().to_string());
        let mut issues = Vec::new();
        let mut compiled_all = BTreeMap::new();
        for policy in policies {
            let applies: Vec<&RequestEnv> = envs
                .iter()
                .filter(|e| may_apply(policy, e.action()))
                .collect();
            let key = self.cache.as_ref().map(|c| {
                let mut parts = vec![
                    "analyze/2".to_owned(),
                    self.solver_version.clone(),
                    policy.id().to_string(),
                ];
                for e in &applies {
                    parts.push(EnvName::of(e).to_string());
                    parts.push(canonical(set, e.action()));
                }
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                c.key(&parts)
            });
            if let (Some(c), Some(k)) = (&self.cache, &key)
                && let Some(hit) = c.get::<Vec<PolicyIssue>>(k)
            {
                issues.extend(hit);
                continue;
            }
            let found = self.analyze_policy(policy, set, schema, &applies, &mut compiled_all)?;
            if let (Some(c), Some(k)) = (&self.cache, &key) {
                c.put(k, &found);
            }
            issues.extend(found);
        }
        Ok(issues)
    }

    fn analyze_policy(
        &mut self,
        policy: &Policy,
        set: &PolicySet,
        schema: &Schema,
        applies: &[&RequestEnv],
        compiled_all: &mut BTreeMap<EnvName, CompiledPolicySet>,
    ) -> Result<Vec<PolicyIssue>, ProofError> {
        let id = policy.id().to_string();
        let permit = policy.effect() == Effect::Permit;
        let issue = |issue, envs| PolicyIssue {
            policy: id.clone(),
            issue,
            permit,
            envs,
            acknowledged: acknowledged(policy, issue),
        };
        let (mut matching, mut erroring, mut everything) = (Vec::new(), Vec::new(), Vec::new());
        for req_env in applies {
            let env = EnvName::of(req_env);
            let compiled = self.compile_one(policy, req_env, schema, &env)?;
            if ask!(self, &env, check_never_matches_opt(&compiled))? {
                // Never true, or never evaluates: if the negation cannot match
                // either while the bare scope can, every evaluation errors.
                let negation = rewritten(policy, Some(negated_condition(policy)?))?;
                let negation = self.compile_one(&negation, req_env, schema, &env)?;
                if ask!(self, &env, check_never_matches_opt(&negation))? {
                    let scope = rewritten(policy, None)?;
                    let scope = self.compile_one(&scope, req_env, schema, &env)?;
                    if !ask!(self, &env, check_never_matches_opt(&scope))? {
                        erroring.push(env);
                    }
                }
                continue;
            }
            if ask!(self, &env, check_always_matches_opt(&compiled))? {
                everything.push(env.clone());
            }
            matching.push((*req_env, env));
        }
        let mut found = Vec::new();
        if matching.is_empty() {
            found.push(if erroring.is_empty() {
                issue(Issue::Dead, Vec::new())
            } else {
                issue(Issue::AlwaysErrors, erroring)
            });
            return Ok(found);
        }
        if !everything.is_empty() {
            found.push(issue(Issue::MatchesAll, everything));
        }
        let alone = subset(set, policy, |q| q.id() == policy.id())?;
        let (mut no_effect, mut never_allows) = (true, true);
        for (req_env, env) in &matching {
            // Only the policies that may apply to the environment's action: the others are
            // false in it, and leaving them out keeps every query small.
            if !compiled_all.contains_key(env) {
                let applying = subset(set, policy, |q| may_apply(q, req_env.action()))?;
                let c = compile_set("analyzed", &applying, req_env, schema, env)?;
                compiled_all.insert(env.clone(), c);
            }
            let others = subset(set, policy, |q| {
                q.id() != policy.id() && may_apply(q, req_env.action())
            })?;
            let without = compile_set("analyzed", &others, req_env, schema, env)?;
            let Some(all) = compiled_all.get(env) else {
                continue;
            };
            if !ask!(self, env, check_equivalent_opt(all, &without))? {
                no_effect = false;
                break;
            }
            if permit && never_allows {
                let just = compile_set("analyzed", &alone, req_env, schema, env)?;
                never_allows = ask!(self, env, check_disjoint_opt(&just, all))?;
            }
        }
        if no_effect {
            let kind = match (permit, never_allows) {
                (false, _) => Issue::NeverFires,
                (true, true) => Issue::Shadowed,
                (true, false) => Issue::Redundant,
            };
            found.push(issue(kind, matching.into_iter().map(|(_, e)| e).collect()));
        }
        Ok(found)
    }

    fn compile_one(
        &self,
        policy: &Policy,
        req_env: &RequestEnv,
        schema: &Schema,
        env: &EnvName,
    ) -> Result<CompiledPolicy, ProofError> {
        CompiledPolicy::compile(policy, req_env, schema).map_err(|e| ProofError::Compile {
            side: "analyzed",
            env: env.to_string(),
            reason: e.to_string(),
        })
    }
}
