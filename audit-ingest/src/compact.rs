//! `cairn ingest compact`: merges the small files of each partition into files of
//! [`FLUSH_ROWS`](lake::writer::FLUSH_ROWS) rows, sorted by time, without duplicates.
//! A file is small when it holds fewer rows than that (read from its footer alone); a partition
//! with at most one small file is left as it is, so compaction settles: a second run finds
//! nothing to do. The merged file is written before the files it replaces are deleted, so no
//! row is ever absent; a reader scanning during that moment may see a row twice.

use datafusion::arrow::array::new_null_array;
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::object_store::ObjectMeta;

use crate::error::IngestError;
use lake::Lake;
use lake::schema::Table;
use lake::writer::{FLUSH_ROWS, TableWriter};

/// Files at or above this size are left alone whatever their row count.
pub const SMALL_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Rows in a Parquet file, from its footer alone (ranged reads, not the whole file).
async fn rows_in(lake: &Lake, file: &ObjectMeta) -> Result<usize, IngestError> {
    let meta = DFParquetMetadata::new(lake.store.as_ref(), file)
        .fetch_metadata()
        .await
        .map_err(|e| IngestError::Parquet(format!("{}: {e}", file.location)))?;
    Ok(usize::try_from(meta.file_metadata().num_rows()).unwrap_or(0))
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CompactSummary {
    pub table: String,
    pub partitions: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub rows: usize,
}

/// A batch read from a file written under an earlier version of the table, laid out as the
/// table is now: columns matched by name, a column the file lacks filled with nulls.
fn fit(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

pub fn compact(
    lake: &Lake,
    table: Table,
    rt: &tokio::runtime::Handle,
) -> Result<CompactSummary, IngestError> {
    let mut out = CompactSummary {
        table: table.name().to_string(),
        ..Default::default()
    };
    let schema = table.schema();
    let name = table.name();
    for date in rt.block_on(lake.partitions(name))? {
        let mut files = Vec::new();
        for f in rt.block_on(lake.data_files(name, Some(&date)))? {
            if f.size < SMALL_FILE_BYTES && rt.block_on(rows_in(lake, &f))? < FLUSH_ROWS {
                files.push(f);
            }
        }
        if files.len() < 2 {
            continue;
        }
        out.partitions += 1;
        out.files_before += files.len();
        // A fresh writer de-duplicates within this partition only (it starts with no keys).
        let mut w = TableWriter::new_empty(lake.clone(), table, rt.clone());
        for f in &files {
            let Some(bytes) = rt.block_on(lake.get(&f.location))? else {
                continue;
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .map_err(IngestError::parquet)?
                .build()
                .map_err(IngestError::parquet)?;
            let batches: Vec<RecordBatch> = reader
                .map(|b| b.and_then(|b| fit(&b, &schema)))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn files_of_an_earlier_layout_fit_the_table() {
        // A file written before `reason` was added, with its columns in another order.
        let old = Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, true),
            Field::new("id", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            old,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .unwrap();
        let now: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("seq", DataType::Int64, true),
            Field::new("reason", DataType::Utf8, true),
        ]));
        let fitted = fit(&batch, &now).unwrap();
        assert_eq!(fitted.schema(), now);
        assert_eq!(fitted.column(2).null_count(), 2);
        assert_eq!(
            fitted
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(1),
            "b"
        );
    }
}
