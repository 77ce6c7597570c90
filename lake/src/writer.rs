//! Writing one table: rows arrive in batches tagged with their `date`; keys already in the lake
//! (or earlier in this run) are dropped as duplicates; each partition is buffered, sorted by
//! time, and written as zstd Parquet when it is large enough or the run ends.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::{concat, filter_record_batch, take};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::Lake;
use crate::error::LakeError;
pub use crate::parquet_settings::{ROW_GROUP_ROWS, writer_properties};
use crate::schema::Table;

/// A partition is written once it holds this many rows.
pub const FLUSH_ROWS: usize = 131_072;
/// All partitions together hold at most this many rows; above it the largest is written.
pub const MAX_BUFFERED_ROWS: usize = 131_072;

/// A 128-bit fingerprint of a key: collisions are negligible where a 64-bit one would not be.
fn fingerprint(key: &[KeyPart<'_>]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    (key, 0x9e37_79b9_7f4a_7c15_u64).hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

#[derive(Hash)]
enum KeyPart<'a> {
    Null,
    Text(&'a str),
    Int(i64),
}

/// The key columns of a batch, readable row by row.
struct KeyColumns {
    columns: Vec<std::sync::Arc<dyn Array>>,
}

impl KeyColumns {
    fn new(batch: &RecordBatch, names: &[&str]) -> Result<Self, LakeError> {
        let columns = names
            .iter()
            .map(|n| {
                batch
                    .column_by_name(n)
                    .cloned()
                    .ok_or_else(|| LakeError::MissingColumn(n.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { columns })
    }

    fn fingerprint(&self, row: usize) -> u128 {
        let parts: Vec<KeyPart<'_>> = self
            .columns
            .iter()
            .map(|c| {
                if c.is_null(row) {
                    KeyPart::Null
                } else if let Some(s) = c.as_string_opt::<i32>() {
                    KeyPart::Text(s.value(row))
                } else if let Some(t) =
                    c.as_primitive_opt::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                {
                    KeyPart::Int(t.value(row))
                } else if let Some(i) =
                    c.as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                {
                    KeyPart::Int(i.value(row))
                } else {
                    KeyPart::Null
                }
            })
            .collect();
        fingerprint(&parts)
    }
}

/// Encodes batches (already sorted) as one Parquet file.
pub fn encode(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, LakeError> {
    let mut w = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(writer_properties()))
        .map_err(LakeError::from)?;
    for b in batches {
        w.write(b).map_err(LakeError::from)?;
    }
    w.into_inner().map_err(LakeError::from)
}

/// Encodes `batches` as one Parquet file with their rows sorted by the `time` column (stable:
/// input order breaks ties). Sorted one column at a time, each column's input released as soon
/// as its sorted copy exists, so a partition is held about once, not three times (input,
/// concatenation, sorted copy).
pub fn encode_sorted(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    time: &str,
) -> Result<Vec<u8>, LakeError> {
    let mut order: Vec<(i64, u32)> = Vec::new();
    for batch in &batches {
        let times = batch
            .column_by_name(time)
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>());
        for r in 0..batch.num_rows() {
            let t = times.map_or(0, |t| if t.is_null(r) { i64::MIN } else { t.value(r) });
            order.push((t, order.len() as u32));
        }
    }
    order.sort_by_key(|(t, _)| *t);
    let indices = UInt32Array::from_iter_values(order.into_iter().map(|(_, i)| i));
    let mut by_column: Vec<Vec<ArrayRef>> = (0..schema.fields().len())
        .map(|c| batches.iter().map(|b| b.column(c).clone()).collect())
        .collect();
    drop(batches);
    let mut sorted = Vec::with_capacity(by_column.len());
    for parts in &mut by_column {
        let parts = std::mem::take(parts);
        let refs: Vec<&dyn Array> = parts.iter().map(AsRef::as_ref).collect();
        let all = concat(&refs).map_err(LakeError::from)?;
        drop(refs);
        drop(parts);
        sorted.push(take(&all, &indices, None).map_err(LakeError::from)?);
    }
    let batch = RecordBatch::try_new(schema.clone(), sorted).map_err(LakeError::from)?;
    encode(schema, &[batch])
}

#[derive(Default)]
struct Partition {
    batches: Vec<RecordBatch>,
    rows: usize,
}

/// What `add` did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub new: usize,
    pub duplicates: usize,
}

pub struct TableWriter {
    lake: Lake,
    table: Table,
    schema: SchemaRef,
    key: &'static [&'static str],
    time: &'static str,
    partitions: HashMap<String, Partition>,
    seen: HashMap<String, HashSet<u128>>,
    buffered: usize,
    pub files_written: Vec<String>,
    pub rows_written: usize,
    skip_existing: bool,
    flush_rows: usize,
    rt: tokio::runtime::Handle,
}

impl TableWriter {
    pub fn new(lake: Lake, table: Table, rt: tokio::runtime::Handle) -> Self {
        let schema = table.schema();
        let (key, time) = table.key_and_time();
        Self {
            lake,
            table,
            schema,
            key,
            time,
            partitions: HashMap::new(),
            seen: HashMap::new(),
            buffered: 0,
            files_written: Vec::new(),
            rows_written: 0,
            skip_existing: false,
            flush_rows: FLUSH_ROWS,
            rt,
        }
    }

    /// Writes partitions at `rows` rows instead of [`FLUSH_ROWS`] (smaller files, less memory).
    pub fn with_flush_rows(mut self, rows: usize) -> Self {
        if rows > 0 {
            self.flush_rows = rows;
        }
        self
    }

    /// A writer that does not look at the lake's existing keys (compaction rewrites them).
    pub fn new_empty(lake: Lake, table: Table, rt: tokio::runtime::Handle) -> Self {
        let mut w = Self::new(lake, table, rt);
        w.skip_existing = true;
        w
    }

    /// Keys already in a partition of the lake, read from its files' key column only.
    fn load_existing(&mut self, date: &str) -> Result<(), LakeError> {
        if self.seen.contains_key(date) {
            return Ok(());
        }
        // The first time this run touches the partition.
        let removed = self.lake.remove_stale_staging(self.table.name(), date);
        if removed > 0 {
            tracing::info!(table = %self.table, date, removed, "removed staging files an interrupted run left");
        }
        if self.skip_existing {
            self.seen.insert(date.to_string(), HashSet::new());
            return Ok(());
        }
        let mut keys = HashSet::new();
        let files = self
            .rt
            .block_on(self.lake.data_files(self.table.name(), Some(date)))?;
        for f in files {
            let Some(bytes) = self.rt.block_on(self.lake.get(&f.location))? else {
                continue;
            };
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(LakeError::from)?;
            let idx: Vec<usize> = builder
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, fl)| self.key.contains(&fl.name().as_str()))
                .map(|(i, _)| i)
                .collect();
            if idx.len() != self.key.len() {
                continue;
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
            let reader = builder
                .with_projection(mask)
                .build()
                .map_err(LakeError::from)?;
            for batch in reader {
                let batch = batch.map_err(LakeError::from)?;
                let cols = KeyColumns::new(&batch, self.key)?;
                for i in 0..batch.num_rows() {
                    keys.insert(cols.fingerprint(i));
                }
            }
        }
        self.seen.insert(date.to_string(), keys);
        Ok(())
    }

    /// Adds rows of one partition, dropping keys seen before (in the lake or in this run).
    pub fn add(&mut self, date: &str, batch: RecordBatch) -> Result<Added, LakeError> {
        if batch.num_rows() == 0 {
            return Ok(Added::default());
        }
        self.load_existing(date)?;
        let seen = self.seen.entry(date.to_string()).or_default();
        let keys = KeyColumns::new(&batch, self.key)?;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| Some(seen.insert(keys.fingerprint(i))))
            .collect();
        let kept = keep.true_count();
        let added = Added {
            new: kept,
            duplicates: batch.num_rows() - kept,
        };
        let batch = if kept == batch.num_rows() {
            batch
        } else {
            filter_record_batch(&batch, &keep).map_err(LakeError::from)?
        };
        if batch.num_rows() > 0 {
            let p = self.partitions.entry(date.to_string()).or_default();
            p.rows += batch.num_rows();
            p.batches.push(batch);
            self.buffered += kept;
            if p.rows >= self.flush_rows {
                self.flush(date)?;
            }
            while self.buffered > MAX_BUFFERED_ROWS.max(self.flush_rows) {
                let Some(largest) = self
                    .partitions
                    .iter()
                    .max_by_key(|(_, p)| p.rows)
                    .map(|(d, _)| d.clone())
                else {
                    break;
                };
                self.flush(&largest)?;
            }
        }
        Ok(added)
    }

    /// Writes one partition's buffered rows as a file.
    pub fn flush(&mut self, date: &str) -> Result<(), LakeError> {
        let Some(p) = self.partitions.remove(date) else {
            return Ok(());
        };
        if p.rows == 0 {
            return Ok(());
        }
        self.buffered -= p.rows;
        let rows = p.rows;
        let bytes = encode_sorted(&self.schema, p.batches, self.time)?;
        let path = self
            .lake
            .partition(self.table.name(), date)
            .join(format!("part-{}.parquet", uuid::Uuid::now_v7().simple()));
        self.rt.block_on(self.lake.put(&path, bytes))?;
        self.rows_written += rows;
        self.files_written.push(path.to_string());
        Ok(())
    }

    /// Writes everything still buffered.
    pub fn finish(&mut self) -> Result<(), LakeError> {
        let dates: Vec<String> = self.partitions.keys().cloned().collect();
        for d in dates {
            self.flush(&d)?;
        }
        Ok(())
    }

    pub fn table(&self) -> Table {
        self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_and_repeat() {
        let f = |s| fingerprint(&[KeyPart::Text(s), KeyPart::Int(1)]);
        assert_eq!(f("a"), f("a"));
        assert_ne!(f("a"), f("b"));
        assert_ne!(
            fingerprint(&[KeyPart::Text("a"), KeyPart::Null]),
            fingerprint(&[KeyPart::Text("a"), KeyPart::Int(0)])
        );
    }
}
