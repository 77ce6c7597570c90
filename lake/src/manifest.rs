//! The manifest of ingested source objects, written after the sources' rows are committed: one
//! JSON Lines object per ingest run under `_manifest/<table>/` (`run-<uuidv7>.jsonl`, an entry a
//! line), read once at the start of a run. A source whose size and version match its entry is
//! not read again. (Lakes written before kept one `<sha256 of uri>.json` per source; those are
//! still read.) When a table's manifest grows past [`MERGE_AT`] files they are merged into one.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Lake;
use crate::error::LakeError;

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
    /// Whether a source of `size` and `version` is the one this entry recorded, unchanged: the
    /// same size and the same (known) version.
    pub fn unchanged(&self, size: Option<u64>, version: Option<&str>) -> bool {
        Some(self.size) == size && self.version.is_some() && self.version.as_deref() == version
    }
}

/// Manifest files of one table beyond this many are merged into one.
pub const MERGE_AT: usize = 64;

/// A table's manifest: the latest entry of every source, read once.
#[derive(Debug, Default)]
pub struct Manifest {
    entries: HashMap<String, Entry>,
    files: Vec<datafusion::object_store::path::Path>,
}

fn dir(lake: &Lake, table: &str) -> datafusion::object_store::path::Path {
    lake.path(&format!("_manifest/{table}"))
}

impl Manifest {
    /// Reads every manifest file of `table` (later files win for the same source).
    pub async fn load(lake: &Lake, table: &str) -> Result<Self, LakeError> {
        let files: Vec<_> = lake
            .list(&dir(lake, table))
            .await?
            .into_iter()
            .map(|m| m.location)
            .collect();
        let mut entries = HashMap::new();
        for f in &files {
            let Some(bytes) = lake.get(f).await? else {
                continue;
            };
            // A per-source file of earlier versions is one (pretty-printed) entry; a run file,
            // an entry a line. An entry that does not parse is as if absent: its source is read
            // again.
            let parsed: Vec<Entry> = match serde_json::from_slice(&bytes) {
                Ok(one) => vec![one],
                Err(_) => bytes
                    .split(|b| *b == b'\n')
                    .filter_map(|line| serde_json::from_slice(line).ok())
                    .collect(),
            };
            for e in parsed {
                entries.insert(e.uri.clone(), e);
            }
        }
        Ok(Self { entries, files })
    }

    pub fn get(&self, uri: &str) -> Option<&Entry> {
        self.entries.get(uri)
    }

    /// Records `new` entries as one file; merges the table's manifest when it has many files.
    pub async fn store(
        &mut self,
        lake: &Lake,
        table: &str,
        new: Vec<Entry>,
    ) -> Result<(), LakeError> {
        if new.is_empty() {
            return Ok(());
        }
        let write = |entries: Vec<&Entry>| -> Result<Vec<u8>, LakeError> {
            let mut out = Vec::new();
            for e in entries {
                serde_json::to_writer(&mut out, e)?;
                out.push(b'\n');
            }
            Ok(out)
        };
        let run_file = |lake: &Lake| {
            lake.path(&format!(
                "_manifest/{table}/run-{}.jsonl",
                uuid::Uuid::now_v7().simple()
            ))
        };
        let path = run_file(lake);
        lake.put(&path, write(new.iter().collect())?).await?;
        self.files.push(path);
        for e in new {
            self.entries.insert(e.uri.clone(), e);
        }
        if self.files.len() > MERGE_AT {
            // Everything in one new file first, then the old files go: an entry is never absent.
            let merged = run_file(lake);
            let mut all: Vec<&Entry> = self.entries.values().collect();
            all.sort_by(|a, b| a.uri.cmp(&b.uri));
            lake.put(&merged, write(all)?).await?;
            for f in std::mem::take(&mut self.files) {
                lake.delete(&f).await?;
            }
            self.files.push(merged);
        }
        Ok(())
    }
}
