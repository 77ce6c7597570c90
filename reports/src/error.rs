//! Errors of queries and reports. SQL errors carry the statement and the position DataFusion
//! (or its parser) reported, so the CLI can show the SQL with the place marked.

use miette::{Diagnostic, NamedSource, SourceSpan};
use thiserror::Error;

/// A SQL statement that failed, with where.
#[derive(Debug, Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(cairn::query::sql))]
pub struct SqlError {
    pub message: String,
    #[source_code]
    pub sql: NamedSource<String>,
    #[label("here")]
    pub span: Option<SourceSpan>,
    #[help]
    pub help: Option<String>,
}

#[derive(Debug, Error, Diagnostic)]
pub enum ReportError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Sql(Box<SqlError>),
    #[error("query failed: {0}")]
    #[diagnostic(code(cairn::query::execution))]
    Execution(String),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lake(#[from] lake::LakeError),
    #[error("unknown report `{name}`{}", suggestion.as_ref().map(|s| format!(": did you mean `{s}`?")).unwrap_or_default())]
    #[diagnostic(
        code(cairn::report::unknown),
        help("`cairn report --list` shows the reports")
    )]
    UnknownReport {
        name: String,
        suggestion: Option<String>,
    },
    #[error("template `{name}`: {message}")]
    #[diagnostic(code(cairn::report::template))]
    Template { name: String, message: String },
    #[error("Athena: {0}")]
    #[diagnostic(code(cairn::athena))]
    Athena(String),
    #[error("{0}")]
    #[diagnostic(code(cairn::report::input))]
    Input(String),
}

/// Byte offset of a 1-based line and column in `text`.
pub fn offset_of(text: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let col = column.saturating_sub(1) as usize;
            return offset + l.char_indices().nth(col).map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    text.len()
}

/// Turns a DataFusion error into a located SQL error when a position is known.
pub fn sql_error(sql: &str, e: &datafusion::error::DataFusionError) -> ReportError {
    let root = e.find_root();
    let mut message = root.to_string();
    let mut span = None;
    let mut help = None;
    if let Some(d) = e.diagnostic() {
        message = d.message.clone();
        if let Some(s) = d.span {
            let start = offset_of(sql, s.start.line, s.start.column);
            let end = offset_of(sql, s.end.line, s.end.column).max(start + 1);
            span = Some(SourceSpan::from((
                start,
                (end - start).min(sql.len().saturating_sub(start)).max(1),
            )));
        }
        if let Some(h) = d.helps.first() {
            help = Some(h.message.clone());
        }
    }
    if span.is_none() {
        // The parser's own errors name the place in the message: "at Line: 1, Column: 8".
        if let Some(i) = message.find("Line: ") {
            let rest = &message[i + 6..];
            let line: u64 = rest
                .split(',')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            let column: u64 = rest
                .split("Column: ")
                .nth(1)
                .and_then(|c| c.split(|ch: char| !ch.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if line > 0 {
                let start = offset_of(sql, line, column);
                span = Some(SourceSpan::from((
                    start.min(sql.len().saturating_sub(1)),
                    1,
                )));
            }
        }
    }
    if help.is_none() && message.contains("table") && message.contains("not found") {
        help = Some("tables: cloudtrail, genai_spans, decisions, outcomes, _quarantine".into());
    }
    ReportError::Sql(Box::new(SqlError {
        message,
        sql: NamedSource::new("query", sql.to_string()),
        span,
        help,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(offset_of("select\n  x", 2, 3), 9);
        assert_eq!(offset_of("abc", 1, 1), 0);
    }
}
