//! One shape for what every checking command found (`policy validate`, `fmt --check`, `test`,
//! `diff`), and the machine formats they all offer from it: GitHub workflow commands, SARIF
//! 2.1.0 (regions with start and end, rules with descriptions) and JUnit XML.

use policy_engine::policy_tests::report::{gh_data, gh_property, xml};
use policy_engine::{Problem, Severity};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Note,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Note => "note",
        }
    }
}

/// A 1-based region of a file: start and end line and column (the end column exclusive, as in
/// SARIF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: (usize, usize),
    pub end: (usize, usize),
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    /// A stable code, the SARIF rule id.
    pub rule: String,
    pub message: String,
    pub file: Option<String>,
    pub region: Option<Region>,
}

impl Finding {
    pub fn new(level: Level, rule: &str, message: impl Into<String>) -> Self {
        Self {
            level,
            rule: rule.to_string(),
            message: message.into(),
            file: None,
            region: None,
        }
    }

    pub fn at(mut self, file: &str, region: Option<Region>) -> Self {
        self.file = Some(file.to_string());
        self.region = region;
        self
    }

    /// A whole line.
    pub fn at_line(self, file: &str, line: usize, text: &str) -> Self {
        let end = text.chars().count() + 1;
        self.at(
            file,
            Some(Region {
                start: (line, 1),
                end: (line, end.max(2)),
            }),
        )
    }
}

impl From<&Problem> for Finding {
    fn from(p: &Problem) -> Self {
        let region = p.location.as_ref().and_then(|loc| {
            let span = loc.span?;
            let start = loc.file.line_col(span.offset());
            let end = loc.file.line_col(span.offset() + span.len().max(1));
            Some(Region { start, end })
        });
        let message = match &p.help {
            Some(h) => format!("{} (help: {h})", p.message),
            None => p.message.clone(),
        };
        Self {
            level: match p.severity {
                Severity::Error => Level::Error,
                Severity::Warning => Level::Warning,
            },
            rule: p.code.clone(),
            message,
            file: p.file_name().map(str::to_string),
            region,
        }
    }
}

pub fn from_problems(problems: &[Problem]) -> Vec<Finding> {
    problems.iter().map(Finding::from).collect()
}

/// What a rule checks, for SARIF's `shortDescription`.
pub fn describe(rule: &str) -> String {
    let known = match rule {
        "cedar::parse" => "A policy file does not parse as Cedar.",
        "cedar::schema" => "The Cedar schema does not parse or is inconsistent.",
        "cedar::validation" => "Cedar's strict validator rejects a policy against the schema.",
        "cedar::policy-set" => "The policies cannot form one policy set.",
        "cairn::missing-id" => "A policy has no @id annotation; decisions name policies by it.",
        "cairn::empty-id" => "A policy's @id annotation is empty.",
        "cairn::duplicate-id" => "Two policies share one @id.",
        "cairn::template" => "A template policy; bundles hold static policies only.",
        "cairn::schema-missing" => "No schema was found; policies cannot be validated.",
        "cairn::no-policies" => "The policy directory holds no .cedar file.",
        "cairn::no-tests" => "No policy test suite was found.",
        "cairn::test-syntax" => "A policy test suite does not parse.",
        "cairn::test-case" => "A policy test case is malformed.",
        "cairn::test-entities" => "A test suite's entities do not conform to the schema.",
        "cairn::entities" => "Entities do not conform to the schema.",
        "cairn::request" => "A request does not conform to the schema.",
        "cairn::context" => "A request context does not conform to the schema.",
        "cairn::io" => "A file could not be read.",
        "cairn::usage" => "The command was used in a way it cannot run.",
        "cairn::fmt" => "A policy file could not be formatted.",
        "cairn::bundle" => "A bundle's signature or a member does not verify against its manifest.",
        "cairn::fmt::unformatted" => {
            "A policy file is not formatted as `cairn policy fmt` formats it."
        }
        "cairn::test::failed" => {
            "A policy test case's decision or reasons differ from the expected."
        }
        "cairn::test::uncovered" => "A policy determined no decision in any test case.",
        "cairn::diff::allow-to-deny" => {
            "Recorded requests that were allowed are denied by the new policies."
        }
        "cairn::diff::deny-to-allow" => {
            "Recorded requests that were denied are allowed by the new policies."
        }
        "cairn::diff::reasons" => {
            "Recorded requests keep their decision but other policies determine it."
        }
        "cairn::diff::arguments" => {
            "Recorded requests whose decision depends on arguments the records keep only as hashes."
        }
        "cairn::diff::error" => "Recorded requests the new policies cannot decide.",
        "cairn::proof::deny-to-allow" => {
            "Proven: some request the base policies deny is allowed by the new ones (a counterexample Cedar confirms)."
        }
        "cairn::proof::allow-to-deny" => {
            "Proven: some request the base policies allow is denied by the new ones (a counterexample Cedar confirms)."
        }
        "cairn::analyze::dead" => "A policy that no request of the schema can match.",
        "cairn::analyze::always-errors" => {
            "A policy whose condition errors on every request its scope admits."
        }
        "cairn::analyze::matches-all" => {
            "A policy that matches every request of a request environment."
        }
        "cairn::analyze::shadowed" => {
            "A permit that a forbid always overrides: it never allows anything."
        }
        "cairn::analyze::redundant" => {
            "A permit other permits already cover: removing it changes no decision."
        }
        "cairn::analyze::forbid-never-fires" => {
            "A forbid that denies only what no permit allows: removing it changes no decision."
        }
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    // Cedar's own diagnostic codes (`cedar_policy_validator::unexpected_type`, ...): its last
    // segment, in words.
    let last = rule
        .rsplit("::")
        .next()
        .unwrap_or(rule)
        .replace(['_', '-'], " ");
    if rule.starts_with("cedar") {
        format!("Cedar: {last}.")
    } else {
        format!("{last}.")
    }
}

/// GitHub Actions workflow commands: one annotation per finding.
pub fn github(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let kind = match f.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "notice",
        };
        let mut props = Vec::new();
        if let Some(file) = &f.file {
            props.push(format!("file={}", gh_property(file)));
        }
        if let Some(r) = f.region {
            props.push(format!(
                "line={},col={},endLine={},endColumn={}",
                r.start.0, r.start.1, r.end.0, r.end.1
            ));
        }
        props.push(format!("title={}", gh_property(&f.rule)));
        out.push_str(&format!(
            "::{kind} {}::{}\n",
            props.join(","),
            gh_data(&f.message)
        ));
    }
    out
}

/// SARIF 2.1.0, one run of `cairn` with every rule that produced a result described.
pub fn sarif(findings: &[Finding]) -> String {
    let mut rules: Vec<&str> = findings.iter().map(|f| f.rule.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut r = json!({
                "ruleId": f.rule,
                "ruleIndex": rules.binary_search(&f.rule.as_str()).unwrap_or(0),
                "level": f.level.as_str(),
                "message": { "text": f.message },
            });
            if let Some(file) = &f.file {
                let mut location = json!({ "artifactLocation": { "uri": file } });
                if let Some(reg) = f.region {
                    location["region"] = json!({
                        "startLine": reg.start.0, "startColumn": reg.start.1,
                        "endLine": reg.end.0, "endColumn": reg.end.1,
                    });
                }
                r["locations"] = json!([{ "physicalLocation": location }]);
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
                "rules": rules.iter().map(|r| {
                    let d = describe(r);
                    json!({"id": r, "shortDescription": {"text": d}, "fullDescription": {"text": d}})
                }).collect::<Vec<_>>(),
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// One JUnit test case: a thing checked, failed when it has error findings.
pub struct Case {
    pub name: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    /// Error findings fail the case; warnings and notes are its output.
    pub findings: Vec<Finding>,
    /// Text attached to a failure (a diff, say).
    pub detail: Option<String>,
}

fn position(f: &Finding) -> String {
    match (&f.file, f.region) {
        (Some(file), Some(r)) => format!("{file}:{}:{}: ", r.start.0, r.start.1),
        (Some(file), None) => format!("{file}: "),
        _ => String::new(),
    }
}

/// JUnit XML: one suite named `suite`, a test case per thing checked.
pub fn junit(suite: &str, cases: &[Case]) -> String {
    let failed = |c: &Case| c.findings.iter().any(|f| f.level == Level::Error);
    let failures = cases.iter().filter(|c| failed(c)).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"{0}\" tests=\"{1}\" failures=\"{failures}\">\n  <testsuite name=\"{0}\" tests=\"{1}\" failures=\"{failures}\">\n",
        xml(suite),
        cases.len()
    ));
    for c in cases {
        let mut attrs = format!("name=\"{}\" classname=\"{}\"", xml(&c.name), xml(suite));
        if let Some(file) = &c.file {
            attrs.push_str(&format!(" file=\"{}\"", xml(file)));
        }
        if let Some(line) = c.line {
            attrs.push_str(&format!(" line=\"{line}\""));
        }
        let (errors, others): (Vec<&Finding>, Vec<&Finding>) =
            c.findings.iter().partition(|f| f.level == Level::Error);
        if errors.is_empty() && others.is_empty() {
            out.push_str(&format!("    <testcase {attrs}/>\n"));
            continue;
        }
        out.push_str(&format!("    <testcase {attrs}>\n"));
        if let Some(first) = errors.first() {
            let mut body: Vec<String> = errors
                .iter()
                .map(|f| format!("{}{}", position(f), f.message))
                .collect();
            if let Some(d) = &c.detail {
                body.push(d.clone());
            }
            out.push_str(&format!(
                "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                xml(&first.message),
                xml(&first.rule),
                xml(&body.join("\n"))
            ));
        }
        if !others.is_empty() {
            let text: Vec<String> = others
                .iter()
                .map(|f| format!("{}{}: {}", position(f), f.level.as_str(), f.message))
                .collect();
            out.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                xml(&text.join("\n"))
            ));
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sarif_has_regions_with_ends_and_described_rules() {
        let f = Finding::new(Level::Warning, "cairn::missing-id", "no @id").at_line(
            "p.cedar",
            3,
            "permit (principal, action, resource);",
        );
        let v: Value = serde_json::from_str(&sarif(&[f])).unwrap();
        let region = &v["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
        assert_eq!(region["startLine"], 3);
        assert_eq!(region["endColumn"], 38);
        let rule = &v["runs"][0]["tool"]["driver"]["rules"][0];
        assert!(
            rule["shortDescription"]["text"]
                .as_str()
                .unwrap()
                .contains("@id")
        );
        assert_eq!(
            describe("cedar_policy_validator::unexpected_type"),
            "Cedar: unexpected type."
        );
    }

    #[test]
    fn junit_fails_cases_with_errors_only() {
        let cases = [
            Case {
                name: "a.cedar".into(),
                file: Some("a.cedar".into()),
                line: None,
                findings: vec![Finding::new(Level::Error, "cedar::parse", "bad <token>")],
                detail: Some("diff".into()),
            },
            Case {
                name: "b.cedar".into(),
                file: None,
                line: None,
                findings: vec![Finding::new(Level::Warning, "w", "careful")],
                detail: None,
            },
        ];
        let x = junit("cairn policy validate", &cases);
        assert!(x.contains(r#"failures="1""#) && x.contains("bad &lt;token&gt;\ndiff"));
        assert!(x.contains("<system-out>warning: careful</system-out>"));
    }
}
