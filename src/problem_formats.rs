//! Machine formats for located problems: JSON, GitHub workflow commands and SARIF 2.1.0.

use policy_engine::{Problem, Severity};
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

fn gh_escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn gh_escape_property(s: &str) -> String {
    gh_escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

pub fn github(problems: &[Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        let kind = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut props = Vec::new();
        if let Some(f) = p.file_name() {
            props.push(format!("file={}", gh_escape_property(f)));
        }
        if let Some((l, c)) = p.line_col() {
            props.push(format!("line={l},col={c}"));
        }
        props.push(format!("title={}", gh_escape_property(&p.code)));
        let mut message = p.message.clone();
        if let Some(h) = &p.help {
            message.push_str(&format!("\nhelp: {h}"));
        }
        out.push_str(&format!(
            "::{kind} {}::{}\n",
            props.join(","),
            gh_escape_data(&message)
        ));
    }
    out
}

pub fn sarif(problems: &[Problem]) -> String {
    let mut rules: Vec<&str> = problems.iter().map(|p| p.code.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    let results: Vec<Value> = problems
        .iter()
        .map(|p| {
            let mut r = json!({
                "ruleId": p.code,
                "level": match p.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": { "text": match &p.help { Some(h) => format!("{} (help: {h})", p.message), None => p.message.clone() } },
            });
            if let Some(f) = p.file_name() {
                let mut region = json!({});
                if let Some((l, c)) = p.line_col() {
                    region = json!({ "startLine": l, "startColumn": c });
                }
                r["locations"] = json!([{ "physicalLocation": {
                    "artifactLocation": { "uri": f },
                    "region": region,
                }}]);
            }
            r
        })
        .collect();
    let v = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "cairn",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|r| json!({"id": r})).collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}
