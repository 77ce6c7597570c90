//! `cairn policy diff` (the proof) and `cairn policy analyze` on fixture changes with known
//! answers, against the real solver scripts/test.sh installs (`CVC5`). Every counterexample is
//! also decided here by `cairn policy authorize`, outside the process that found it.

use serde_json::Value;

use crate::harness::{Cairn, Run};

const SCHEMA: &str = r#"
entity Group;
entity User in [Group] { level: Long };
entity Doc { owner: User, level: Long };
action read, write appliesTo { principal: User, resource: Doc };
"#;

const BASE: &str = r#"@id("readers")
permit (principal, action == Action::"read", resource)
when { principal.level > 2 && resource.level < 5 };

@id("no-secrets")
forbid (principal, action, resource)
when { resource.level >= 9 };

@id("owners-write")
permit (principal, action == Action::"write", resource)
when { resource.owner == principal };
"#;

/// A repo with `base/` and `head/` (head's policies `head`, the same schema unless given).
fn fixture(head: &str, head_schema: Option<&str>) -> Cairn {
    let c = Cairn::new();
    c.write("base/schema.cedarschema", SCHEMA);
    c.write("base/policies.cedar", BASE);
    c.write("head/schema.cedarschema", head_schema.unwrap_or(SCHEMA));
    c.write("head/policies.cedar", head);
    c
}

fn diff(c: &Cairn, extra: &[&str]) -> Run {
    let mut args = vec!["policy", "diff", "--base", "base", "--policies", "head"];
    args.extend_from_slice(extra);
    c.run(&args)
}

/// The proof's environments as (action, verdict).
fn verdicts(c: &Cairn) -> (Value, Vec<(String, String)>) {
    let r = diff(c, &["--format", "json", "--prove"]);
    r.expect_code(0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let envs = v["proof"]["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["env"]["action"].as_str().unwrap().to_owned(),
                e["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (v, envs)
}

/// The exit code under each `--fail-on`: (widen, narrow, change).
fn exits(c: &Cairn) -> (i32, i32, i32) {
    let code = |k: &str| diff(c, &["--fail-on", k]).code;
    (code("widen"), code("narrow"), code("change"))
}

/// The witness of `action`'s environment in direction `dir` (`deny_to_allow`/`allow_to_deny`).
fn witness<'a>(v: &'a Value, action: &str, dir: &str) -> &'a Value {
    let env = v["proof"]["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["env"]["action"] == format!("Action::\"{action}\""))
        .unwrap();
    assert!(env[dir].is_object(), "no {dir} witness for {action}: {env}");
    &env[dir]
}

/// Decides the witness with `cairn policy authorize` under `dir`: ALLOW exits 0, DENY 2.
fn authorize(c: &Cairn, dir: &str, w: &Value) -> &'static str {
    c.write("witness-entities.json", &w["entities"].to_string());
    c.write("witness-context.json", &w["context"].to_string());
    let r = c.run(&[
        "policy",
        "authorize",
        "--policies",
        dir,
        "--entities",
        "witness-entities.json",
        "--context",
        "witness-context.json",
        "--principal",
        w["principal"].as_str().unwrap(),
        "--action",
        w["action"].as_str().unwrap(),
        "--resource",
        w["resource"].as_str().unwrap(),
    ]);
    match r.code {
        0 => "allow",
        2 => "deny",
        _ => panic!("authorize failed: {}", r.all()),
    }
}

/// Cedar, run as a separate command, agrees with the witness on both sides.
fn confirmed(c: &Cairn, w: &Value) {
    assert_eq!(authorize(c, "base", w), w["base_decision"], "{w}");
    assert_eq!(authorize(c, "head", w), w["head_decision"], "{w}");
}

fn entity<'a>(w: &'a Value, uid: &str) -> &'a Value {
    w["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            format!(
                "{}::{}",
                e["uid"]["type"].as_str().unwrap(),
                Value::from(e["uid"]["id"].as_str().unwrap())
            ) == uid
        })
        .unwrap_or_else(|| panic!("no entity {uid} in {w}"))
}

#[test]
fn an_equivalent_refactor_is_proven_equivalent_and_passes_every_gate() {
    // `readers` split in two along resource.level, with its conditions reordered.
    let head = BASE.replace(
        "@id(\"readers\")\npermit (principal, action == Action::\"read\", resource)\nwhen { principal.level > 2 && resource.level < 5 };",
        "@id(\"readers-low\")\npermit (principal, action == Action::\"read\", resource)\nwhen { resource.level < 3 && principal.level > 2 };\n\n@id(\"readers-mid\")\npermit (principal, action == Action::\"read\", resource)\nwhen { resource.level >= 3 && resource.level < 5 && 2 < principal.level };",
    );
    assert_ne!(head, BASE);
    let c = fixture(&head, None);
    let (v, envs) = verdicts(&c);
    assert_eq!(envs.len(), 2);
    assert!(envs.iter().all(|(_, v)| v == "equivalent"), "{envs:?}");
    assert_eq!(
        (v["widens"].as_bool(), v["narrows"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(exits(&c), (0, 0, 0));
    diff(&c, &[]).expect_code(0).expect_output("equivalent");
}

#[test]
fn gt_to_ge_widens_on_the_boundary() {
    let c = fixture(
        &BASE.replace("principal.level > 2", "principal.level >= 2"),
        None,
    );
    let (v, envs) = verdicts(&c);
    assert!(
        envs.contains(&("Action::\"read\"".into(), "widens".into())),
        "{envs:?}"
    );
    assert!(
        envs.contains(&("Action::\"write\"".into(), "equivalent".into())),
        "{envs:?}"
    );
    let w = witness(&v, "read", "deny_to_allow");
    assert_eq!(
        entity(w, w["principal"].as_str().unwrap())["attrs"]["level"],
        2
    );
    assert_eq!(w["head_reasons"], serde_json::json!(["readers"]));
    assert_eq!(w["base_reasons"], serde_json::json!([]));
    confirmed(&c, w);
    assert_eq!(exits(&c), (1, 0, 1));
}

#[test]
fn a_removed_forbid_widens() {
    let head = BASE.replace(
        "@id(\"no-secrets\")\nforbid (principal, action, resource)\nwhen { resource.level >= 9 };\n",
        "",
    );
    let c = fixture(&head, None);
    let (v, envs) = verdicts(&c);
    // Writing a secret you own was forbidden; reading a secret never was allowed by `readers`.
    assert!(
        envs.contains(&("Action::\"write\"".into(), "widens".into())),
        "{envs:?}"
    );
    let w = witness(&v, "write", "deny_to_allow");
    assert!(
        entity(w, w["resource"].as_str().unwrap())["attrs"]["level"]
            .as_i64()
            .unwrap()
            >= 9
    );
    assert_eq!(w["base_reasons"], serde_json::json!(["no-secrets"]));
    confirmed(&c, w);
    assert_eq!(exits(&c), (1, 0, 1));
}

#[test]
fn a_new_permit_for_a_group_widens_only_for_its_members() {
    let head = format!(
        "{BASE}\n@id(\"auditors-read\")\npermit (principal in Group::\"auditors\", action == Action::\"read\", resource);\n"
    );
    let c = fixture(&head, None);
    let (v, envs) = verdicts(&c);
    assert!(
        envs.contains(&("Action::\"read\"".into(), "widens".into())),
        "{envs:?}"
    );
    assert!(
        envs.contains(&("Action::\"write\"".into(), "equivalent".into())),
        "{envs:?}"
    );
    let w = witness(&v, "read", "deny_to_allow");
    let principal = entity(w, w["principal"].as_str().unwrap());
    assert!(
        principal["parents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "Group" && p["id"] == "auditors"),
        "the widened request's principal is an auditor: {principal}"
    );
    assert_eq!(w["head_reasons"], serde_json::json!(["auditors-read"]));
    confirmed(&c, w);
}

#[test]
fn a_tightened_condition_narrows() {
    let c = fixture(
        &BASE.replace("principal.level > 2", "principal.level > 3"),
        None,
    );
    let (v, envs) = verdicts(&c);
    assert!(
        envs.contains(&("Action::\"read\"".into(), "narrows".into())),
        "{envs:?}"
    );
    let w = witness(&v, "read", "allow_to_deny");
    assert_eq!(
        entity(w, w["principal"].as_str().unwrap())["attrs"]["level"],
        3
    );
    confirmed(&c, w);
    assert_eq!(exits(&c), (0, 1, 1));
}

#[test]
fn both_directions_at_once() {
    // Readers need more level, but the secrets forbid is gone.
    let head = BASE
        .replace("principal.level > 2", "principal.level > 3")
        .replace(
            "when { resource.level >= 9 };",
            "when { resource.level >= 9 && action == Action::\"read\" };",
        );
    let c = fixture(&head, None);
    let (v, envs) = verdicts(&c);
    assert!(
        envs.contains(&("Action::\"read\"".into(), "narrows".into())),
        "{envs:?}"
    );
    assert!(
        envs.contains(&("Action::\"write\"".into(), "widens".into())),
        "{envs:?}"
    );
    confirmed(&c, witness(&v, "read", "allow_to_deny"));
    confirmed(&c, witness(&v, "write", "deny_to_allow"));
    assert_eq!(exits(&c), (1, 1, 1));
    // In one environment both ways: a swapped threshold.
    let c = fixture(
        &BASE.replace("principal.level > 2", "principal.level < 2"),
        None,
    );
    let (v, envs) = verdicts(&c);
    assert!(
        envs.contains(&("Action::\"read\"".into(), "both".into())),
        "{envs:?}"
    );
    confirmed(&c, witness(&v, "read", "allow_to_deny"));
    confirmed(&c, witness(&v, "read", "deny_to_allow"));
}

#[test]
fn a_schema_change_that_adds_an_attribute_is_compared_under_the_new_schema() {
    let schema = SCHEMA.replace("{ level: Long }", "{ level: Long, department: String }");
    let head = format!(
        "{BASE}\n@id(\"no-contractor-writes\")\nforbid (principal, action == Action::\"write\", resource)\nwhen {{ principal.department == \"contractors\" }};\n"
    );
    let c = fixture(&head, Some(&schema));
    let (v, envs) = verdicts(&c);
    assert!(
        envs.contains(&("Action::\"write\"".into(), "narrows".into())),
        "{envs:?}"
    );
    assert!(
        envs.contains(&("Action::\"read\"".into(), "equivalent".into())),
        "{envs:?}"
    );
    let w = witness(&v, "write", "allow_to_deny");
    assert_eq!(
        entity(w, w["principal"].as_str().unwrap())["attrs"]["department"],
        "contractors"
    );
    assert_eq!(authorize(&c, "head", w), "deny");
}

#[test]
fn the_pasted_test_case_passes_and_the_markdown_has_its_parts() {
    let c = fixture(
        &BASE.replace("principal.level > 2", "principal.level >= 2"),
        None,
    );
    let human = diff(&c, &[]);
    human
        .expect_code(0)
        .expect_output("widens")
        .expect_output("as a policy test case:");
    // The case as printed, under `cases:` of a suite of its own, passes against head.
    let lines: Vec<&str> = human.stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "as a policy test case:")
        .unwrap()
        + 1;
    let end = lines
        .iter()
        .position(|l| l.trim() == "to decide it yourself:")
        .unwrap();
    let case: String = lines[start..end]
        .iter()
        .map(|l| format!("  {}\n", l.strip_prefix("      ").unwrap()))
        .collect();
    c.write(
        "head/tests/witness.yaml",
        &format!("name: witness\ncases:\n{case}"),
    );
    c.run(&["policy", "test", "--policies", "head"])
        .expect_code(0)
        .expect_output("1 passed, 0 failed");

    let md = diff(&c, &["--format", "markdown"]);
    md.expect_code(0);
    let s = &md.stdout;
    assert!(
        s.starts_with("## Cairn policy diff: ⚠️ widens access"),
        "{s}"
    );
    assert!(
        s.contains("| Principal | Action | Resource | Result |"),
        "{s}"
    );
    assert!(
        s.contains("| `User` | `Action::\"read\"` | `Doc` | **widens** |"),
        "{s}"
    );
    assert_eq!(
        s.matches("<details>").count(),
        s.matches("</details>").count()
    );
    assert!(
        s.contains("```yaml\n- name:") && s.contains("```sh\ncairn policy authorize"),
        "{s}"
    );
    assert!(s.contains("```cedar\n@id(\"readers\")"), "{s}");
    assert_eq!(s.matches("```").count() % 2, 0, "fences balance");
}

#[test]
fn analyze_finds_dead_shadowed_redundant_and_never_firing_policies_at_their_lines() {
    let c = fixture(BASE, None);
    let extra = "\n@id(\"dead\")\npermit (principal, action == Action::\"read\", resource)\nwhen { resource.level > 5 && resource.level < 3 };\n\n@id(\"shadowed\")\npermit (principal, action == Action::\"write\", resource)\nwhen { resource.level >= 9 };\n\n@id(\"redundant\")\npermit (principal, action == Action::\"read\", resource)\nwhen { principal.level > 4 && resource.level < 2 };\n";
    let line = c.read("head/policies.cedar").lines().count() + 2;
    c.append("head/policies.cedar", extra);
    let r = c.run(&["policy", "analyze", "--policies", "head"]);
    r.expect_code(0)
        .expect_output(&format!(
            "head/policies.cedar:{line}:1: permit `dead` can never match"
        ))
        .expect_output(&format!(
            "head/policies.cedar:{}:1: permit `shadowed` is shadowed",
            line + 4
        ))
        .expect_output(&format!(
            "head/policies.cedar:{}:1: permit `redundant` is redundant",
            line + 8
        ))
        .expect_output("3 finding(s)");
    c.run(&["policy", "analyze", "--policies", "head", "--deny-warnings"])
        .expect_code(1);
    // validate runs the same analysis as warnings.
    c.run(&["policy", "validate", "--policies", "head"])
        .expect_code(0)
        .expect_output("3 warning(s)");
    c.run(&[
        "policy",
        "validate",
        "--policies",
        "head",
        "--deny-warnings",
    ])
    .expect_code(1);
    c.run(&[
        "policy",
        "validate",
        "--policies",
        "head",
        "--deny-warnings",
        "--no-analyze",
    ])
    .expect_code(0);
    // An acknowledged finding is not reported.
    c.replace(
        "head/policies.cedar",
        "@id(\"dead\")",
        "@id(\"dead\")\n@analyze_allow(\"dead: kept for the audit\")",
    );
    c.run(&["policy", "analyze", "--policies", "head"])
        .expect_code(0)
        .expect_output("2 finding(s), 1 acknowledged");
    let sarif = c.run(&[
        "policy",
        "analyze",
        "--policies",
        "head",
        "--format",
        "sarif",
    ]);
    let v: Value = serde_json::from_str(&sarif.stdout).unwrap();
    let rules: Vec<&str> = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        ["cairn::analyze::shadowed", "cairn::analyze::redundant"]
    );
}

#[test]
fn the_unconstrained_permit_of_the_issue_fails_the_widen_gate_on_the_real_policies() {
    let c = Cairn::with_policies();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(c.dir.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "policies"]);
    c.append(
        "policies/models.cedar",
        "\n@id(\"temp-debug-access\")\npermit (principal, action, resource);\n",
    );
    let r = c.run(&[
        "policy",
        "diff",
        "--base",
        "git:HEAD",
        "--fail-on",
        "widen",
        "--format",
        "json",
    ]);
    r.expect_code(1);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let widened: Vec<&Value> = v["proof"]["environments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["deny_to_allow"].as_object().map(|_| &e["deny_to_allow"]))
        .collect();
    assert!(!widened.is_empty());
    for w in &widened {
        assert_eq!(
            w["head_reasons"],
            serde_json::json!(["temp-debug-access"]),
            "{w}"
        );
    }
    // And `analyze` names it: a permit over whole environments.
    c.run(&["policy", "analyze"])
        .expect_code(0)
        .expect_output("permit `temp-debug-access` allows every request of");
    // The same policies formatted otherwise are equivalent: exit 0.
    c.run(&["policy", "fmt", "--policies", "policies"])
        .expect_code(0);
    git(&["checkout", "-q", "--", "policies/models.cedar"]);
    c.replace(
        "policies/models.cedar",
        "permit (\n  principal is User,",
        "permit (principal is User,",
    );
    c.run(&["policy", "diff", "--base", "git:HEAD", "--fail-on", "widen"])
        .expect_code(0)
        .expect_output("base and head decide every request alike");
}

#[test]
fn without_a_solver_diff_says_so_on_one_line_and_prove_makes_it_an_error() {
    let c = fixture(
        &BASE.replace("principal.level > 2", "principal.level >= 2"),
        None,
    );
    std::fs::create_dir_all(c.path("records")).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["policy", "diff", "--base", "base", "--policies", "head"];
        args.extend_from_slice(extra);
        Run::from(
            c.command()
                .env("CVC5", "/nonexistent/cvc5")
                .args(&args)
                .output()
                .unwrap(),
        )
    };
    let r = run(&["--records", "records"]);
    r.expect_code(0);
    let notes: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("no proof"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", r.stderr);
    assert!(r.stderr.lines().count() == 1, "one line: {}", r.stderr);
    run(&["--records", "records", "--prove"])
        .expect_code(2)
        .expect_output("no SMT solver");
    run(&[]).expect_code(2).expect_output("nothing to compare");
    // analyze needs the solver; validate notes its absence and goes on.
    let a = Run::from(
        c.command()
            .env("CVC5", "/nonexistent/cvc5")
            .args(["policy", "analyze", "--policies", "head"])
            .output()
            .unwrap(),
    );
    a.expect_code(2).expect_output("no SMT solver");
    let v = Run::from(
        c.command()
            .env("CVC5", "/nonexistent/cvc5")
            .args(["policy", "validate", "--policies", "head"])
            .output()
            .unwrap(),
    );
    v.expect_code(0)
        .expect_output("proof-based analysis skipped");
}

#[test]
fn machine_formats_report_policies_that_do_not_validate() {
    let c = fixture(
        "permit (principal, action, resource) when { principal.nope };",
        None,
    );
    let r = diff(&c, &["--format", "sarif"]);
    r.expect_code(2);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["level"] == "error"), "{v}");
    let j = diff(&c, &["--format", "json"]);
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    assert!(v["errors"].as_u64().unwrap() >= 1, "{v}");
    c.write("head/tests/t.yaml", "name: t\ncases: []\n");
    let t = c.run(&["policy", "test", "--policies", "head", "--format", "junit"]);
    t.expect_code(1);
    assert!(
        t.stdout.contains("<testsuite") && t.stdout.contains("<failure"),
        "{}",
        t.stdout
    );
}

#[test]
fn a_second_run_answers_from_the_cache() {
    let c = fixture(
        &BASE.replace("principal.level > 2", "principal.level >= 2"),
        None,
    );
    let first: Value = serde_json::from_str(&diff(&c, &["--format", "json"]).stdout).unwrap();
    assert_eq!(first["proof"]["cached"], 0);
    assert!(c.path(".cairn/cache/proof").is_dir());
    let second: Value = serde_json::from_str(&diff(&c, &["--format", "json"]).stdout).unwrap();
    assert_eq!(second["proof"]["cached"], 2);
    assert_eq!(
        first["proof"]["environments"],
        second["proof"]["environments"]
    );
    let fresh: Value =
        serde_json::from_str(&diff(&c, &["--format", "json", "--no-cache"]).stdout).unwrap();
    assert_eq!(fresh["proof"]["cached"], 0);
}
