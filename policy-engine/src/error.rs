//! The crate's error type: failures to read inputs and to use keys and bundles. Findings about the
//! content of policies, tests and bundles are [`crate::Problem`]s, not errors.

use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
pub enum PolicyError {
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(code(cairn::io), help("check that the path exists and is readable"))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write `{path}`: {source}")]
    #[diagnostic(code(cairn::io))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{path}` already exists")]
    #[diagnostic(
        code(cairn::keys::exists),
        help(
            "keys are never overwritten; choose another --out directory or remove the old key yourself"
        )
    )]
    KeyExists { path: PathBuf },

    #[error("`{path}` is not a valid Ed25519 {kind} key in PEM form: {reason}")]
    #[diagnostic(
        code(cairn::keys::invalid),
        help("generate a key pair with `cairn keys generate --out DIR`")
    )]
    InvalidKey {
        path: PathBuf,
        kind: &'static str,
        reason: String,
    },

    #[error("`{path}`: {source}")]
    #[diagnostic(forward(source))]
    Bundle {
        path: PathBuf,
        #[source]
        source: Box<crate::bundle::BundleError>,
    },

    #[error("{0}")]
    #[diagnostic(code(cairn::input))]
    Input(String),
}

pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })
}
