//! Running SQL and measuring what it read: files opened (after partition pruning) and bytes
//! scanned, taken from the executed plan's own metrics.

use datafusion::common::tree_node::TreeNode;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::error::{ReportError, sql_error};

#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanStats {
    /// Files the scans opened.
    pub files: usize,
    pub bytes_scanned: u64,
    /// The `date=` partitions of those files.
    pub partitions: BTreeSet<String>,
    /// The statement reads tables, yet the plan scans nothing: DataFusion answered it from the
    /// statistics in the files' Parquet footers (a bare `count(*)`, say), reading no rows.
    pub from_metadata: bool,
}

pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub stats: ScanStats,
    pub elapsed: Duration,
}

impl QueryOutput {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Whether the physical plan reads any source.
fn scans(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<DataSourceExec>().is_some() || plan.children().into_iter().any(scans)
}

/// Whether the plan answers with a row made from statistics (what DataFusion plans for an
/// aggregate it computed from the files' footers), rather than, say, an empty plan after
/// every file was pruned.
fn from_statistics(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<datafusion::physical_plan::placeholder_row::PlaceholderRowExec>()
        .is_some()
        || plan.children().into_iter().any(from_statistics)
}

fn visit(plan: &Arc<dyn ExecutionPlan>, stats: &mut ScanStats) {
    if let Some(ds) = plan.downcast_ref::<DataSourceExec>() {
        if let Some(fsc) = ds.data_source().downcast_ref::<FileScanConfig>() {
            for group in &fsc.file_groups {
                for f in group.iter() {
                    stats.files += 1;
                    if let Some(d) = f
                        .object_meta
                        .location
                        .parts()
                        .find_map(|p| p.as_ref().strip_prefix("date=").map(str::to_string))
                    {
                        stats.partitions.insert(d);
                    }
                }
            }
        }
        if let Some(m) = plan.metrics()
            && let Some(v) = m.sum_by_name("bytes_scanned")
        {
            stats.bytes_scanned += v.as_usize() as u64;
        }
    }
    for child in plan.children() {
        visit(child, stats);
    }
}

/// Plans, runs and collects one statement.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<QueryOutput, ReportError> {
    let started = Instant::now();
    let df = ctx.sql(sql).await.map_err(|e| sql_error(sql, &e))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let reads_tables = df
        .logical_plan()
        .exists(|n| {
            Ok(matches!(
                n,
                datafusion::logical_expr::LogicalPlan::TableScan(_)
            ))
        })
        .unwrap_or(false);
    let plan = df
        .create_physical_plan()
        .await
        .map_err(|e| sql_error(sql, &e))?;
    let batches = collect(plan.clone(), ctx.task_ctx())
        .await
        .map_err(|e| sql_error(sql, &e))?;
    let mut stats = ScanStats {
        from_metadata: reads_tables && !scans(&plan) && from_statistics(&plan),
        ..ScanStats::default()
    };
    visit(&plan, &mut stats);
    Ok(QueryOutput {
        schema,
        batches,
        stats,
        elapsed: started.elapsed(),
    })
}
