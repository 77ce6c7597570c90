//! Rendering a report run: HTML (one self-contained file, inline CSS and SVG), Markdown (fits a
//! pull-request comment) and JSON (for machines), through minijinja templates shipped in the
//! binary and overridable from a directory.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use minijinja::{Environment, Value, context};
use serde::Serialize;

use crate::error::ReportError;
use crate::query::QueryOutput;
use crate::spec::{ChartSpec, Period, QuerySpec, ReportSpec};

/// Rows shown per section in HTML (the JSON output has them all).
pub const MAX_ROWS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Json,
}

/// One query of a report, run.
pub struct SectionRun {
    pub spec: QuerySpec,
    /// The SQL as run (dates bound, engine variant chosen).
    pub sql: String,
    pub output: QueryOutput,
}

pub struct ReportRun {
    pub spec: ReportSpec,
    pub period: Period,
    pub lake: String,
    pub engine: String,
    pub sections: Vec<SectionRun>,
}

#[derive(Serialize)]
struct Column {
    name: String,
    numeric: bool,
    /// The fragment prefix a value of this column links to (`decision-`, `bundle-`).
    link: Option<&'static str>,
}

/// Columns whose values name something another section shows: a decision record, a bundle.
fn link_prefix(column: &str) -> Option<&'static str> {
    match column {
        "decision_id" => Some("decision-"),
        "bundle" => Some("bundle-"),
        _ => None,
    }
}

fn numeric(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
    )
}

/// The first `limit` rows (every row for `None`) as display strings.
fn display_rows(out: &QueryOutput, limit: Option<usize>) -> Result<Vec<Vec<String>>, ReportError> {
    let opts = FormatOptions::default().with_null("");
    let mut rows = Vec::new();
    for b in &out.batches {
        if limit.is_some_and(|l| rows.len() >= l) {
            break;
        }
        let fmts: Vec<ArrayFormatter<'_>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()
            .map_err(|e| ReportError::Execution(e.to_string()))?;
        for i in 0..b.num_rows() {
            if limit.is_some_and(|l| rows.len() >= l) {
                break;
            }
            rows.push(
                fmts.iter()
                    .zip(b.columns())
                    .map(|(f, c)| {
                        let s = f.value(i).to_string();
                        if matches!(c.data_type(), DataType::Float64 | DataType::Float32)
                            && !c.is_null(i)
                        {
                            s.parse::<f64>().map(trim_float).unwrap_or(s)
                        } else {
                            s
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Ticks for an axis from 0 to at least `max`: four steps, whole numbers when every value is
/// (a count never reads 2.5 requests).
fn ticks(max: f64, integers: bool) -> Vec<f64> {
    let max = max.max(if integers { 1.0 } else { 1e-9 });
    let step = if integers {
        (max / 4.0).ceil()
    } else {
        max / 4.0
    };
    (0..=4).map(|k| step * f64::from(k)).collect()
}

/// A bar chart as inline SVG over a query's `rows` (as [`display_rows`] gives them): one group
/// per row, `y` as a bar and `beside` (if any) as a second bar beside it, on one scale.
fn bar_chart(chart: &ChartSpec, schema: &Schema, rows: &[Vec<String>]) -> Option<String> {
    let (Ok(xi), Ok(yi)) = (schema.index_of(&chart.x), schema.index_of(&chart.y)) else {
        return None;
    };
    let si = chart.beside.as_ref().and_then(|s| schema.index_of(s).ok());
    if rows.is_empty() {
        return None;
    }
    let val =
        |r: &Vec<String>, i: usize| r.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let series: Vec<(usize, &str, &str)> = std::iter::once((yi, chart.y.as_str(), "#2f6f9f"))
        .chain(si.map(|i| (i, chart.beside.as_deref().unwrap_or(""), "#b4432f")))
        .collect();
    let integers = series.iter().all(|(i, _, _)| {
        numeric(schema.field(*i).data_type())
            && !matches!(
                schema.field(*i).data_type(),
                DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _)
            )
    });
    let max = rows
        .iter()
        .flat_map(|r| series.iter().map(|(i, _, _)| val(r, *i)))
        .fold(0.0_f64, f64::max);
    let ticks = ticks(max, integers);
    let top_value = ticks.last().copied().unwrap_or(1.0).max(1e-9);
    let (w, h, left, bottom, top) = (760.0, 220.0, 56.0, 36.0, 12.0);
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - top;
    let n = rows.len() as f64;
    let slot = plot_w / n;
    let group = (slot * 0.8).clamp(1.0, 64.0);
    let bar = group / series.len() as f64;
    let mut svg = format!(
        r##"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{} by {}">"##,
        escape(&series.iter().map(|s| s.1).collect::<Vec<_>>().join(" and ")),
        escape(&chart.x)
    );
    for (k, v) in ticks.iter().enumerate() {
        let y = top + plot_h - plot_h * v / top_value;
        let label = if integers {
            format!("{v:.0}")
        } else {
            trim_float(*v)
        };
        svg.push_str(&format!(
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d8dde3" stroke-width="1"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#5b6470" class="tick" data-tick="{k}">{label}</text>"##,
            w - 10.0,
            left - 6.0,
            y + 3.0,
        ));
    }
    let label_every = (n / 12.0).ceil().max(1.0) as usize;
    for (i, r) in rows.iter().enumerate() {
        let x0 = left + slot * i as f64 + (slot - group) / 2.0;
        let label = r.get(xi).cloned().unwrap_or_default();
        for (j, (col, name, color)) in series.iter().enumerate() {
            let v = val(r, *col);
            let bh = plot_h * v / top_value;
            svg.push_str(&format!(
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{color}"><title>{}: {} {}</title></rect>"##,
                x0 + bar * j as f64,
                top + plot_h - bh,
                (bar - 1.0).max(0.5),
                escape(&label),
                trim_float(v),
                escape(name)
            ));
        }
        if i % label_every == 0 {
            svg.push_str(&format!(
                r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#5b6470">{}</text>"##,
                x0 + group / 2.0,
                h - bottom + 14.0,
                escape(&label)
            ));
        }
    }
    for (j, (_, name, color)) in series.iter().enumerate() {
        let x = left + 120.0 * j as f64;
        svg.push_str(&format!(
            r##"<rect x="{x}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"##,
            h - 12.0,
            x + 14.0,
            h - 3.0,
            escape(name)
        ));
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// A value for a Markdown table cell: one line, no column break, and nothing Markdown or HTML
/// would act on (values such as user agents and ARNs come from whoever called AWS; unescaped
/// they could plant links, images or tags in a pull-request comment).
fn md_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '!' | '|' | '~' | '#' | '&' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn environment(templates: Option<&Path>) -> Environment<'static> {
    let mut env = Environment::new();
    env.add_filter("md", |v: String| md_cell(&v));
    let dir: Option<PathBuf> = templates.map(Path::to_path_buf);
    env.set_loader(move |name| {
        if let Some(d) = &dir {
            let p = d.join(name);
            if p.is_file() {
                return std::fs::read_to_string(&p).map(Some).map_err(|e| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("cannot read `{}`: {e}", p.display()),
                    )
                });
            }
        }
        Ok(match name {
            "report.html.j2" => Some(include_str!("builtin/report.html.j2").to_string()),
            "report.md.j2" => Some(include_str!("builtin/report.md.j2").to_string()),
            _ => None,
        })
    });
    env
}

/// Every row some section names (its `anchor`), gathered while the sections are built, so a
/// value links only where its target is shown.
type Anchors = std::collections::BTreeMap<String, bool>;

fn sections_context(
    run: &ReportRun,
    format: Format,
    shown: &mut Anchors,
) -> Result<Vec<Value>, ReportError> {
    let mut sections = Vec::new();
    for s in &run.sections {
        // A chart and the JSON use every row; a table shows at most MAX_ROWS, so only those
        // are formatted (a detection can hit millions of events).
        let limit = (s.spec.chart.is_none() && format != Format::Json).then_some(MAX_ROWS);
        let all = display_rows(&s.output, limit)?;
        let row_count = s.output.rows();
        // The chart uses every row; the table shows at most MAX_ROWS.
        let chart = match (&s.spec.chart, format) {
            (Some(c), Format::Html) => bar_chart(c, &s.output.schema, &all),
            _ => None,
        };
        let rows: Vec<Vec<String>> = all.into_iter().take(MAX_ROWS).collect();
        let anchor = s.spec.anchor.as_deref();
        let columns: Vec<Column> = s
            .output
            .schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                numeric: numeric(f.data_type()),
                // A row does not link to itself.
                link: link_prefix(f.name()).filter(|_| Some(f.name().as_str()) != anchor),
            })
            .collect();
        let anchors: Vec<String> = match anchor.and_then(|a| s.output.schema.index_of(a).ok()) {
            Some(i) => {
                let prefix = anchor.and_then(link_prefix).unwrap_or("");
                rows.iter()
                    .map(|r| format!("{prefix}{}", r.get(i).map(String::as_str).unwrap_or("")))
                    .collect()
            }
            None => Vec::new(),
        };
        shown.extend(anchors.iter().map(|a| (a.clone(), true)));
        sections.push(context! {
            name => format!("{}-{}", run.spec.name, s.spec.name),
            title => s.spec.title,
            kind => s.spec.kind,
            description => s.spec.description,
            severity => s.spec.severity,
            source => s.spec.source,
            sql => s.sql,
            columns => columns,
            rows => rows,
            anchors => anchors,
            row_count => row_count,
            truncated => row_count > MAX_ROWS,
            chart => chart.map(Value::from_safe_string),
        });
    }
    Ok(sections)
}

/// The evidence for the header: its sections, and a one-line verdict on the chain.
fn evidence_context(
    run: &ReportRun,
    format: Format,
    shown: &mut Anchors,
) -> Result<Value, ReportError> {
    let sections = sections_context(run, format, shown)?;
    let chain = run.sections.iter().find(|s| s.spec.name == "chain");
    let row = match chain {
        Some(s) => display_rows(&s.output, Some(1))?.into_iter().next(),
        None => None,
    };
    let figure = |name: &str| -> i64 {
        chain
            .and_then(|s| s.output.schema.index_of(name).ok())
            .and_then(|i| row.as_ref()?.get(i)?.parse().ok())
            .unwrap_or(0)
    };
    let (decisions, outcomes, failed) = (
        figure("decisions_verified"),
        figure("outcomes_verified"),
        figure("records_quarantined_ever"),
    );
    let (status, verdict) = if failed > 0 {
        (
            "failed",
            format!(
                "has gaps: {failed} record(s) of the gateway's segments were quarantined on ingest (altered, out of their chain, unreadable or cut short; see _quarantine), at any time; {decisions} decisions and {outcomes} outcomes of this period verified"
            ),
        )
    } else if decisions == 0 {
        ("none", "no decision records in this period".to_string())
    } else {
        (
            "verified",
            format!(
                "verified on ingest: {decisions} decisions and {outcomes} outcomes, each hash, signature and link of the chain checked; none failed"
            ),
        )
    };
    Ok(context! {
        sections => sections,
        status => status,
        verdict => verdict,
    })
}

fn period_text(p: &Period) -> (String, String) {
    let to = if p.to.to_string().starts_with("9999") {
        "now".to_string()
    } else {
        p.to.to_string()
    };
    let from = if p.from.to_string().starts_with("1970") {
        "the beginning".to_string()
    } else {
        p.from.to_string()
    };
    (from, to)
}

/// Renders one or more runs (of the same lake and period) in `format`, with the evidence they
/// rest on ([`crate::run_evidence`]) when given.
pub fn render(
    runs: &[ReportRun],
    evidence: Option<&ReportRun>,
    format: Format,
    templates: Option<&Path>,
) -> Result<String, ReportError> {
    let Some(first) = runs.first() else {
        return Err(ReportError::Input("no report to render".into()));
    };
    let generated_at = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let (from, to) = period_text(&first.period);
    if format == Format::Json {
        let report_json = |run: &ReportRun| -> Result<serde_json::Value, ReportError> {
            let mut sections = serde_json::Map::new();
            for s in &run.sections {
                sections.insert(
                    s.spec.name.clone(),
                    serde_json::json!({
                        "title": s.spec.title,
                        "kind": s.spec.kind,
                        "severity": s.spec.severity,
                        "source": s.spec.source,
                        "sql": s.sql,
                        "rows": crate::output::to_json_rows(&s.output.batches)?,
                    }),
                );
            }
            Ok(
                serde_json::json!({ "report": run.spec.name, "title": run.spec.title, "sections": sections }),
            )
        };
        let reports = runs
            .iter()
            .map(report_json)
            .collect::<Result<Vec<_>, _>>()?;
        let v = serde_json::json!({
            "lake": first.lake,
            "engine": first.engine,
            "from": first.period.from.to_string(),
            "to": first.period.to.to_string(),
            "generated_at": generated_at,
            "reports": reports,
            "evidence": evidence.map(report_json).transpose()?,
        });
        return serde_json::to_string_pretty(&v).map_err(|e| ReportError::Execution(e.to_string()));
    }
    let mut anchors = Anchors::new();
    let mut reports = Vec::new();
    for run in runs {
        reports.push(context! {
            name => run.spec.name,
            title => run.spec.title,
            description => run.spec.description,
            sections => sections_context(run, format, &mut anchors)?,
        });
    }
    let env = environment(templates);
    let (specific, generic) = match format {
        Format::Html => (format!("{}.html.j2", first.spec.name), "report.html.j2"),
        _ => (format!("{}.md.j2", first.spec.name), "report.md.j2"),
    };
    let template = if runs.len() == 1 {
        env.get_template(&specific)
            .or_else(|_| env.get_template(generic))
    } else {
        env.get_template(generic)
    }
    .map_err(|e| ReportError::Template {
        name: generic.into(),
        message: e.to_string(),
    })?;
    let title = if runs.len() == 1 {
        first.spec.title.clone()
    } else {
        "Audit reports".to_string()
    };
    let names: Vec<&str> = runs.iter().map(|r| r.spec.name.as_str()).collect();
    let evidence = match evidence {
        Some(e) => Some(evidence_context(e, format, &mut anchors)?),
        None => None,
    };
    template
        .render(context! {
            title => title,
            names => names.join(" "),
            reports => reports,
            lake => first.lake,
            engine => first.engine,
            from => from,
            to => to,
            generated_at => generated_at,
            evidence => evidence,
            anchors => anchors,
        })
        .map_err(|e| ReportError::Template {
            name: template.name().to_string(),
            message: format!("{e:#}"),
        })
}

#[cfg(test)]
mod tests {
    use super::md_cell;

    #[test]
    fn markdown_cells_cannot_carry_markup() {
        let agent = "x | ![t](https://evil.example/p.png)\n<img src=x> [l](u) `c`";
        let cell = md_cell(agent);
        assert!(!cell.contains('\n'));
        assert_eq!(
            cell,
            r"x \| \!\[t\](https://evil.example/p.png) \<img src=x\> \[l\](u) \`c\`"
        );
        assert_eq!(
            md_cell("principal-cleared-for-data"),
            "principal-cleared-for-data"
        );
        assert_eq!(md_cell("0.0300"), "0.0300");
    }
}
