//! `cairn policy diff`: what a policy change does to real decisions. Recorded decisions are
//! replayed under the base policies (a directory, a signed bundle, or the same directory at a
//! git commit) and under the working policies, and every decision that changes is shown,
//! grouped by principal, resource and change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use policy_engine::bundle::{self, keys};
use policy_engine::load::{self, LoadedPolicies, PolicySources};
use policy_engine::replay::{self, Case, Compared, Side};
use serde_json::{Value, json};

use crate::cli::{CheckFormat, DiffArgs};
use crate::exit::{CliError, CliResult, Outcome};
use crate::findings::{self, Finding, Level};
use crate::output::eprint_problems;

fn input_error(message: String, help: &str) -> CliError {
    CliError::input(miette::miette!(help = help.to_string(), "{message}"))
}

/// Extracts `dir` as it was at git commit `rev` into a temporary directory.
fn from_git(rev: &str, dir: &Path) -> Result<(tempfile::TempDir, PathBuf), CliError> {
    let git = |args: &[&str], cwd: &Path| -> Result<Vec<u8>, CliError> {
        let out = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .output()
            .map_err(|e| {
                input_error(
                    format!("cannot run git: {e}"),
                    "install git, or give --base a directory or bundle",
                )
            })?;
        if !out.status.success() {
            return Err(input_error(
                format!(
                    "git {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "--base git:REF needs the policies inside a git work tree and REF to exist (e.g. git:origin/main)",
            ));
        }
        Ok(out.stdout)
    };
    let cwd = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        dir.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let prefix = String::from_utf8_lossy(&git(&["rev-parse", "--show-prefix"], &cwd)?)
        .trim()
        .to_string();
    let root = PathBuf::from(
        String::from_utf8_lossy(&git(&["rev-parse", "--show-toplevel"], &cwd)?).trim(),
    );
    let spec = if prefix.is_empty() {
        ".".to_string()
    } else {
        prefix.clone()
    };
    let tar = git(&["archive", "--format=tar", rev, "--", &spec], &root)?;
    let tmp = tempfile::tempdir().map_err(|e| {
        input_error(
            format!("cannot create a temporary directory: {e}"),
            "check TMPDIR",
        )
    })?;
    tar::Archive::new(std::io::Cursor::new(tar))
        .unpack(tmp.path())
        .map_err(|e| {
            input_error(
                format!("cannot unpack git archive of {rev}: {e}"),
                "check the ref",
            )
        })?;
    let base = tmp.path().join(&prefix);
    Ok((tmp, base))
}

/// The base policies, loaded and validated.
fn load_base(args: &DiffArgs) -> Result<(LoadedPolicies, Option<tempfile::TempDir>), CliError> {
    if let Some(rev) = args.base.strip_prefix("git:") {
        let (tmp, dir) = from_git(rev, &args.paths.policies)?;
        let sources = PolicySources::discover(&dir, None)?;
        return Ok((load::load_and_validate(&sources)?, Some(tmp)));
    }
    let path = PathBuf::from(&args.base);
    if path.is_dir() {
        let sources = PolicySources::discover(&path, None)?;
        return Ok((load::load_and_validate(&sources)?, None));
    }
    let Some(pubkey) = &args.base_pubkey else {
        return Err(input_error(
            format!(
                "`{}` is a bundle file; its signature must be checked",
                path.display()
            ),
            "give --base-pubkey KEY, or --base a policy directory or git:REF",
        ));
    };
    let key = keys::load_verifying_key(pubkey)?;
    let verified = bundle::verify_file(&path, &key).map_err(CliError::failed)?;
    let mut loaded = load::parse(Some(verified.schema), verified.policies);
    load::validate(&mut loaded);
    Ok((loaded, None))
}

/// The decision records of a directory: Cedar's cases, and how many records were skipped.
fn read_cases(dir: &Path) -> Result<(Vec<Case>, usize, usize), CliError> {
    let read_err = |source| {
        CliError::input(policy_engine::PolicyError::Read {
            path: dir.to_path_buf(),
            source,
        })
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let (mut cases, mut skipped, mut unreadable) = (Vec::new(), 0, 0);
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| {
            CliError::input(policy_engine::PolicyError::Read {
                path: f.clone(),
                source,
            })
        })?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(v) if v["kind"] == "decision" => match Case::from_record(&v) {
                    Some(c) => cases.push(c),
                    None => skipped += 1,
                },
                Ok(_) => {}
                Err(_) => unreadable += 1,
            }
        }
    }
    Ok((cases, skipped, unreadable))
}

fn outcome_text(o: &replay::Outcome) -> String {
    match &o.error {
        Some(e) => format!("error: {e}"),
        None if o.decision == "depends" => format!(
            "depends on the arguments (read by {})",
            o.reasons.join(", ")
        ),
        None if o.reasons.is_empty() => format!("{} (no policy)", o.decision),
        None => format!("{} ({})", o.decision, o.reasons.join(", ")),
    }
}

pub fn run(args: &DiffArgs) -> CliResult {
    if let Some(pubkey) = &args.pubkey {
        let key = keys::load_verifying_key(pubkey)?;
        let report =
            decision_record::verify::verify_dir(&args.records, vec![(keys::key_id(&key), key)])
                .map_err(|source| {
                    CliError::input(policy_engine::PolicyError::Read {
                        path: args.records.clone(),
                        source,
                    })
                })?;
        if !report.ok() {
            for e in &report.errors {
                eprintln!("{e}");
            }
            return Err(input_error(
                format!("the records in `{}` do not verify", args.records.display()),
                "replay only records whose chain is intact (cairn audit verify)",
            ));
        }
    }
    let (base, _tmp) = load_base(args)?;
    let head_sources = PolicySources::discover(&args.paths.policies, args.paths.schema.as_deref())?;
    let head = load::load_and_validate(&head_sources)?;
    for (name, loaded) in [("base", &base), ("head", &head)] {
        if loaded.has_errors() {
            eprint_problems(&loaded.problems);
            return Err(CliError::failed(miette::miette!(
                help = "fix the policies (cairn policy validate) before comparing them",
                "the {name} policies have errors"
            )));
        }
    }
    let (Some(base_schema), Some(head_schema)) = (&base.schema, &head.schema) else {
        return Err(input_error(
            "both sides need a schema".into(),
            "put schema.cedarschema beside the policies",
        ));
    };
    let (cases, skipped, unreadable) = read_cases(&args.records)?;
    let compared = replay::compare(
        &Side {
            schema: base_schema,
            policies: &base.policy_set,
        },
        &Side {
            schema: head_schema,
            policies: &head.policy_set,
        },
        &cases,
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &compared {
        *counts.entry(c.change()).or_default() += 1;
    }
    let changed: Vec<&Compared> = compared.iter().filter(|c| c.change() != "same").collect();
    match args.format {
        CheckFormat::Json => outln!(
            "{}",
            json!({
                "base": args.base,
                "head": args.paths.policies,
                "replayed": compared.len(),
                "skipped": skipped,
                "unreadable": unreadable,
                "summary": counts,
                "changes": changed,
            })
        ),
        CheckFormat::Human => print_human(
            args, &base, &head, &compared, &changed, &counts, skipped, unreadable,
        ),
        CheckFormat::Github => out!(
            "{}",
            findings::github(&change_findings(args, &head, &changed))
        ),
        CheckFormat::Sarif => outln!(
            "{}",
            findings::sarif(&change_findings(args, &head, &changed))
        ),
        CheckFormat::Junit => {
            let mut cases: Vec<findings::Case> = change_findings(args, &head, &changed)
                .into_iter()
                .map(|f| findings::Case {
                    name: f.message.clone(),
                    line: f.region.map(|r| r.start.0),
                    file: f.file.clone(),
                    findings: vec![f],
                    detail: None,
                })
                .collect();
            cases.push(findings::Case {
                name: format!("{} recorded decisions unchanged", n_same(&counts)),
                file: None,
                line: None,
                findings: Vec::new(),
                detail: None,
            });
            out!("{}", findings::junit("cairn policy diff", &cases));
        }
    }
    if args.fail_on_change && !changed.is_empty() {
        return Ok(Outcome::CheckFailed);
    }
    Ok(Outcome::Success)
}

fn n_same(counts: &BTreeMap<&str, usize>) -> usize {
    counts.get("same").copied().unwrap_or(0)
}

/// Each group of changed decisions (change, principal, resource) as one finding, located at the
/// head policy that now determines it (or, when none does, the policies' directory): an error
/// with `--fail-on-change`, else a warning.
fn change_findings(args: &DiffArgs, head: &LoadedPolicies, changed: &[&Compared]) -> Vec<Finding> {
    let level = if args.fail_on_change {
        Level::Error
    } else {
        Level::Warning
    };
    let mut groups: BTreeMap<(String, String, String), Vec<&Compared>> = BTreeMap::new();
    for c in changed {
        groups
            .entry((
                c.change().to_string(),
                c.principal.clone(),
                c.resource.clone(),
            ))
            .or_default()
            .push(c);
    }
    groups
        .into_iter()
        .map(|((change, principal, resource), cs)| {
            let last = cs[cs.len() - 1];
            let rule = match change.as_str() {
                "allow→deny" => "cairn::diff::allow-to-deny",
                "deny→allow" => "cairn::diff::deny-to-allow",
                "reasons" => "cairn::diff::reasons",
                "arguments" => "cairn::diff::arguments",
                _ => "cairn::diff::error",
            };
            let message = format!(
                "{} recorded decision(s) change {change}: {principal} -> {resource}; base: {}; head: {}",
                cs.len(),
                outcome_text(&last.base),
                outcome_text(&last.head)
            );
            let f = Finding::new(level, rule, message);
            let at = last
                .head
                .reasons
                .iter()
                .chain(&last.base.reasons)
                .find_map(|id| head.policies.iter().find(|p| &p.id == id));
            match at {
                Some(p) => {
                    let start = p.file.line_col(p.span.offset());
                    let end = p.file.line_col(p.span.offset() + p.span.len());
                    f.at(&p.file.name, Some(findings::Region { start, end }))
                }
                None => f.at(&args.paths.policies.display().to_string(), None),
            }
        })
        .collect()
}

#[expect(
    clippy::too_many_arguments,
    reason = "one report, printed in one place"
)]
fn print_human(
    args: &DiffArgs,
    base: &LoadedPolicies,
    head: &LoadedPolicies,
    compared: &[Compared],
    changed: &[&Compared],
    counts: &BTreeMap<&str, usize>,
    skipped: usize,
    unreadable: usize,
) {
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    outln!(
        "replayed {} recorded decisions from {} ({skipped} records skipped: Cedar did not decide them{})",
        compared.len(),
        args.records.display(),
        if unreadable > 0 {
            format!("; {unreadable} unreadable lines")
        } else {
            String::new()
        }
    );
    outln!("  base  {}  ({} policies)", args.base, base.policies.len());
    outln!(
        "  head  {}  ({} policies)",
        args.paths.policies.display(),
        head.policies.len()
    );
    outln!(
        "  {} changed: {} allow→deny, {} deny→allow, {} decided by other policies, {} now or before depending on arguments the records keep only as hashes, {} could not be decided; {} unchanged",
        changed.len(),
        n("allow→deny"),
        n("deny→allow"),
        n("reasons"),
        n("arguments"),
        n("error"),
        n("same")
    );
    if changed.is_empty() {
        return;
    }
    // (change, principal, resource, base, head) -> (count, latest timestamp)
    type Group = (String, String, String, String, String);
    let mut groups: BTreeMap<Group, (usize, String)> = BTreeMap::new();
    for c in changed {
        let key = (
            c.change().to_string(),
            c.principal.clone(),
            c.resource.clone(),
            outcome_text(&c.base),
            outcome_text(&c.head),
        );
        let e = groups.entry(key).or_insert((0, c.ts.clone()));
        e.0 += 1;
        if c.ts > e.1 {
            e.1 = c.ts.clone();
        }
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    let shown = if args.limit == 0 {
        rows.len()
    } else {
        args.limit.min(rows.len())
    };
    outln!();
    for ((change, principal, resource, before, after), (count, last)) in &rows[..shown] {
        outln!("  {change:<11} {count:>5}x  {principal} -> {resource}  (last {last})");
        outln!("              base: {before}");
        outln!("              head: {after}");
    }
    if shown < rows.len() {
        outln!(
            "  ... and {} more groups (--limit 0 lists all, --format json gives every decision)",
            rows.len() - shown
        );
    }
}
