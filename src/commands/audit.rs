//! `cairn audit verify`.

use decision_record::verify::verify_dir;
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
    let report = verify_dir(&args.dir, ks).map_err(|source| {
        CliError::input(policy_engine::PolicyError::Read {
            path: args.dir.clone(),
            source,
        })
    })?;
    let open_fails = args.require_sealed && report.open_tail.is_some();
    let ok = report.ok() && !open_fails && report.segments > 0;
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
            }
        }
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}
