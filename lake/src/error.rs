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
    #[error(
        "the lake at `{lake}` is of layout version {found}; this cairn reads and writes version {current}"
    )]
    #[diagnostic(
        code(cairn::lake::layout_version),
        help(
            "run `cairn ingest compact --lake {lake}` once: it rewrites the files of the earlier layout (list columns held as JSON text become LIST<VARCHAR>), then the lake reads and ingests as before; see docs/lake.md, \"Migrating a lake\""
        )
    )]
    OldLayout {
        lake: String,
        found: u32,
        current: u32,
    },
    #[error("the lake at `{lake}` has an unreadable layout marker: {detail}")]
    #[diagnostic(
        code(cairn::lake::layout),
        help(
            "`_layout.json` at the lake's root holds `{{\"version\": 2}}`; restore it or remove it and run `cairn ingest compact`"
        )
    )]
    Layout { lake: String, detail: String },
    #[error("a batch has no key column `{0}`")]
    #[diagnostic(code(cairn::lake::column))]
    MissingColumn(String),
    #[error("cannot encode a manifest entry: {0}")]
    #[diagnostic(code(cairn::lake::manifest))]
    Manifest(#[from] serde_json::Error),
}
