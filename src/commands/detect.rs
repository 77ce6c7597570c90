//! `cairn detect`: Sigma rules compiled to SQL and run over the lake, locally or on Athena.

use std::io::Write;

use reports::output;
use reports::sigma::{self, Rule};
use reports::spec::{Period, bind};
use serde_json::{Value, json};

use crate::cli::{DetectArgs, DetectFormat};
use crate::exit::{CliError, CliResult, Outcome};

/// One rule that ran, with its SQL and hits.
struct Ran<'a> {
    rule: &'a Rule,
    sql: String,
    out: reports::query::QueryOutput,
    /// Every hit's count, and the first `--max-hits` of them as JSON objects.
    total: usize,
    rows: Vec<Value>,
}

fn chosen(args: &DetectArgs) -> Result<Vec<Rule>, CliError> {
    let sources = if args.rules.is_empty() {
        vec!["builtin".to_string()]
    } else {
        args.rules.clone()
    };
    let rules = sigma::load(&sources)?;
    if args.rule.is_empty() {
        return Ok(rules);
    }
    for key in &args.rule {
        if !rules.iter().any(|r| r.is(key)) {
            return Err(unknown(key, &rules));
        }
    }
    Ok(rules
        .into_iter()
        .filter(|r| args.rule.iter().any(|k| r.is(k)))
        .collect())
}

fn unknown(key: &str, rules: &[Rule]) -> CliError {
    let near = reports::spec::closest(key, rules.iter().map(|r| r.name.as_str()));
    CliError::input(miette::miette!(
        help = near
            .map(|n| format!("did you mean `{n}`? (`cairn detect --list` shows every rule)"))
            .unwrap_or_else(|| "`cairn detect --list` shows every rule".into()),
        "no rule is named `{key}`"
    ))
}

pub fn run(args: &DetectArgs) -> CliResult {
    let rules = chosen(args)?;
    let period = super::query::period(&args.period)?;
    if args.list {
        return list(&rules, args);
    }
    if let Some(key) = &args.show_sql {
        let rule = rules
            .iter()
            .find(|r| r.is(key))
            .ok_or_else(|| unknown(key, &rules))?;
        let Some(sql) = &rule.sql else {
            return Err(CliError::input(miette::miette!(
                "rule `{}` does not compile: {}",
                rule.name,
                rule.unsupported.as_deref().unwrap_or("")
            )));
        };
        outln!(
            "-- {} ({}): {}\n{};",
            rule.name,
            rule.id.as_deref().unwrap_or("no id"),
            rule.title.replace(['\n', '\r'], " "),
            bind(sql, &period)
        );
        return Ok(Outcome::Success);
    }
    let rt = super::gateway::runtime()?;
    let ran = rt.block_on(async {
        let engine = super::query::engine(&args.engine).await?;
        let mut ran = Vec::new();
        let mut failed = Vec::new();
        // One rule that fails (a throttled Athena query, a pattern the data trips) does not
        // take the others' results with it: it is reported, and the run exits 2 at the end.
        for rule in rules.iter().filter(|r| r.sql.is_some()) {
            let sql = bind(rule.sql.as_deref().unwrap_or(""), &period);
            let result = match engine.query(&sql).await {
                Ok(mut out) => {
                    // Hits past the cap are counted, not converted: a rule that fires on
                    // millions of events must not cost minutes of formatting.
                    let total = out.rows();
                    out.batches = output::head(&out.batches, args.max_hits);
                    output::to_json_rows(&out.batches).map(|rows| (out, total, rows))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok((out, total, rows)) => ran.push(Ran {
                    rule,
                    sql,
                    out,
                    total,
                    rows,
                }),
                // The first rule failing is most likely the engine or the lake (credentials,
                // workgroup, no table): say so once instead of once per rule.
                Err(e) if ran.is_empty() && failed.is_empty() => {
                    return Err(CliError::input(miette::miette!(
                        "rule `{}` ({}), the first to run, failed: {e}",
                        rule.name,
                        rule.origin
                    )));
                }
                Err(e) => failed.push((rule, e.to_string())),
            }
        }
        Ok::<_, CliError>((ran, failed, engine.name()))
    })?;
    let (ran, failed, engine) = ran;
    let skipped: Vec<&Rule> = rules.iter().filter(|r| r.sql.is_none()).collect();
    let mut out = super::query::sink(&args.out)?;
    let written = match args.format {
        DetectFormat::Json => writeln!(
            out,
            "{}",
            json_doc(&ran, &skipped, &failed, &period, &engine)
        ),
        DetectFormat::Sarif => writeln!(out, "{}", sarif(&ran, &failed)),
        DetectFormat::Md => write!(out, "{}", markdown(&ran, &skipped, &failed, &period)),
        DetectFormat::Table => table(&ran, &skipped, &failed, &mut out),
    };
    super::query::finish(written.and_then(|()| out.flush()))?;
    if !failed.is_empty() {
        for (rule, e) in &failed {
            eprintln!("rule `{}` ({}) failed: {e}", rule.name, rule.origin);
        }
        return Err(CliError::input(miette::miette!(
            help = "the other rules' results were written; `--rule NAME` runs one again",
            "{} rule(s) could not run",
            failed.len()
        )));
    }
    let hits: usize = ran.iter().map(|r| r.total).sum();
    Ok(if args.fail_on_hits && hits > 0 {
        Outcome::CheckFailed
    } else {
        Outcome::Success
    })
}

fn list(rules: &[Rule], args: &DetectArgs) -> CliResult {
    if args.format == DetectFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(rules).unwrap_or_default()
        );
        return Ok(Outcome::Success);
    }
    let width = rules.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    outln!("{:<width$}  {:<13}  {:<36}  TITLE", "RULE", "LEVEL", "ID");
    for r in rules {
        outln!(
            "{:<width$}  {:<13}  {:<36}  {}",
            r.name,
            r.level.as_deref().unwrap_or("-"),
            r.id.as_deref().unwrap_or("-"),
            r.title
        );
        if let Some(why) = &r.unsupported {
            outln!("{:<width$}  not compiled: {why}", "");
        }
    }
    let skipped = rules.iter().filter(|r| r.sql.is_none()).count();
    outln!(
        "\n{} rule(s): {} compile to SQL, {skipped} do not",
        rules.len(),
        rules.len() - skipped
    );
    Ok(Outcome::Success)
}

fn meta(rule: &Rule) -> Value {
    json!({
        "name": rule.name,
        "id": rule.id,
        "title": rule.title,
        "level": rule.level,
        "status": rule.status,
        "author": rule.author,
        "tags": rule.tags,
        "references": rule.references,
        "falsepositives": rule.falsepositives,
        "origin": rule.origin,
    })
}

fn json_doc(
    ran: &[Ran<'_>],
    skipped: &[&Rule],
    failed: &[(&Rule, String)],
    period: &Period,
    engine: &str,
) -> String {
    let doc = json!({
        "engine": engine,
        "period": {"from": period.from.to_string(), "to": period.to.to_string()},
        "rules_run": ran.len(),
        "rules_with_hits": ran.iter().filter(|r| r.total > 0).count(),
        "hits": ran.iter().map(|r| r.total).sum::<usize>(),
        "results": ran.iter().map(|r| json!({
            "rule": meta(r.rule),
            "sql": r.sql,
            "hit_count": r.total,
            "truncated": r.rows.len() < r.total,
            "hits": r.rows,
        })).collect::<Vec<_>>(),
        "rules_failed": failed.len(),
        "failed": failed.iter().map(|(r, e)| json!({
            "name": r.name, "id": r.id, "title": r.title, "level": r.level, "origin": r.origin, "error": e,
        })).collect::<Vec<_>>(),
        "not_compiled": skipped.iter().map(|r| json!({
            "name": r.name, "id": r.id, "title": r.title, "origin": r.origin, "reason": r.unsupported,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn header(rule: &Rule, hits: usize) -> String {
    format!(
        "[{}] {} — {} hit(s)\n  rule {} ({}), by {}\n  tags: {}{}",
        rule.level.as_deref().unwrap_or("-"),
        rule.title,
        hits,
        rule.id.as_deref().unwrap_or(&rule.name),
        rule.name,
        rule.author.as_deref().unwrap_or("-"),
        if rule.tags.is_empty() {
            "-".to_string()
        } else {
            rule.tags.join(", ")
        },
        rule.references
            .first()
            .map(|r| format!("\n  see {r}"))
            .unwrap_or_default()
    )
}

/// The line that says which rules could not run, if any.
fn failures(failed: &[(&Rule, String)]) -> String {
    if failed.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = failed.iter().map(|(r, _)| r.name.as_str()).collect();
    format!(
        "; {} rule(s) FAILED to run: {} (the results are incomplete)",
        failed.len(),
        names.join(", ")
    )
}

fn table(
    ran: &[Ran<'_>],
    skipped: &[&Rule],
    failed: &[(&Rule, String)],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for r in ran.iter().filter(|r| r.total > 0) {
        writeln!(out, "{}", header(r.rule, r.total))?;
        output::write(
            output::Format::Table,
            &r.out.schema,
            &r.out.batches,
            &mut *out,
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        if r.rows.len() < r.total {
            writeln!(
                out,
                "({} more; --max-hits 0 shows every hit)",
                r.total - r.rows.len()
            )?;
        }
        writeln!(out)?;
    }
    let with = ran.iter().filter(|r| r.total > 0).count();
    let hits: usize = ran.iter().map(|r| r.total).sum();
    writeln!(
        out,
        "{} rule(s) ran: {with} with hits, {hits} hit(s){}{}",
        ran.len(),
        failures(failed),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(
                "; {} rule(s) do not compile (`cairn detect --list` says why)",
                skipped.len()
            )
        }
    )
}

fn md_cell(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.replace('|', "\\|").replace('\n', " ")
}

fn markdown(
    ran: &[Ran<'_>],
    skipped: &[&Rule],
    failed: &[(&Rule, String)],
    period: &Period,
) -> String {
    let mut s = format!(
        "## Detections, {} to {}\n\n| Rule | Level | Hits | Id |\n|---|---|---|---|\n",
        period.from, period.to
    );
    for r in ran.iter().filter(|r| r.total > 0) {
        s.push_str(&format!(
            "| {} | {} | {} | `{}` |\n",
            md_cell(&json!(r.rule.title)),
            r.rule.level.as_deref().unwrap_or("-"),
            r.total,
            r.rule.id.as_deref().unwrap_or(&r.rule.name)
        ));
    }
    let with = ran.iter().filter(|r| r.total > 0).count();
    s.push_str(&format!(
        "\n{} rule(s) ran, {with} with hits; {} do not compile{}.\n",
        ran.len(),
        skipped.len(),
        failures(failed)
    ));
    for r in ran.iter().filter(|r| r.total > 0) {
        s.push_str(&format!(
            "\n### {}\n\n`{}` · {} · by {} · {}\n\n",
            md_cell(&json!(r.rule.title)),
            r.rule.id.as_deref().unwrap_or(&r.rule.name),
            r.rule.level.as_deref().unwrap_or("-"),
            md_cell(&json!(r.rule.author.as_deref().unwrap_or("-"))),
            r.rule.tags.join(", ")
        ));
        let cols: Vec<String> = r
            .out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        s.push_str(&format!(
            "| {} |\n|{}\n",
            cols.join(" | "),
            "---|".repeat(cols.len())
        ));
        for row in &r.rows {
            let cells: Vec<String> = cols.iter().map(|c| md_cell(&row[c])).collect();
            s.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        s.push_str(&format!(
            "\n<details><summary>SQL</summary>\n\n```sql\n{}\n```\n</details>\n",
            r.sql
        ));
    }
    s
}

fn sarif_level(level: Option<&str>) -> &'static str {
    match level {
        Some("critical" | "high") => "error",
        Some("medium") => "warning",
        _ => "note",
    }
}

/// The file a rule came from, relative to the repository for built-in rules.
fn rule_uri(rule: &Rule) -> String {
    match rule.origin.strip_prefix("builtin:") {
        Some(rel) => format!("reports/rules/{rel}"),
        None => rule.origin.clone(),
    }
}

fn sarif(ran: &[Ran<'_>], failed: &[(&Rule, String)]) -> String {
    let rules: Vec<Value> = ran
        .iter()
        .map(|r| {
            let mut v = json!({
                "id": r.rule.id.clone().unwrap_or_else(|| r.rule.name.clone()),
                "name": r.rule.name,
                "shortDescription": {"text": r.rule.title},
                "fullDescription": {"text": r.rule.description.as_deref().unwrap_or(&r.rule.title).trim()},
                "defaultConfiguration": {"level": sarif_level(r.rule.level.as_deref())},
                "properties": {
                    "tags": r.rule.tags,
                    "author": r.rule.author,
                    "level": r.rule.level,
                    "references": r.rule.references,
                    "license": "Detection Rule License 1.1 (SigmaHQ rules) or the rule's own",
                },
            });
            if let Some(u) = r.rule.references.first() {
                v["helpUri"] = json!(u);
            }
            v
        })
        .collect();
    let mut results = Vec::new();
    for (i, r) in ran.iter().enumerate() {
        for row in &r.rows {
            let text = format!(
                "{}: {} by {} from {} at {} (event {})",
                r.rule.title,
                md_cell(&row["event_name"]),
                md_cell(&row["user_arn"]),
                md_cell(&row["source_ip_address"]),
                md_cell(&row["event_time"]),
                md_cell(&row["event_id"]),
            );
            results.push(json!({
                "ruleId": rules[i]["id"],
                "ruleIndex": i,
                "level": sarif_level(r.rule.level.as_deref()),
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": rule_uri(r.rule)}, "region": {"startLine": 1}},
                    "logicalLocations": [{"name": md_cell(&row["event_id"]), "kind": "event"}],
                }],
                "partialFingerprints": {"eventId": md_cell(&row["event_id"])},
                "properties": {"event": row},
            }));
        }
    }
    serde_json::to_string_pretty(&json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "cairn detect",
                "informationUri": "https://github.com/SigmaHQ/sigma",
                "rules": rules,
            }},
            "results": results,
            // A consumer (code scanning) must not read a partial run as a complete one.
            "invocations": [{
                "executionSuccessful": failed.is_empty(),
                "toolExecutionNotifications": failed.iter().map(|(r, e)| json!({
                    "level": "error",
                    "message": {"text": format!("rule `{}` ({}) failed: {e}", r.name, r.origin)},
                })).collect::<Vec<_>>(),
            }],
        }],
    }))
    .unwrap_or_default()
}
