//! Why a record was not ingested: a low-cardinality reason (for counts) and a detail (for people).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: &'static str,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
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
                "wrong_shape",
                format!("not a record of the expected shape: {e}"),
            ),
            Category::Syntax | Category::Eof => {
                Self::new("invalid_json", format!("invalid JSON: {e}"))
            }
            Category::Io => Self::new("unreadable_input", e.to_string()),
        }
    }
}
