//! Why a record was not ingested: a low-cardinality [`Reason`] (for counts and the
//! `_quarantine.reason` column) and a detail (for people).

/// Why a record went to `_quarantine`. The names are the `reason` column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// JSON of the wrong shape (not an object, a required member of the wrong type, ...).
    WrongShape,
    /// Not JSON.
    InvalidJson,
    /// The source (or part of it) could not be read.
    UnreadableInput,
    /// The input ends inside a record.
    TruncatedInput,
    /// One record is larger than the splitter's bound.
    RecordTooLarge,
    MissingRequiredField,
    UnparseableTime,
    /// A decision record that verifies but is not a valid record of its kind.
    InvalidRecord,
    /// A decision record whose hash or signature does not check out.
    RecordAltered,
    /// A decision record out of its chain (removed, reordered, inserted, bad seal).
    ChainBroken,
    /// A policy bundle that does not verify (signature, key, digests or layout).
    BundleRejected,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongShape => "wrong_shape",
            Self::InvalidJson => "invalid_json",
            Self::UnreadableInput => "unreadable_input",
            Self::TruncatedInput => "truncated_input",
            Self::RecordTooLarge => "record_too_large",
            Self::MissingRequiredField => "missing_required_field",
            Self::UnparseableTime => "unparseable_time",
            Self::InvalidRecord => "invalid_record",
            Self::RecordAltered => "record_altered",
            Self::ChainBroken => "chain_broken",
            Self::BundleRejected => "bundle_rejected",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: Reason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// Classifies a parse failure: broken JSON, or JSON of the wrong shape.
    pub fn from_json(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Self::new(
                Reason::WrongShape,
                format!("not a record of the expected shape: {e}"),
            ),
            Category::Syntax | Category::Eof => {
                Self::new(Reason::InvalidJson, format!("invalid JSON: {e}"))
            }
            Category::Io => Self::new(Reason::UnreadableInput, e.to_string()),
        }
    }
}
