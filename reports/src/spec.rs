//! Report definitions: a name, a title, and queries, each with a title, a kind (`kpis`, `table`,
//! `detection`), optional chart, and the SQL (plus an Athena variant where the dialects differ).
//! The built-in ones live in `builtin/*.toml`; a `--templates DIR` holding `<name>.toml`
//! overrides or adds reports.

use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::ReportError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    pub name: String,
    pub title: String,
    pub description: String,
    pub queries: Vec<QuerySpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    pub name: String,
    pub title: String,
    /// `kpis` (one row shown as figures), `table`, `records` (each row shown as the fields of
    /// one record), or `detection`.
    pub kind: String,
    /// A column whose value names each row, so other sections can link to it: `decision_id`
    /// (linked from any `decision_id` column as `#decision-ID`) or `bundle` (`#bundle-DIGEST`).
    #[serde(default)]
    pub anchor: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// The Sigma rule a detection was compiled from (its `id`).
    #[serde(default)]
    pub rule_id: Option<String>,
    #[serde(default)]
    pub chart: Option<ChartSpec>,
    pub sql: String,
    /// The same query for Athena where the dialects differ.
    #[serde(default)]
    pub athena_sql: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    pub x: String,
    pub y: String,
    /// A second column drawn as a bar beside the first, on the same scale (`stack`, its
    /// earlier name, is still read).
    #[serde(default, alias = "stack")]
    pub beside: Option<String>,
}

const BUILTIN: &[(&str, &str)] = &[
    ("access", include_str!("builtin/access.toml")),
    ("denials", include_str!("builtin/denials.toml")),
    ("spend", include_str!("builtin/spend.toml")),
    ("reconcile", include_str!("builtin/reconcile.toml")),
    ("detections", include_str!("builtin/detections.toml")),
    ("tools", include_str!("builtin/tools.toml")),
];

fn parse(name: &str, text: &str) -> Result<ReportSpec, ReportError> {
    toml::from_str(text).map_err(|e| ReportError::Template {
        name: format!("{name}.toml"),
        message: e.to_string(),
    })
}

/// The queries every report rests on, run once per rendering: bundles in force and the chain's
/// verification on ingest.
pub fn evidence() -> Result<ReportSpec, ReportError> {
    parse("evidence", include_str!("builtin/evidence.toml"))
}

/// The built-in reports, in presentation order. The `detections` report is its SQL-only
/// detections (`builtin/detections.toml`) followed by every built-in Sigma rule that compiles.
pub fn builtin() -> Result<Vec<ReportSpec>, ReportError> {
    let mut out: Vec<ReportSpec> = BUILTIN
        .iter()
        .map(|(n, t)| parse(n, t))
        .collect::<Result<_, _>>()?;
    if let Some(det) = out.iter_mut().find(|s| s.name == "detections") {
        with_rules(det, &crate::sigma::builtin()?);
    }
    Ok(out)
}

/// Appends the rules that compile to a detections report, and says how many did not.
pub fn with_rules(det: &mut ReportSpec, rules: &[crate::sigma::Rule]) {
    det.queries
        .extend(rules.iter().filter_map(crate::sigma::Rule::query));
    let skipped = rules.iter().filter(|r| r.sql.is_none()).count();
    det.description = format!(
        "{} {} Sigma rules ran{}.",
        det.description.trim_end_matches('.'),
        rules.len() - skipped,
        if skipped > 0 {
            format!("; {skipped} do not compile (`cairn detect --list` says why)")
        } else {
            String::new()
        }
    );
}

/// All report names: built-in, then any extra ones in `dir`.
pub fn list(dir: Option<&Path>) -> Result<Vec<ReportSpec>, ReportError> {
    let mut out = builtin()?;
    if let Some(dir) = dir
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        let mut extra: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        extra.sort();
        for p in extra {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| ReportError::Input(format!("cannot read `{}`: {e}", p.display())))?;
            let spec = parse(&p.display().to_string(), &text)?;
            out.retain(|s| s.name != spec.name);
            out.push(spec);
        }
    }
    Ok(out)
}

pub fn find(name: &str, dir: Option<&Path>) -> Result<ReportSpec, ReportError> {
    let all = list(dir)?;
    let suggestion = closest(name, all.iter().map(|s| s.name.as_str()));
    all.into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ReportError::UnknownReport {
            name: name.to_string(),
            suggestion,
        })
}

/// The reports named, in order, once each; `all` is every report.
pub fn find_many(names: &[String], dir: Option<&Path>) -> Result<Vec<ReportSpec>, ReportError> {
    if names.iter().any(|n| n == "all") {
        return list(dir);
    }
    let mut out: Vec<ReportSpec> = Vec::new();
    for n in names {
        if !out.iter().any(|s| &s.name == n) {
            out.push(find(n, dir)?);
        }
    }
    Ok(out)
}

/// The known name nearest to a misspelt one, when it is near enough to be what was meant.
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

/// The period a report covers; by default everything.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Default for Period {
    fn default() -> Self {
        Self {
            from: NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default(),
            to: NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or_default(),
        }
    }
}

/// Replaces the parameters `:from` and `:to` with `DATE 'YYYY-MM-DD'` literals (both engines
/// accept them). Only parameters are replaced: text inside quotes (a Sigma rule's
/// `'arn:aws:...:token'`), comments and longer names (`:tomorrow`) stay as they are.
pub fn bind(sql: &str, period: &Period) -> String {
    let from = format!("DATE '{}'", period.from.format("%Y-%m-%d"));
    let to = format!("DATE '{}'", period.to.format("%Y-%m-%d"));
    let mut out = String::with_capacity(sql.len() + 32);
    let mut quoted: Option<char> = None;
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if let Some(q) = quoted {
            if c == q {
                quoted = None;
            }
        } else if rest.starts_with("--") || rest.starts_with("/*") {
            // A comment runs to the end of its line or to `*/`; it is copied as it is.
            let end = if rest.starts_with("--") {
                rest.find('\n').unwrap_or(rest.len())
            } else {
                rest[2..].find("*/").map(|e| e + 4).unwrap_or(rest.len())
            };
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        } else if c == '\'' || c == '"' {
            quoted = Some(c);
        } else if c == ':' {
            let word = |p: &str| {
                rest.strip_prefix(p).is_some_and(|after| {
                    !after
                        .chars()
                        .next()
                        .is_some_and(|n| n.is_ascii_alphanumeric() || n == '_')
                })
            };
            if word(":from") {
                out.push_str(&from);
                rest = &rest[5..];
                continue;
            }
            if word(":to") {
                out.push_str(&to);
                rest = &rest[3..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_report_gets_a_suggestion() {
        let known = [
            "access",
            "denials",
            "spend",
            "reconcile",
            "detections",
            "tools",
        ];
        assert_eq!(closest("denails", known).as_deref(), Some("denials"));
        assert_eq!(closest("acess", known).as_deref(), Some("access"));
        assert_eq!(closest("zzzzzz", known), None);
        let specs =
            find_many(&["tools".into(), "access".into(), "tools".into()], None).expect("found");
        assert_eq!(
            specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["tools", "access"]
        );
        let e = find_many(&["acces".into()], None).expect_err("unknown");
        assert!(e.to_string().contains("did you mean `access`?"), "{e}");
    }

    #[test]
    fn builtin_reports_parse() {
        let all = builtin().unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "access",
                "denials",
                "spend",
                "reconcile",
                "detections",
                "tools"
            ]
        );
        let det = all.iter().find(|s| s.name == "detections").unwrap();
        assert!(det.queries.len() >= 8);
        assert!(
            det.queries
                .iter()
                .all(|q| q.severity.is_some() && q.source.is_some())
        );
    }

    #[test]
    fn binding_dates() {
        let p = Period {
            from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        };
        assert_eq!(
            bind("x BETWEEN :from AND :to", &p),
            "x BETWEEN DATE '2026-11-01' AND DATE '2026-11-30'"
        );
        assert_eq!(
            bind(
                "a = ':to' AND b >= :from AND c = :tomorrow AND \"d:to\" = 1",
                &p
            ),
            "a = ':to' AND b >= DATE '2026-11-01' AND c = :tomorrow AND \"d:to\" = 1"
        );
        assert_eq!(
            bind("-- don't\nx = :from /* it's :to */ AND y = :to", &p),
            "-- don't\nx = DATE '2026-11-01' /* it's :to */ AND y = DATE '2026-11-30'"
        );
    }
}
