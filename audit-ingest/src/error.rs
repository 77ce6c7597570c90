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
    #[error("object store: cannot {what}: {source}")]
    #[diagnostic(
        code(cairn::ingest::store),
        help(
            "for s3:// set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (and AWS_ENDPOINT_URL for S3-compatible servers)"
        )
    )]
    Store {
        what: String,
        #[source]
        source: datafusion::object_store::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lake(#[from] lake::LakeError),
    #[error("parquet: {0}")]
    #[diagnostic(code(cairn::ingest::parquet))]
    Parquet(String),
    #[error("arrow: {0}")]
    #[diagnostic(code(cairn::ingest::arrow))]
    Arrow(String),
    #[error("AWS: {0}")]
    #[diagnostic(code(cairn::ingest::aws))]
    Aws(String),
    #[error("{0}")]
    #[diagnostic(code(cairn::ingest::input))]
    Input(String),
}

impl IngestError {
    pub fn parquet(e: datafusion::parquet::errors::ParquetError) -> Self {
        Self::Parquet(e.to_string())
    }

    pub fn arrow(e: datafusion::arrow::error::ArrowError) -> Self {
        Self::Arrow(e.to_string())
    }
}
