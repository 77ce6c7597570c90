//! Query results as a table, CSV, JSON (an array of objects), JSON lines, a Markdown table or
//! Parquet.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::error::ReportError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
    Jsonl,
    Markdown,
    Parquet,
}

fn arrow(e: impl std::fmt::Display) -> ReportError {
    ReportError::Execution(e.to_string())
}

/// Writes results in `format`.
pub fn write(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    out: &mut dyn std::io::Write,
) -> Result<(), ReportError> {
    match format {
        Format::Table => {
            let text = if batches.iter().all(|b| b.num_rows() == 0) {
                let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
                format!("{}\n(0 rows)", cols.join(" | "))
            } else {
                datafusion::arrow::util::pretty::pretty_format_batches(batches)
                    .map_err(arrow)?
                    .to_string()
            };
            writeln!(out, "{text}").map_err(arrow)
        }
        Format::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            if batches.is_empty() {
                w.write(&nested_as_json_text(&RecordBatch::new_empty(
                    schema.clone(),
                ))?)
                .map_err(arrow)?;
            }
            for b in batches {
                w.write(&nested_as_json_text(b)?).map_err(arrow)?;
            }
            Ok(())
        }
        Format::Json => {
            let rows = to_json_rows(batches)?;
            serde_json::to_writer_pretty(&mut *out, &rows).map_err(arrow)?;
            writeln!(out).map_err(arrow)
        }
        Format::Jsonl => {
            for row in to_json_rows(batches)? {
                serde_json::to_writer(&mut *out, &row).map_err(arrow)?;
                writeln!(out).map_err(arrow)?;
            }
            Ok(())
        }
        Format::Markdown => {
            let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            writeln!(
                out,
                "| {} |",
                cols.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
            )
            .map_err(arrow)?;
            writeln!(out, "|{}", "---|".repeat(cols.len())).map_err(arrow)?;
            for row in to_json_rows(batches)? {
                let cells: Vec<String> = cols
                    .iter()
                    .map(|c| match row.get(c) {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => cell(s),
                        Some(v) => cell(&v.to_string()),
                    })
                    .collect();
                writeln!(out, "| {} |", cells.join(" | ")).map_err(arrow)?;
            }
            Ok(())
        }
        Format::Parquet => {
            let mut buf = Vec::new();
            let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
                &mut buf,
                schema.clone(),
                Some(lake::writer_properties()),
            )
            .map_err(arrow)?;
            for b in batches {
                w.write(b).map_err(arrow)?;
            }
            w.close().map_err(arrow)?;
            out.write_all(&buf).map_err(arrow)
        }
    }
}

/// The batch with its list and struct columns as JSON text, for CSV, which has no nesting.
fn nested_as_json_text(b: &RecordBatch) -> Result<RecordBatch, ReportError> {
    let nested = |t: &DataType| t.is_nested();
    if !b.schema().fields().iter().any(|f| nested(f.data_type())) {
        return Ok(b.clone());
    }
    let rows = to_json_rows(std::slice::from_ref(b))?;
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, f) in b.schema().fields().iter().enumerate() {
        if !nested(f.data_type()) {
            fields.push(f.as_ref().clone());
            columns.push(b.column(i).clone());
            continue;
        }
        let text: StringArray = rows
            .iter()
            .map(|r| match r.get(f.name()) {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.to_string()),
            })
            .collect();
        fields.push(Field::new(f.name(), DataType::Utf8, true));
        columns.push(Arc::new(text));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow)
}

/// A Markdown table cell: pipes escaped, line breaks as `<br>`.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace('\n', "<br>")
}

/// The first `n` rows of batches (all of them when `n` is 0).
pub fn head(batches: &[RecordBatch], n: usize) -> Vec<RecordBatch> {
    if n == 0 {
        return batches.to_vec();
    }
    let mut out = Vec::new();
    let mut left = n;
    for b in batches {
        if left == 0 {
            break;
        }
        let take = left.min(b.num_rows());
        out.push(b.slice(0, take));
        left -= take;
    }
    out
}

/// Rows as JSON objects (column name to value; timestamps as RFC 3339 text).
pub fn to_json_rows(batches: &[RecordBatch]) -> Result<Vec<Value>, ReportError> {
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut buf);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        w.write_batches(&refs).map_err(arrow)?;
        w.finish().map_err(arrow)?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(arrow)
}
