//! `cairn policy diff`: what a policy change can do and what it does. The base policies (a
//! directory, a signed bundle, or the same directory at a git commit) and the working ones are
//! compared symbolically in every request environment of the schema, each difference shown by
//! a concrete request Cedar confirms; and recorded decisions are replayed under both, every
//! decision that changes shown, grouped by principal, resource and change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use policy_engine::bundle::{self, keys};
use policy_engine::load::{self, LoadedPolicies, PolicySources};
use policy_engine::replay::{self, Case, Compared, Side};
use policy_proof::{Comparison, SolverCommand};
use serde_json::Value;

use crate::cli::{CheckFormat, DiffArgs, DiffFormat, FailOn};
use crate::exit::{CliError, CliResult, Outcome};
use crate::findings;
use crate::output::eprint_problems;

mod report;
mod witness_text;

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

/// The replayed records: every case compared, and what could not be replayed.
pub(super) struct Replay {
    pub dir: PathBuf,
    pub compared: Vec<Compared>,
    pub skipped: usize,
    pub unreadable: usize,
}

impl Replay {
    pub fn changed(&self) -> Vec<&Compared> {
        self.compared
            .iter()
            .filter(|c| c.change() != "same")
            .collect()
    }

    /// Changes by kind, keyed by plain identifiers (`allow_to_deny`, ...).
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for c in &self.compared {
            *counts.entry(plain(c.change())).or_default() += 1;
        }
        counts
    }
}

/// A change kind as an identifier for machine formats.
pub(super) fn plain(change: &str) -> &'static str {
    match change {
        "allow→deny" => "allow_to_deny",
        "deny→allow" => "deny_to_allow",
        "reasons" => "reasons",
        "arguments" => "arguments",
        "error" => "error",
        _ => "same",
    }
}

/// The proof's result with the solver that gave it.
pub(super) struct Proof {
    pub solver: SolverCommand,
    pub comparison: Comparison,
}

/// Everything one run found, for every output format.
pub(super) struct Diff<'a> {
    pub args: &'a DiffArgs,
    pub base: &'a LoadedPolicies,
    pub head: &'a LoadedPolicies,
    pub proof: Option<Proof>,
    pub replay: Option<Replay>,
}

impl Diff<'_> {
    pub fn widens(&self) -> bool {
        self.proof.as_ref().is_some_and(|p| p.comparison.widens())
            || self
                .replay
                .as_ref()
                .is_some_and(|r| r.compared.iter().any(|c| c.change() == "deny→allow"))
    }

    pub fn narrows(&self) -> bool {
        self.proof.as_ref().is_some_and(|p| p.comparison.narrows())
            || self
                .replay
                .as_ref()
                .is_some_and(|r| r.compared.iter().any(|c| c.change() == "allow→deny"))
    }

    pub fn changes(&self) -> bool {
        self.proof
            .as_ref()
            .is_some_and(|p| p.comparison.changed().next().is_some())
            || self
                .replay
                .as_ref()
                .is_some_and(|r| !r.changed().is_empty())
    }

    /// Whether a finding of this kind fails the run (and so is an error, not a warning).
    pub fn fails_on(&self, change: &str) -> bool {
        match self.args.fail_on() {
            None => false,
            Some(FailOn::Change) => true,
            Some(FailOn::Widen) => change == "deny→allow",
            Some(FailOn::Narrow) => change == "allow→deny",
        }
    }

    fn failed(&self) -> bool {
        match self.args.fail_on() {
            None => false,
            Some(FailOn::Widen) => self.widens(),
            Some(FailOn::Narrow) => self.narrows(),
            Some(FailOn::Change) => self.changes(),
        }
    }
}

fn verify_records(dir: &Path, pubkey: &Path) -> Result<(), CliError> {
    let key = keys::load_verifying_key(pubkey)?;
    let report = decision_record::verify::verify_dir(dir, vec![(keys::key_id(&key), key)])
        .map_err(|source| {
            CliError::input(policy_engine::PolicyError::Read {
                path: dir.to_path_buf(),
                source,
            })
        })?;
    if !report.ok() {
        for e in &report.errors {
            eprintln!("{e}");
        }
        return Err(input_error(
            format!("the records in `{}` do not verify", dir.display()),
            "replay only records whose chain is intact (cairn audit verify)",
        ));
    }
    Ok(())
}

/// The policies do not validate: in a machine format the report is still a document, naming
/// the failure, so a pipeline reading it sees why.
fn invalid(args: &DiffArgs, side: &str, loaded: &LoadedPolicies) -> CliError {
    let problems: Vec<_> = loaded
        .problems
        .iter()
        .filter(|p| p.is_error())
        .cloned()
        .collect();
    let check = match args.format {
        DiffFormat::Human => None,
        DiffFormat::Json => Some(CheckFormat::Json),
        DiffFormat::Github => Some(CheckFormat::Github),
        DiffFormat::Sarif => Some(CheckFormat::Sarif),
        DiffFormat::Junit => Some(CheckFormat::Junit),
        DiffFormat::Markdown => {
            outln!("{}", report::markdown_invalid(side, &problems));
            None
        }
    };
    match check {
        Some(format) => super::policy_proof::emit(format, &problems, "cairn policy diff"),
        None if args.format == DiffFormat::Human => eprint_problems(&problems),
        None => {}
    }
    input_error(
        format!("the {side} policies do not validate"),
        "fix the policies (cairn policy validate) before comparing them",
    )
}

pub fn run(args: &DiffArgs) -> CliResult {
    if let (Some(dir), Some(pubkey)) = (&args.records, &args.pubkey) {
        verify_records(dir, pubkey)?;
    }
    let (base, _tmp) = load_base(args)?;
    let head_sources = PolicySources::discover(&args.paths.policies, args.paths.schema.as_deref())?;
    let head = load::load_and_validate(&head_sources)?;
    for (side, loaded) in [("base", &base), ("head", &head)] {
        if loaded.has_errors() {
            return Err(invalid(args, side, loaded));
        }
    }
    let (Some(base_schema), Some(head_schema)) = (&base.schema, &head.schema) else {
        return Err(input_error(
            "both sides need a schema".into(),
            "put schema.cedarschema beside the policies",
        ));
    };
    let proof = if args.no_prove {
        None
    } else {
        match super::policy_proof::solver(&args.proof) {
            Ok(solver) => {
                // One schema for both sides: the head's. Base policies that no longer
                // typecheck under it are named by the compile error.
                let comparison = super::policy_proof::prover(&args.proof, &solver, &head)?
                    .compare(&base.policy_set, &head.policy_set, head_schema)
                    .map_err(super::policy_proof::proof_failed)?;
                Some(Proof { solver, comparison })
            }
            Err(e) if args.prove => return Err(super::policy_proof::proof_failed(e)),
            Err(e) => {
                eprintln!("note: no proof, replay only: {e}");
                None
            }
        }
    };
    let replay = match &args.records {
        Some(dir) => {
            let (cases, skipped, unreadable) = read_cases(dir)?;
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
            Some(Replay {
                dir: dir.clone(),
                compared,
                skipped,
                unreadable,
            })
        }
        None => None,
    };
    if proof.is_none() && replay.is_none() {
        return Err(input_error(
            "nothing to compare: no solver for the proof and no --records to replay".into(),
            "install cvc5 (see docs/policy-diff.md) or give --records DIR",
        ));
    }
    let diff = Diff {
        args,
        base: &base,
        head: &head,
        proof,
        replay,
    };
    match args.format {
        DiffFormat::Human => out!("{}", report::human(&diff)),
        DiffFormat::Markdown => out!("{}", report::markdown(&diff)),
        DiffFormat::Json => outln!("{}", report::json(&diff)),
        DiffFormat::Github => out!("{}", findings::github(&report::findings(&diff))),
        DiffFormat::Sarif => outln!("{}", findings::sarif(&report::findings(&diff))),
        DiffFormat::Junit => out!("{}", report::junit(&diff)),
    }
    Ok(if diff.failed() {
        Outcome::CheckFailed
    } else {
        Outcome::Success
    })
}
