//! The crate's error type: failures that stop a run (the lake cannot be written, a source cannot
//! be listed). Bad records never are errors: they are quarantined and counted.

use miette::Diagnostic;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
pub enum IngestError {
    #[error("cannot {what}: {source}")]
    #[diagnostic(code(cairn::ingest::io))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The store, Parquet or Arrow failed (the lake's own error, with its help).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lake(#[from] lake::LakeError),
    /// A Parquet file's footer could not be read (named with the file).
    #[error("parquet: {0}")]
    #[diagnostic(code(cairn::ingest::parquet))]
    Parquet(String),
    #[error("AWS: {0}")]
    #[diagnostic(code(cairn::ingest::aws))]
    Aws(String),
    #[error("{0}")]
    #[diagnostic(code(cairn::ingest::input))]
    Input(String),
}

impl IngestError {
    pub fn parquet(e: datafusion::parquet::errors::ParquetError) -> Self {
        Self::Lake(lake::LakeError::Parquet(e))
    }

    pub fn arrow(e: datafusion::arrow::error::ArrowError) -> Self {
        Self::Lake(lake::LakeError::Arrow(e))
    }
}
