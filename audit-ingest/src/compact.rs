//! `cairn ingest compact`: merges the small files of each partition into files of up to
//! [`FLUSH_ROWS`](crate::lake::writer::FLUSH_ROWS) rows, sorted by time, without duplicates.
//! The merged file is written before the files it replaces are deleted, so no row is ever
//! absent; a reader scanning during that moment may see a row twice.

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::error::IngestError;
use crate::lake::Lake;
use crate::lake::writer::TableWriter;

/// Files at or above this size are left alone.
pub const SMALL_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Default, Clone, Serialize)]
pub struct CompactSummary {
    pub table: String,
    pub partitions: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub rows: usize,
}

pub fn compact(
    lake: &Lake,
    table: &str,
    rt: &tokio::runtime::Handle,
) -> Result<CompactSummary, IngestError> {
    let mut out = CompactSummary {
        table: table.to_string(),
        ..Default::default()
    };
    let schema = crate::schema::schema_of(table)
        .ok_or_else(|| IngestError::Input(format!("unknown table `{table}`")))?;
    for date in rt.block_on(lake.partitions(table))? {
        let files: Vec<_> = rt
            .block_on(lake.data_files(table, Some(&date)))?
            .into_iter()
            .filter(|f| f.size < SMALL_FILE_BYTES)
            .collect();
        if files.len() < 2 {
            continue;
        }
        out.partitions += 1;
        out.files_before += files.len();
        // A fresh writer de-duplicates within this partition only (it starts with no keys).
        let mut w = TableWriter::new_empty(lake.clone(), table, rt.clone())?;
        for f in &files {
            let Some(bytes) = rt.block_on(lake.get(&f.location))? else {
                continue;
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .map_err(IngestError::parquet)?
                .build()
                .map_err(IngestError::parquet)?;
            let batches: Vec<RecordBatch> = reader
                .collect::<Result<_, _>>()
                .map_err(IngestError::arrow)?;
            let batch = concat_batches(&schema, &batches).map_err(IngestError::arrow)?;
            out.rows += w.add(&date, batch)?.new;
        }
        w.finish()?;
        out.files_after += w.files_written.len();
        for f in &files {
            rt.block_on(lake.delete(&f.location))?;
        }
    }
    Ok(out)
}
