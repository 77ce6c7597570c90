//! Machine formats of a test run: JSON, JUnit XML and GitHub workflow commands.

use std::fmt::Write as _;

use super::runner::{CaseStatus, TestRun};

pub fn json(run: &TestRun) -> String {
    let value = serde_json::json!({
        "passed": run.passed,
        "failed": run.failed,
        "cases": run.outcomes,
        "coverage": {
            "policies": run.coverage.policies,
            "covered": run.coverage.covered,
            "percent": (run.coverage.percent() * 10.0).round() / 10.0,
            "uncovered": run.coverage.uncovered.iter().map(|(id, pos)| serde_json::json!({"id": id, "at": pos})).collect::<Vec<_>>(),
        }
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

pub fn junit(run: &TestRun) -> String {
    let mut out = String::new();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<testsuites name="cairn policy test" tests="{}" failures="{}">"#,
        run.outcomes.len(),
        run.failed
    );
    let mut files: Vec<&str> = run.outcomes.iter().map(|o| o.file.as_str()).collect();
    files.dedup();
    for file in files {
        let cases: Vec<_> = run.outcomes.iter().filter(|o| o.file == file).collect();
        let failures = cases
            .iter()
            .filter(|o| o.status != CaseStatus::Passed)
            .count();
        let _ = writeln!(
            out,
            r#"  <testsuite name="{}" tests="{}" failures="{}">"#,
            xml(file),
            cases.len(),
            failures
        );
        for c in cases {
            let _ = write!(
                out,
                r#"    <testcase name="{}" classname="{}" file="{}" line="{}""#,
                xml(&c.name),
                xml(file),
                xml(file),
                c.line
            );
            if c.status == CaseStatus::Passed {
                let _ = writeln!(out, "/>");
            } else {
                let _ = writeln!(out, ">");
                let _ = writeln!(
                    out,
                    r#"      <failure message="{}">{}:{}: {}</failure>"#,
                    xml(&c.mismatches.join("; ")),
                    xml(file),
                    c.line,
                    xml(&c.mismatches.join("\n"))
                );
                let _ = writeln!(out, "    </testcase>");
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    let _ = writeln!(out, "</testsuites>");
    out
}

/// GitHub Actions workflow commands: one `::error` annotation per failing case.
pub fn github(run: &TestRun) -> String {
    let mut out = String::new();
    for c in run
        .outcomes
        .iter()
        .filter(|o| o.status != CaseStatus::Passed)
    {
        let _ = writeln!(
            out,
            "::error file={},line={},title={}::{}",
            gh_property(&c.file),
            c.line,
            gh_property(&format!("policy test `{}`", c.name)),
            gh_data(&c.mismatches.join("; "))
        );
    }
    for (id, at) in &run.coverage.uncovered {
        let (file, line) = split_position(at);
        let _ = writeln!(
            out,
            "::notice file={},line={},title=uncovered policy::{}",
            gh_property(file),
            line,
            gh_data(&format!("policy `{id}` determined no decision in any test"))
        );
    }
    let _ = writeln!(out, "{} passed, {} failed", run.passed, run.failed);
    out
}

pub(crate) fn split_position(at: &str) -> (&str, usize) {
    let (file, line, _) = file_line_col(at);
    (file, line)
}

/// A `file:line:col` position split (line and column 1 when absent or not numbers).
pub fn file_line_col(at: &str) -> (&str, usize, usize) {
    let mut parts = at.rsplitn(3, ':');
    let col = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
    let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(1);
    let file = parts.next().unwrap_or(at);
    (file, line, col)
}

/// Text escaped for XML content and attributes (control characters other than whitespace dropped).
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Escapes the message part of a workflow command.
pub fn gh_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value of a workflow command.
pub fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup() {
        assert_eq!(xml(r#"a<b & "c""#), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn github_escapes_properties() {
        assert_eq!(gh_property("a:b,c"), "a%3Ab%2Cc");
        assert_eq!(gh_data("x\ny%"), "x%0Ay%25");
    }

    #[test]
    fn position_splits_from_the_right() {
        assert_eq!(split_position("p/a.cedar:12:3"), ("p/a.cedar", 12));
    }
}
