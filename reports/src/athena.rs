//! Amazon Athena: DDL for the lake's tables (Parquet, partition projection on `date`), and
//! running SQL through `aws-sdk-athena`: start, poll with backoff, page the results, and turn
//! them into Arrow batches so they print like the local engine's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::ReportError;
use crate::query::{QueryOutput, ScanStats};

/// Athena's (Hive DDL) type for an Arrow column of the lake.
fn athena_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Date32 => "date".into(),
        DataType::List(item) => format!("array<{}>", athena_type(item.data_type())),
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), athena_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => "string".into(),
    }
}

/// `CREATE EXTERNAL TABLE` statements for every table of the lake at `lake` (`s3://...`).
/// With `replace`, each table is dropped first (external tables: the data stays), so the
/// statements also bring tables of an earlier layout to this one.
pub fn ddl(lake: &str, database: &str, replace: bool) -> Result<String, ReportError> {
    let (bucket, prefix) = lake::parse_s3(lake).ok_or_else(|| {
        ReportError::Input(format!(
            "`{lake}` is not an s3:// location; Athena reads lakes on S3"
        ))
    })?;
    let base = if prefix.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    };
    let mut out = format!(
        "-- Athena DDL for the Cairn lake at {base} (layout version {}).\n-- Partitions are projected: no MSCK REPAIR or crawler is needed.\nCREATE DATABASE IF NOT EXISTS {database};\n",
        lake::schema::LAYOUT_VERSION
    );
    for table in lake::schema::Table::ALL {
        let schema = table.schema();
        let table = table.name();
        let cols: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("  `{}` {}", f.name(), athena_type(f.data_type())))
            .collect();
        let name = if table.starts_with('_') {
            format!("`{table}`")
        } else {
            table.to_string()
        };
        if replace {
            out.push_str(&format!("\nDROP TABLE IF EXISTS {database}.{name};"));
        }
        out.push_str(&format!(
            "\nCREATE EXTERNAL TABLE IF NOT EXISTS {database}.{name} (\n{}\n)\nPARTITIONED BY (`date` date)\nSTORED AS PARQUET\nLOCATION '{base}/{table}/'\nTBLPROPERTIES (\n  'projection.enabled' = 'true',\n  'projection.date.type' = 'date',\n  'projection.date.format' = 'yyyy-MM-dd',\n  'projection.date.range' = '2000-01-01,NOW',\n  'projection.date.interval' = '1',\n  'projection.date.interval.unit' = 'DAYS',\n  'storage.location.template' = '{base}/{table}/date=${{date}}/',\n  'parquet.compression' = 'ZSTD'\n);\n",
            cols.join(",\n")
        ));
    }
    Ok(out)
}

pub struct AthenaEngine {
    client: aws_sdk_athena::Client,
    pub workgroup: String,
    pub output: Option<String>,
    pub database: String,
}

fn err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Athena(e.to_string())
}

impl AthenaEngine {
    /// A client from the standard AWS configuration (environment, profile, region).
    pub async fn new(workgroup: &str, output: Option<&str>, database: &str) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self {
            client: aws_sdk_athena::Client::new(&config),
            workgroup: workgroup.to_string(),
            output: output.map(str::to_string),
            database: database.to_string(),
        }
    }

    /// Starts a query, waits for it (backing off from 100 ms to 2 s between polls), and reads
    /// every page of its results.
    pub async fn query(&self, sql: &str) -> Result<QueryOutput, ReportError> {
        let started = Instant::now();
        let mut req = self
            .client
            .start_query_execution()
            .query_string(sql)
            .work_group(&self.workgroup)
            .query_execution_context(
                QueryExecutionContext::builder()
                    .database(&self.database)
                    .build(),
            );
        if let Some(o) = &self.output {
            req =
                req.result_configuration(ResultConfiguration::builder().output_location(o).build());
        }
        let id = req
            .send()
            .await
            .map_err(|e| err(aws_sdk_athena::error::DisplayErrorContext(&e)))?
            .query_execution_id()
            .ok_or_else(|| err("StartQueryExecution returned no id"))?
            .to_string();
        let mut wait = Duration::from_millis(100);
        loop {
            let q = self
                .client
                .get_query_execution()
                .query_execution_id(&id)
                .send()
                .await
                .map_err(|e| err(aws_sdk_athena::error::DisplayErrorContext(&e)))?;
            let status = q.query_execution().and_then(|e| e.status());
            match status.and_then(|s| s.state()) {
                Some(QueryExecutionState::Succeeded) => break,
                Some(QueryExecutionState::Failed | QueryExecutionState::Cancelled) => {
                    let why = status
                        .and_then(|s| s.state_change_reason())
                        .unwrap_or("no reason given");
                    return Err(err(format!("query {id} did not succeed: {why}")));
                }
                _ => {}
            }
            if started.elapsed() > Duration::from_secs(3600) {
                return Err(err(format!("query {id} still running after an hour")));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 3 / 2).min(Duration::from_secs(2));
        }
        let mut columns: Vec<(String, String)> = Vec::new();
        let mut rows: Vec<Vec<Option<String>>> = Vec::new();
        let mut token: Option<String> = None;
        let mut first_page = true;
        loop {
            let mut req = self
                .client
                .get_query_results()
                .query_execution_id(&id)
                .max_results(1000);
            if let Some(t) = &token {
                req = req.next_token(t);
            }
            let page = req
                .send()
                .await
                .map_err(|e| err(aws_sdk_athena::error::DisplayErrorContext(&e)))?;
            if let Some(rs) = page.result_set() {
                if columns.is_empty() {
                    columns = rs
                        .result_set_metadata()
                        .map(|m| {
                            m.column_info()
                                .iter()
                                .map(|c| (c.name().to_string(), c.r#type().to_string()))
                                .collect()
                        })
                        .unwrap_or_default();
                }
                let mut page_rows: Vec<Vec<Option<String>>> = rs
                    .rows()
                    .iter()
                    .map(|r| {
                        r.data()
                            .iter()
                            .map(|d| d.var_char_value().map(str::to_string))
                            .collect()
                    })
                    .collect();
                // The first row of a SELECT's first page repeats the column names.
                if first_page
                    && let Some(head) = page_rows.first()
                    && !columns.is_empty()
                    && head
                        .iter()
                        .map(|v| v.as_deref().unwrap_or(""))
                        .eq(columns.iter().map(|c| c.0.as_str()))
                {
                    page_rows.remove(0);
                }
                rows.extend(page_rows);
            }
            first_page = false;
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let batch = to_batch(&columns, &rows)?;
        Ok(QueryOutput {
            schema: batch.schema(),
            batches: vec![batch],
            stats: ScanStats::default(),
            elapsed: started.elapsed(),
        })
    }
}

/// Athena result text to typed Arrow columns (numbers and booleans typed, the rest text).
fn to_batch(
    columns: &[(String, String)],
    rows: &[Vec<Option<String>>],
) -> Result<RecordBatch, ReportError> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (i, (name, ty)) in columns.iter().enumerate() {
        let cell = |r: &Vec<Option<String>>| r.get(i).cloned().flatten();
        match ty.as_str() {
            "bigint" | "integer" | "int" | "smallint" | "tinyint" => {
                let mut b = Int64Builder::new();
                for r in rows {
                    b.append_option(cell(r).and_then(|v| v.parse().ok()));
                }
                fields.push(Field::new(name, DataType::Int64, true));
                arrays.push(Arc::new(b.finish()));
            }
            "double" | "float" | "real" | "decimal" => {
                let mut b = Float64Builder::new();
                for r in rows {
                    b.append_option(cell(r).and_then(|v| v.parse().ok()));
                }
                fields.push(Field::new(name, DataType::Float64, true));
                arrays.push(Arc::new(b.finish()));
            }
            "boolean" => {
                let mut b = BooleanBuilder::new();
                for r in rows {
                    b.append_option(cell(r).and_then(|v| v.parse().ok()));
                }
                fields.push(Field::new(name, DataType::Boolean, true));
                arrays.push(Arc::new(b.finish()));
            }
            _ => {
                let mut b = StringBuilder::new();
                for r in rows {
                    b.append_option(cell(r));
                }
                fields.push(Field::new(name, DataType::Utf8, true));
                arrays.push(Arc::new(b.finish()));
            }
        }
    }
    // A result with no column information (an empty result set) is a batch with no columns,
    // which Arrow takes only with its row count spelled out.
    let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
        .with_row_count(Some(if fields.is_empty() { 0 } else { rows.len() }));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options).map_err(err)
}
