//! `cairn policy validate | fmt | test | authorize | bundle | verify`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use policy_engine::bundle::{self, BundleMeta, keys};
use policy_engine::load::{self, LoadedPolicies, PolicySources};
use policy_engine::policy_tests::{self, CaseStatus, TestRun};
use policy_engine::{PolicyError, Problem, authorize, format};

use crate::cli::{
    AuthorizeArgs, BundleArgs, CheckFormat, FmtArgs, OutputFormat, PolicyCommand, TestArgs,
    ValidateArgs, VerifyArgs,
};
use crate::exit::{CliError, CliResult, Outcome};
use crate::findings;
use crate::output::eprint_problems;
use crate::problem_formats;

pub fn run(cmd: PolicyCommand) -> CliResult {
    match cmd {
        PolicyCommand::Validate(a) => validate(&a),
        PolicyCommand::Fmt(a) => fmt(&a),
        PolicyCommand::Test(a) => test(&a),
        PolicyCommand::Authorize(a) => authorize_cmd(&a),
        PolicyCommand::Bundle(a) => bundle_cmd(&a),
        PolicyCommand::Verify(a) => verify(&a),
        PolicyCommand::Diff(a) => super::policy_diff::run(&a),
        PolicyCommand::Analyze(a) => super::policy_proof::analyze(&a),
    }
}

/// The tests path to use: the one given, or `tests/` beside the policies when it exists.
fn tests_path(given: Option<&Path>, sources: &PolicySources) -> Option<PathBuf> {
    given
        .map(Path::to_path_buf)
        .or_else(|| Some(sources.tests_dir()).filter(|p| p.exists()))
}

/// Everything `validate` checks, as one problem list.
pub fn check_all(
    sources: &PolicySources,
    tests: Option<&Path>,
) -> Result<(LoadedPolicies, Vec<Problem>), CliError> {
    let loaded = load::load_and_validate(sources)?;
    let mut problems = loaded.problems.clone();
    if let Some(tests) = tests_path(tests, sources) {
        let files = policy_tests::discover(&tests)?;
        let suites = policy_tests::load(&files, loaded.schema.as_ref())?;
        problems.extend(suites.problems);
    }
    let entities_dir = sources.root.join("entities");
    if let Ok(entries) = std::fs::read_dir(&entities_dir) {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            if let Err(p) = authorize::read_entities(&f, loaded.schema.as_ref()) {
                problems.push(p);
            }
        }
    }
    sort_problems(&mut problems);
    Ok((loaded, problems))
}

/// By file, then position, errors before warnings at the same place.
pub fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by(|a, b| {
        let key = |p: &Problem| {
            (
                p.file_name().map(str::to_string),
                p.location.as_ref().and_then(|l| l.span).map(|s| s.offset()),
                std::cmp::Reverse(p.severity),
            )
        };
        key(a).cmp(&key(b))
    });
}

fn validate(args: &ValidateArgs) -> CliResult {
    let sources = PolicySources::discover(&args.paths.policies, args.paths.schema.as_deref())?;
    let (loaded, mut problems) = check_all(&sources, args.tests.as_deref())?;
    if !args.no_analyze
        && !loaded.has_errors()
        && let Some(found) = super::policy_proof::analysis(&args.proof, &loaded)?
    {
        problems.extend(found);
        sort_problems(&mut problems);
    }
    let (errors, warnings) = policy_engine::summary(&problems);
    match args.format {
        CheckFormat::Human => {
            eprint_problems(&problems);
            if errors == 0 {
                outln!(
                    "ok: {} policies in {} file(s) valid against {}{}",
                    loaded.policies.len(),
                    loaded.files.len(),
                    sources
                        .schema
                        .as_ref()
                        .map_or_else(|| "(no schema)".into(), |p| p.display().to_string()),
                    if warnings > 0 {
                        format!(", {warnings} warning(s)")
                    } else {
                        String::new()
                    }
                );
            } else {
                eprintln!("{errors} error(s), {warnings} warning(s)");
            }
        }
        CheckFormat::Json => outln!("{}", problem_formats::json(&problems)),
        CheckFormat::Github => out!("{}", findings::github(&findings::from_problems(&problems))),
        CheckFormat::Sarif => outln!("{}", findings::sarif(&findings::from_problems(&problems))),
        CheckFormat::Junit => {
            // A case per file checked; problems with no file are a case of their own.
            let mut names: Vec<String> = loaded.files.iter().map(|f| f.name.to_string()).collect();
            names.extend(loaded.schema_file.iter().map(|f| f.name.to_string()));
            for p in &problems {
                let n = p.file_name().unwrap_or("(policies)").to_string();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            let cases: Vec<findings::Case> = names
                .into_iter()
                .map(|name| findings::Case {
                    findings: problems
                        .iter()
                        .filter(|p| p.file_name().unwrap_or("(policies)") == name)
                        .map(findings::Finding::from)
                        .collect(),
                    // Problems of no file are a case of their own, with no file to name.
                    file: (name != "(policies)").then(|| name.clone()),
                    name,
                    line: None,
                    detail: None,
                })
                .collect();
            out!("{}", findings::junit("cairn policy validate", &cases));
        }
    }
    Ok(if errors > 0 || (args.deny_warnings && warnings > 0) {
        Outcome::CheckFailed
    } else {
        Outcome::Success
    })
}

fn fmt(args: &FmtArgs) -> CliResult {
    let sources = PolicySources::discover(&args.policies, None)?;
    let mut files = Vec::new();
    for p in &sources.policies {
        let text = std::fs::read_to_string(p).map_err(|source| PolicyError::Read {
            path: p.clone(),
            source,
        })?;
        files.push(policy_engine::SourceFile::new(p, text));
    }
    let (changed, problems) = format::format_files(&files);
    if !problems.is_empty() {
        eprint_problems(&problems);
        return Ok(Outcome::CheckFailed);
    }
    if !args.check {
        for c in &changed {
            write_atomically(Path::new(&*c.file.name), c.formatted.as_bytes())?;
        }
    }
    let would_change = args.check && !changed.is_empty();
    let level = if args.check {
        findings::Level::Error
    } else {
        findings::Level::Note
    };
    let unformatted = |c: &format::Reformatted| {
        let (line, text) = c
            .file
            .text
            .lines()
            .zip(c.formatted.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map_or_else(
                // The lines agree as far as both go: the difference is in the lines one has
                // beyond the other, or in line endings; name the last line the file has.
                || {
                    let n = c.file.text.lines().count().min(c.formatted.lines().count());
                    let last = c.file.text.lines().count().max(1).min(n + 1);
                    (last, c.file.text.lines().nth(last - 1).unwrap_or(""))
                },
                |(i, (a, _))| (i + 1, a),
            );
        let verb = if args.check { "is not" } else { "was not" };
        findings::Finding::new(
            level,
            "cairn::fmt::unformatted",
            format!(
                "{verb} formatted as `cairn policy fmt` formats it; the first difference is at line {line}"
            ),
        )
        .at_line(&c.file.name, line, text)
    };
    let file_findings: Vec<findings::Finding> = changed.iter().map(unformatted).collect();
    match args.format {
        CheckFormat::Github => out!("{}", findings::github(&file_findings)),
        CheckFormat::Sarif => outln!("{}", findings::sarif(&file_findings)),
        CheckFormat::Junit => {
            let cases: Vec<findings::Case> = files
                .iter()
                .map(|f| {
                    let c = changed.iter().find(|c| c.file.name == f.name);
                    findings::Case {
                        name: f.name.to_string(),
                        file: Some(f.name.to_string()),
                        line: None,
                        findings: c.map(unformatted).into_iter().collect(),
                        detail: c.map(|c| c.diff()),
                    }
                })
                .collect();
            out!("{}", findings::junit("cairn policy fmt", &cases));
        }
        CheckFormat::Human | CheckFormat::Json => {}
    }
    if args.format == CheckFormat::Json {
        let report = serde_json::json!({
            "check": args.check,
            "files": files.iter().map(|f| {
                let c = changed.iter().find(|c| c.file.name == f.name);
                serde_json::json!({
                    "file": &*f.name,
                    "changed": c.is_some(),
                    "diff": c.map(|c| c.diff()),
                })
            }).collect::<Vec<_>>(),
            "changed": changed.len(),
        });
        outln!("{report}");
    } else if args.check {
        for c in &changed {
            if args.format == CheckFormat::Human {
                out!("{}", c.diff());
            }
        }
        if changed.is_empty() {
            eprintln!("{} file(s) already formatted", files.len());
        } else {
            eprintln!(
                "{} of {} file(s) would be reformatted; run `cairn policy fmt`",
                changed.len(),
                files.len()
            );
        }
    } else {
        for c in &changed {
            eprintln!("formatted {}", c.file.name);
        }
        eprintln!(
            "{} file(s) formatted, {} unchanged",
            changed.len(),
            files.len() - changed.len()
        );
    }
    Ok(if would_change {
        Outcome::CheckFailed
    } else {
        Outcome::Success
    })
}

/// Writes through a temporary file in the same directory and renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        CliError::input(PolicyError::Write {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// What must be clean before the tests run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// The policies parse and validate.
    Policies,
    /// Everything `cairn policy validate` checks (suites and shared entity files too): what
    /// must hold before anything is signed.
    Validate,
}

/// Loads, validates and runs the tests; prints the problems when there are errors.
/// With a machine `format`, policies that do not validate still give a document on stdout
/// reporting why, so a pipeline reading it sees the failure.
fn run_tests(
    paths: &crate::cli::PolicyPaths,
    tests: Option<&Path>,
    gate: Gate,
    format: CheckFormat,
) -> Result<Result<(LoadedPolicies, TestRun, PolicySources), Outcome>, CliError> {
    let sources = PolicySources::discover(&paths.policies, paths.schema.as_deref())?;
    let (loaded, problems) = match gate {
        Gate::Validate => check_all(&sources, tests)?,
        Gate::Policies => {
            let loaded = load::load_and_validate(&sources)?;
            let problems = loaded.problems.clone();
            (loaded, problems)
        }
    };
    if problems.iter().any(Problem::is_error) {
        if format == CheckFormat::Human {
            eprint_problems(&problems);
        } else {
            super::policy_proof::emit(format, &problems, "cairn policy test");
        }
        eprintln!("the policies have errors; fix them first (see `cairn policy validate`)");
        return Ok(Err(Outcome::CheckFailed));
    }
    let Some(tests) = tests_path(tests, &sources) else {
        return Err(CliError::failed(miette::miette!(
            code = "cairn::no-tests",
            help = "write suites in `tests/` beside the policies (see policies/README.md) or pass --tests PATH",
            "no policy tests found at `{}`",
            sources.tests_dir().display()
        )));
    };
    let files = policy_tests::discover(&tests)?;
    let suites = policy_tests::load(&files, loaded.schema.as_ref())?;
    let run = policy_tests::run(&loaded, &suites);
    Ok(Ok((loaded, run, sources)))
}

fn test(args: &TestArgs) -> CliResult {
    let (_loaded, run, _) = match run_tests(
        &args.paths,
        args.tests.as_deref(),
        Gate::Policies,
        args.format,
    )? {
        Ok(r) => r,
        Err(outcome) => return Ok(outcome),
    };
    match args.format {
        CheckFormat::Human => print_human(&run),
        CheckFormat::Json => outln!("{}", policy_tests::report::json(&run)),
        CheckFormat::Junit => {
            out!("{}", policy_tests::report::junit(&run));
            eprintln!("{} passed, {} failed", run.passed, run.failed);
        }
        CheckFormat::Github => out!("{}", policy_tests::report::github(&run)),
        CheckFormat::Sarif => outln!("{}", findings::sarif(&test_findings(&run))),
    }
    let coverage_ok = match args.min_coverage {
        Some(min) if run.coverage.percent() + 1e-9 < min => {
            eprintln!(
                "coverage {:.1}% is below the required {min:.1}%",
                run.coverage.percent()
            );
            false
        }
        _ => true,
    };
    Ok(if run.ok() && coverage_ok {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

/// A failed case at its line in the suite; an uncovered policy, as a note at the policy.
fn test_findings(run: &TestRun) -> Vec<findings::Finding> {
    // Each file read once, however many findings it has.
    let mut texts: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut line_text = |file: &str, line: usize| {
        let text = texts
            .entry(file.to_string())
            .or_insert_with(|| std::fs::read_to_string(file).unwrap_or_default());
        text.lines()
            .nth(line.saturating_sub(1))
            .unwrap_or_default()
            .to_string()
    };
    let mut out: Vec<findings::Finding> = run
        .outcomes
        .iter()
        .filter(|o| o.status != policy_tests::CaseStatus::Passed)
        .map(|o| {
            findings::Finding::new(
                findings::Level::Error,
                "cairn::test::failed",
                format!("policy test `{}`: {}", o.name, o.mismatches.join("; ")),
            )
            .at_line(&o.file, o.line, &line_text(&o.file, o.line))
        })
        .collect();
    for (id, at) in &run.coverage.uncovered {
        let (file, line, col) = policy_tests::report::file_line_col(at);
        let text = line_text(file, line);
        let end = text.chars().count() + 1;
        out.push(
            findings::Finding::new(
                findings::Level::Note,
                "cairn::test::uncovered",
                format!("policy `{id}` determined no decision in any test"),
            )
            .at(
                file,
                Some(findings::Region {
                    start: (line, col),
                    end: (line, end.max(col + 1)),
                }),
            ),
        );
    }
    out
}

fn print_human(run: &TestRun) {
    let mut current = "";
    for o in &run.outcomes {
        if o.file != current {
            outln!("{}", o.file);
            current = &o.file;
        }
        match o.status {
            CaseStatus::Passed => outln!("  ok    {}", o.name),
            CaseStatus::Failed | CaseStatus::Invalid => {
                let tag = if o.status == CaseStatus::Invalid {
                    "INVALID"
                } else {
                    "FAIL "
                };
                outln!("  {tag} {}:{}  {}", o.file, o.line, o.name);
                for m in &o.mismatches {
                    outln!("        {m}");
                }
                if o.status == CaseStatus::Failed {
                    outln!(
                        "        decision {} (expected {}), determined by [{}]",
                        o.actual.unwrap_or("-"),
                        o.expected.unwrap_or("-"),
                        o.reasons.join(", ")
                    );
                }
            }
        }
    }
    let c = &run.coverage;
    outln!(
        "coverage: {}/{} policies ({:.1}%) determined a decision in some test",
        c.covered,
        c.policies,
        c.percent()
    );
    if !c.uncovered.is_empty() {
        outln!("policies no test exercised:");
        for (id, at) in &c.uncovered {
            outln!("  {id}  ({at})");
        }
    }
    outln!("{} passed, {} failed", run.passed, run.failed);
}

fn authorize_cmd(args: &AuthorizeArgs) -> CliResult {
    // Cedar CLI exit codes: 0 ALLOW, 2 DENY, 1 any error.
    let fail = |problems: Vec<Problem>| {
        eprint_problems(&problems);
        Ok(Outcome::Code(1))
    };
    let sources = match PolicySources::discover(&args.policies, args.schema.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            crate::output::print_report(&miette::Report::new(e));
            return Ok(Outcome::Code(1));
        }
    };
    let loaded = match load::load(&sources) {
        Ok(l) => l,
        Err(e) => {
            crate::output::print_report(&miette::Report::new(e));
            return Ok(Outcome::Code(1));
        }
    };
    // Like the Cedar CLI, deciding needs parseable policies, not `@id`s or a schema; but a
    // schema the user named must exist.
    let schema_optional = args.schema.is_none();
    let blocking: Vec<Problem> = loaded
        .problems
        .iter()
        .filter(|p| {
            p.is_error()
                && !(matches!(p.code.as_str(), "cairn::missing-id" | "cairn::duplicate-id")
                    || (schema_optional && p.code == "cairn::schema-missing"))
        })
        .cloned()
        .collect();
    if !blocking.is_empty() {
        return fail(blocking);
    }
    let stdin_inputs = [
        Some(&args.entities),
        args.context.as_ref(),
        args.request_json.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter(|p| p.as_os_str() == "-")
    .count();
    if stdin_inputs > 1 {
        return fail(vec![
            Problem::error(
                "cairn::usage",
                "standard input (`-`) can feed only one of --entities, --context and --request-json",
            )
            .with_help("write the others to files"),
        ]);
    }
    let schema = loaded.schema.as_ref();
    let spec = match &args.request_json {
        Some(path) => match authorize::read_request_json(path) {
            Ok(s) => s,
            Err(p) => return fail(vec![p]),
        },
        None => {
            let context = match &args.context {
                Some(path) => match authorize::read_context(path) {
                    Ok(c) => c,
                    Err(p) => return fail(vec![p]),
                },
                None => serde_json::json!({}),
            };
            authorize::RequestSpec {
                principal: args.principal.clone().unwrap_or_default(),
                action: args.action.clone().unwrap_or_default(),
                resource: args.resource.clone().unwrap_or_default(),
                context,
            }
        }
    };
    let entities = match authorize::read_entities(&args.entities, schema) {
        Ok(e) => e,
        Err(p) => return fail(vec![p]),
    };
    let request = match authorize::build_request(&spec, schema) {
        Ok(r) => r,
        Err(p) => return fail(vec![p]),
    };
    let response = cedar_policy_authorizer().is_authorized(&request, &loaded.policy_set, &entities);
    if args.format == OutputFormat::Json {
        let allow = response.decision() == policy_engine::cedar_policy::Decision::Allow;
        outln!(
            "{}",
            serde_json::json!({
                "decision": if allow { "ALLOW" } else { "DENY" },
                "reasons": response.diagnostics().reason().map(ToString::to_string).collect::<Vec<_>>(),
                "errors": response.diagnostics().errors().map(ToString::to_string).collect::<Vec<_>>(),
            })
        );
        return Ok(Outcome::Code(if allow { 0 } else { 2 }));
    }
    outln!();
    let code = match response.decision() {
        policy_engine::cedar_policy::Decision::Allow => {
            outln!("ALLOW");
            0
        }
        policy_engine::cedar_policy::Decision::Deny => {
            outln!("DENY");
            2
        }
    };
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(ToString::to_string)
        .collect();
    if !errors.is_empty() {
        outln!();
        for e in errors {
            outln!("{e}");
        }
    }
    let reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    outln!();
    if reasons.is_empty() {
        if args.verbose || code == 2 {
            outln!("note: no policies applied to this request");
        }
    } else {
        outln!("note: this decision was due to the following policies:");
        for r in reasons {
            outln!("  {r}");
        }
        outln!();
    }
    Ok(Outcome::Code(code))
}

fn cedar_policy_authorizer() -> policy_engine::cedar_policy::Authorizer {
    policy_engine::cedar_policy::Authorizer::new()
}

/// What the manifest says of where a bundle came from, where the caller knows better than git.
#[derive(Debug, Default, Clone, Copy)]
pub struct Provenance<'a> {
    pub version: Option<&'a str>,
    pub created: Option<&'a str>,
    pub source_repository: Option<&'a str>,
}

/// Builds a bundle file from a policy directory: validate, test, sign, write, re-verify.
pub fn build_bundle(
    paths: &crate::cli::PolicyPaths,
    tests: Option<&Path>,
    key_path: &Path,
    out: &Path,
    provenance: Provenance<'_>,
    explain_time: bool,
) -> Result<Result<bundle::VerifiedBundle, Outcome>, CliError> {
    let Provenance {
        version,
        created,
        source_repository,
    } = provenance;
    let (loaded, run, sources) = match run_tests(paths, tests, Gate::Validate, CheckFormat::Human)?
    {
        Ok(r) => r,
        Err(o) => return Ok(Err(o)),
    };
    if !run.ok() {
        for o in run
            .outcomes
            .iter()
            .filter(|o| o.status != CaseStatus::Passed)
        {
            eprintln!("  FAIL {}:{}  {}", o.file, o.line, o.name);
            for m in &o.mismatches {
                eprintln!("        {m}");
            }
        }
        eprintln!("{} passed, {} failed", run.passed, run.failed);
        return Err(CliError::failed(bundle::BundleError::NotReviewed {
            reason: format!("{} policy test(s) failed", run.failed),
        }));
    }
    let key = keys::load_signing_key(key_path)?;
    let mut inputs: Vec<PathBuf> = sources.policies.clone();
    inputs.extend(sources.schema.clone());
    let mut meta = source_meta(&sources.root, version, created, &inputs, explain_time)?;
    if let Some(url) = source_repository {
        meta.source_repository = Some(without_credentials(url));
    }
    let bytes = bundle::create(&loaded, Some(&run), &meta, &key).map_err(CliError::failed)?;
    write_atomically(out, &bytes)?;
    let verified = bundle::verify(&bytes, &key.verifying_key()).map_err(CliError::failed)?;
    Ok(Ok(verified))
}

fn bundle_cmd(args: &BundleArgs) -> CliResult {
    let verified = match build_bundle(
        &args.paths,
        args.tests.as_deref(),
        &args.key,
        &args.out,
        Provenance {
            version: args.bundle_version.as_deref(),
            created: args.created.as_deref(),
            source_repository: args.source_repository.as_deref(),
        },
        true,
    )? {
        Ok(v) => v,
        Err(o) => return Ok(o),
    };
    let m = &verified.manifest;
    if args.format == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::json!({
                "out": args.out.display().to_string(),
                "digest": verified.digest,
                "key_id": verified.key_id,
                "manifest": m,
            })
        );
        return Ok(Outcome::Success);
    }
    outln!("wrote {}", args.out.display());
    outln!("  digest:   {}", verified.digest);
    outln!(
        "  version:  {} (commit {}, created {})",
        m.version,
        m.source_commit,
        m.created
    );
    if let Some(repo) = &m.source_repository {
        outln!("  from:     {repo}");
    }
    outln!(
        "  contents: {} policies in {} file(s) and the schema",
        m.policies.len(),
        m.files.len() - 1
    );
    if let Some(t) = &m.tests {
        outln!(
            "  tests:    {}/{} passed, {}% policy coverage",
            t.passed,
            t.cases,
            t.coverage_percent
        );
    }
    outln!("  signed:   {}", verified.key_id);
    Ok(Outcome::Success)
}

fn verify(args: &VerifyArgs) -> CliResult {
    let key = keys::load_verifying_key(&args.pubkey)?;
    let name = args.bundle.display().to_string();
    let result = bundle::verify_file(&args.bundle, &key);
    let failure = match &result {
        Err(e @ PolicyError::Bundle { .. }) => Some(
            findings::Finding::new(findings::Level::Error, "cairn::bundle", e.to_string())
                .at(&name, None),
        ),
        _ => None,
    };
    // A key or file that cannot be read is an input error, reported on stderr: no report that
    // a CI could take for a clean one.
    let checked = result.is_ok() || failure.is_some();
    match args.format {
        _ if !checked => {}
        CheckFormat::Github => out!("{}", findings::github(failure.as_slice())),
        CheckFormat::Sarif => outln!("{}", findings::sarif(failure.as_slice())),
        CheckFormat::Junit => out!(
            "{}",
            findings::junit(
                "cairn policy verify",
                &[findings::Case {
                    name: name.clone(),
                    file: Some(name.clone()),
                    line: None,
                    findings: failure.iter().cloned().collect(),
                    detail: None,
                }],
            )
        ),
        CheckFormat::Human | CheckFormat::Json => {}
    }
    match result {
        Ok(v) => {
            match args.format {
                CheckFormat::Human => {
                    outln!("ok: {} verifies", args.bundle.display());
                    outln!("  digest:   {}", v.digest);
                    outln!("  signed:   {}", v.key_id);
                    outln!(
                        "  version:  {} (commit {}, created {})",
                        v.manifest.version,
                        v.manifest.source_commit,
                        v.manifest.created
                    );
                    outln!(
                        "  contents: {} policies, {} files",
                        v.manifest.policies.len(),
                        v.manifest.files.len()
                    );
                }
                CheckFormat::Json => outln!(
                    "{}",
                    serde_json::json!({
                        "ok": true,
                        "digest": v.digest,
                        "key_id": v.key_id,
                        "manifest": v.manifest,
                    })
                ),
                _ => {}
            }
            Ok(Outcome::Success)
        }
        Err(e @ PolicyError::Bundle { .. }) => {
            if args.format == CheckFormat::Json {
                outln!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string()})
                );
            }
            Err(CliError::failed(e))
        }
        Err(e) => Err(CliError::input(e)),
    }
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Source commit, version and creation time, chosen so that the same inputs give the same bundle.
fn source_meta(
    root: &Path,
    version: Option<&str>,
    created: Option<&str>,
    inputs: &[PathBuf],
    explain_time: bool,
) -> Result<BundleMeta, CliError> {
    let commit = git(root, &["rev-parse", "HEAD"]).filter(|c| !c.is_empty());
    let dirty = git(root, &["status", "--porcelain", "--", "."]).is_some_and(|s| !s.is_empty());
    let source_commit = match &commit {
        Some(c) if dirty => format!("{c}-dirty"),
        Some(c) => c.clone(),
        None => "unknown".into(),
    };
    let created = if let Some(text) = created {
        DateTime::parse_from_rfc3339(text)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| {
                CliError::input(miette::miette!(
                    help = "write it like 2026-11-25T12:00:00Z",
                    "--created `{text}` is not an RFC 3339 time: {e}"
                ))
            })?
    } else if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
    {
        Utc.timestamp_opt(epoch, 0).single().unwrap_or_default()
    } else if let Some(ts) = commit
        .as_ref()
        .filter(|_| !dirty)
        .and_then(|_| git(root, &["log", "-1", "--format=%ct"]))
        .and_then(|s| s.parse::<i64>().ok())
    {
        Utc.timestamp_opt(ts, 0).single().unwrap_or_default()
    } else {
        if explain_time {
            eprintln!(
                "note: the bundle's creation time is the newest input file's modification time; a copy \
             of these files made later packs a different bundle. For reproducible bundles pass \
             --created or set SOURCE_DATE_EPOCH (or pack from a clean git checkout)."
            );
        }
        let newest = inputs
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok()?.modified().ok())
            .max();
        newest
            .map(DateTime::<Utc>::from)
            .map(|d| Utc.timestamp_opt(d.timestamp(), 0).single().unwrap_or(d))
            .unwrap_or_default()
    };
    let version = version
        .map(str::to_string)
        .unwrap_or_else(|| match &commit {
            Some(c) => {
                let short: String = c.chars().take(12).collect();
                if dirty {
                    format!("{short}-dirty")
                } else {
                    short
                }
            }
            None => "dev".into(),
        });
    // The repository is recorded only when given (--source-repository): a manifest with it is
    // refused by verifiers older than the field, and a clone's remote URL varies by clone.
    Ok(BundleMeta {
        version,
        source_commit,
        source_repository: None,
        created,
    })
}

/// A repository URL without the user name or token a clone URL may carry
/// (`https://user:token@host/repo` becomes `https://host/repo`): the manifest is public.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn repository_urls_lose_their_credentials() {
        assert_eq!(
            without_credentials("https://x-access-token:ghs_abc@github.com/acme/policies.git"),
            "https://github.com/acme/policies.git"
        );
        assert_eq!(
            without_credentials("https://github.com/acme/policies"),
            "https://github.com/acme/policies"
        );
        assert_eq!(
            without_credentials("git@github.com:acme/policies.git"),
            "git@github.com:acme/policies.git"
        );
        assert_eq!(
            without_credentials("file:///srv/git/p"),
            "file:///srv/git/p"
        );
    }
}
