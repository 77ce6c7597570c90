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

/// Every row as display strings.
fn display_rows(out: &QueryOutput) -> Result<Vec<Vec<String>>, ReportError> {
    let opts = FormatOptions::default().with_null("");
    let mut rows = Vec::new();
    for b in &out.batches {
        let fmts: Vec<ArrayFormatter<'_>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()
            .map_err(|e| ReportError::Execution(e.to_string()))?;
        for i in 0..b.num_rows() {
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

/// A bar chart as inline SVG over a query's `rows` (as [`display_rows`] gives them): one bar per
/// row, `y` as its height, `stack` (if any) drawn as the part of the bar it accounts for.
fn bar_chart(chart: &ChartSpec, schema: &Schema, rows: &[Vec<String>]) -> Option<String> {
    let (Ok(xi), Ok(yi)) = (schema.index_of(&chart.x), schema.index_of(&chart.y)) else {
        return None;
    };
    let si = chart.stack.as_ref().and_then(|s| schema.index_of(s).ok());
    if rows.is_empty() {
        return None;
    }
    let val =
        |r: &Vec<String>, i: usize| r.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let max = rows
        .iter()
        .map(|r| val(r, yi))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let (w, h, left, bottom, top) = (760.0, 220.0, 56.0, 36.0, 12.0);
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - top;
    let n = rows.len() as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.7).clamp(1.0, 48.0);
    let mut svg = format!(
        r##"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{} by {}">"##,
        escape(&chart.y),
        escape(&chart.x)
    );
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let y = top + plot_h - plot_h * f64::from(k) / 4.0;
        svg.push_str(&format!(
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d8dde3" stroke-width="1"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#5b6470">{}</text>"##,
            w - 10.0,
            left - 6.0,
            y + 3.0,
            trim_float(v)
        ));
    }
    let label_every = (n / 12.0).ceil().max(1.0) as usize;
    for (i, r) in rows.iter().enumerate() {
        let v = val(r, yi);
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let bh = plot_h * v / max;
        let y = top + plot_h - bh;
        let label = r.get(xi).cloned().unwrap_or_default();
        svg.push_str(&format!(
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{bh:.1}" fill="#2f6f9f"><title>{}: {} {}</title></rect>"##,
            escape(&label),
            trim_float(v),
            escape(&chart.y)
        ));
        if let Some(si) = si {
            let sv = val(r, si).min(v);
            let sh = plot_h * sv / max;
            svg.push_str(&format!(
                r##"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{sh:.1}" fill="#b4432f"><title>{}: {} {}</title></rect>"##,
                top + plot_h - sh,
                escape(&label),
                trim_float(sv),
                escape(chart.stack.as_deref().unwrap_or(""))
            ));
        }
        if i % label_every == 0 {
            svg.push_str(&format!(
                r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#5b6470">{}</text>"##,
                x + bar / 2.0,
                h - bottom + 14.0,
                escape(&label)
            ));
        }
    }
    let legend = match &chart.stack {
        Some(s) => format!(
            r##"<rect x="{left}" y="{:.1}" width="10" height="10" fill="#2f6f9f"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text><rect x="{:.1}" y="{:.1}" width="10" height="10" fill="#b4432f"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"##,
            h - 12.0,
            left + 14.0,
            h - 3.0,
            escape(&chart.y),
            left + 120.0,
            h - 12.0,
            left + 134.0,
            h - 3.0,
            escape(s)
        ),
        None => format!(
            r##"<rect x="{left}" y="{:.1}" width="10" height="10" fill="#2f6f9f"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"##,
            h - 12.0,
            left + 14.0,
            h - 3.0,
            escape(&chart.y)
        ),
    };
    svg.push_str(&legend);
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

fn sections_context(run: &ReportRun, format: Format) -> Result<Vec<Value>, ReportError> {
    let mut sections = Vec::new();
    for s in &run.sections {
        let all = display_rows(&s.output)?;
        let row_count = all.len();
        // The chart uses every row; the table shows at most MAX_ROWS.
        let chart = match (&s.spec.chart, format) {
            (Some(c), Format::Html) => bar_chart(c, &s.output.schema, &all),
            _ => None,
        };
        let rows: Vec<Vec<String>> = all.into_iter().take(MAX_ROWS).collect();
        let columns: Vec<Column> = s
            .output
            .schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                numeric: numeric(f.data_type()),
            })
            .collect();
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
            row_count => row_count,
            truncated => row_count > MAX_ROWS,
            chart => chart.map(Value::from_safe_string),
        });
    }
    Ok(sections)
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

/// Renders one or more runs (of the same lake and period) in `format`.
pub fn render(
    runs: &[ReportRun],
    format: Format,
    templates: Option<&Path>,
) -> Result<String, ReportError> {
    let Some(first) = runs.first() else {
        return Err(ReportError::Input("no report to render".into()));
    };
    let generated_at = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let (from, to) = period_text(&first.period);
    if format == Format::Json {
        let mut reports = Vec::new();
        for run in runs {
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
            reports.push(serde_json::json!({ "report": run.spec.name, "title": run.spec.title, "sections": sections }));
        }
        let v = serde_json::json!({
            "lake": first.lake,
            "engine": first.engine,
            "from": first.period.from.to_string(),
            "to": first.period.to.to_string(),
            "generated_at": generated_at,
            "reports": reports,
        });
        return serde_json::to_string_pretty(&v).map_err(|e| ReportError::Execution(e.to_string()));
    }
    let mut reports = Vec::new();
    for run in runs {
        reports.push(context! {
            name => run.spec.name,
            title => run.spec.title,
            description => run.spec.description,
            sections => sections_context(run, format)?,
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
