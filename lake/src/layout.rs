//! Which version of the layout a lake's files follow, kept in `_layout.json`
//! (`{"version": N}`) at the lake's root. A lake of files and no marker was written before
//! markers existed: version 1, whose list columns are JSON text. Readers and writers refuse a
//! lake of another version with the one command that migrates it (`cairn ingest compact`)
//! rather than failing later on a column type.

use serde::{Deserialize, Serialize};

use crate::schema::{LAYOUT_VERSION, Table};
use crate::{Lake, LakeError};

const MARKER: &str = "_layout.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// No data files yet.
    Empty,
    /// The version this build writes.
    Current,
    /// An earlier (or later) version.
    Other(u32),
}

#[derive(Serialize, Deserialize)]
struct Marker {
    version: u32,
}

/// Whether any table holds a data file, stopping at the first one found.
async fn has_data(lake: &Lake) -> Result<bool, LakeError> {
    for t in Table::ALL {
        if lake.has_data_file(t.name()).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The layout of the lake's files.
pub async fn detect(lake: &Lake) -> Result<Layout, LakeError> {
    if let Some(bytes) = lake.get(&lake.path(MARKER)).await? {
        let m: Marker = serde_json::from_slice(&bytes).map_err(|e| LakeError::Layout {
            lake: lake.display.clone(),
            detail: format!("`{MARKER}` does not parse: {e}"),
        })?;
        return Ok(match m.version {
            LAYOUT_VERSION => Layout::Current,
            v => Layout::Other(v),
        });
    }
    Ok(match has_data(lake).await? {
        true => Layout::Other(1),
        false => Layout::Empty,
    })
}

/// Records that every file of the lake is of the current layout.
pub async fn mark_current(lake: &Lake) -> Result<(), LakeError> {
    let bytes = serde_json::to_vec(&Marker {
        version: LAYOUT_VERSION,
    })?;
    lake.put(&lake.path(MARKER), bytes).await
}

fn refuse(lake: &Lake, found: u32) -> LakeError {
    LakeError::OldLayout {
        lake: lake.display.clone(),
        found,
        current: LAYOUT_VERSION,
    }
}

/// For readers: the lake's files are of the current layout (or there are none).
pub async fn check_readable(lake: &Lake) -> Result<(), LakeError> {
    match detect(lake).await? {
        Layout::Empty | Layout::Current => Ok(()),
        Layout::Other(v) => Err(refuse(lake, v)),
    }
}

/// For writers: a new lake is marked current; a lake of another layout is refused, since files
/// of two layouts in one table could not be read together.
pub async fn prepare_for_writing(lake: &Lake) -> Result<(), LakeError> {
    match detect(lake).await? {
        Layout::Current => Ok(()),
        Layout::Empty => mark_current(lake).await,
        Layout::Other(v) => Err(refuse(lake, v)),
    }
}
