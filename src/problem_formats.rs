//! Located problems as JSON (the other machine formats, shared by every checking command, are
//! in [`crate::findings`]).

use policy_engine::Problem;
use serde_json::{Value, json};

fn problem_json(p: &Problem) -> Value {
    let (line, column) = p
        .line_col()
        .map_or((None, None), |(l, c)| (Some(l), Some(c)));
    let snippet = p
        .location
        .as_ref()
        .zip(line)
        .map(|(loc, l)| loc.file.line_text(l).to_string());
    json!({
        "severity": p.severity,
        "code": p.code,
        "message": p.message,
        "file": p.file_name(),
        "line": line,
        "column": column,
        "source_line": snippet,
        "help": p.help,
    })
}

pub fn json(problems: &[Problem]) -> String {
    let (errors, warnings) = policy_engine::summary(problems);
    let v = json!({
        "errors": errors,
        "warnings": warnings,
        "problems": problems.iter().map(problem_json).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}
