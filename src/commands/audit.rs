//! `cairn audit verify`.

use std::path::{Path, PathBuf};

use decision_record::checkpoint::Checkpoint;
use decision_record::verify::{AgainstCheckpoint, against_checkpoint, verify_dir_anchored};
use policy_engine::bundle::keys;

use crate::cli::{AuditCommand, AuditVerifyArgs, OutputFormat};
use crate::exit::{CliError, CliResult, Outcome};

pub fn run(cmd: AuditCommand) -> CliResult {
    match cmd {
        AuditCommand::Verify(args) => verify(&args),
    }
}

fn verify(args: &AuditVerifyArgs) -> CliResult {
    let mut ks = Vec::new();
    for p in &args.pubkey {
        let k = keys::load_verifying_key(p)?;
        ks.push((keys::key_id(&k), k));
    }
    let checkpoint = match &args.checkpoints {
        Some(at) => {
            let verifying: Vec<_> = ks.iter().map(|(_, k)| *k).collect();
            Some(read_checkpoint(at, &verifying)?)
        }
        None => None,
    };
    let anchors: Vec<u64> = checkpoint.iter().map(|(_, c)| c.size).collect();
    let report = verify_dir_anchored(&args.dir, ks, &anchors).map_err(|source| {
        CliError::input(policy_engine::PolicyError::Read {
            path: args.dir.clone(),
            source,
        })
    })?;
    let against = checkpoint
        .as_ref()
        .map(|(path, c)| (path, c, against_checkpoint(&report, c)));
    let checkpoint_fails = against
        .as_ref()
        .is_some_and(|(_, _, a)| *a != AgainstCheckpoint::Covered);
    let open_fails = args.require_sealed && report.open_tail.is_some();
    let ok = report.ok() && !open_fails && !checkpoint_fails && report.segments > 0;
    let checkpoint_problem = against.as_ref().and_then(|(path, c, a)| {
        let when = if c.time.is_empty() {
            String::new()
        } else {
            format!(" of {}", c.time)
        };
        match a {
            AgainstCheckpoint::Covered => None,
            AgainstCheckpoint::Shortened { first, last } => Some(format!(
                "records removed from the end: the checkpoint{when} in {} vouches for {} records, the directory ends at seq {}; seq {first}..={last} are missing",
                path.display(),
                c.size,
                first - 1
            )),
            AgainstCheckpoint::Diverged { seq, found } => Some(format!(
                "the record at seq {seq} hashes to {found}, the checkpoint{when} in {} says {}: the log was rewritten from there, or the checkpoint is of another log",
                path.display(),
                c.hash
            )),
        }
    });
    match args.format {
        OutputFormat::Json => outln!(
            "{}",
            serde_json::json!({
                "ok": ok,
                "segments": report.segments,
                "records": report.records,
                "decisions": report.decisions,
                "outcomes": report.outcomes,
                "last_seq": report.last_seq,
                "open_segment": report.open_tail.as_ref().map(|p| p.display().to_string()),
                "checkpoint": against.as_ref().map(|(path, c, _)| serde_json::json!({
                    "file": path.display().to_string(),
                    "size": c.size,
                    "hash": c.hash,
                    "time": c.time,
                    "covered": checkpoint_problem.is_none(),
                    "problem": checkpoint_problem,
                })),
                "errors": report.errors.iter().map(|e| serde_json::json!({
                    "segment": e.at.segment.display().to_string(),
                    "line": e.at.line,
                    "seq": e.seq,
                    "problem": e.fault.to_string(),
                })).collect::<Vec<_>>(),
            })
        ),
        OutputFormat::Human => {
            if report.segments == 0 {
                eprintln!("error: no record segments in `{}`", args.dir.display());
            }
            if let Some(first) = report.errors.first() {
                eprintln!("error: first problem: {first}");
                for e in report.errors.iter().skip(1) {
                    eprintln!("  also: {e}");
                }
            }
            if let Some(problem) = &checkpoint_problem {
                eprintln!("error: {problem}");
            }
            if let Some(open) = &report.open_tail {
                eprintln!(
                    "{}: the last segment {} is not sealed: the gateway is running, or stopped without a clean shutdown and has not restarted since",
                    if args.require_sealed { "error" } else { "note" },
                    open.display()
                );
            }
            if ok {
                outln!(
                    "ok: {} records ({} decisions, {} outcomes) in {} segment(s); chain and signatures intact up to seq {}",
                    report.records,
                    report.decisions,
                    report.outcomes,
                    report.segments,
                    report.last_seq.unwrap_or(0)
                );
                if let Some((path, c, _)) = &against {
                    outln!(
                        "ok: the checkpoint in {} ({} records, {}) is covered: nothing was removed from the end before it",
                        path.display(),
                        c.size,
                        c.time
                    );
                }
            }
        }
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

/// Reads and verifies the newest checkpoint at `at` (a checkpoint store directory: its largest
/// `checkpoint-<size>`; or one checkpoint file).
fn read_checkpoint(
    at: &Path,
    keys: &[ed25519_dalek::VerifyingKey],
) -> Result<(PathBuf, Checkpoint), CliError> {
    // A checkpoint that does not verify is a failed check (exit 1), not a usage error: someone
    // may have replaced it.
    let untrusted = |e: decision_record::checkpoint::CheckpointError| {
        CliError::failed(miette::miette!(
            help = "pass the public key of the gateway's records signing key with --pubkey",
            "the checkpoint in `{}` cannot be trusted: {e}",
            at.display()
        ))
    };
    // A store (a directory or s3://): its newest checkpoint of these keys.
    let location = at.to_string_lossy();
    let s3 = location.starts_with("s3://");
    if s3 || at.is_dir() {
        let rt = super::gateway::runtime()?;
        let store = {
            let _in_runtime = rt.enter();
            gateway_core::evidence_store::EvidenceStore::open(&location)
                .map_err(|e| CliError::input(miette::miette!("{e}")))?
        };
        return match store.newest(keys) {
            Ok(Some((name, cp))) => Ok((PathBuf::from(name), cp)),
            Ok(None) => Err(CliError::input(miette::miette!(
                help = "point --checkpoints at the gateway's `records.checkpoint_dir`",
                "no checkpoint (checkpoint-<key>-<size>) of the given keys in `{location}`"
            ))),
            Err(e) => Err(CliError::failed(miette::miette!(
                help = "pass the public key of the gateway's records signing key with --pubkey",
                "the checkpoint in `{location}` cannot be trusted: {e}"
            ))),
        };
    }
    if !at.exists() {
        return Err(CliError::input(miette::miette!(
            "`{}` does not exist",
            at.display()
        )));
    }
    let cp = decision_record::checkpoint::read_file(at, keys).map_err(untrusted)?;
    Ok((at.to_path_buf(), cp))
}
