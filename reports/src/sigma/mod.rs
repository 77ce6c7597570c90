//! Sigma rules run over the lake: each rule of `product: aws, service: cloudtrail` compiles to
//! one SQL text over `cloudtrail` that DataFusion and Athena both run ([`compile`], with the
//! field mapping in [`fields`]).
//!
//! The built-in rules are SigmaHQ's CloudTrail rules (vendored under `reports/rules/sigmahq/`,
//! DRL 1.1) and Cairn's own (`reports/rules/cairn/`). A rule that does not compile is kept,
//! with the reason, so `cairn detect --list` can say what does not run and why.

mod compile;
pub mod fields;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::ReportError;
use crate::spec::QuerySpec;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sigma_rules.rs"));
}

/// The columns every detection's hits show.
pub const HIT_COLUMNS: &str = "event_time, event_id, event_source, event_name, user_arn, source_ip_address, aws_region, error_code";

/// One rule, compiled or with the reason it is not.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Unique among the loaded rules: the file's stem (with the document's number when a file
    /// holds several).
    pub name: String,
    /// Where the rule came from: `builtin:sigmahq/cloudtrail/x.yml` or a path.
    pub origin: String,
    pub id: Option<String>,
    pub title: String,
    pub level: Option<String>,
    pub status: Option<String>,
    pub author: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub references: Vec<String>,
    pub falsepositives: Vec<String>,
    pub license: Option<String>,
    /// The SQL, with `:from` and `:to` for the period.
    pub sql: Option<String>,
    /// Why the rule does not compile.
    pub unsupported: Option<String>,
}

impl Rule {
    /// The rule as a section of the `detections` report.
    pub fn query(&self) -> Option<QuerySpec> {
        let sql = self.sql.clone()?;
        let by = self
            .author
            .as_deref()
            .map(|a| format!("; author: {a}"))
            .unwrap_or_default();
        Some(QuerySpec {
            name: self.name.clone(),
            title: self.title.clone(),
            kind: "detection".into(),
            anchor: None,
            description: self.description.as_ref().map(|d| d.trim().to_string()),
            severity: Some(self.level.clone().unwrap_or_else(|| "medium".into())),
            source: Some(format!(
                "Sigma {} ({}){by}",
                self.id.as_deref().unwrap_or("(no id)"),
                self.origin
            )),
            rule_id: self.id.clone(),
            chart: None,
            sql,
            athena_sql: None,
        })
    }

    /// Whether `key` names this rule: its name, its id, or its file.
    pub fn is(&self, key: &str) -> bool {
        self.name == key
            || self.id.as_deref() == Some(key)
            || self.origin == key
            || self.origin.ends_with(&format!("/{key}"))
    }
}

fn lower_debug(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}").to_lowercase()
}

fn is_cloudtrail(ls: &rsigma_parser::LogSource) -> Result<(), String> {
    let product = ls.product.as_deref().unwrap_or("");
    let service = ls.service.as_deref().unwrap_or("");
    if product.eq_ignore_ascii_case("aws") && service.eq_ignore_ascii_case("cloudtrail") {
        return Ok(());
    }
    Err(format!(
        "logsource is product `{}`, service `{}`, category `{}`: only `product: aws, service: cloudtrail` rules run over the lake",
        ls.product.as_deref().unwrap_or("-"),
        ls.service.as_deref().unwrap_or("-"),
        ls.category.as_deref().unwrap_or("-"),
    ))
}

fn sql_for(rule: &rsigma_parser::SigmaRule) -> Result<String, String> {
    is_cloudtrail(&rule.logsource)?;
    if rule.detection.timeframe.is_some() {
        return Err(
            "`timeframe` aggregations (deprecated in favour of correlations) are not supported"
                .into(),
        );
    }
    let named: BTreeMap<_, _> = rule
        .detection
        .named
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let cond = compile::condition(&named, &rule.detection.conditions)?;
    Ok(format!(
        "SELECT {HIT_COLUMNS}\nFROM cloudtrail\nWHERE \"date\" BETWEEN :from AND :to\n  AND {cond}\nORDER BY event_time, event_id"
    ))
}

/// Parses one file's rules (a file may hold several documents).
pub fn parse(origin: &str, stem: &str, text: &str) -> Result<Vec<Rule>, ReportError> {
    let bad = |message: String| ReportError::Input(format!("{origin}: {message}"));
    let collection = rsigma_parser::parse_sigma_yaml(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{}:{}: ", l.line, l.col))
            .unwrap_or_default();
        bad(format!("{at}{e}"))
    })?;
    if let Some(first) = collection.errors.first() {
        return Err(bad(format!(
            "{first} (fix the rule, or move it out of the rules directory)"
        )));
    }
    let total = collection.rules.len() + collection.correlations.len() + collection.filters.len();
    let name_of = |i: usize| {
        if total > 1 {
            format!("{stem}-{}", i + 1)
        } else {
            stem.to_string()
        }
    };
    let mut out = Vec::new();
    for (i, r) in collection.rules.iter().enumerate() {
        let compiled = sql_for(r);
        out.push(Rule {
            name: name_of(i),
            origin: origin.to_string(),
            id: r.id.clone(),
            title: r.title.clone(),
            level: r.level.as_ref().map(lower_debug),
            status: r.status.as_ref().map(lower_debug),
            author: r.author.clone(),
            description: r.description.clone(),
            tags: r.tags.clone(),
            references: r.references.clone(),
            falsepositives: r.falsepositives.clone(),
            license: r.license.clone(),
            unsupported: compiled.as_ref().err().cloned(),
            sql: compiled.ok(),
        });
    }
    let offset = collection.rules.len();
    for (i, c) in collection.correlations.iter().enumerate() {
        out.push(Rule {
            name: name_of(offset + i),
            origin: origin.to_string(),
            id: c.id.clone(),
            title: c.title.clone(),
            level: c.level.as_ref().map(lower_debug),
            status: c.status.as_ref().map(lower_debug),
            author: c.author.clone(),
            description: c.description.clone(),
            tags: c.tags.clone(),
            references: c.references.clone(),
            falsepositives: Vec::new(),
            license: c.license.clone(),
            sql: None,
            unsupported: Some(format!(
                "correlation rules ({}) are not supported: they count events over time windows, which one query per rule does not express",
                lower_debug(&c.correlation_type)
            )),
        });
    }
    let offset = offset + collection.correlations.len();
    for (i, f) in collection.filters.iter().enumerate() {
        out.push(Rule {
            name: name_of(offset + i),
            origin: origin.to_string(),
            id: f.id.clone(),
            title: f.title.clone(),
            level: None,
            status: None,
            author: f.author.clone(),
            description: f.description.clone(),
            tags: Vec::new(),
            references: Vec::new(),
            falsepositives: Vec::new(),
            license: None,
            sql: None,
            unsupported: Some(
                "Sigma filter rules (which amend other rules) are not supported".into(),
            ),
        });
    }
    Ok(out)
}

/// The built-in rules, in path order.
pub fn builtin() -> Result<Vec<Rule>, ReportError> {
    let mut out = Vec::new();
    for (path, text) in embedded::RULES {
        let stem = Path::new(path)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        out.extend(parse(&format!("builtin:{path}"), &stem, text)?);
    }
    Ok(out)
}

fn rule_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ReportError::Input(format!(
            "cannot read rules directory `{}`: {e}",
            dir.display()
        ))
    })?;
    for e in entries.flatten() {
        let p = e.path();
        // Hidden directories (`.git`, `.github`) hold other YAML; a linked directory could
        // loop.
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        let linked = e.file_type().is_ok_and(|t| t.is_symlink());
        if p.is_dir() {
            if !hidden && !linked {
                rule_files(&p, out)?;
            }
        } else if !hidden && p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Rules from files and directories (searched for `*.yml` and `*.yaml`); `builtin` stands for
/// the built-in set. Names stay unique: a later rule with a taken name gets a numbered one.
pub fn load(sources: &[String]) -> Result<Vec<Rule>, ReportError> {
    let mut out: Vec<Rule> = Vec::new();
    for s in sources {
        let rules = if s == "builtin" {
            builtin()?
        } else {
            let p = PathBuf::from(s);
            let mut files = Vec::new();
            if p.is_dir() {
                rule_files(&p, &mut files)?;
                files.sort();
            } else {
                files.push(p);
            }
            let mut rules = Vec::new();
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(|e| {
                    ReportError::Input(format!("cannot read rule `{}`: {e}", f.display()))
                })?;
                let stem = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                rules.extend(parse(&f.display().to_string(), &stem, &text)?);
            }
            rules
        };
        for mut r in rules {
            let base = r.name.clone();
            let mut n = 2;
            while out.iter().any(|o| o.name == r.name) {
                r.name = format!("{base}-{n}");
                n += 1;
            }
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_load_and_most_compile() {
        let rules = builtin().expect("built-in rules parse");
        let sigmahq = rules
            .iter()
            .filter(|r| r.origin.starts_with("builtin:sigmahq/"))
            .count();
        assert_eq!(sigmahq, 57);
        let unsupported: Vec<_> = rules
            .iter()
            .filter_map(|r| r.unsupported.as_ref().map(|u| format!("{}: {u}", r.name)))
            .collect();
        assert!(unsupported.len() <= 2, "{unsupported:#?}");
        let names: std::collections::BTreeSet<_> = rules.iter().map(|r| &r.name).collect();
        assert_eq!(names.len(), rules.len(), "names are unique");
    }

    #[test]
    fn a_bad_rule_says_where() {
        let e = parse(
            "x.yml",
            "x",
            "title: t\nlogsource: {product: aws}\ndetection:\n  sel: [\n",
        )
        .expect_err("bad yaml");
        assert!(e.to_string().starts_with("x.yml: "), "{e}");
        let windows = "title: w\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image: x}\n  condition: sel\n";
        let r = parse("w.yml", "w", windows).expect("parses");
        assert!(
            r[0].unsupported
                .as_deref()
                .unwrap_or("")
                .contains("only `product: aws")
        );
    }
}
