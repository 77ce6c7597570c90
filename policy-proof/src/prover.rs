//! One solver session, reused for every query of a run.

use cedar_policy::{ActionConstraint, EntityUid, Policy, PolicySet, RequestEnv, Schema};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicySet};

use crate::witness::{self, Witness};
use crate::{Cache, Comparison, EnvComparison, EnvName, ProofError, SolverCommand, Verdict};

pub struct Prover {
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) compiler: CedarSymCompiler<LocalSolver>,
    pub(crate) solver_version: String,
    pub(crate) cache: Option<Cache>,
}

impl Prover {
    pub fn new(solver: &SolverCommand, cache: Option<Cache>) -> Result<Self, ProofError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProofError::Runtime(e.to_string()))?;
        // The solver process is a tokio child: spawn it inside the runtime.
        let local = {
            let _entered = runtime.enter();
            solver.spawn()?
        };
        let compiler = CedarSymCompiler::new(local).map_err(|e| ProofError::Solve {
            env: "startup".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            runtime,
            compiler,
            solver_version: solver.version.clone(),
            cache,
        })
    }

    /// Prove how `head` relates to `base` in every environment of `schema`.
    ///
    /// Both sets must validate against `schema` (strict mode): symbolic
    /// compilation is defined for well-typed policies only.
    pub fn compare(
        &mut self,
        base: &PolicySet,
        head: &PolicySet,
        schema: &Schema,
    ) -> Result<Comparison, ProofError> {
        let mut environments = Vec::new();
        let mut cached = 0;
        for req_env in sorted_envs(schema) {
            let env = EnvName::of(&req_env);
            let key = self.cache.as_ref().map(|c| {
                c.key(&[
                    "compare/1",
                    &self.solver_version,
                    &env.to_string(),
                    &canonical(base, req_env.action()),
                    &canonical(head, req_env.action()),
                ])
            });
            if let (Some(c), Some(k)) = (&self.cache, &key)
                && let Some(hit) = c.get::<EnvComparison>(k)
            {
                cached += 1;
                environments.push(hit);
                continue;
            }
            let result = self.compare_env(base, head, schema, &req_env, env)?;
            if let (Some(c), Some(k)) = (&self.cache, &key) {
                c.put(k, &result);
            }
            environments.push(result);
        }
        Ok(Comparison {
            environments,
            cached,
        })
    }

    fn compare_env(
        &mut self,
        base: &PolicySet,
        head: &PolicySet,
        schema: &Schema,
        req_env: &RequestEnv,
        env: EnvName,
    ) -> Result<EnvComparison, ProofError> {
        let base_c = compile_set("base", base, req_env, schema, &env)?;
        let head_c = compile_set("head", head, req_env, schema, &env)?;
        let solve_err = |e: cedar_policy_symcc::err::Error| ProofError::Solve {
            env: env.to_string(),
            reason: e.to_string(),
        };
        let runtime = &self.runtime;
        let compiler = &mut self.compiler;
        // head ⊆ base fails exactly when head allows something base does not.
        let widened = runtime
            .block_on(compiler.check_implies_with_counterexample_opt(&head_c, &base_c))
            .map_err(solve_err)?;
        let narrowed = runtime
            .block_on(compiler.check_implies_with_counterexample_opt(&base_c, &head_c))
            .map_err(solve_err)?;
        let deny_to_allow = widened
            .map(|w| Witness::checked(w, base, head, witness::Direction::DenyToAllow, &env))
            .transpose()?;
        let allow_to_deny = narrowed
            .map(|w| Witness::checked(w, base, head, witness::Direction::AllowToDeny, &env))
            .transpose()?;
        Ok(EnvComparison {
            verdict: Verdict::of(deny_to_allow.is_some(), allow_to_deny.is_some()),
            env,
            deny_to_allow,
            allow_to_deny,
        })
    }
}

/// The schema's request environments in a stable order (the schema's own is a hash order).
pub(crate) fn sorted_envs(schema: &Schema) -> Vec<RequestEnv> {
    let mut envs: Vec<(EnvName, RequestEnv)> = schema
        .request_envs()
        .map(|e| (EnvName::of(&e), e))
        .collect();
    envs.sort_by(|a, b| a.0.cmp(&b.0));
    envs.into_iter().map(|(_, e)| e).collect()
}

pub(crate) fn compile_set(
    side: &'static str,
    set: &PolicySet,
    req_env: &RequestEnv,
    schema: &Schema,
    env: &EnvName,
) -> Result<CompiledPolicySet, ProofError> {
    CompiledPolicySet::compile(set, req_env, schema).map_err(|e| ProofError::Compile {
        side,
        env: env.to_string(),
        reason: e.to_string(),
    })
}

/// Whether `policy` can apply to requests for `action`. Conservative: only a
/// scope naming one other action rules it out (`action in [...]` may name a
/// group, whose members the policy text alone does not tell).
pub(crate) fn may_apply(policy: &Policy, action: &EntityUid) -> bool {
    match policy.action_constraint() {
        ActionConstraint::Eq(a) => &a == action,
        ActionConstraint::Any | ActionConstraint::In(_) => true,
    }
}

/// The text of every policy that may apply to `action`, ordered by id: what
/// an answer about that action's environments depends on.
pub(crate) fn canonical(set: &PolicySet, action: &EntityUid) -> String {
    let mut parts: Vec<String> = set
        .policies()
        .filter(|p| may_apply(p, action))
        .map(|p| format!("{}\n{}\n", p.id(), p))
        .collect();
    parts.sort();
    parts.concat()
}
