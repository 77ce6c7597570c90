//! The manifest of ingested source objects: one small JSON object per source under
//! `_manifest/<table>/`, written after the source's rows are committed. A source whose size and
//! version (or, failing that, checksum) match its entry is not read again.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Lake;
use crate::error::IngestError;
use crate::source::SourceObject;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub uri: String,
    pub size: u64,
    pub version: Option<String>,
    pub sha256: String,
    pub records_read: u64,
    pub rows_written: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub ingested_at: String,
    /// For decision record segments: `seq` and `hash` of the last record, so the next segment's
    /// chain can be checked without reading this one again.
    #[serde(default)]
    pub tail: Option<(u64, String)>,
}

impl Entry {
    /// Whether `obj` is the source this entry recorded, unchanged: the same size and the same
    /// (known) version.
    pub fn unchanged(&self, obj: &SourceObject) -> bool {
        Some(self.size) == obj.size && self.version.is_some() && self.version == obj.version
    }
}

fn path(lake: &Lake, table: &str, uri: &str) -> datafusion::object_store::path::Path {
    let id = hex::encode(Sha256::digest(uri.as_bytes()));
    lake.path(&format!("_manifest/{table}/{id}.json"))
}

pub async fn load(lake: &Lake, table: &str, uri: &str) -> Result<Option<Entry>, IngestError> {
    match lake.get(&path(lake, table, uri)).await? {
        Some(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        None => Ok(None),
    }
}

pub async fn store(lake: &Lake, table: &str, entry: &Entry) -> Result<(), IngestError> {
    let bytes = serde_json::to_vec_pretty(entry).map_err(|e| IngestError::Input(e.to_string()))?;
    lake.put(&path(lake, table, &entry.uri), bytes).await
}
