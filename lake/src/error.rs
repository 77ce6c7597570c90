//! The lake's error type: the store cannot be reached or written, or Parquet/Arrow refused data.

use miette::Diagnostic;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
pub enum LakeError {
    #[error("cannot {what}: {source}")]
    #[diagnostic(code(cairn::lake::io))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store: cannot {what}: {source}")]
    #[diagnostic(
        code(cairn::lake::store),
        help(
            "for s3:// set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (and AWS_ENDPOINT_URL for S3-compatible servers)"
        )
    )]
    Store {
        what: String,
        #[source]
        source: datafusion::object_store::Error,
    },
    #[error("parquet: {0}")]
    #[diagnostic(code(cairn::lake::parquet))]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    #[diagnostic(code(cairn::lake::arrow))]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("there is no lake at `{lake}`")]
    #[diagnostic(
        code(cairn::lake::not_found),
        help("check the path (or `--lake`); a lake is made by `cairn ingest ... --lake DIR`")
    )]
    NotFound { lake: String },
    #[error("a batch has no key column `{0}`")]
    #[diagnostic(code(cairn::lake::column))]
    MissingColumn(String),
    #[error("cannot encode a manifest entry: {0}")]
    #[diagnostic(code(cairn::lake::manifest))]
    Manifest(#[from] serde_json::Error),
}
