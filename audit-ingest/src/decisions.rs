//! Gateway decision records to `decisions` and `outcomes` rows. Lines are checked with the
//! gateway's own chain checker first (hash, signature, sequence, `prev`, seals); what fails is
//! quarantined with the segment and line.

use gateway_core::decision_log::{Record, RecordKind};
use serde_json::Value;

use crate::json::timestamp_ms;
use crate::schema::{DecisionColumns, OutcomeColumns};

fn json(v: &Option<Value>) -> Option<String> {
    v.as_ref().filter(|v| !v.is_null()).map(Value::to_string)
}

/// A string member of an optional JSON object.
fn str_field(v: &Option<Value>, key: &str) -> Option<String> {
    v.as_ref()
        .and_then(|o| o.get(key))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn strings(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref().map(|l| Value::from(l.clone()).to_string())
}

/// `(Type, id)` of a uid `Type::"id"`.
fn split_uid(uid: &str) -> (Option<String>, Option<String>) {
    match uid.split_once("::") {
        Some((t, rest)) => (
            Some(t.to_string()),
            serde_json::from_str::<String>(rest)
                .ok()
                .or_else(|| Some(rest.to_string())),
        ),
        None => (None, Some(uid.to_string())),
    }
}

/// The principal's team for reports: its `owner_team`, else its `department`, else its first
/// group.
pub fn team(r: &Record) -> Option<String> {
    str_field(&r.principal_attrs, "owner_team")
        .or_else(|| str_field(&r.principal_attrs, "department"))
        .or_else(|| {
            r.principal_parents
                .as_ref()
                .and_then(|p| p.first())
                .map(|uid| split_uid(uid).1.unwrap_or_default())
        })
}

pub fn time_ms(r: &Record) -> Option<i64> {
    timestamp_ms(&r.ts)
}

pub fn append_decision(
    cols: &mut DecisionColumns,
    r: &Record,
    hash: &str,
    time_ms: i64,
    source: &str,
    line: u64,
) {
    cols.ts.append_value(time_ms);
    cols.id.append_value(&r.id);
    cols.seq.append_value(r.seq as i64);
    let (ptype, pid) = r
        .principal
        .as_deref()
        .map(split_uid)
        .unwrap_or((None, None));
    cols.principal.append_option(r.principal.as_ref());
    cols.principal_type.append_option(ptype);
    cols.principal_id.append_option(pid);
    cols.principal_parents
        .append_option(strings(&r.principal_parents));
    cols.principal_attrs.append_option(json(&r.principal_attrs));
    cols.team.append_option(team(r));
    cols.action.append_option(r.action.as_ref());
    cols.resource.append_option(r.resource.as_ref());
    cols.resource_attrs.append_option(json(&r.resource_attrs));
    cols.model.append_option(r.model.as_ref());
    cols.provider.append_option(r.provider.as_ref());
    cols.decision.append_option(r.decision.as_ref());
    cols.reasons.append_option(strings(&r.reasons));
    cols.errors.append_option(strings(&r.errors));
    cols.status.append_option(r.status.map(i64::from));
    cols.reason.append_option(r.reason.as_ref());
    cols.bundle.append_option(r.bundle.as_ref());
    cols.context.append_option(json(&r.context));
    cols.data_classification.append_option(
        r.context
            .as_ref()
            .and_then(|c| c.get("data_classification"))
            .and_then(Value::as_str),
    );
    cols.stream.append_option(r.stream);
    cols.trace_id.append_option(r.trace_id.as_ref());
    let auth = |k: &str| str_field(&r.auth, k);
    cols.auth_method.append_option(auth("method"));
    cols.auth_subject.append_option(auth("subject"));
    cols.auth_issuer.append_option(auth("issuer"));
    cols.auth_error.append_option(auth("error"));
    cols.guardrails.append_option(json(&r.guardrails));
    let extra = |k: &str| str_field(&r.extra, k);
    cols.assumed_role_arn
        .append_option(extra("assumed_role_arn"));
    cols.role_session_name
        .append_option(extra("role_session_name"));
    cols.source_identity.append_option(extra("source_identity"));
    cols.extra.append_option(json(&r.extra));
    cols.key_id.append_value(&r.key_id);
    cols.hash.append_value(hash);
    cols.prev.append_value(&r.prev);
    cols.ingest_source.append_value(source);
    cols.ingest_record.append_value(line as i64);
    cols.row_done();
}

pub fn append_outcome(
    cols: &mut OutcomeColumns,
    r: &Record,
    hash: &str,
    time_ms: i64,
    source: &str,
    line: u64,
) {
    cols.ts.append_value(time_ms);
    cols.id.append_value(&r.id);
    cols.seq.append_value(r.seq as i64);
    cols.decision_id.append_option(r.decision_id.as_ref());
    cols.model.append_option(r.model.as_ref());
    cols.provider.append_option(r.provider.as_ref());
    cols.status.append_option(r.status.map(i64::from));
    cols.input_tokens
        .append_option(r.usage.map(|u| u.input_tokens as i64));
    cols.output_tokens
        .append_option(r.usage.map(|u| u.output_tokens as i64));
    cols.cache_read_tokens
        .append_option(r.usage.map(|u| u.cache_read_tokens as i64));
    cols.cache_write_tokens
        .append_option(r.usage.map(|u| u.cache_write_tokens as i64));
    cols.cost_usd.append_option(r.cost_usd);
    cols.latency_ms
        .append_option(r.latency_ms.map(|l| l as i64));
    cols.finish_reason.append_option(r.finish_reason.as_ref());
    cols.error.append_option(r.error.as_ref());
    cols.reason.append_option(r.reason.as_ref());
    cols.guardrails.append_option(json(&r.guardrails));
    cols.stream.append_option(r.stream);
    cols.usage_estimated.append_value(
        r.extra
            .as_ref()
            .and_then(|e| e.get("usage_estimated"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    cols.extra.append_option(json(&r.extra));
    cols.trace_id.append_option(r.trace_id.as_ref());
    cols.key_id.append_value(&r.key_id);
    cols.hash.append_value(hash);
    cols.prev.append_value(&r.prev);
    cols.ingest_source.append_value(source);
    cols.ingest_record.append_value(line as i64);
    cols.row_done();
}

pub fn is_row(r: &Record) -> Option<RecordKind> {
    match r.kind {
        RecordKind::Decision | RecordKind::Outcome => Some(r.kind),
        RecordKind::Seal => None,
    }
}

/// Ingests decision record segments: every line is checked against the chain and the keys, and
/// lines that fail are quarantined with their segment, line and what failed.
pub fn run(
    spec: &str,
    keys: Vec<(String, ed25519_dalek::VerifyingKey)>,
    opts: &crate::ingest::Options,
    rt: &tokio::runtime::Handle,
) -> Result<crate::ingest::IngestSummary, crate::error::IngestError> {
    use std::io::BufRead;

    use gateway_core::decision_log::verify::{ChainChecker, ChainFault};

    use crate::ingest::{IngestSummary, QuarantineSink, SourceSummary};
    use crate::json::date_of;
    use crate::lake::manifest;
    use crate::lake::writer::TableWriter;

    let started = std::time::Instant::now();
    let mut objects = rt.block_on(crate::source::list(spec, &opts.filter))?;
    objects.retain(|o| {
        o.uri
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl"))
    });
    objects.sort_by(|a, b| a.uri.rsplit('/').next().cmp(&b.uri.rsplit('/').next()));
    let mut summary = IngestSummary {
        table: "decisions".into(),
        lake: opts.lake.display.clone(),
        ..Default::default()
    };
    let mut decisions = TableWriter::new(opts.lake.clone(), "decisions", rt.clone())?
        .with_flush_rows(opts.flush_rows);
    let mut outcomes = TableWriter::new(opts.lake.clone(), "outcomes", rt.clone())?
        .with_flush_rows(opts.flush_rows);
    let mut quarantine = TableWriter::new(opts.lake.clone(), "_quarantine", rt.clone())?;
    let mut checker = ChainChecker::new(keys.clone());
    let mut entries = Vec::new();
    let count = objects.len();
    opts.progress
        .start(count, objects.iter().map(|o| o.size).sum());
    // After a segment that could not be read, the chain cannot be checked across the gap: the
    // later segments wait for the next run, which reads them in order.
    let mut stopped_at: Option<String> = None;
    let mut known = rt.block_on(manifest::Manifest::load(&opts.lake, "decisions"))?;
    for (i, obj) in objects.iter().enumerate() {
        let mut s = SourceSummary {
            source: obj.uri.clone(),
            ..Default::default()
        };
        if let Some(earlier) = &stopped_at {
            s.skipped = Some(format!(
                "not read yet: the earlier segment `{earlier}` could not be read; the next run reads both in order"
            ));
            summary.sources.push(s);
            continue;
        }
        if let Some(e) = known.get(&obj.uri)
            && e.unchanged(obj)
        {
            if let Some((seq, hash)) = &e.tail {
                checker = ChainChecker::resume(keys.clone(), *seq, hash.clone());
            }
            s.skipped = Some("already ingested (unchanged since)".into());
            summary.sources.push(s);
            continue;
        }
        let mut q = QuarantineSink::new("decisions");
        let (mut reader, sum) = match crate::source::open(obj, rt) {
            Ok(r) => r,
            Err(e) => {
                // Counted and reported; the segment is not recorded as ingested, so the next
                // run tries it again, and the segments after it wait for that.
                q.add(&obj.uri, 0, "unreadable_input", &e.to_string(), b"");
                s.error = Some(format!("{e}; {}", crate::ingest::RETRIED));
                quarantine.add(
                    &q.date(),
                    q.take().map_err(crate::error::IngestError::arrow)?,
                )?;
                s.quarantined = q.counts;
                summary.sources.push(s);
                stopped_at = Some(obj.uri.clone());
                continue;
            }
        };
        checker.start_segment();
        let mut ddays: std::collections::BTreeMap<String, DecisionColumns> = Default::default();
        let mut odays: std::collections::BTreeMap<String, OutcomeColumns> = Default::default();
        let mut line_no = 0u64;
        let mut tail = None;
        let mut last_kind = None;
        let mut buf = Vec::with_capacity(4096);
        let mut retry = false;
        let last_segment = i + 1 == count;
        loop {
            buf.clear();
            let n = match reader.read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    // What was read so far stands; the rest is read again by the next run.
                    q.add(
                        &obj.uri,
                        line_no + 1,
                        "unreadable_input",
                        &format!(
                            "{}:{}: the segment cannot be read: {e}",
                            obj.uri,
                            line_no + 1
                        ),
                        &buf,
                    );
                    s.error = Some(format!(
                        "{}: reading stopped at line {}: {e}; {}",
                        obj.uri,
                        line_no + 1,
                        crate::ingest::RETRIED
                    ));
                    retry = true;
                    break;
                }
            };
            if n == 0 {
                break;
            }
            line_no += 1;
            // Where the line is, for quarantine details (built only when one is needed).
            let at = || format!("{}:{line_no}", obj.uri);
            if !buf.ends_with(b"\n") && last_segment && last_kind.is_some() {
                // The live segment's last line is still being written (the gateway appends a
                // line with one write; a crash's torn tail is removed when it restarts). It is
                // not a record yet: leave it for the next run, which sees the segment grown.
                s.error = Some(format!(
                    "{}: the last line is incomplete (a segment still being written); the next run reads it",
                    at()
                ));
                retry = true;
                break;
            }
            s.read += 1;
            if !buf.ends_with(b"\n") {
                q.add(
                    &obj.uri,
                    line_no,
                    "truncated_input",
                    &format!("{}: {}", at(), ChainFault::Truncated),
                    &buf,
                );
                last_kind = None;
                continue;
            }
            match checker.check(&String::from_utf8_lossy(&buf)) {
                Ok((record, hash)) => {
                    tail = Some((record.seq, hash.clone()));
                    last_kind = Some(record.kind);
                    let Some(kind) = is_row(&record) else {
                        continue;
                    };
                    let Some(ms) = time_ms(&record) else {
                        q.add(
                            &obj.uri,
                            line_no,
                            "unparseable_time",
                            &format!("{}: `ts` `{}` is not a time", at(), record.ts),
                            &buf,
                        );
                        continue;
                    };
                    let date = date_of(ms);
                    match kind {
                        RecordKind::Decision => {
                            let c = ddays
                                .entry(date)
                                .or_insert_with(|| DecisionColumns::new(1024));
                            append_decision(c, &record, &hash, ms, &obj.uri, line_no);
                        }
                        _ => {
                            let c = odays
                                .entry(date)
                                .or_insert_with(|| OutcomeColumns::new(1024));
                            append_outcome(c, &record, &hash, ms, &obj.uri, line_no);
                        }
                    }
                }
                Err((seq, fault)) => {
                    let reason = match &fault {
                        ChainFault::Line(_) => "record_altered",
                        ChainFault::Truncated => "truncated_input",
                        _ => "chain_broken",
                    };
                    let detail = match seq {
                        Some(n) => format!("{} (record seq {n}): {fault}", at()),
                        None => format!("{}: {fault}", at()),
                    };
                    q.add(&obj.uri, line_no, reason, &detail, &buf);
                    last_kind = None;
                }
            }
        }
        if i + 1 < count && last_kind != Some(RecordKind::Seal) {
            s.error = Some(format!("{}: {}", obj.uri, ChainFault::Unsealed));
        }
        for (date, mut c) in ddays {
            s.count(decisions.add(&date, c.finish().map_err(crate::error::IngestError::arrow)?)?);
        }
        for (date, mut c) in odays {
            s.count(outcomes.add(&date, c.finish().map_err(crate::error::IngestError::arrow)?)?);
        }
        if !q.is_empty() {
            let date = q.date();
            quarantine.add(&date, q.take().map_err(crate::error::IngestError::arrow)?)?;
        }
        s.quarantined = q.counts;
        let (sha, size) = sum.finish();
        summary.bytes_read += size;
        opts.progress.advance(s.read, size);
        if retry {
            summary.sources.push(s);
            stopped_at = Some(obj.uri.clone());
            continue;
        }
        entries.push(manifest::Entry {
            uri: obj.uri.clone(),
            size: obj.size.unwrap_or(size),
            version: obj.version.clone(),
            sha256: sha,
            records_read: s.read,
            rows_written: s.written,
            duplicates: s.duplicates,
            quarantined: s.quarantined_total(),
            ingested_at: chrono::Utc::now().to_rfc3339(),
            tail,
        });
        summary.sources.push(s);
    }
    decisions.finish()?;
    outcomes.finish()?;
    quarantine.finish()?;
    rt.block_on(known.store(&opts.lake, "decisions", entries))?;
    opts.progress.finish();
    summary.files_written = decisions.files_written.clone();
    summary
        .files_written
        .extend(outcomes.files_written.iter().cloned());
    summary
        .files_written
        .extend(quarantine.files_written.iter().cloned());
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}
