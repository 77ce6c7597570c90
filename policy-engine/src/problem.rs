//! Located problems: every finding of validate, lint, test loading and bundle verification is a
//! [`Problem`] that names its file, line and column, carries the source text so the span can be
//! shown, and renders through miette.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, SourceCode, SourceSpan};
use serde::Serialize;

/// How bad a problem is. Warnings fail a run only with `--deny-warnings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A text file that problems can point into.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user should see it (relative when the user gave a relative path).
    pub name: Arc<str>,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(path: &Path, text: impl Into<Arc<str>>) -> Self {
        Self {
            name: Arc::from(path.display().to_string()),
            text: text.into(),
        }
    }

    /// 1-based line and column of a byte offset (columns count characters).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before
            .get(line_start..)
            .map_or(1, |s| s.chars().count() + 1);
        (line, col)
    }

    /// Byte offset of the start of a 1-based line.
    pub fn line_offset(&self, line: usize) -> usize {
        if line <= 1 {
            return 0;
        }
        self.text
            .match_indices('\n')
            .nth(line - 2)
            .map_or(self.text.len(), |(i, _)| i + 1)
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line.saturating_sub(1)).unwrap_or("")
    }
}

/// Where a problem is: a file and, when known, a span in it.
#[derive(Debug, Clone)]
pub struct Location {
    pub file: SourceFile,
    pub span: Option<SourceSpan>,
}

/// One finding, with everything needed to show it to a person or a machine.
#[derive(Debug, Clone)]
pub struct Problem {
    pub severity: Severity,
    /// A stable, low-cardinality code such as `cedar::validation::unexpected_type` or `cairn::missing-id`.
    pub code: String,
    pub message: String,
    pub help: Option<String>,
    pub location: Option<Box<Location>>,
    /// Extra labelled spans in the same file.
    pub labels: Vec<(Option<String>, SourceSpan)>,
}

impl Problem {
    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code: code.into(),
            message: message.into(),
            help: None,
            location: None,
            labels: Vec::new(),
        }
    }

    pub fn warning(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn in_file(mut self, file: &SourceFile) -> Self {
        self.location = Some(Box::new(Location {
            file: file.clone(),
            span: None,
        }));
        self
    }

    pub fn at(mut self, file: &SourceFile, span: impl Into<SourceSpan>) -> Self {
        self.location = Some(Box::new(Location {
            file: file.clone(),
            span: Some(span.into()),
        }));
        self
    }

    /// Points at a whole 1-based line.
    pub fn at_line(self, file: &SourceFile, line: usize) -> Self {
        let text = file.line_text(line);
        let indent = text.len() - text.trim_start().len();
        let start = file.line_offset(line) + indent;
        self.at(file, (start, text.trim().len()))
    }

    pub fn with_label(mut self, label: impl Into<String>, span: impl Into<SourceSpan>) -> Self {
        self.labels.push((Some(label.into()), span.into()));
        self
    }

    /// Builds a problem from a Cedar diagnostic whose spans point into `file`.
    pub fn from_diagnostic(
        diag: &dyn Diagnostic,
        file: Option<&SourceFile>,
        severity: Severity,
        fallback_code: &str,
    ) -> Self {
        let code = diag
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| fallback_code.to_string());
        let mut message = diag.to_string();
        // Cedar nests the interesting part of some errors in `related` diagnostics.
        if let Some(related) = diag.related() {
            for r in related {
                message.push_str(&format!("; {r}"));
            }
        }
        let mut problem = Self {
            severity,
            code,
            message,
            help: diag.help().map(|h| h.to_string()),
            location: None,
            labels: Vec::new(),
        };
        let labels: Vec<LabeledSpan> = diag.labels().map(|l| l.collect()).unwrap_or_default();
        if let Some(file) = file {
            let mut labels = labels.into_iter();
            if let Some(first) = labels.next() {
                problem = problem.at(file, *first.inner());
                if let Some(label) = first.label() {
                    problem
                        .labels
                        .push((Some(label.to_string()), *first.inner()));
                }
            } else {
                problem = problem.in_file(file);
            }
            for l in labels {
                problem
                    .labels
                    .push((l.label().map(str::to_string), *l.inner()));
            }
        }
        problem
    }

    pub fn file_name(&self) -> Option<&str> {
        self.location.as_ref().map(|l| &*l.file.name)
    }

    /// 1-based line and column of the primary span.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        let loc = self.location.as_ref()?;
        let span = loc.span?;
        Some(loc.file.line_col(span.offset()))
    }

    /// `file:line:col`, `file`, or nothing.
    pub fn position(&self) -> String {
        match (self.file_name(), self.line_col()) {
            (Some(f), Some((l, c))) => format!("{f}:{l}:{c}"),
            (Some(f), None) => f.to_string(),
            _ => String::new(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pos = self.position();
        if pos.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{pos}: {}", self.message)
        }
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        let loc = self.location.as_ref()?;
        loc.span?;
        Some(&loc.file as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let loc = self.location.as_ref()?;
        let primary = loc.span?;
        let mut labels: Vec<LabeledSpan> = Vec::new();
        if !self.labels.iter().any(|(_, s)| *s == primary) {
            labels.push(LabeledSpan::new_primary_with_span(None, primary));
        }
        for (i, (label, span)) in self.labels.iter().enumerate() {
            let l = LabeledSpan::new_with_span(label.clone(), *span);
            labels.push(if i == 0 && *span == primary {
                LabeledSpan::new_primary_with_span(label.clone(), *span)
            } else {
                l
            });
        }
        Some(Box::new(labels.into_iter()))
    }
}

impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        // The file name travels with the contents so miette prints `[file:line:col]`.
        let contents =
            self.text
                .as_ref()
                .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.to_string(),
            contents.data(),
            *contents.span(),
            contents.line(),
            contents.column(),
            contents.line_count(),
        )))
    }
}

/// An error and its causes on one line, skipping causes already contained in the message.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Counts of a problem list, for closing lines such as `2 errors, 1 warning`.
pub fn summary(problems: &[Problem]) -> (usize, usize) {
    let errors = problems.iter().filter(|p| p.is_error()).count();
    (errors, problems.len() - errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        SourceFile::new(Path::new("p.cedar"), text)
    }

    #[test]
    fn line_col_counts_from_one() {
        let f = file("ab\ncd\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(1), (1, 2));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(4), (2, 2));
    }

    #[test]
    fn line_offset_and_text_agree() {
        let f = file("one\ntwo\nthree");
        assert_eq!(f.line_offset(1), 0);
        assert_eq!(f.line_offset(3), 8);
        assert_eq!(f.line_text(2), "two");
    }

    #[test]
    fn position_names_file_line_col() {
        let f = file("permit(principal, action, resource);\nforbid(x);\n");
        let p = Problem::error("t", "bad").at(&f, (44, 1));
        assert_eq!(p.position(), "p.cedar:2:8");
        assert_eq!(p.to_string(), "p.cedar:2:8: bad");
    }
}
