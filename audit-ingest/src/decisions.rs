//! Gateway decision records to `decisions` and `outcomes` rows. Lines are checked with the
//! gateway's own chain checker first (hash, signature, sequence, `prev`, seals); what fails is
//! quarantined with the segment and line.

use std::collections::BTreeMap;
use std::io::BufRead;

use decision_record::record::LineError;
use decision_record::verify::{ChainChecker, ChainFault};
use decision_record::{Body, Decision, Outcome, Record, RecordKind};
use serde_json::Value;

use crate::error::IngestError;
use crate::ingest::{
    ALREADY_INGESTED, IngestSummary, Options, QuarantineSink, RETRIED, SourceSummary,
};
use crate::job::{Job, Sources};
use crate::json::{date_of, timestamp_ms};
use crate::reject::Reason;
use crate::source::SourceObject;
use lake::schema::{DecisionColumns, OutcomeColumns, Table, append_strings};

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
pub fn team(r: &Decision) -> Option<String> {
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

/// The envelope's columns every row starts with (`decisions` and `outcomes` share them).
macro_rules! envelope_columns {
    ($cols:expr, $envelope:expr, $time_ms:expr) => {{
        $cols.ts.append_value($time_ms);
        $cols.id.append_value(&$envelope.id);
        $cols.seq.append_value($envelope.seq as i64);
    }};
}

/// The chain and provenance columns every row ends with, then the row is done.
macro_rules! chain_columns {
    ($cols:expr, $envelope:expr, $hash:expr, $source:expr, $line:expr) => {{
        $cols.key_id.append_value(&$envelope.key_id);
        $cols.hash.append_value($hash);
        $cols.prev.append_value(&$envelope.prev);
        $cols.ingest_source.append_value($source);
        $cols.ingest_record.append_value($line as i64);
        $cols.row_done();
    }};
}

pub fn append_decision(
    cols: &mut DecisionColumns,
    envelope: &Record,
    r: &Decision,
    hash: &str,
    time_ms: i64,
    source: &str,
    line: u64,
) {
    envelope_columns!(cols, envelope, time_ms);
    let (ptype, pid) = r
        .principal
        .as_deref()
        .map(split_uid)
        .unwrap_or((None, None));
    cols.principal.append_option(r.principal.as_ref());
    cols.principal_type.append_option(ptype);
    cols.principal_id.append_option(pid);
    append_strings(&mut cols.principal_parents, r.principal_parents.as_ref());
    cols.principal_attrs.append_option(json(&r.principal_attrs));
    cols.team.append_option(team(r));
    cols.action.append_option(r.action.as_ref());
    cols.resource.append_option(r.resource.as_ref());
    cols.resource_attrs.append_option(json(&r.resource_attrs));
    cols.model.append_option(r.model.as_ref());
    cols.provider.append_option(r.provider.as_ref());
    cols.decision.append_option(r.decision.as_ref());
    append_strings(&mut cols.reasons, r.reasons.as_ref());
    append_strings(&mut cols.errors, r.errors.as_ref());
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
    let mcp = r.extra.as_ref().and_then(|e| e.get("mcp")).cloned();
    let mcp = |k: &str| str_field(&mcp, k);
    cols.mcp_server.append_option(mcp("server"));
    cols.mcp_tool.append_option(mcp("tool"));
    cols.mcp_method.append_option(mcp("method"));
    cols.extra.append_option(json(&r.extra));
    chain_columns!(cols, envelope, hash, source, line);
}

pub fn append_outcome(
    cols: &mut OutcomeColumns,
    envelope: &Record,
    r: &Outcome,
    hash: &str,
    time_ms: i64,
    source: &str,
    line: u64,
) {
    envelope_columns!(cols, envelope, time_ms);
    cols.decision_id.append_value(&r.decision_id);
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
    cols.upstream_request_id
        .append_option(str_field(&r.extra, "upstream_request_id"));
    chain_columns!(cols, envelope, hash, source, line);
}

/// Ingests decision record segments: every line is checked against the chain and the keys, and
/// lines that fail are quarantined with their segment, line and what failed.
pub fn run(
    spec: &str,
    keys: Vec<(String, ed25519_dalek::VerifyingKey)>,
    opts: &Options,
    rt: &tokio::runtime::Handle,
) -> Result<IngestSummary, IngestError> {
    let listing = crate::source::list(spec, &opts.filter);
    let crate::source::Listing {
        mut objects,
        mut skipped,
    } = rt.block_on(listing)?;
    objects.retain(|o| {
        let segment = o
            .uri
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl"));
        if !segment {
            skipped.push(crate::source::Skipped {
                source: o.uri.clone(),
                reason: "not a decision record segment (segment-<seq>.jsonl)",
            });
        }
        segment
    });
    objects.sort_by(|a, b| a.uri.rsplit('/').next().cmp(&b.uri.rsplit('/').next()));
    let mut job = Job::open(
        &[Table::Decisions, Table::Outcomes],
        Sources::Objects,
        opts,
        rt,
    )?;
    job.summary.skipped = skipped;
    let mut checker = ChainChecker::new(keys.clone());
    let count = objects.len();
    opts.progress
        .start(count, objects.iter().map(|o| o.size).sum());
    // After a segment that could not be read, the chain cannot be checked across the gap: the
    // later segments wait for the next run, which reads them in order.
    let mut stopped_at: Option<String> = None;
    for (i, obj) in objects.iter().enumerate() {
        let mut s = SourceSummary {
            source: obj.uri.clone(),
            ..Default::default()
        };
        if let Some(earlier) = &stopped_at {
            s.skipped = Some(format!(
                "not read yet: the earlier segment `{earlier}` could not be read; the next run reads both in order"
            ));
            job.summary.sources.push(s);
            continue;
        }
        if let Some(e) = job.unchanged(obj) {
            if let Some((seq, hash)) = &e.tail {
                checker = ChainChecker::resume(keys.clone(), *seq, hash.clone());
            }
            s.skipped = Some(ALREADY_INGESTED.into());
            job.summary.sources.push(s);
            continue;
        }
        let mut q = job.sink();
        let read = match crate::source::open(obj, rt) {
            Ok((reader, sum)) => {
                let segment = Segment {
                    obj,
                    last: i + 1 == count,
                    more_follow: i + 1 < count,
                };
                let read = segment.read(reader, &mut checker, &mut q, &mut s);
                Some((read, sum))
            }
            Err(e) => {
                // Counted and reported; the segment is not recorded as ingested, so the next
                // run tries it again, and the segments after it wait for that.
                q.add(&obj.uri, 0, Reason::UnreadableInput, &e.to_string(), b"");
                s.error = Some(format!("{e}; {RETRIED}"));
                None
            }
        };
        job.quarantine(&mut q)?;
        s.quarantined = q.counts;
        let Some((read, sum)) = read else {
            job.summary.sources.push(s);
            stopped_at = Some(obj.uri.clone());
            continue;
        };
        for (date, mut c) in read.decisions {
            s.count(job.add(
                Table::Decisions,
                &date,
                c.finish().map_err(IngestError::arrow)?,
            )?);
        }
        for (date, mut c) in read.outcomes {
            s.count(job.add(
                Table::Outcomes,
                &date,
                c.finish().map_err(IngestError::arrow)?,
            )?);
        }
        let checksum = sum.finish();
        job.summary.bytes_read += checksum.1;
        opts.progress.advance(s.read, checksum.1);
        if read.retry {
            stopped_at = Some(obj.uri.clone());
        } else {
            job.ingested(obj, &s, checksum, read.tail);
        }
        job.summary.sources.push(s);
    }
    job.finish()
}

/// One segment to read, and where it stands among the others.
struct Segment<'a> {
    obj: &'a SourceObject,
    /// The newest segment: its last line may still be being written.
    last: bool,
    /// Segments follow this one, so it must end with a seal.
    more_follow: bool,
}

/// What one segment gave.
#[derive(Default)]
struct SegmentRows {
    decisions: BTreeMap<String, DecisionColumns>,
    outcomes: BTreeMap<String, OutcomeColumns>,
    /// `seq` and hash of its last record.
    tail: Option<(u64, String)>,
    /// Reading stopped early; the next run reads the segment again.
    retry: bool,
}

impl Segment<'_> {
    fn read(
        &self,
        mut reader: impl BufRead,
        checker: &mut ChainChecker,
        q: &mut QuarantineSink,
        s: &mut SourceSummary,
    ) -> SegmentRows {
        let uri = &self.obj.uri;
        let mut out = SegmentRows::default();
        checker.start_segment();
        let mut line_no = 0u64;
        let mut last_kind = None;
        let mut buf = Vec::with_capacity(4096);
        loop {
            buf.clear();
            let n = match reader.read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    // What was read so far stands; the rest is read again by the next run.
                    let at = line_no + 1;
                    q.add(
                        uri,
                        at,
                        Reason::UnreadableInput,
                        &format!("{uri}:{at}: the segment cannot be read: {e}"),
                        &buf,
                    );
                    s.error = Some(format!(
                        "{uri}: reading stopped at line {at}: {e}; {RETRIED}"
                    ));
                    out.retry = true;
                    break;
                }
            };
            if n == 0 {
                break;
            }
            line_no += 1;
            // Where the line is, for quarantine details (built only when one is needed).
            let at = || format!("{uri}:{line_no}");
            if !buf.ends_with(b"\n") && self.last && last_kind.is_some() {
                // The live segment's last line is still being written (the gateway appends a
                // line with one write; a crash's torn tail is removed when it restarts). It is
                // not a record yet: leave it for the next run, which sees the segment grown.
                s.error = Some(format!(
                    "{}: the last line is incomplete (a segment still being written); the next run reads it",
                    at()
                ));
                out.retry = true;
                break;
            }
            s.read += 1;
            if !buf.ends_with(b"\n") {
                let detail = format!("{}: {}", at(), ChainFault::Truncated);
                q.add(uri, line_no, Reason::TruncatedInput, &detail, &buf);
                last_kind = None;
                continue;
            }
            let (record, hash) = match checker.check(&String::from_utf8_lossy(&buf)) {
                Ok(checked) => checked,
                Err((seq, fault)) => {
                    let reason = match &fault {
                        ChainFault::Line(LineError::BadBody(_)) => Reason::InvalidRecord,
                        ChainFault::Line(_) => Reason::RecordAltered,
                        ChainFault::Truncated => Reason::TruncatedInput,
                        _ => Reason::ChainBroken,
                    };
                    let detail = match seq {
                        Some(n) => format!("{} (record seq {n}): {fault}", at()),
                        None => format!("{}: {fault}", at()),
                    };
                    q.add(uri, line_no, reason, &detail, &buf);
                    last_kind = None;
                    continue;
                }
            };
            out.tail = Some((record.seq, hash.clone()));
            last_kind = Some(record.kind());
            let kind = match record.kind() {
                RecordKind::Decision => "decisions",
                RecordKind::Outcome => "outcomes",
                RecordKind::Seal => "seals",
            };
            *s.kinds.entry(kind.to_string()).or_default() += 1;
            if matches!(record.body, Body::Seal(_)) {
                continue;
            }
            let Some(ms) = time_ms(&record) else {
                let detail = format!("{}: `ts` `{}` is not a time", at(), record.ts);
                q.add(uri, line_no, Reason::UnparseableTime, &detail, &buf);
                continue;
            };
            let date = date_of(ms);
            match &record.body {
                Body::Decision(d) => {
                    let c = out
                        .decisions
                        .entry(date)
                        .or_insert_with(|| DecisionColumns::new(1024));
                    append_decision(c, &record, d, &hash, ms, uri, line_no);
                }
                Body::Outcome(o) => {
                    let c = out
                        .outcomes
                        .entry(date)
                        .or_insert_with(|| OutcomeColumns::new(1024));
                    append_outcome(c, &record, o, &hash, ms, uri, line_no);
                }
                Body::Seal(_) => {}
            }
        }
        if self.more_follow && last_kind != Some(RecordKind::Seal) {
            s.error = Some(format!("{uri}: {}", ChainFault::Unsealed));
        }
        out
    }
}
