//! `policy diff`'s report in each format: the proof per environment beside the replay.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use policy_engine::Problem;
use policy_engine::load::LoadedPolicies;
use policy_engine::replay::{self, Compared};
use policy_proof::{EnvComparison, Verdict, Witness};
use serde_json::json;

use super::witness_text::{authorize_command, policy_texts, yaml_case};
use super::{Diff, Proof, Replay, plain};
use crate::findings::{self, Finding, Level};

fn outcome_text(o: &replay::Outcome) -> String {
    match &o.error {
        Some(e) => format!("error: {e}"),
        None if o.decision == "depends" => format!(
            "depends on the arguments (read by {})",
            o.reasons.join(", ")
        ),
        None if o.reasons.is_empty() => format!("{} (no policy)", o.decision),
        None => format!("{} ({})", o.decision, o.reasons.join(", ")),
    }
}

fn decided(decision: &str, reasons: &[String]) -> String {
    if reasons.is_empty() {
        format!("{decision} (no policy)")
    } else {
        format!("{decision} ({})", reasons.join(", "))
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Equivalent => "equivalent",
        Verdict::Widens => "widens",
        Verdict::Narrows => "narrows",
        Verdict::Both => "widens and narrows",
    }
}

fn witnesses(e: &EnvComparison) -> impl Iterator<Item = &Witness> {
    e.deny_to_allow.iter().chain(e.allow_to_deny.iter())
}

fn head_dir(diff: &Diff) -> String {
    diff.args.paths.policies.display().to_string()
}

// ---------------------------------------------------------------- human

pub fn human(diff: &Diff) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "base  {}  ({} policies)",
        diff.args.base,
        diff.base.policies.len()
    );
    let _ = writeln!(
        s,
        "head  {}  ({} policies)",
        head_dir(diff),
        diff.head.policies.len()
    );
    if let Some(p) = &diff.proof {
        human_proof(&mut s, diff, p);
    }
    if let Some(r) = &diff.replay {
        human_replay(&mut s, diff, r);
    }
    s
}

fn human_proof(s: &mut String, diff: &Diff, p: &Proof) {
    let envs = &p.comparison.environments;
    let changed: Vec<&EnvComparison> = p.comparison.changed().collect();
    let _ = writeln!(
        s,
        "\nproof (cvc5 {}; every counterexample decided again by Cedar): {} request environments, {} changed{}",
        p.solver.version,
        envs.len(),
        changed.len(),
        if p.comparison.cached > 0 {
            format!(" ({} answered from the cache)", p.comparison.cached)
        } else {
            String::new()
        }
    );
    if changed.is_empty() {
        let _ = writeln!(s, "  equivalent: base and head decide every request alike");
        return;
    }
    for e in changed {
        let _ = writeln!(s, "\n  {:<8} {}", verdict_word(e.verdict), e.env);
        for w in witnesses(e) {
            let _ = writeln!(
                s,
                "    {} → {}",
                decided(&w.base_decision, &w.base_reasons),
                decided(&w.head_decision, &w.head_reasons)
            );
            let _ = writeln!(
                s,
                "    for {} doing {} on {}",
                w.principal, w.action, w.resource
            );
            let _ = writeln!(s, "    context:  {}", w.context);
            let _ = writeln!(s, "    entities: {}", w.entities);
            let _ = writeln!(s, "    as a policy test case:");
            for line in yaml_case(w, &e.env).lines() {
                let _ = writeln!(s, "      {line}");
            }
            let _ = writeln!(s, "    to decide it yourself:");
            for line in authorize_command(w, &head_dir(diff)).lines() {
                let _ = writeln!(s, "      {line}");
            }
        }
    }
    let same = envs.len() - p.comparison.changed().count();
    let _ = writeln!(s, "\n  {same} other environments equivalent");
}

/// (change, principal, resource, base outcome, head outcome)
type GroupKey = (String, String, String, String, String);

/// Replayed decisions that changed alike: how many, the latest, their record ids.
struct Group<'a> {
    count: usize,
    last: &'a str,
    ids: Vec<&'a str>,
}

/// The changed decisions grouped, the largest group first.
fn groups<'a>(changed: &[&'a Compared]) -> Vec<(GroupKey, Group<'a>)> {
    let mut groups: BTreeMap<GroupKey, Group<'a>> = BTreeMap::new();
    for c in changed {
        let key = (
            c.change().to_string(),
            c.principal.clone(),
            c.resource.clone(),
            outcome_text(&c.base),
            outcome_text(&c.head),
        );
        let g = groups.entry(key).or_insert(Group {
            count: 0,
            last: &c.ts,
            ids: Vec::new(),
        });
        g.count += 1;
        g.ids.push(&c.id);
        if c.ts.as_str() > g.last {
            g.last = &c.ts;
        }
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
    rows
}

fn human_replay(s: &mut String, diff: &Diff, r: &Replay) {
    let counts = r.counts();
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    let changed = r.changed();
    let _ = writeln!(
        s,
        "\nreplayed {} recorded decisions from {} ({} records skipped: Cedar did not decide them{})",
        r.compared.len(),
        r.dir.display(),
        r.skipped,
        if r.unreadable > 0 {
            format!("; {} unreadable lines", r.unreadable)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "  {} changed: {} allow→deny, {} deny→allow, {} decided by other policies, {} now or before depending on arguments the records keep only as hashes, {} could not be decided; {} unchanged",
        changed.len(),
        n("allow_to_deny"),
        n("deny_to_allow"),
        n("reasons"),
        n("arguments"),
        n("error"),
        n("same")
    );
    if changed.is_empty() {
        return;
    }
    let rows = groups(&changed);
    let shown = if diff.args.limit == 0 {
        rows.len()
    } else {
        diff.args.limit.min(rows.len())
    };
    let _ = writeln!(s);
    for ((change, principal, resource, before, after), g) in &rows[..shown] {
        let _ = writeln!(
            s,
            "  {change:<11} {:>5}x  {principal} -> {resource}  (last {})",
            g.count, g.last
        );
        let _ = writeln!(s, "              base: {before}");
        let _ = writeln!(s, "              head: {after}");
    }
    if shown < rows.len() {
        let _ = writeln!(
            s,
            "  ... and {} more groups (--limit 0 lists all, --format json gives every decision)",
            rows.len() - shown
        );
    }
}

// ---------------------------------------------------------------- markdown

/// Markdown table cells cannot hold `|` or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn fence(s: &mut String, lang: &str, body: &str) {
    // A fence longer than any backtick run inside, so the body cannot close it.
    let mut ticks = "```".to_owned();
    while body.contains(&ticks) {
        ticks.push('`');
    }
    let _ = writeln!(s, "{ticks}{lang}\n{}\n{ticks}", body.trim_end());
}

pub fn markdown(diff: &Diff) -> String {
    let mut s = String::new();
    let verdict = match (diff.widens(), diff.narrows()) {
        (true, true) => "⚠️ widens and narrows access",
        (true, false) => "⚠️ widens access",
        (false, true) => "narrows access",
        (false, false) if diff.changes() => "changes which policies decide",
        (false, false) => "✅ no change in access",
    };
    let _ = writeln!(s, "## Cairn policy diff: {verdict}\n");
    let _ = writeln!(
        s,
        "**base** `{}` ({} policies) → **head** `{}` ({} policies)\n",
        cell(&diff.args.base),
        diff.base.policies.len(),
        cell(&head_dir(diff)),
        diff.head.policies.len()
    );
    match &diff.proof {
        Some(p) => markdown_proof(&mut s, diff, p),
        None => {
            let _ = writeln!(
                s,
                "_No proof: no SMT solver was found; only recorded decisions were replayed._\n"
            );
        }
    }
    if let Some(r) = &diff.replay {
        markdown_replay(&mut s, r);
    }
    s
}

fn markdown_proof(s: &mut String, diff: &Diff, p: &Proof) {
    let _ = writeln!(
        s,
        "### Proof\n\nEvery request environment of the schema, proven with cvc5 {}; each counterexample was decided again by Cedar under both policy sets.\n",
        p.solver.version
    );
    let _ = writeln!(s, "| Principal | Action | Resource | Result |");
    let _ = writeln!(s, "|---|---|---|---|");
    for e in &p.comparison.environments {
        let word = verdict_word(e.verdict);
        let word = if e.verdict == Verdict::Equivalent {
            word.to_owned()
        } else {
            format!("**{word}**")
        };
        let _ = writeln!(
            s,
            "| `{}` | `{}` | `{}` | {word} |",
            cell(&e.env.principal_type),
            cell(&e.env.action),
            cell(&e.env.resource_type)
        );
    }
    let _ = writeln!(s);
    for e in p.comparison.changed() {
        for w in witnesses(e) {
            let _ = writeln!(
                s,
                "<details><summary><b>{}</b> {}: base {} → head {}</summary>\n",
                if w.head_decision == "allow" {
                    "deny → allow"
                } else {
                    "allow → deny"
                },
                html(&e.env.to_string()),
                html(&decided(&w.base_decision, &w.base_reasons)),
                html(&decided(&w.head_decision, &w.head_reasons)),
            );
            let _ = writeln!(
                s,
                "Request: `{}` doing `{}` on `{}`\n",
                cell(&w.principal),
                cell(&w.action),
                cell(&w.resource)
            );
            let _ = writeln!(s, "Context and entities:\n");
            let pretty = |v: &serde_json::Value| {
                serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
            };
            fence(
                s,
                "json",
                &pretty(&json!({ "context": w.context, "entities": w.entities })),
            );
            let _ = writeln!(s, "\nAs a policy test case:\n");
            fence(s, "yaml", &yaml_case(w, &e.env));
            let _ = writeln!(s, "\nTo decide it yourself:\n");
            fence(s, "sh", &authorize_command(w, &head_dir(diff)));
            policies_block(s, "Before (base)", diff.base, &w.base_reasons, false);
            policies_block(s, "After (head)", diff.head, &w.head_reasons, true);
            let _ = writeln!(s, "\n</details>\n");
        }
    }
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn policies_block(s: &mut String, title: &str, loaded: &LoadedPolicies, ids: &[String], at: bool) {
    let _ = writeln!(s, "\n{title}:");
    let texts = policy_texts(loaded, ids);
    if texts.is_empty() {
        let _ = writeln!(s, " no policy applies (the default deny).");
        return;
    }
    let _ = writeln!(s);
    for (position, text) in texts {
        if at {
            let _ = writeln!(s, "`{}`\n", cell(&position));
        }
        fence(s, "cedar", &text);
    }
}

fn markdown_replay(s: &mut String, r: &Replay) {
    let changed = r.changed();
    let _ = writeln!(
        s,
        "### Replayed decisions\n\n{} recorded decisions replayed from `{}`: {} changed.\n",
        r.compared.len(),
        cell(&r.dir.display().to_string()),
        changed.len()
    );
    if changed.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "| Change | Principal | Resource | Base | Head | Records |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for ((change, principal, resource, base, head), Group { ids, .. }) in groups(&changed) {
        let shown: Vec<String> = ids
            .iter()
            .take(5)
            .map(|i| format!("`{}`", cell(i)))
            .collect();
        let more = if ids.len() > 5 {
            format!(" and {} more", ids.len() - 5)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {change} | `{}` | `{}` | {} | {} | {}{more} |",
            cell(&principal),
            cell(&resource),
            cell(&base),
            cell(&head),
            shown.join(", ")
        );
    }
    let _ = writeln!(s);
}

pub fn markdown_invalid(side: &str, problems: &[Problem]) -> String {
    let mut s = format!("## Cairn policy diff: the {side} policies do not validate\n\n");
    for p in problems {
        let _ = writeln!(s, "- `{}` {}", cell(&p.position()), cell(&p.message));
    }
    s
}

// ---------------------------------------------------------------- json

pub fn json(diff: &Diff) -> serde_json::Value {
    let proof = diff.proof.as_ref().map(|p| {
        json!({
            "solver": p.solver,
            "cached": p.comparison.cached,
            "widens": p.comparison.widens(),
            "narrows": p.comparison.narrows(),
            "environments": p.comparison.environments,
        })
    });
    let (replayed, skipped, unreadable, summary, changes) = match &diff.replay {
        Some(r) => (
            r.compared.len(),
            r.skipped,
            r.unreadable,
            json!(r.counts()),
            r.changed()
                .into_iter()
                .map(|c| {
                    let mut v = json!(c);
                    v["change"] = json!(plain(c.change()));
                    v
                })
                .collect::<Vec<_>>(),
        ),
        None => (0, 0, 0, json!({}), Vec::new()),
    };
    json!({
        "base": diff.args.base,
        "head": diff.args.paths.policies,
        "widens": diff.widens(),
        "narrows": diff.narrows(),
        "proof": proof,
        "records": diff.replay.as_ref().map(|r| &r.dir),
        "replayed": replayed,
        "skipped": skipped,
        "unreadable": unreadable,
        "summary": summary,
        "changes": changes,
    })
}

// ---------------------------------------------------------------- findings

fn locate(f: Finding, diff: &Diff, ids: &[&String]) -> Finding {
    match ids.iter().find_map(|id| diff.head.policy(id)) {
        Some(p) => {
            let start = p.file.line_col(p.span.offset());
            let end = p.file.line_col(p.span.offset() + p.span.len());
            f.at(&p.file.name, Some(findings::Region { start, end }))
        }
        None => f.at(&head_dir(diff), None),
    }
}

fn level(diff: &Diff, change: &str) -> Level {
    if diff.fails_on(change) {
        Level::Error
    } else {
        Level::Warning
    }
}

/// Each proven difference and each group of replayed changes as one finding, located at the
/// head policy that causes it (the one that now decides, else the one whose change it is).
pub fn findings(diff: &Diff) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(p) = &diff.proof {
        for e in p.comparison.changed() {
            for w in witnesses(e) {
                let (rule, change) = if w.head_decision == "allow" {
                    ("cairn::proof::deny-to-allow", "deny→allow")
                } else {
                    ("cairn::proof::allow-to-deny", "allow→deny")
                };
                let message = format!(
                    "{} {}: {} doing {} on {} is {} under base and {} under head",
                    verdict_word(e.verdict),
                    e.env,
                    w.principal,
                    w.action,
                    w.resource,
                    decided(&w.base_decision, &w.base_reasons),
                    decided(&w.head_decision, &w.head_reasons)
                );
                let ids: Vec<&String> = w.head_reasons.iter().chain(&w.base_reasons).collect();
                out.push(locate(
                    Finding::new(level(diff, change), rule, message),
                    diff,
                    &ids,
                ));
            }
        }
    }
    if let Some(r) = &diff.replay {
        out.extend(replay_findings(diff, r));
    }
    out
}

fn replay_findings(diff: &Diff, r: &Replay) -> Vec<Finding> {
    let mut groups: BTreeMap<(String, String, String), Vec<&Compared>> = BTreeMap::new();
    for c in r.changed() {
        groups
            .entry((
                c.change().to_string(),
                c.principal.clone(),
                c.resource.clone(),
            ))
            .or_default()
            .push(c);
    }
    groups
        .into_iter()
        .map(|((change, principal, resource), cs)| {
            let last = cs[cs.len() - 1];
            let rule = match change.as_str() {
                "allow→deny" => "cairn::diff::allow-to-deny",
                "deny→allow" => "cairn::diff::deny-to-allow",
                "reasons" => "cairn::diff::reasons",
                "arguments" => "cairn::diff::arguments",
                _ => "cairn::diff::error",
            };
            let message = format!(
                "{} recorded decision(s) change {change}: {principal} -> {resource}; base: {}; head: {}",
                cs.len(),
                outcome_text(&last.base),
                outcome_text(&last.head)
            );
            let ids: Vec<&String> = last.head.reasons.iter().chain(&last.base.reasons).collect();
            locate(Finding::new(level(diff, &change), rule, message), diff, &ids)
        })
        .collect()
}

pub fn junit(diff: &Diff) -> String {
    let mut cases: Vec<findings::Case> = findings(diff)
        .into_iter()
        .map(|f| findings::Case {
            name: f.message.clone(),
            line: f.region.map(|r| r.start.0),
            file: f.file.clone(),
            findings: vec![f],
            detail: None,
        })
        .collect();
    if let Some(p) = &diff.proof {
        let same = p
            .comparison
            .environments
            .iter()
            .filter(|e| e.verdict == Verdict::Equivalent)
            .count();
        cases.push(findings::Case {
            name: format!("{same} request environments proven equivalent"),
            file: None,
            line: None,
            findings: Vec::new(),
            detail: None,
        });
    }
    if let Some(r) = &diff.replay {
        cases.push(findings::Case {
            name: format!(
                "{} recorded decisions unchanged",
                r.counts().get("same").copied().unwrap_or(0)
            ),
            file: None,
            line: None,
            findings: Vec::new(),
            detail: None,
        });
    }
    findings::junit("cairn policy diff", &cases)
}
