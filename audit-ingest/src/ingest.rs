//! Running an ingest: list sources, skip those already ingested, parse the rest on worker
//! threads (one per core), and write on this thread: de-duplicate, buffer per partition, write
//! Parquet, quarantine what could not be read, then record each source in the manifest.
//!
//! Memory stays bounded: sources are streamed, workers hand over rows in chunks through a
//! bounded channel, and the writer flushes partitions at a fixed row count.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, mpsc};

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::error::IngestError;
use crate::job::{Job, Sources};
use crate::json::date_of;
use crate::reject::{Reason, Reject};
use crate::source::{self, Filter, SourceObject};
use crate::split::{SplitErrorKind, Splitter};
use crate::{cloudtrail, otel};
use lake::Lake;
use lake::schema::{CloudTrailColumns, QuarantineColumns, SpanColumns, Table};
use lake::writer::Added;

const DAY_MS: i64 = 86_400_000;
/// Rows a worker collects before handing them to the writer.
const CHUNK_ROWS: usize = 16_384;
/// Rows a day's column builders have room for before they grow.
const START_ROWS: usize = 256;
/// Said of a source skipped because the manifest has it, unchanged.
pub const ALREADY_INGESTED: &str = "already ingested (unchanged since)";
/// Said of a source that failed to read: it is tried again, not skipped as done.
pub(crate) const RETRIED: &str = "not recorded as ingested, the next run reads it again";
/// Raw bytes kept of a quarantined record.
pub const MAX_QUARANTINE_RAW: usize = 64 * 1024;

/// Reports progress to whoever shows it (the CLI draws a bar on a terminal).
pub trait Progress: Send + Sync {
    fn start(&self, _sources: usize, _bytes: Option<u64>) {}
    fn advance(&self, _records: u64, _bytes: u64) {}
    fn finish(&self) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// What happened to one source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub read: u64,
    pub written: u64,
    pub duplicates: u64,
    pub quarantined: BTreeMap<String, u64>,
    /// Records that verified, by kind, for sources of several (decision segments: `decisions`,
    /// `outcomes`, `seals`; a seal closes the chain and is not a row). A record that did not
    /// verify is counted in `quarantined` instead.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<String, u64>,
    /// Why the source was not read (already ingested).
    pub skipped: Option<String>,
    /// Why reading stopped early, if it did.
    pub error: Option<String>,
}

impl SourceSummary {
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }

    /// Counts what a table writer did with this source's rows.
    pub fn count(&mut self, added: Added) {
        self.written += added.new as u64;
        self.duplicates += added.duplicates as u64;
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    pub table: String,
    pub lake: String,
    pub sources: Vec<SourceSummary>,
    /// Objects the listing found and did not read, each with why.
    pub skipped: Vec<source::Skipped>,
    pub files_written: Vec<String>,
    pub bytes_read: u64,
    pub elapsed_s: f64,
    /// With `--verify-integrity`: CloudTrail files by kind and state (`logs verified`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub integrity: BTreeMap<String, u64>,
}

impl IngestSummary {
    pub fn read(&self) -> u64 {
        self.sources.iter().map(|s| s.read).sum()
    }
    pub fn written(&self) -> u64 {
        self.sources.iter().map(|s| s.written).sum()
    }
    pub fn duplicates(&self) -> u64 {
        self.sources.iter().map(|s| s.duplicates).sum()
    }
    pub fn quarantined(&self) -> u64 {
        self.sources
            .iter()
            .map(SourceSummary::quarantined_total)
            .sum()
    }
    /// Records read by kind, over every source.
    pub fn kinds(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in &self.sources {
            for (k, n) in &s.kinds {
                *out.entry(k.clone()).or_default() += n;
            }
        }
        out
    }
    pub fn quarantined_by_reason(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in &self.sources {
            for (r, n) in &s.quarantined {
                *out.entry(r.clone()).or_default() += n;
            }
        }
        out
    }
}

pub struct Options {
    pub lake: Lake,
    pub filter: Filter,
    /// Worker threads; 0 means one per core.
    pub jobs: usize,
    /// Rows per written file (0: the default, `writer::FLUSH_ROWS`).
    pub flush_rows: usize,
    pub progress: Arc<dyn Progress>,
}

/// A kind of record file and the table it fills.
pub(crate) trait Kind: Send + Sync + 'static {
    type Cols: Send;
    const TABLE: Table;
    fn cols() -> Self::Cols;
    fn len(c: &Self::Cols) -> usize;
    fn finish(c: &mut Self::Cols) -> Result<RecordBatch, ArrowError>;
    /// Parses one record, appending rows to the builder of their day; returns what it rejected.
    /// `tag` is what the run knows of the record's source (a CloudTrail file's integrity).
    fn add(
        bytes: &[u8],
        days: &mut Days<Self::Cols>,
        source: &str,
        number: u64,
        tag: Option<&str>,
    ) -> Vec<Reject>;
}

/// Column builders by day (days since the epoch).
pub(crate) struct Days<C> {
    map: HashMap<i64, C>,
    new: fn() -> C,
}

impl<C> Days<C> {
    fn get(&mut self, time_ms: i64) -> &mut C {
        self.map
            .entry(time_ms.div_euclid(DAY_MS))
            .or_insert_with(self.new)
    }
}

pub(crate) struct CloudTrail;

impl Kind for CloudTrail {
    type Cols = CloudTrailColumns;
    const TABLE: Table = Table::CloudTrail;
    fn cols() -> Self::Cols {
        // Small to start and grown as rows come: a source's day often holds a few hundred rows,
        // and a builder's unused capacity would stay allocated in every batch it finishes.
        CloudTrailColumns::new(START_ROWS)
    }
    fn len(c: &Self::Cols) -> usize {
        c.len()
    }
    fn finish(c: &mut Self::Cols) -> Result<RecordBatch, ArrowError> {
        c.finish()
    }
    fn add(
        bytes: &[u8],
        days: &mut Days<Self::Cols>,
        source: &str,
        number: u64,
        tag: Option<&str>,
    ) -> Vec<Reject> {
        match cloudtrail::parse(bytes) {
            Ok(c) => {
                cloudtrail::append(days.get(c.time_ms), &c, source, number, tag);
                Vec::new()
            }
            Err(r) => vec![r],
        }
    }
}

pub(crate) struct Otel;

impl Kind for Otel {
    type Cols = SpanColumns;
    const TABLE: Table = Table::GenaiSpans;
    fn cols() -> Self::Cols {
        SpanColumns::new(1024)
    }
    fn len(c: &Self::Cols) -> usize {
        c.len()
    }
    fn finish(c: &mut Self::Cols) -> Result<RecordBatch, ArrowError> {
        c.finish()
    }
    fn add(
        bytes: &[u8],
        days: &mut Days<Self::Cols>,
        source: &str,
        number: u64,
        _tag: Option<&str>,
    ) -> Vec<Reject> {
        match otel::parse(bytes) {
            Ok(spans) => {
                let mut rejects = Vec::new();
                for s in spans {
                    match s {
                        Ok(p) => otel::append(days.get(p.start_ms), p, source, number),
                        Err((i, mut r)) => {
                            r.detail = format!("span {i}: {}", r.detail);
                            rejects.push(r);
                        }
                    }
                }
                rejects
            }
            Err(r) => vec![r],
        }
    }
}

enum Msg {
    Rows {
        source: usize,
        day: i64,
        batch: RecordBatch,
    },
    Quarantine {
        batch: RecordBatch,
    },
    Done {
        source: usize,
        read: u64,
        quarantined: BTreeMap<String, u64>,
        checksum: (String, u64),
        error: Option<String>,
        /// Reading failed in a way another run may not (a reset connection, an IO error): the
        /// source is not recorded as ingested, so the next run reads it again.
        retry: bool,
    },
    Failed(IngestError),
}

/// Builds quarantine rows.
pub struct QuarantineSink {
    cols: QuarantineColumns,
    now_ms: i64,
    pub counts: BTreeMap<String, u64>,
    table: Table,
}

impl QuarantineSink {
    pub fn new(table: Table) -> Self {
        Self {
            cols: QuarantineColumns::new(64),
            now_ms: chrono::Utc::now().timestamp_millis(),
            counts: BTreeMap::new(),
            table,
        }
    }

    pub fn add(&mut self, source: &str, number: u64, reason: Reason, detail: &str, raw: &[u8]) {
        let reason = reason.as_str();
        *self.counts.entry(reason.to_string()).or_default() += 1;
        let c = &mut self.cols;
        c.ingested_at.append_value(self.now_ms);
        c.quarantine_key.append_value(format!(
            "{}|{source}|{number}|{reason}|{detail}",
            self.table
        ));
        c.target_table.append_value(self.table.name());
        c.source.append_value(source);
        c.record_number.append_value(number as i64);
        c.reason.append_value(reason);
        c.detail.append_value(detail);
        let raw = &raw[..raw.len().min(MAX_QUARANTINE_RAW)];
        c.raw.append_value(String::from_utf8_lossy(raw));
        c.row_done();
    }

    pub fn len(&self) -> usize {
        self.cols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    pub fn take(&mut self) -> Result<RecordBatch, ArrowError> {
        self.cols.finish()
    }

    pub fn date(&self) -> String {
        date_of(self.now_ms)
    }
}

fn work<K: Kind>(
    index: usize,
    obj: &SourceObject,
    tag: Option<&str>,
    tx: &mpsc::SyncSender<Msg>,
    rt: &tokio::runtime::Handle,
    progress: &dyn Progress,
) {
    let mut q = QuarantineSink::new(K::TABLE);
    let (reader, sum) = match source::open(obj, rt) {
        Ok(r) => r,
        Err(e) => {
            q.add(&obj.uri, 0, Reason::UnreadableInput, &e.to_string(), b"");
            if let Ok(b) = q.take() {
                let _ = tx.send(Msg::Quarantine { batch: b });
            }
            let _ = tx.send(Msg::Done {
                source: index,
                read: 0,
                quarantined: q.counts,
                checksum: (String::new(), 0),
                error: Some(e.to_string()),
                retry: true,
            });
            return;
        }
    };
    let mut days = Days {
        map: HashMap::new(),
        new: K::cols,
    };
    let mut read = 0u64;
    let mut error = None;
    let mut retry = false;
    let mut last_bytes = 0;
    // Hands one day's rows to the writer; false when the run is over.
    let send_day = |days: &mut Days<K::Cols>, day: i64, tx: &mpsc::SyncSender<Msg>| -> bool {
        let Some(cols) = days.map.get_mut(&day) else {
            return true;
        };
        match K::finish(cols) {
            Ok(batch) => tx
                .send(Msg::Rows {
                    source: index,
                    day,
                    batch,
                })
                .is_ok(),
            Err(e) => {
                let _ = tx.send(Msg::Failed(IngestError::arrow(e)));
                false
            }
        }
    };
    for item in Splitter::new(reader) {
        read += 1;
        match item {
            Ok(el) => {
                for r in K::add(&el.bytes, &mut days, &obj.uri, el.number, tag) {
                    q.add(&obj.uri, el.number, r.reason, &r.detail, &el.bytes);
                }
            }
            Err(e) => {
                if e.raw.is_empty() && e.fatal && e.kind == SplitErrorKind::Truncated {
                    // The input ended between records: nothing of a record was lost, but the
                    // source is incomplete; say so without inventing a record.
                    read -= 1;
                } else {
                    q.add(&obj.uri, e.number, e.kind.reason(), &e.message, &e.raw);
                }
                if e.fatal {
                    retry = e.kind == SplitErrorKind::Unreadable;
                    error = Some(e.message);
                }
            }
        }
        if read.is_multiple_of(4096) {
            let bytes = sum.bytes();
            progress.advance(4096, bytes - last_bytes);
            last_bytes = bytes;
            let full: Vec<i64> = days
                .map
                .iter()
                .filter(|(_, c)| K::len(c) >= CHUNK_ROWS)
                .map(|(d, _)| *d)
                .collect();
            for day in full {
                if !send_day(&mut days, day, tx) {
                    return;
                }
            }
        }
    }
    let bytes = sum.bytes();
    progress.advance(read % 4096, bytes.saturating_sub(last_bytes));
    let all: Vec<i64> = days.map.keys().copied().collect();
    for day in all {
        if !send_day(&mut days, day, tx) {
            return;
        }
    }
    if !q.is_empty()
        && let Ok(b) = q.take()
    {
        let _ = tx.send(Msg::Quarantine { batch: b });
    }
    let _ = tx.send(Msg::Done {
        source: index,
        read,
        quarantined: q.counts,
        checksum: sum.finish(),
        error,
        retry,
    });
}

/// Ingests every object of `spec` into the kind's table; with `keys`, CloudTrail's digests are
/// checked first and each row carries its file's integrity.
pub(crate) fn run<K: Kind>(
    spec: &str,
    opts: &Options,
    keys: Option<&crate::integrity::PublicKeys>,
    rt: &tokio::runtime::Handle,
) -> Result<IngestSummary, IngestError> {
    let listing = rt.block_on(source::list(spec, &opts.filter))?;
    let objects = listing.objects;
    let tables: &[Table] = if keys.is_some() {
        &[K::TABLE, Table::CloudTrailFiles]
    } else {
        &[K::TABLE]
    };
    let mut job = Job::open(tables, Sources::Objects, opts, rt)?;
    job.summary.skipped = listing.skipped;
    let mut tags: Vec<Option<&'static str>> = vec![None; objects.len()];
    if let Some(keys) = keys {
        let report = crate::integrity::check(spec, &objects, keys, &opts.filter, rt)?;
        for (tag, o) in tags.iter_mut().zip(&objects) {
            let state = crate::integrity::delivery_key(&o.uri)
                .and_then(|k| report.logs.get(k).copied())
                .unwrap_or(crate::integrity::State::NoDigest);
            *tag = Some(state.as_str());
        }
        let mut rows = crate::integrity::rows(&report, spec);
        if !rows.is_empty() {
            let batch = rows.finish().map_err(IngestError::arrow)?;
            let today = job.sink().date();
            job.add(Table::CloudTrailFiles, &today, batch)?;
        }
        job.summary.integrity = report.counts();
    }
    job.summary.sources = objects
        .iter()
        .map(|o| SourceSummary {
            source: o.uri.clone(),
            ..Default::default()
        })
        .collect();
    let mut todo = VecDeque::new();
    for (i, o) in objects.iter().enumerate() {
        if job.unchanged(o).is_some() {
            job.summary.sources[i].skipped = Some(ALREADY_INGESTED.into());
            continue;
        }
        todo.push_back((i, o.clone(), tags[i]));
    }
    let total_bytes: Option<u64> = todo.iter().map(|(_, o, _)| o.size).sum();
    opts.progress.start(todo.len(), total_bytes);

    let jobs = if opts.jobs == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.jobs
    };
    let q_date = job.sink().date();
    let mut checksums: HashMap<usize, (String, u64)> = HashMap::new();
    let queue = Arc::new(Mutex::new(todo));
    let (tx, rx) = mpsc::sync_channel::<Msg>(jobs * 4);
    let mut failure = None;
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let queue = queue.clone();
            let tx = tx.clone();
            let rt = rt.clone();
            let progress = opts.progress.clone();
            scope.spawn(move || {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some((i, obj, tag)) = next else { break };
                    work::<K>(i, &obj, tag, &tx, &rt, progress.as_ref());
                }
            });
        }
        drop(tx);
        for msg in rx {
            if failure.is_some() {
                continue; // drain so workers can finish
            }
            let r: Result<(), IngestError> = (|| {
                match msg {
                    Msg::Rows { source, day, batch } => {
                        let added = job.add(K::TABLE, &date_of(day * DAY_MS), batch)?;
                        job.summary.sources[source].count(added);
                    }
                    Msg::Quarantine { batch } => job.quarantine_batch(&q_date, batch)?,
                    Msg::Done {
                        source,
                        read,
                        quarantined,
                        checksum,
                        error,
                        retry,
                    } => {
                        let s = &mut job.summary.sources[source];
                        s.read = read;
                        s.quarantined = quarantined;
                        s.error = error.map(|e| if retry { format!("{e}; {RETRIED}") } else { e });
                        job.summary.bytes_read += checksum.1;
                        if !retry {
                            checksums.insert(source, checksum);
                        }
                    }
                    Msg::Failed(e) => return Err(e),
                }
                Ok(())
            })();
            if let Err(e) = r {
                failure = Some(e);
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    for (i, o) in objects.iter().enumerate() {
        if let Some(checksum) = checksums.remove(&i) {
            let s = job.summary.sources[i].clone();
            job.ingested(o, &s, checksum, None);
        }
    }
    job.finish()
}

pub fn cloudtrail(
    spec: &str,
    opts: &Options,
    rt: &tokio::runtime::Handle,
) -> Result<IngestSummary, IngestError> {
    run::<CloudTrail>(spec, opts, None, rt)
}

/// [`cloudtrail`], checking CloudTrail's digest files first (see [`crate::integrity`]): every
/// row carries its file's integrity, and each file's verdict goes to `cloudtrail_files`.
pub fn cloudtrail_verified(
    spec: &str,
    keys: &crate::integrity::PublicKeys,
    opts: &Options,
    rt: &tokio::runtime::Handle,
) -> Result<IngestSummary, IngestError> {
    run::<CloudTrail>(spec, opts, Some(keys), rt)
}

pub fn otel(
    spec: &str,
    opts: &Options,
    rt: &tokio::runtime::Handle,
) -> Result<IngestSummary, IngestError> {
    run::<Otel>(spec, opts, None, rt)
}
