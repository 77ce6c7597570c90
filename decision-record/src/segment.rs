//! Segment files: naming, listing, and recovery of the tail after a crash.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::record::{Body, Decision, Record, RecordKind, peek, split_line};

const PREFIX: &str = "segment-";
const SUFFIX: &str = ".jsonl";

/// `segment-<first seq, 20 digits>.jsonl`, so names sort in chain order.
pub fn segment_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:020}{SUFFIX}")
}

pub fn is_segment(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
}

/// Segment files in `dir`, in chain order.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_segment(p))
        .collect();
    out.sort();
    Ok(out)
}

/// The state of the chain's tail as found on disk.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    /// Seq and hash of the last complete record, if any.
    pub last: Option<(u64, String)>,
    /// Whether the last segment ends with a seal.
    pub sealed: bool,
    /// The last segment, when it exists.
    pub segment: Option<PathBuf>,
    /// Records in the last segment.
    pub records_in_segment: u64,
    /// Bytes of a torn (unacknowledged) last line that were cut off.
    pub torn_bytes: u64,
}

/// Finds the end of the chain, cutting off a torn last line. A line without its newline was
/// never acknowledged (acknowledgement follows fsync of whole lines), so no response depended
/// on it.
pub fn recover_tail(dir: &Path) -> std::io::Result<Tail> {
    let segments = list_segments(dir)?;
    let Some(last) = segments.last() else {
        return Ok(Tail::default());
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(last)?;
    let len = file.metadata()?.len();
    let mut text = String::new();
    file.read_to_string(&mut text).or_else(|_| {
        // Not UTF-8 (a torn multi-byte character): read lossily instead.
        file.seek(SeekFrom::Start(0))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok::<usize, std::io::Error>(bytes.len())
    })?;
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let torn = len.saturating_sub(complete as u64);
    if torn > 0 {
        file.set_len(complete as u64)?;
        file.sync_all()?;
    }
    let mut tail = Tail {
        segment: Some(last.clone()),
        torn_bytes: torn,
        ..Default::default()
    };
    for line in text[..complete].lines() {
        tail.records_in_segment += 1;
        if let Some(signed) = split_line(line) {
            let body = format!("{}}}", signed.body);
            if let Some(r) = peek(&body) {
                tail.sealed = r.kind == RecordKind::Seal;
                tail.last = Some((r.seq, signed.hash.to_string()));
                continue;
            }
        }
        tail.sealed = false;
    }
    if tail.last.is_none() {
        // An empty last segment (created, nothing written): look further back.
        for seg in segments.iter().rev().skip(1) {
            let text = std::fs::read_to_string(seg).unwrap_or_default();
            if let Some(line) = text.lines().last()
                && let Some(signed) = split_line(line)
                && let Some(r) = peek(&format!("{}}}", signed.body))
            {
                tail.last = Some((r.seq, signed.hash.to_string()));
                tail.sealed = r.kind == RecordKind::Seal;
                break;
            }
        }
    }
    Ok(tail)
}

/// Allowed requests of the newest segments whose outcome was never written: what a crash cut
/// short. An allowed model call's decision has no `status` (its outcome carries it); one whose
/// outcome is in either of the two newest segments is settled. Returns each decision's id and
/// body, in chain order.
pub fn unsettled(dir: &Path) -> std::io::Result<Vec<(String, Decision)>> {
    let segments = list_segments(dir)?;
    let mut open: Vec<(String, Decision)> = Vec::new();
    let mut settled = std::collections::HashSet::new();
    for seg in segments.iter().rev().take(2).rev() {
        let text = std::fs::read_to_string(seg)?;
        for line in text.lines() {
            let Some(signed) = split_line(line) else {
                continue;
            };
            let Ok(record) = Record::from_body_json(&format!("{}}}", signed.body)) else {
                continue;
            };
            match record.body {
                Body::Decision(d)
                    if d.decision.as_deref() == Some("allow") && d.status.is_none() =>
                {
                    open.push((record.id, d));
                }
                Body::Outcome(o) => {
                    settled.insert(o.decision_id);
                }
                _ => {}
            }
        }
    }
    open.retain(|(id, _)| !settled.contains(id));
    Ok(open)
}

/// Makes a new file's directory entry durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
