//! The solver-backed side of `cairn policy`: finding cvc5, caching its answers, and
//! `cairn policy analyze` (also run by `validate`), whose findings are located at the policy.

use policy_engine::Problem;
use policy_engine::load::{self, LoadedPolicies, PolicySources};
use policy_proof::{Cache, Issue, PolicyIssue, ProofError, Prover, SolverCommand};

use crate::cli::{AnalyzeArgs, CheckFormat, ProofArgs};
use crate::exit::{CliError, CliResult, Outcome};
use crate::findings;
use crate::output::eprint_problems;

pub fn solver(args: &ProofArgs) -> Result<SolverCommand, ProofError> {
    SolverCommand::discover(args.solver.as_deref())
}

/// A prover for policies validated against `loaded`'s schema, its cache salted with the
/// schema's text (a schema change is a new proof).
pub fn prover(
    args: &ProofArgs,
    solver: &SolverCommand,
    loaded: &LoadedPolicies,
) -> Result<Prover, CliError> {
    let cache = (!args.no_cache).then(|| {
        let salt = loaded.schema_file.as_ref().map_or("", |f| &f.text);
        Cache::new(&args.cache_dir, salt)
    });
    Prover::new(solver, cache).map_err(proof_failed)
}

/// A proof that could not complete: exit 2, naming what stopped it.
pub fn proof_failed(e: ProofError) -> CliError {
    let help = match &e {
        ProofError::NoSolver(_) => {
            "scripts/test.sh installs one into its venv; or give --solver PATH"
        }
        ProofError::Compile { .. } => {
            "symbolic compilation needs policies that validate strictly against one schema (the head's); a feature symcc does not support is named above"
        }
        ProofError::WitnessDisagrees { .. } => {
            "this is a bug in the solver or the encoding, not in your policies; please report it with the policies"
        }
        _ => "a query that runs out of time (60 s per query) or a solver crash ends the proof",
    };
    CliError::input(miette::miette!(
        help = help,
        "the proof could not complete: {e}"
    ))
}

fn help(issue: Issue) -> &'static str {
    match issue {
        Issue::Dead => "remove it, or fix the scope or condition that can never hold",
        Issue::AlwaysErrors => {
            "its condition fails on every request (e.g. an overflow); a policy that errors never applies"
        }
        Issue::MatchesAll => {
            "a policy over a whole environment is rarely meant; constrain its principal, resource or condition"
        }
        Issue::Shadowed => "a forbid always overrides it; remove it or narrow the forbid",
        Issue::Redundant => "other permits cover it; remove it or make it say something new",
        Issue::NeverFires => {
            "it forbids only what is denied anyway; remove it, or check the permits it was meant to restrict"
        }
    }
}

/// Each issue as a warning at its policy's source.
/// Issues a policy acknowledges (`@analyze_allow`) are left out.
pub fn problems(loaded: &LoadedPolicies, issues: &[PolicyIssue]) -> Vec<Problem> {
    issues
        .iter()
        .filter(|i| !i.acknowledged)
        .map(|i| {
            let kind = if i.permit { "permit" } else { "forbid" };
            let mut message = format!("{kind} `{}` {}", i.policy, i.issue.describe(i.permit));
            match i.issue {
                Issue::MatchesAll => {
                    let envs: Vec<String> = i.envs.iter().map(ToString::to_string).collect();
                    message.push(' ');
                    message.push_str(&envs.join(", "));
                }
                Issue::AlwaysErrors | Issue::Shadowed | Issue::Redundant | Issue::NeverFires => {
                    let envs: Vec<String> = i.envs.iter().map(ToString::to_string).collect();
                    message.push_str(&format!(" (in {})", envs.join(", ")));
                }
                Issue::Dead => {}
            }
            let p = Problem::warning(format!("cairn::analyze::{}", i.issue.rule()), message)
                .with_help(format!(
                    "{}; if it is intended, say so on the policy: @{}(\"{}: why\")",
                    help(i.issue),
                    policy_proof::ALLOW_ANNOTATION,
                    i.issue.rule()
                ));
            match loaded.policy(&i.policy) {
                Some(info) => p.at(&info.file, info.span),
                None => p,
            }
        })
        .collect()
}

/// The analysis as problems, or `None` (with a one-line notice) when no solver is found.
pub fn analysis(
    args: &ProofArgs,
    loaded: &LoadedPolicies,
) -> Result<Option<Vec<Problem>>, CliError> {
    let Some(schema) = &loaded.schema else {
        return Ok(Some(Vec::new()));
    };
    let solver = match solver(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("note: proof-based analysis skipped: {e}");
            return Ok(None);
        }
    };
    let issues = prover(args, &solver, loaded)?
        .analyze(&loaded.policy_set, schema)
        .map_err(proof_failed)?;
    Ok(Some(problems(loaded, &issues)))
}

pub fn analyze(args: &AnalyzeArgs) -> CliResult {
    let sources = PolicySources::discover(&args.paths.policies, args.paths.schema.as_deref())?;
    let loaded = load::load_and_validate(&sources)?;
    if loaded.has_errors() || loaded.schema.is_none() {
        emit(args.format, &loaded.problems, "cairn policy analyze");
        return Err(CliError::input(miette::miette!(
            help = "fix them (cairn policy validate): the analysis proves facts about validated policies",
            "the policies do not validate against a schema"
        )));
    }
    let solver = solver(&args.proof).map_err(proof_failed)?;
    let schema = loaded
        .schema
        .as_ref()
        .ok_or_else(|| CliError::input(miette::miette!("the policies have no schema")))?;
    let issues = prover(&args.proof, &solver, &loaded)?
        .analyze(&loaded.policy_set, schema)
        .map_err(proof_failed)?;
    let mut found = problems(&loaded, &issues);
    super::policy::sort_problems(&mut found);
    emit(args.format, &found, "cairn policy analyze");
    if args.format == CheckFormat::Human {
        let acknowledged = issues.iter().filter(|i| i.acknowledged).count();
        outln!(
            "analyzed {} policies in {} request environments with cvc5 {}: {} finding(s){}",
            loaded.policies.len(),
            schema.request_envs().count(),
            solver.version,
            found.len(),
            if acknowledged > 0 {
                format!(
                    ", {acknowledged} acknowledged by @{}",
                    policy_proof::ALLOW_ANNOTATION
                )
            } else {
                String::new()
            }
        );
    }
    Ok(if args.deny_warnings && !found.is_empty() {
        Outcome::CheckFailed
    } else {
        Outcome::Success
    })
}

/// Problems in a check format; every machine format is a document even when empty.
pub fn emit(format: CheckFormat, problems: &[Problem], suite: &str) {
    match format {
        CheckFormat::Human => eprint_problems(problems),
        CheckFormat::Json => outln!("{}", crate::problem_formats::json(problems)),
        CheckFormat::Github => out!("{}", findings::github(&findings::from_problems(problems))),
        CheckFormat::Sarif => outln!("{}", findings::sarif(&findings::from_problems(problems))),
        CheckFormat::Junit => {
            let cases: Vec<findings::Case> = problems
                .iter()
                .map(|p| findings::Case {
                    name: format!("{}: {}", p.position(), p.code),
                    file: p.file_name().map(str::to_owned),
                    line: p.line_col().map(|(l, _)| l),
                    findings: vec![findings::Finding::from(p)],
                    detail: None,
                })
                .collect();
            out!("{}", findings::junit(suite, &cases));
        }
    }
}

/// What `cairn demo` shows of the proof: the analysis of its policies, and the widening a
/// proposed unconstrained permit would bring, caught with a request Cedar confirms. Lines to
/// print; without a solver, one line saying so.
pub fn demo_lines(
    loaded: &LoadedPolicies,
    cache_dir: &std::path::Path,
) -> Result<Vec<String>, CliError> {
    let args = ProofArgs {
        solver: None,
        cache_dir: cache_dir.to_path_buf(),
        no_cache: false,
    };
    let Some(schema) = &loaded.schema else {
        return Ok(Vec::new());
    };
    let solver = match solver(&args) {
        Ok(s) => s,
        Err(e) => {
            return Ok(vec![format!("proof skipped: {e}")]);
        }
    };
    let mut prover = prover(&args, &solver, loaded)?;
    let issues = prover
        .analyze(&loaded.policy_set, schema)
        .map_err(proof_failed)?;
    let open = issues.iter().filter(|i| !i.acknowledged).count();
    let mut lines = vec![format!(
        "proved with cvc5 {}: {} finding(s) from `cairn policy analyze` ({} acknowledged by @{})",
        solver.version,
        open,
        issues.len() - open,
        policy_proof::ALLOW_ANNOTATION
    )];
    // The change under review: the demo's policies plus one unconstrained permit.
    let mut files = loaded.files.clone();
    files.push(policy_engine::SourceFile::new(
        std::path::Path::new("proposed.cedar"),
        "@id(\"temp-debug-access\")\npermit (principal, action, resource);\n",
    ));
    let mut proposed = load::parse(loaded.schema_file.clone(), files);
    load::validate(&mut proposed);
    if proposed.has_errors() {
        eprint_problems(&proposed.problems);
        return Err(CliError::failed(miette::miette!(
            "the demo's proposed change does not validate"
        )));
    }
    let comparison = prover
        .compare(&loaded.policy_set, &proposed.policy_set, schema)
        .map_err(proof_failed)?;
    let widened: Vec<_> = comparison
        .environments
        .iter()
        .filter_map(|e| e.deny_to_allow.as_ref().map(|w| (e, w)))
        .collect();
    lines.push(format!(
        "a proposed `permit (principal, action, resource);` would widen access in {} of {} request environments; `cairn policy diff --fail-on widen` stops it",
        widened.len(),
        comparison.environments.len()
    ));
    if let Some((e, w)) = widened.first() {
        lines.push(format!(
            "  e.g. {}: {} doing {} on {} is {} now and allowed by `{}` after (Cedar confirms both)",
            e.env,
            w.principal,
            w.action,
            w.resource,
            w.base_decision,
            w.head_reasons.join(", ")
        ));
    }
    Ok(lines)
}
