//! Checking a record directory: every line's hash and signature, the chain (`prev`, `seq`)
//! across segments, and the seals that close segments. Used by `cairn audit verify` and, one
//! line at a time through [`ChainChecker`], by the lake ingest.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::record::{GENESIS, LineError, Record, RecordKind, check_line};
use crate::segment::list_segments;

/// Where a problem is: a segment file and a 1-based line in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub segment: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.segment.display(), self.line)
    }
}

/// What is wrong with a record in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFault {
    /// The line itself does not check out (altered, forged, malformed).
    Line(LineError),
    /// Records were removed before this one: the sequence jumps.
    Removed { expected: u64, found: u64 },
    /// This record comes earlier in the sequence than expected: reordered or replayed.
    Reordered { expected: u64, found: u64 },
    /// The sequence is right but `prev` is not the previous record's hash: inserted or replaced.
    Inserted { seq: u64 },
    /// The last line of the last segment is cut short.
    Truncated,
    /// A segment other than the last does not end with a seal.
    Unsealed,
    /// A seal does not count the records before it, or is not the last line of its segment.
    BadSeal(String),
    /// The first record does not start the chain.
    BadStart { seq: u64 },
}

impl std::fmt::Display for ChainFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line(e) => write!(f, "{e}"),
            Self::Removed { expected, found } => write!(
                f,
                "record(s) removed: expected seq {expected}, found {found} ({} missing)",
                found - expected
            ),
            Self::Reordered { expected, found } => {
                write!(
                    f,
                    "record out of order, or inserted (a replayed copy): expected seq {expected}, found {found}"
                )
            }
            Self::Inserted { seq } => write!(
                f,
                "record inserted or replaced at seq {seq}: `prev` is not the hash of the record before it"
            ),
            Self::Truncated => write!(f, "the segment is truncated: its last record is cut short"),
            Self::Unsealed => write!(
                f,
                "the segment does not end with a seal, but a later segment follows (records removed from its end)"
            ),
            Self::BadSeal(why) => write!(f, "bad seal: {why}"),
            Self::BadStart { seq } => write!(
                f,
                "the first record (seq {seq}) does not start the chain (seq 1, prev {GENESIS})"
            ),
        }
    }
}

/// A fault and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainError {
    pub at: Position,
    pub seq: Option<u64>,
    pub fault: ChainFault,
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "{} (record seq {seq}): {}", self.at, self.fault),
            None => write!(f, "{}: {}", self.at, self.fault),
        }
    }
}

/// Checks records one at a time, in order. After a fault it resynchronises on the faulty
/// record's own hash, so one tampered record is reported once and later ones still check.
pub struct ChainChecker {
    keys: Vec<(String, VerifyingKey)>,
    prev_hash: Option<String>,
    prev_seq: Option<u64>,
    in_segment: u64,
}

impl ChainChecker {
    pub fn new(keys: Vec<(String, VerifyingKey)>) -> Self {
        Self {
            keys,
            prev_hash: None,
            prev_seq: None,
            in_segment: 0,
        }
    }

    /// Continues a chain from a known record (for incremental checks).
    pub fn resume(keys: Vec<(String, VerifyingKey)>, seq: u64, hash: String) -> Self {
        Self {
            keys,
            prev_hash: Some(hash),
            prev_seq: Some(seq),
            in_segment: 0,
        }
    }

    pub fn start_segment(&mut self) {
        self.in_segment = 0;
    }

    /// Checks one line. On success returns the record and its hash.
    pub fn check(&mut self, line: &str) -> Result<(Record, String), (Option<u64>, ChainFault)> {
        let (record, hash) = match check_line(line, &self.keys) {
            Ok(r) => r,
            Err(e) => {
                // Keep the chain going from what the line claims, if anything can be read.
                let seq = crate::record::split_line(line).and_then(|s| {
                    let body = format!("{}}}", s.body);
                    let seq = crate::record::peek(&body).map(|p| p.seq);
                    if let Some(seq) = seq {
                        self.prev_seq = Some(seq);
                        self.prev_hash = Some(s.hash.to_string());
                    }
                    seq
                });
                self.in_segment += 1;
                return Err((seq, ChainFault::Line(e)));
            }
        };
        let fault = match (&self.prev_hash, self.prev_seq) {
            (None, _) => (record.seq != 1 || record.prev != GENESIS)
                .then_some(ChainFault::BadStart { seq: record.seq }),
            (Some(prev_hash), Some(prev_seq)) => {
                // A line claiming seq u64::MAX (or a chain resumed there) must not overflow the
                // checker: past the end, the next line is compared with u64::MAX itself.
                let expected = prev_seq.saturating_add(1);
                if record.seq > expected {
                    Some(ChainFault::Removed {
                        expected,
                        found: record.seq,
                    })
                } else if record.seq < expected {
                    Some(ChainFault::Reordered {
                        expected,
                        found: record.seq,
                    })
                } else if &record.prev != prev_hash {
                    Some(ChainFault::Inserted { seq: record.seq })
                } else {
                    None
                }
            }
            (Some(_), None) => None,
        };
        if fault.is_none()
            && let Some(seal) = record.seal()
            && seal.sealed_records != self.in_segment
        {
            let said = seal.sealed_records;
            self.prev_hash = Some(hash);
            self.prev_seq = Some(record.seq);
            self.in_segment += 1;
            return Err((
                Some(record.seq),
                ChainFault::BadSeal(format!(
                    "says {} records, the segment has {} before it",
                    said,
                    self.in_segment - 1
                )),
            ));
        }
        self.prev_hash = Some(hash.clone());
        self.prev_seq = Some(record.seq);
        self.in_segment += 1;
        match fault {
            Some(f) => Err((Some(record.seq), f)),
            None => Ok((record, hash)),
        }
    }
}

/// The result of checking a whole directory.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub segments: usize,
    pub records: u64,
    pub decisions: u64,
    pub outcomes: u64,
    /// Every fault found, first first.
    pub errors: Vec<ChainError>,
    /// The last segment is not sealed: the gateway is running, or crashed and was not restarted.
    pub open_tail: Option<PathBuf>,
    pub last_seq: Option<u64>,
    /// The hash of each record asked for by `seq` (see [`verify_dir_anchored`]) that verified.
    pub anchored: std::collections::BTreeMap<u64, String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks every segment in `dir`.
pub fn verify_dir(dir: &Path, keys: Vec<(String, VerifyingKey)>) -> std::io::Result<VerifyReport> {
    verify_dir_anchored(dir, keys, &[])
}

/// [`verify_dir`], also keeping the hashes of the records at `anchors` (by `seq`), so they
/// can be compared with a checkpoint's.
pub fn verify_dir_anchored(
    dir: &Path,
    keys: Vec<(String, VerifyingKey)>,
    anchors: &[u64],
) -> std::io::Result<VerifyReport> {
    let segments = list_segments(dir)?;
    let mut report = VerifyReport {
        segments: segments.len(),
        ..Default::default()
    };
    let mut checker = ChainChecker::new(keys);
    let count = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        let last_segment = i + 1 == count;
        let bytes = std::fs::read(seg)?;
        let text = String::from_utf8_lossy(&bytes);
        checker.start_segment();
        let mut last_kind = None;
        let mut lines = text.split_inclusive('\n').enumerate().peekable();
        while let Some((n, line)) = lines.next() {
            let at = Position {
                segment: seg.clone(),
                line: n + 1,
            };
            if !line.ends_with('\n') {
                report.errors.push(ChainError {
                    at,
                    seq: None,
                    fault: ChainFault::Truncated,
                });
                last_kind = None;
                continue;
            }
            match checker.check(line) {
                Ok((record, hash)) => {
                    report.records += 1;
                    report.last_seq = Some(record.seq);
                    if anchors.contains(&record.seq) {
                        report.anchored.insert(record.seq, hash);
                    }
                    match record.kind() {
                        RecordKind::Decision => report.decisions += 1,
                        RecordKind::Outcome => report.outcomes += 1,
                        RecordKind::Seal => {
                            if lines.peek().is_some() {
                                report.errors.push(ChainError {
                                    at: at.clone(),
                                    seq: Some(record.seq),
                                    fault: ChainFault::BadSeal(
                                        "records follow the seal in the same segment".into(),
                                    ),
                                });
                            }
                        }
                    }
                    last_kind = Some(record.kind());
                }
                Err((seq, fault)) => {
                    report.records += 1;
                    report.errors.push(ChainError { at, seq, fault });
                    last_kind = None;
                }
            }
        }
        if last_kind != Some(RecordKind::Seal) {
            if last_segment {
                report.open_tail = Some(seg.clone());
            } else {
                let lines = text.lines().count();
                report.errors.push(ChainError {
                    at: Position {
                        segment: seg.clone(),
                        line: lines.max(1),
                    },
                    seq: None,
                    fault: ChainFault::Unsealed,
                });
            }
        }
    }
    reclassify_reorders(&mut report.errors);
    Ok(report)
}

/// A jump forward whose missing record turns up later was a reordering, not a removal.
fn reclassify_reorders(errors: &mut [ChainError]) {
    for i in 0..errors.len() {
        if let ChainFault::Removed { expected, found } = errors[i].fault {
            let later = errors[i + 1..].iter().any(
                |e| matches!(e.fault, ChainFault::Reordered { found: f, .. } if f == expected),
            );
            if later {
                errors[i].fault = ChainFault::Reordered { expected, found };
            }
        }
    }
}

/// How a record directory stands against a checkpoint kept outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgainstCheckpoint {
    /// The records reach the checkpoint and the record it names has its hash.
    Covered,
    /// The records end before the checkpoint: `first..=last` are missing from the end.
    Shortened { first: u64, last: u64 },
    /// The record at the checkpoint's `seq` has another hash: the log was rewritten from there
    /// (or the checkpoint is of another log).
    Diverged { seq: u64, found: String },
}

/// Compares a verified directory with a checkpoint; `report` must come from
/// [`verify_dir_anchored`] with the checkpoint's size among its anchors.
pub fn against_checkpoint(
    report: &VerifyReport,
    cp: &crate::checkpoint::Checkpoint,
) -> AgainstCheckpoint {
    let last = report.last_seq.unwrap_or(0);
    if cp.size == 0 {
        return AgainstCheckpoint::Covered;
    }
    if last < cp.size {
        return AgainstCheckpoint::Shortened {
            first: last + 1,
            last: cp.size,
        };
    }
    match report.anchored.get(&cp.size) {
        Some(h) if *h == cp.hash => AgainstCheckpoint::Covered,
        Some(h) => AgainstCheckpoint::Diverged {
            seq: cp.size,
            found: h.clone(),
        },
        // The record at the checkpoint's seq did not verify: the chain errors already say so.
        None => AgainstCheckpoint::Diverged {
            seq: cp.size,
            found: "(no verified record)".into(),
        },
    }
}
