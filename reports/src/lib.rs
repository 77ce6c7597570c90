//! SQL over the audit lake and the reports built on it.
//!
//! - [`catalog::open`]: a DataFusion session with every lake table registered (Hive `date`
//!   partition as a `DATE` column, pruned) and Trino-named JSON functions ([`functions`]).
//! - [`query::run`]: one statement, with what it scanned; [`output`]: table/CSV/JSON/Parquet.
//! - [`spec`]: report definitions (built-in `access`, `denials`, `spend`, `reconcile`,
//!   `detections`); [`run_report`] runs one on an [`Engine`]; [`render::render`] makes HTML,
//!   Markdown or JSON.
//! - [`sigma`]: Sigma rules compiled to SQL over `cloudtrail` (the `detections` report and
//!   `cairn detect`).
//! - [`athena`]: DDL for Athena and the same SQL run through it.
//!
//! Architecture invariant: reports only read the lake.

pub mod athena;
pub mod catalog;
mod error;
pub mod functions;
pub mod output;
pub mod query;
pub mod render;
pub mod sigma;
pub mod spec;

pub use error::{ReportError, offset_of, sql_error};

use render::{ReportRun, SectionRun};
use spec::{Period, ReportSpec};

/// Where SQL runs.
pub enum Engine {
    Local(catalog::LakeContext),
    Athena(athena::AthenaEngine),
}

impl Engine {
    pub fn name(&self) -> String {
        match self {
            Self::Local(_) => "DataFusion (local)".into(),
            Self::Athena(a) => format!("Amazon Athena (workgroup {})", a.workgroup),
        }
    }

    pub async fn query(&self, sql: &str) -> Result<query::QueryOutput, ReportError> {
        match self {
            Self::Local(l) => query::run(&l.ctx, sql).await,
            Self::Athena(a) => a.query(sql).await,
        }
    }

    /// The SQL a query spec runs as on this engine.
    pub fn sql_for(&self, q: &spec::QuerySpec, period: &Period) -> String {
        let text = match self {
            Self::Athena(_) => q.athena_sql.as_deref().unwrap_or(&q.sql),
            Self::Local(_) => &q.sql,
        };
        spec::bind(text, period)
    }
}

/// Runs the evidence every report states ([`spec::evidence`]).
pub async fn run_evidence(
    engine: &Engine,
    period: Period,
    lake: &str,
) -> Result<ReportRun, ReportError> {
    run_report(engine, &spec::evidence()?, period, lake).await
}

/// Runs every query of a report.
pub async fn run_report(
    engine: &Engine,
    spec: &ReportSpec,
    period: Period,
    lake: &str,
) -> Result<ReportRun, ReportError> {
    let mut sections = Vec::new();
    for q in &spec.queries {
        let sql = engine.sql_for(q, &period);
        let output = engine.query(&sql).await?;
        sections.push(SectionRun {
            spec: q.clone(),
            sql,
            output,
        });
    }
    Ok(ReportRun {
        spec: spec.clone(),
        period,
        lake: lake.to_string(),
        engine: engine.name(),
        sections,
    })
}
