//! A DataFusion session over a lake: every table registered with its `date` partition as a
//! `DATE` column (so `WHERE date = DATE '2026-11-25'` opens only that day's files), the lake's
//! object store for `s3://` lakes, and the Trino-named JSON functions.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use lake::Lake;

use crate::error::ReportError;

pub struct LakeContext {
    pub ctx: SessionContext,
    pub lake: Lake,
    /// Tables that have files (the others are registered empty).
    pub present: Vec<String>,
}

fn exec(e: impl std::fmt::Display) -> ReportError {
    ReportError::Execution(e.to_string())
}

pub fn session() -> SessionContext {
    let mut cfg = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let opts = cfg.options_mut();
    opts.sql_parser.collect_spans = true;
    opts.execution.parquet.pushdown_filters = true;
    opts.execution.parquet.reorder_filters = true;
    let ctx = SessionContext::new_with_config(cfg);
    for f in crate::functions::udfs() {
        ctx.register_udf(f);
    }
    ctx
}

/// Opens the lake at `uri` (a directory or `s3://bucket/prefix`) for SQL.
pub async fn open(uri: &str) -> Result<LakeContext, ReportError> {
    let lake = Lake::open_existing(uri).await?;
    lake::layout::check_readable(&lake).await?;
    let ctx = session();
    if lake.url.starts_with("s3://") {
        let url = url::Url::parse(&lake.url).map_err(exec)?;
        ctx.register_object_store(&url, lake.store.clone());
    }
    let mut present = Vec::new();
    for table in lake::schema::Table::ALL {
        let file_schema = table.schema();
        let table = table.name();
        let has_files = !lake.data_files(table, None).await?.is_empty();
        if has_files {
            let prefix = lake.root.as_ref();
            let url = if prefix.is_empty() {
                format!("{}/{table}/", lake.url)
            } else {
                format!("{}/{prefix}/{table}/", lake.url)
            };
            let table_url = ListingTableUrl::parse(&url).map_err(exec)?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![("date".to_string(), DataType::Date32)]);
            let config = ListingTableConfig::new(table_url)
                .with_listing_options(options)
                .with_schema(file_schema);
            let t = ListingTable::try_new(config).map_err(exec)?;
            ctx.register_table(table, Arc::new(t)).map_err(exec)?;
            present.push(table.to_string());
        } else {
            let mut fields: Vec<Field> = file_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new("date", DataType::Date32, true));
            let schema = Arc::new(Schema::new(fields));
            let t = MemTable::try_new(schema, vec![vec![]]).map_err(exec)?;
            ctx.register_table(table, Arc::new(t)).map_err(exec)?;
        }
    }
    Ok(LakeContext { ctx, lake, present })
}
