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
    if let datafusion::error::DataFusionError::SchemaError(schema, _) = root
        && let datafusion::common::SchemaError::FieldNotFound {
            field,
            valid_fields,
        } = schema.as_ref()
    {
        let names: Vec<&str> = valid_fields.iter().map(|c| c.name.as_str()).collect();
        help = Some(
            match crate::spec::closest(&field.name, names.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("columns here: {}", names.join(", ")),
            },
        );
    }
    message = plain_parser_message(&message);
    if help.is_none() && message.contains("table") && message.contains("not found") {
        help = Some(
            "tables: cloudtrail, genai_spans, decisions, outcomes, bundles, policies, cloudtrail_files, _quarantine"
                .into(),
        );
    }
    ReportError::Sql(Box::new(SqlError {
        message,
        sql: NamedSource::new("query", sql.to_string()),
        span,
        help,
    }))
}

/// The SQL parser's message without the Rust around it (`ParserError("...")`) and without the
/// position, which the label shows.
fn plain_parser_message(message: &str) -> String {
    let Some(start) = message.find("ParserError(\"") else {
        return message.to_string();
    };
    let inner = &message[start + "ParserError(\"".len()..];
    let inner = inner
        .strip_suffix("\")")
        .unwrap_or(inner)
        .replace("\\\"", "\"");
    let inner = match inner.rfind(" at Line: ") {
        Some(i) => &inner[..i],
        None => &inner,
    };
    format!("SQL syntax error: {inner}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_messages_lose_their_debug_text() {
        assert_eq!(
            plain_parser_message(
                "SQL error: ParserError(\"Expected: an SQL statement, found: SELEC at Line: 1, Column: 1\")"
            ),
            "SQL syntax error: Expected: an SQL statement, found: SELEC"
        );
        assert_eq!(
            plain_parser_message("column 'x' not found"),
            "column 'x' not found"
        );
    }

    #[test]
    fn offsets() {
        assert_eq!(offset_of("select\n  x", 2, 3), 9);
        assert_eq!(offset_of("abc", 1, 1), 0);
    }
}
