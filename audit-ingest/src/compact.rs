//! `cairn ingest compact`: merges the small files of each partition into files of
//! [`FLUSH_ROWS`](lake::writer::FLUSH_ROWS) rows, sorted by time, without duplicates.
//! A file is small when it holds fewer rows than that (read from its footer alone); a partition
//! with at most one small file is left as it is, so compaction settles: a second run finds
//! nothing to do. The merged file is written before the files it replaces are deleted, so no
//! row is ever absent; a reader scanning during that moment may see a row twice.
//!
//! Compaction also migrates: a file of an earlier layout (a column of another type, such as
//! the JSON-text lists of layout 1) is rewritten whatever its size, its values converted
//! ([`fit`]); once no such file is left anywhere, the lake is marked current
//! ([`finish_migration`]).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, new_null_array};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use serde::Serialize;

use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::object_store::ObjectMeta;

use crate::error::IngestError;
use crate::ingest::QuarantineSink;
use crate::reject::Reason;
use lake::Lake;
use lake::layout::{self, Layout};
use lake::resources::{Resource, ResourceListBuilder};
use lake::schema::{LAYOUT_VERSION, StrListBuilder, Table, append_strings, str_list_type};
use lake::writer::{FLUSH_ROWS, TableWriter};

/// Files at or above this size are left alone whatever their row count.
pub const SMALL_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// What a file's footer says (ranged reads, not the whole file).
struct Footer {
    rows: usize,
    /// A column of the table has another type in this file: an earlier layout.
    outdated: bool,
}

async fn footer(lake: &Lake, file: &ObjectMeta, schema: &SchemaRef) -> Result<Footer, IngestError> {
    let bad = |e: &dyn std::fmt::Display| IngestError::Parquet(format!("{}: {e}", file.location));
    let meta = DFParquetMetadata::new(lake.store.as_ref(), file)
        .fetch_metadata()
        .await
        .map_err(|e| bad(&e))?;
    let fm = meta.file_metadata();
    let file_schema =
        parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata()).map_err(|e| bad(&e))?;
    let outdated = schema.fields().iter().any(|f| {
        file_schema
            .field_with_name(f.name())
            .is_ok_and(|ff| ff.data_type() != f.data_type())
    });
    Ok(Footer {
        rows: usize::try_from(fm.num_rows()).unwrap_or(0),
        outdated,
    })
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct CompactSummary {
    pub table: String,
    pub partitions: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub rows: usize,
    /// Files of an earlier layout rewritten.
    pub migrated: usize,
    /// Values of an earlier layout that did not convert: set to null in their row and kept in
    /// `_quarantine` (reason `wrong_shape`, the file and row as source and record number).
    pub quarantined: usize,
}

/// A value of an earlier layout that does not convert to the column's type now.
#[derive(Debug)]
struct Unconverted {
    column: String,
    row: usize,
    detail: String,
    raw: String,
}

/// A JSON array of strings (layout 1's text) as a list; a member that is not a string keeps
/// its JSON text, and text that is not an array becomes a list of itself, so nothing is lost.
fn json_strings(v: &str) -> Vec<String> {
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|i| match i {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        // A lone string attribute was kept as its JSON text (`"stop"`): the string itself.
        Ok(serde_json::Value::String(s)) => vec![s],
        _ => vec![v.to_string()],
    }
}

/// Converts a column of JSON text to the list type the table now declares; a value that does
/// not convert is null in the result and listed in `bad`.
fn from_json_text(
    c: &ArrayRef,
    to: &DataType,
    name: &str,
    bad: &mut Vec<Unconverted>,
) -> Result<ArrayRef, ArrowError> {
    let Some(text) = c.as_string_opt::<i32>() else {
        return cast(c, to);
    };
    if *to == str_list_type() {
        let mut b = StrListBuilder::new(datafusion::arrow::array::StringBuilder::new());
        for v in text.iter() {
            append_strings(&mut b, v.map(json_strings));
        }
        return Ok(Arc::new(b.finish()));
    }
    if *to == lake::resources::resource_list_type() {
        let mut b = ResourceListBuilder::with_capacity(text.len());
        for (i, v) in text.iter().enumerate() {
            let list = match v.map(serde_json::from_str::<Vec<Resource>>).transpose() {
                Ok(list) => list,
                Err(e) => {
                    bad.push(Unconverted {
                        column: name.to_string(),
                        row: i,
                        detail: format!(
                            "`{name}` is not a list of {{ARN, accountId, type}} objects ({e}); the row keeps null"
                        ),
                        raw: v.unwrap_or_default().to_string(),
                    });
                    None
                }
            };
            b.append_option(list.as_deref());
        }
        return Ok(Arc::new(b.finish()));
    }
    cast(c, to)
}

/// A batch read from a file written under an earlier version of the table, laid out as the
/// table is now: columns matched by name, a column the file lacks filled with nulls, a column
/// of another type converted (what does not convert is listed in `bad`).
fn fit(
    batch: &RecordBatch,
    schema: &SchemaRef,
    bad: &mut Vec<Unconverted>,
) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) if c.data_type() == &DataType::Utf8 => {
                from_json_text(c, f.data_type(), f.name(), bad)
            }
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

fn compact(
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
        let mut outdated = 0;
        let all = rt.block_on(lake.data_files(name, Some(&date)))?;
        let mut current = Vec::new();
        for f in all {
            let footer = rt.block_on(footer(lake, &f, &schema))?;
            if footer.outdated {
                outdated += 1;
                files.push(f);
            } else if f.size < SMALL_FILE_BYTES && footer.rows < FLUSH_ROWS {
                files.push(f);
            } else {
                current.push(f);
            }
        }
        if files.len() < 2 && outdated == 0 {
            continue;
        }
        // A partition being migrated is rewritten whole: a run stopped after writing its new
        // files and before deleting the old ones leaves both, and only rewriting them together
        // (de-duplicated) settles that.
        if outdated > 0 {
            files.append(&mut current);
        }
        out.migrated += outdated;
        out.partitions += 1;
        out.files_before += files.len();
        // A fresh writer de-duplicates within this partition only (it starts with no keys).
        let mut w = TableWriter::new_empty(lake.clone(), table, rt.clone());
        let mut sink = QuarantineSink::new(table);
        for f in &files {
            let Some(bytes) = rt.block_on(lake.get(&f.location))? else {
                continue;
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .map_err(IngestError::parquet)?
                .build()
                .map_err(IngestError::parquet)?;
            let mut batches: Vec<RecordBatch> = Vec::new();
            let mut offset = 0;
            for b in reader {
                let b = b.map_err(IngestError::arrow)?;
                let mut bad = Vec::new();
                batches.push(fit(&b, &schema, &mut bad).map_err(IngestError::arrow)?);
                for u in bad {
                    sink.add(
                        f.location.as_ref(),
                        (offset + u.row + 1) as u64,
                        Reason::WrongShape,
                        &format!("column `{}`: {}", u.column, u.detail),
                        u.raw.as_bytes(),
                    );
                }
                offset += b.num_rows();
            }
            let batch = concat_batches(&schema, &batches).map_err(IngestError::arrow)?;
            out.rows += w.add(&date, batch)?.new;
        }
        w.finish()?;
        if !sink.is_empty() {
            out.quarantined += sink.len();
            let mut q = TableWriter::new(lake.clone(), Table::Quarantine, rt.clone());
            let date = sink.date();
            q.add(&date, sink.take().map_err(IngestError::arrow)?)?;
            q.finish()?;
        }
        out.files_after += w.files_written.len();
        for f in &files {
            rt.block_on(lake.delete(&f.location))?;
        }
    }
    Ok(out)
}

/// What `cairn ingest compact` did to each table, and to the lake's layout.
#[derive(Debug, Serialize)]
pub struct Compaction {
    pub tables: Vec<CompactSummary>,
    /// Every file is of the current layout (and the lake is marked so).
    pub layout_current: bool,
    /// This run brought the lake from an earlier layout to the current one.
    pub migrated: bool,
}

/// Compacts `tables` (and migrates their files of an earlier layout); once no such file is
/// left in any table, marks the lake current. A lake of a later layout is refused.
pub fn compact_all(
    lake: &Lake,
    tables: &[Table],
    rt: &tokio::runtime::Handle,
) -> Result<Compaction, IngestError> {
    let was = rt.block_on(layout::detect(lake))?;
    if let Layout::Other(v) = was
        && v > LAYOUT_VERSION
    {
        return Err(lake::LakeError::OldLayout {
            lake: lake.display.clone(),
            found: v,
            current: LAYOUT_VERSION,
        }
        .into());
    }
    let summaries = tables
        .iter()
        .map(|t| compact(lake, *t, rt))
        .collect::<Result<Vec<_>, _>>()?;
    let layout_current = match was {
        Layout::Current => true,
        Layout::Empty => false,
        // Every table rewritten here has no old file left; others must be looked at.
        Layout::Other(_) => {
            let rest: Vec<Table> = Table::ALL
                .into_iter()
                .filter(|t| !tables.contains(t))
                .collect();
            let done = !any_outdated(lake, &rest, rt)?;
            if done {
                rt.block_on(layout::mark_current(lake))?;
            }
            done
        }
    };
    Ok(Compaction {
        tables: summaries,
        layout_current,
        migrated: layout_current && matches!(was, Layout::Other(_)),
    })
}

/// Whether any file of `tables` is of an earlier layout (read from the footers).
fn any_outdated(
    lake: &Lake,
    tables: &[Table],
    rt: &tokio::runtime::Handle,
) -> Result<bool, IngestError> {
    for table in tables.iter().copied() {
        let schema = table.schema();
        for f in rt.block_on(lake.data_files(table.name(), None))? {
            if rt.block_on(footer(lake, &f, &schema))?.outdated {
                return Ok(true);
            }
        }
    }
    Ok(false)
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
        let fitted = fit(&batch, &now, &mut Vec::new()).unwrap();
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

    #[test]
    fn json_text_lists_of_layout_1_become_lists() {
        let old = Arc::new(Schema::new(vec![
            Field::new("reasons", DataType::Utf8, true),
            Field::new("resources", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            old,
            vec![
                Arc::new(StringArray::from(vec![
                    Some(r#"["a","b"]"#),
                    None,
                    Some(r#"[1]"#),
                ])),
                Arc::new(StringArray::from(vec![
                    Some(r#"[{"ARN":"arn:x","accountId":"1","type":"T"}]"#),
                    None,
                    Some("[]"),
                ])),
            ],
        )
        .unwrap();
        let now: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("reasons", str_list_type(), true),
            Field::new("resources", lake::resources::resource_list_type(), true),
        ]));
        let fitted = fit(&batch, &now, &mut Vec::new()).unwrap();
        let reasons = fitted.column(0).as_list::<i32>();
        assert_eq!(reasons.value(0).as_string::<i32>().value(1), "b");
        assert!(reasons.is_null(1));
        assert_eq!(reasons.value(2).as_string::<i32>().value(0), "1");
        let resources = fitted.column(1).as_list::<i32>();
        let first = resources.value(0);
        assert_eq!(
            first.as_struct().column(0).as_string::<i32>().value(0),
            "arn:x"
        );
        assert!(resources.is_null(1) && resources.value_length(2) == 0);

        let bad = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "resources",
                DataType::Utf8,
                true,
            )])),
            vec![Arc::new(StringArray::from(vec![r#"{"not":"a list"}"#]))],
        )
        .unwrap();
        let now: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "resources",
            lake::resources::resource_list_type(),
            true,
        )]));
        let mut unconverted = Vec::new();
        let fitted = fit(&bad, &now, &mut unconverted).unwrap();
        assert!(fitted.column(0).is_null(0), "the row stays, its value null");
        assert_eq!(unconverted.len(), 1);
        assert_eq!(unconverted[0].raw, r#"{"not":"a list"}"#);
        assert!(unconverted[0].detail.contains("`resources`"));
        assert_eq!(json_strings(r#""stop""#), vec!["stop".to_string()]);
    }
}
