//! `cairn ingest cloudtrail | otel | decisions | compact`.

use std::path::PathBuf;
use std::sync::Arc;

use audit_ingest::ingest::{IngestSummary, Options, Progress};
use audit_ingest::lake::Lake;
use audit_ingest::schema::Table;
use audit_ingest::source::Filter;
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use policy_engine::bundle::keys;

use super::query::date;
use crate::cli::{IngestCommand, IngestCommon, OutputFormat};
use crate::exit::{CliError, CliResult, Outcome};

/// A progress bar on stderr: records and bytes per second. Hidden in CI or without a terminal.
struct Bar {
    bar: ProgressBar,
    records: std::sync::atomic::AtomicU64,
}

impl Progress for Bar {
    fn start(&self, sources: usize, bytes: Option<u64>) {
        if let Some(b) = bytes {
            self.bar.set_length(b);
        }
        self.bar.set_message(format!("{sources} source(s)"));
    }
    fn advance(&self, records: u64, bytes: u64) {
        use std::sync::atomic::Ordering;
        self.bar.inc(bytes);
        let total = self.records.fetch_add(records, Ordering::Relaxed) + records;
        let pos = self.bar.position();
        let elapsed = self.bar.elapsed().as_secs_f64().max(1e-3);
        // LookupEvents reads records, not bytes: then only records count.
        let rate = if pos > 0 {
            format!(" · {:.1} MB/s", pos as f64 / 1e6 / elapsed)
        } else {
            String::new()
        };
        self.bar.set_message(format!(
            "{total} records · {:.0} records/s{rate}",
            total as f64 / elapsed
        ));
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn progress() -> Arc<dyn Progress> {
    if crate::output::quiet_terminal() {
        return Arc::new(audit_ingest::ingest::NoProgress);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{elapsed_precise}] {wide_bar} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Arc::new(Bar {
        bar,
        records: std::sync::atomic::AtomicU64::new(0),
    })
}

fn options(common: &IngestCommon) -> Result<Options, CliError> {
    Ok(Options {
        lake: Lake::open(&common.lake)?,
        filter: Filter {
            since: date("since", &common.since)?,
            until: date("until", &common.until)?,
            bundles: false,
            digests: false,
        },
        jobs: common.jobs,
        flush_rows: common.flush_rows,
        progress: progress(),
    })
}

pub fn run(cmd: IngestCommand) -> CliResult {
    let rt = super::gateway::runtime()?;
    let handle = rt.handle().clone();
    match cmd {
        IngestCommand::Cloudtrail {
            src,
            lookup,
            verify_integrity,
            public_keys,
            common,
        } => {
            let keys = match public_keys.filter(|_| verify_integrity) {
                Some(path) => Some(cloudtrail_keys(&path)?),
                None => None,
            };
            let opts = options(&common)?;
            let summary = if lookup {
                let to_time = |d: Option<NaiveDate>, end: bool| {
                    d.and_then(|d| {
                        if end {
                            d.and_hms_opt(23, 59, 59)
                        } else {
                            d.and_hms_opt(0, 0, 0)
                        }
                    })
                    .map(|t| t.and_utc())
                };
                let run = move || {
                    audit_ingest::lookup::run(
                        to_time(opts.filter.since, false),
                        to_time(opts.filter.until, true),
                        &opts,
                        &handle,
                    )
                };
                rt.block_on(async { tokio::task::spawn_blocking(run).await })
            } else {
                let src = src.unwrap_or_default();
                let run = move || match &keys {
                    Some(keys) => {
                        audit_ingest::ingest::cloudtrail_verified(&src, keys, &opts, &handle)
                    }
                    None => audit_ingest::ingest::cloudtrail(&src, &opts, &handle),
                };
                rt.block_on(async { tokio::task::spawn_blocking(run).await })
            };
            report(flatten(summary)?, &common)
        }
        IngestCommand::Otel { src, common } => {
            let opts = options(&common)?;
            let run = move || audit_ingest::ingest::otel(&src, &opts, &handle);
            let summary = rt.block_on(async { tokio::task::spawn_blocking(run).await });
            report(flatten(summary)?, &common)
        }
        IngestCommand::Decisions {
            src,
            pubkey,
            common,
        } => signed(&rt, &src, &pubkey, &common, audit_ingest::decisions::run),
        IngestCommand::Bundles {
            src,
            pubkey,
            common,
        } => signed(&rt, &src, &pubkey, &common, audit_ingest::bundles::run),
        IngestCommand::Compact {
            lake,
            table,
            format,
        } => {
            let lake = Lake::open(&lake)?;
            let tables: Vec<Table> = match table {
                Some(t) => vec![Table::parse(&t).ok_or_else(|| {
                    CliError::input(miette::miette!(
                        "unknown table `{t}`; the lake's tables are: {}",
                        Table::ALL.map(Table::name).join(", ")
                    ))
                })?],
                None => Table::ALL.to_vec(),
            };
            let (lake2, h) = (lake.clone(), handle.clone());
            let done = rt
                .block_on(async {
                    tokio::task::spawn_blocking(move || {
                        audit_ingest::compact::compact_all(&lake2, &tables, &h)
                    })
                    .await
                })
                .map_err(|e| CliError::input(miette::miette!("compaction failed: {e}")))??;
            if format == OutputFormat::Json {
                outln!("{}", serde_json::json!(done));
                return Ok(Outcome::Success);
            }
            for s in &done.tables {
                let migrated = match (s.migrated, s.quarantined) {
                    (0, _) => String::new(),
                    (n, 0) => format!(" ({n} of an earlier layout rewritten)"),
                    (n, q) => format!(
                        " ({n} of an earlier layout rewritten; {q} value(s) that did not convert kept in _quarantine, their rows null there)"
                    ),
                };
                outln!(
                    "{}: {} partition(s) compacted, {} file(s) -> {}, {} rows{migrated}",
                    s.table,
                    s.partitions,
                    s.files_before,
                    s.files_after,
                    s.rows
                );
            }
            if done.migrated {
                outln!(
                    "the lake is now of layout version {}",
                    audit_ingest::lake::schema::LAYOUT_VERSION
                );
            }
            Ok(Outcome::Success)
        }
    }
}

/// `decisions::run` and `bundles::run`: sources checked against Ed25519 keys on the way in.
type SignedIngest = fn(
    &str,
    Vec<(String, ed25519_dalek::VerifyingKey)>,
    &Options,
    &tokio::runtime::Handle,
) -> Result<IngestSummary, audit_ingest::IngestError>;

/// An ingest of signed sources (decision records, bundles), checked with the `--pubkey` keys.
fn signed(
    rt: &tokio::runtime::Runtime,
    src: &str,
    pubkey: &[PathBuf],
    common: &IngestCommon,
    ingest: SignedIngest,
) -> CliResult {
    let ks = verifying_keys(pubkey)?;
    let opts = options(common)?;
    let (src, handle) = (src.to_string(), rt.handle().clone());
    let run = move || ingest(&src, ks, &opts, &handle);
    let summary = rt.block_on(async { tokio::task::spawn_blocking(run).await });
    report(flatten(summary)?, common)
}

/// CloudTrail's digest signing keys from the JSON of `aws cloudtrail list-public-keys`.
fn cloudtrail_keys(
    path: &std::path::Path,
) -> Result<audit_ingest::integrity::PublicKeys, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        CliError::input(policy_engine::PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })
    })?;
    audit_ingest::integrity::PublicKeys::from_json(&text).map_err(|e| {
        CliError::input(miette::miette!(
            help = "save them with: aws cloudtrail list-public-keys --start-time 2026-11-01 --end-time 2026-12-01 > keys.json",
            "`{}`: {e}",
            path.display()
        ))
    })
}

/// The public keys given with `--pubkey`, each with its key id.
fn verifying_keys(
    paths: &[PathBuf],
) -> Result<Vec<(String, ed25519_dalek::VerifyingKey)>, CliError> {
    let mut ks = Vec::new();
    for p in paths {
        let k = keys::load_verifying_key(p)?;
        ks.push((keys::key_id(&k), k));
    }
    Ok(ks)
}

fn flatten(
    r: Result<Result<IngestSummary, audit_ingest::IngestError>, tokio::task::JoinError>,
) -> Result<IngestSummary, CliError> {
    r.map_err(|e| CliError::input(miette::miette!("ingest failed: {e}")))?
        .map_err(CliError::from)
}

fn report(s: IngestSummary, common: &IngestCommon) -> CliResult {
    match common.format {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&s).unwrap_or_default()),
        OutputFormat::Human => {
            let rate = s.read() as f64 / s.elapsed_s.max(1e-6);
            let kinds = s.kinds();
            let by_kind = if kinds.is_empty() {
                String::new()
            } else {
                let n = |(k, one): &(&str, &str)| {
                    let n = kinds.get(*k).copied().unwrap_or(0);
                    format!("{n} {}", if n == 1 { one } else { k })
                };
                let named: &[(&str, &str)] = if s.table == "bundles" {
                    &[("bundles", "bundle"), ("policies", "policy")]
                } else {
                    &[
                        ("decisions", "decision"),
                        ("outcomes", "outcome"),
                        ("seals", "seal"),
                    ]
                };
                format!(
                    " (verified: {})",
                    named.iter().map(n).collect::<Vec<_>>().join(", ")
                )
            };
            outln!(
                "{}: {} source(s), {} records read{by_kind}, {} written, {} duplicates skipped, {} quarantined into {} in {:.2} s ({:.0} records/s, {:.1} MB)",
                s.table,
                s.sources.len(),
                s.read(),
                s.written(),
                s.duplicates(),
                s.quarantined(),
                s.lake,
                s.elapsed_s,
                rate,
                s.bytes_read as f64 / 1e6
            );
            // Sources skipped as unchanged are one line, not one each; beyond a screenful, the
            // sources read are listed with --verbose only.
            let (unchanged, read): (Vec<_>, Vec<_>) = s.sources.iter().partition(|x| {
                x.skipped.as_deref() == Some(audit_ingest::ingest::ALREADY_INGESTED)
            });
            if !unchanged.is_empty() {
                outln!(
                    "  {} source(s) already ingested, unchanged",
                    unchanged.len()
                );
            }
            let listed = if common.verbose || read.len() <= 10 {
                read
            } else {
                outln!(
                    "  {} source(s) read (listed with --verbose or --format json)",
                    read.len()
                );
                Vec::new()
            };
            let width = listed
                .iter()
                .map(|x| x.source.len())
                .max()
                .unwrap_or(6)
                .clamp(6, 90);
            if !listed.is_empty() {
                outln!(
                    "  {:<width$} {:>9} {:>9} {:>10} {:>11}",
                    "source",
                    "read",
                    "written",
                    "duplicates",
                    "quarantined"
                );
            }
            for x in listed {
                let chars = x.source.chars().count();
                let name = if chars > width {
                    // Keep the end of the path; cut on a character, not a byte.
                    let tail: String = x.source.chars().skip(chars + 3 - width).collect();
                    format!("...{tail}")
                } else {
                    x.source.clone()
                };
                let note = match (&x.skipped, &x.error) {
                    (Some(sk), _) => format!("  ({sk})"),
                    (_, Some(e)) => format!("  (stopped: {e})"),
                    _ => String::new(),
                };
                outln!(
                    "  {:<width$} {:>9} {:>9} {:>10} {:>11}{note}",
                    name,
                    x.read,
                    x.written,
                    x.duplicates,
                    x.quarantined_total()
                );
            }
            if !s.skipped.is_empty() {
                let mut by_reason: std::collections::BTreeMap<&str, usize> = Default::default();
                for k in &s.skipped {
                    *by_reason.entry(k.reason).or_default() += 1;
                }
                outln!(
                    "  {} file(s) not read: {} (listed with --format json)",
                    s.skipped.len(),
                    by_reason
                        .iter()
                        .map(|(r, n)| format!("{n} {r}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            if !s.integrity.is_empty() {
                outln!(
                    "  integrity (see the `cloudtrail_files` table): {}",
                    audit_ingest::integrity::Report::describe(&s.integrity)
                );
            }
            let by_reason = s.quarantined_by_reason();
            if !by_reason.is_empty() {
                outln!(
                    "  quarantined by reason: {} (see the `_quarantine` table)",
                    by_reason
                        .iter()
                        .map(|(r, n)| format!("{r} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    let integrity_failures = audit_ingest::integrity::Report::failures(&s.integrity);
    if integrity_failures > 0 && common.format == OutputFormat::Human {
        eprintln!(
            "error: {integrity_failures} CloudTrail file(s) did not verify against CloudTrail's digests (see the `cloudtrail_files` table)"
        );
    }
    Ok(
        if common.strict && (s.quarantined() > 0 || integrity_failures > 0) {
            Outcome::CheckFailed
        } else {
            Outcome::Success
        },
    )
}
