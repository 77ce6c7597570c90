//! One ingest run's writing side, shared by every ingest (delivered files, the LookupEvents API,
//! decision segments): the tables it fills, its quarantine, the manifest of its sources and its
//! summary. Sources are recorded in the manifest only by [`Job::finish`], after their rows are
//! committed.
//!
//! INVARIANT: a source is marked ingested only after its rows are committed.

use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use lake::manifest::{Entry, Manifest};
use lake::schema::Table;
use lake::writer::{Added, TableWriter};

use crate::error::IngestError;
use crate::ingest::{IngestSummary, Options, QuarantineSink, SourceSummary};
use crate::source::{Location, SourceObject};

/// What a run's sources are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sources {
    /// Files or objects, remembered in the manifest once ingested.
    Objects,
    /// An API's answers: nothing to remember.
    Api,
}

pub(crate) struct Job<'a> {
    opts: &'a Options,
    rt: tokio::runtime::Handle,
    /// The table whose manifest records the sources (the first one written).
    table: Table,
    writers: Vec<TableWriter>,
    quarantine: TableWriter,
    manifest: Manifest,
    entries: Vec<Entry>,
    pub summary: IngestSummary,
    started: Instant,
}

impl<'a> Job<'a> {
    /// A run that fills `tables` (the first names the manifest and the summary). Sources that
    /// are objects are recorded in the table's manifest; an API listing is not (every run reads
    /// it again, and its rows de-duplicate).
    pub fn open(
        tables: &[Table],
        sources: Sources,
        opts: &'a Options,
        rt: &tokio::runtime::Handle,
    ) -> Result<Self, IngestError> {
        let table = *tables
            .first()
            .ok_or_else(|| IngestError::Input("an ingest needs a table".into()))?;
        rt.block_on(lake::layout::prepare_for_writing(&opts.lake))?;
        let writers = tables
            .iter()
            .map(|t| {
                TableWriter::new(opts.lake.clone(), *t, rt.clone()).with_flush_rows(opts.flush_rows)
            })
            .collect();
        let manifest = if sources == Sources::Objects {
            rt.block_on(Manifest::load(&opts.lake, table.name()))?
        } else {
            Manifest::default()
        };
        Ok(Self {
            opts,
            rt: rt.clone(),
            table,
            writers,
            quarantine: TableWriter::new(opts.lake.clone(), Table::Quarantine, rt.clone()),
            manifest,
            entries: Vec::new(),
            summary: IngestSummary {
                table: table.name().into(),
                lake: opts.lake.display.clone(),
                ..Default::default()
            },
            started: Instant::now(),
        })
    }

    /// A quarantine sink for this run's records.
    pub fn sink(&self) -> QuarantineSink {
        QuarantineSink::new(self.table)
    }

    /// The manifest entry of `obj` when it was ingested before and has not changed since.
    pub fn unchanged(&self, obj: &SourceObject) -> Option<&Entry> {
        if matches!(obj.location, Location::Stdin) {
            return None;
        }
        self.manifest
            .get(&obj.uri)
            .filter(|e| e.unchanged(obj.size, obj.version.as_deref()))
    }

    /// Adds a day's rows to `table`.
    pub fn add(
        &mut self,
        table: Table,
        date: &str,
        batch: RecordBatch,
    ) -> Result<Added, IngestError> {
        let writer = self
            .writers
            .iter_mut()
            .find(|w| w.table() == table)
            .ok_or_else(|| IngestError::Input(format!("this run does not write `{table}`")))?;
        Ok(writer.add(date, batch)?)
    }

    /// Writes what `sink` holds to `_quarantine` (nothing when it is empty).
    pub fn quarantine(&mut self, sink: &mut QuarantineSink) -> Result<(), IngestError> {
        if sink.is_empty() {
            return Ok(());
        }
        let batch = sink.take().map_err(IngestError::arrow)?;
        self.quarantine_batch(&sink.date(), batch)
    }

    pub fn quarantine_batch(&mut self, date: &str, batch: RecordBatch) -> Result<(), IngestError> {
        self.quarantine.add(date, batch)?;
        Ok(())
    }

    /// Notes that `obj` was read whole: recorded in the manifest when the run finishes.
    /// `tail` is the chain position a decision segment ends at.
    pub fn ingested(
        &mut self,
        obj: &SourceObject,
        s: &SourceSummary,
        (sha256, size): (String, u64),
        tail: Option<(u64, String)>,
    ) {
        if sha256.is_empty() || matches!(obj.location, Location::Stdin) {
            return;
        }
        self.entries.push(Entry {
            uri: obj.uri.clone(),
            size: obj.size.unwrap_or(size),
            version: obj.version.clone(),
            sha256,
            records_read: s.read,
            rows_written: s.written,
            duplicates: s.duplicates,
            quarantined: s.quarantined_total(),
            ingested_at: chrono::Utc::now().to_rfc3339(),
            tail,
        });
    }

    /// Commits every table, then records the sources read whole in the manifest.
    pub fn finish(mut self) -> Result<IngestSummary, IngestError> {
        for w in &mut self.writers {
            w.finish()?;
        }
        self.quarantine.finish()?;
        self.rt.block_on(
            self.manifest
                .store(&self.opts.lake, self.table.name(), self.entries),
        )?;
        self.opts.progress.finish();
        let mut summary = self.summary;
        for w in &self.writers {
            summary
                .files_written
                .extend(w.files_written.iter().cloned());
        }
        summary
            .files_written
            .extend(self.quarantine.files_written.iter().cloned());
        summary.elapsed_s = self.started.elapsed().as_secs_f64();
        Ok(summary)
    }
}
