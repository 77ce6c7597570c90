//! `cairn policy ...` and `cairn keys generate` on the repository's policies and on fixture repos
//! with planted errors.

use crate::harness::{Cairn, Run, repo_root};

/// Appends `text` to `rel` and returns the 1-based line where the appended text starts.
fn append_policy(c: &Cairn, rel: &str, text: &str) -> usize {
    let before = c.read(rel);
    let line = before.lines().count() + 1;
    c.append(rel, text);
    line
}

#[test]
fn repository_policies_validate_format_and_test_clean() {
    let c = Cairn::new();
    let policies = repo_root().join("policies");
    let p = policies.to_str().unwrap();
    c.run(&["policy", "validate", "--policies", p, "--deny-warnings"])
        .expect_code(0)
        .expect_output("25 policies");
    c.run(&["policy", "fmt", "--check", "--policies", p])
        .expect_code(0);
    c.run(&["policy", "test", "--policies", p, "--min-coverage", "100"])
        .expect_code(0)
        .expect_output("0 failed")
        .expect_output("coverage: 25/25");
}

#[test]
fn syntax_error_is_located() {
    let c = Cairn::with_policies();
    let line = append_policy(
        &c,
        "policies/models.cedar",
        "\n@id(\"broken\")\npermit (principal, action, resource) when { principal.clearance > };\n",
    );
    c.run(&["policy", "validate"])
        .expect_code(1)
        .expect_output(&format!("policies/models.cedar:{}:", line + 2))
        .expect_output("unexpected token");
}

#[test]
fn unknown_entity_type_is_located_with_a_hint() {
    let c = Cairn::with_policies();
    let line = append_policy(
        &c,
        "policies/models.cedar",
        "\n@id(\"robots\")\npermit (principal is Robot, action == Action::\"invoke_model\", resource);\n",
    );
    c.run(&["policy", "validate"])
        .expect_code(1)
        .expect_output(&format!("policies/models.cedar:{}:", line + 2))
        .expect_output("Robot");
}

#[test]
fn unknown_attribute_is_located_with_did_you_mean() {
    let c = Cairn::with_policies();
    let line = append_policy(
        &c,
        "policies/models.cedar",
        "\n@id(\"typo\")\npermit (principal is User, action == Action::\"invoke_model\", resource)\nwhen { principal.departmnt == \"sales\" };\n",
    );
    c.run(&["policy", "validate"])
        .expect_code(1)
        .expect_output(&format!("policies/models.cedar:{}:8", line + 3))
        .expect_output("departmnt")
        .expect_output("did you mean `department`?");
}

#[test]
fn type_error_in_condition_is_located() {
    let c = Cairn::with_policies();
    let line = append_policy(
        &c,
        "policies/models.cedar",
        "\n@id(\"types\")\npermit (principal is User, action == Action::\"invoke_model\", resource)\nwhen { principal.clearance == \"high\" };\n",
    );
    c.run(&["policy", "validate"])
        .expect_code(1)
        .expect_output(&format!("policies/models.cedar:{}:", line + 3))
        .expect_output("policy `types`");
}

#[test]
fn action_not_applicable_to_principal_type_fails() {
    let c = Cairn::with_policies();
    let line = append_policy(
        &c,
        "policies/models.cedar",
        "\n@id(\"models-invoke\")\npermit (principal is Model, action == Action::\"invoke_model\", resource);\n",
    );
    c.run(&["policy", "validate"])
        .expect_code(1)
        .expect_output(&format!("policies/models.cedar:{}:1", line + 1))
        .expect_output("applicable action")
        .expect_output("appliesTo");
}

#[test]
fn missing_and_duplicate_ids_fail() {
    let c = Cairn::with_policies();
    let line = append_policy(
        &c,
        "policies/tools_and_audit.cedar",
        "\npermit (principal is User, action == Action::\"read_audit\", resource);\n\n@id(\"auditors-read-audit\")\nforbid (principal is User, action == Action::\"read_audit\", resource);\n",
    );
    let r = c.run(&["policy", "validate", "--format", "json"]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    let find = |code: &str| {
        problems
            .iter()
            .find(|p| p["code"] == code)
            .unwrap_or_else(|| panic!("no {code} in {problems:?}"))
    };
    let missing = find("cairn::missing-id");
    assert_eq!(missing["file"], "policies/tools_and_audit.cedar");
    assert_eq!(missing["line"], line + 1);
    let dup = find("cairn::duplicate-id");
    assert_eq!(dup["line"], line + 3);
    assert!(
        dup["help"]
            .as_str()
            .unwrap()
            .contains("already used at policies/tools_and_audit.cedar")
    );
}

#[test]
fn impossible_policy_is_a_warning_unless_denied() {
    let c = Cairn::with_policies();
    append_policy(
        &c,
        "policies/models.cedar",
        "\n@id(\"never\")\npermit (principal is User, action == Action::\"invoke_model\", resource)\nwhen { false };\n",
    );
    c.run(&["policy", "validate"])
        .expect_code(0)
        .expect_output("impossible");
    c.run(&["policy", "validate", "--deny-warnings"])
        .expect_code(1);
}

#[test]
fn malformed_test_cases_are_located() {
    let c = Cairn::with_policies();
    c.replace(
        "policies/tests/invoke_model.yaml",
        "    expect: allow\n    reasons: [users-invoke-models]\n",
        "    expect: allow\n    reasons: [users-invoke-models]\n    colour: blue\n",
    );
    c.replace(
        "policies/tests/audit.yaml",
        "    expect: deny\n    reasons: []\n",
        "    expect: 7\n    reasons: []\n",
    );
    let text = c.read("policies/tests/invoke_model.yaml");
    let colour_line = text.lines().position(|l| l.contains("colour")).unwrap() + 1;
    let text = c.read("policies/tests/audit.yaml");
    let expect_line = text.lines().position(|l| l.contains("expect: 7")).unwrap() + 1;
    c.run(&["policy", "validate"])
        .expect_code(1)
        .expect_output(&format!("policies/tests/invoke_model.yaml:{colour_line}:5"))
        .expect_output("unknown field `colour`")
        .expect_output(&format!("policies/tests/audit.yaml:{expect_line}:"))
        .expect_output("field `expect`");
    // `policy test` counts a malformed case as a failure and says where it is.
    c.run(&["policy", "test"])
        .expect_code(1)
        .expect_output(&format!(
            "INVALID policies/tests/invoke_model.yaml:{colour_line}"
        ))
        .expect_output("2 failed");
}

#[test]
fn test_entities_and_context_are_checked_against_the_schema() {
    let c = Cairn::with_policies();
    c.replace(
        "policies/entities/models.json",
        "\"cost_tier\": \"low\" }",
        "\"cost_tier\": 3 }",
    );
    c.replace(
        "policies/tests/invoke_model.yaml",
        "context: { streaming: true }",
        "context: { streaming: \"yes\" }",
    );
    let text = c.read("policies/tests/invoke_model.yaml");
    let ctx_line = text
        .lines()
        .position(|l| l.contains("streaming: \"yes\""))
        .unwrap()
        + 1;
    c.run(&["policy", "validate"])
        .expect_code(1)
        .expect_output("policies/entities/models.json")
        .expect_output("cost_tier")
        .expect_output(&format!("policies/tests/invoke_model.yaml:{ctx_line}:"));
}

#[test]
fn failing_case_reports_expected_actual_and_determining_policies() {
    let c = Cairn::with_policies();
    c.replace(
        "policies/tests/invoke_model.yaml",
        "  - name: an intern cannot use a standard model\n    principal: User::\"ivan\"\n    action: Action::\"invoke_model\"\n    resource: Model::\"claude-sonnet\"\n    expect: deny",
        "  - name: an intern cannot use a standard model\n    principal: User::\"ivan\"\n    action: Action::\"invoke_model\"\n    resource: Model::\"claude-sonnet\"\n    expect: allow",
    );
    let text = c.read("policies/tests/invoke_model.yaml");
    let line = text
        .lines()
        .position(|l| l.contains("an intern cannot use a standard model"))
        .unwrap()
        + 1;
    let r = c.run(&["policy", "test"]);
    r.expect_code(1)
        .expect_output(&format!("FAIL  policies/tests/invoke_model.yaml:{line}"))
        .expect_output("expected allow, got deny")
        .expect_output("determined by [interns-low-cost-only]")
        .expect_output("56 passed, 1 failed");
    assert!(r.stdout.trim_end().ends_with("56 passed, 1 failed"));

    let junit = c.run(&["policy", "test", "--format", "junit"]);
    junit.expect_code(1);
    assert!(junit.stdout.starts_with("<?xml"));
    assert_eq!(junit.stdout.matches("<failure").count(), 1);

    let gh = c.run(&["policy", "test", "--format", "github"]);
    gh.expect_output(&format!(
        "::error file=policies/tests/invoke_model.yaml,line={line},"
    ));

    let json = c.run(&["policy", "test", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["failed"], 1);
    assert_eq!(v["passed"], 56);
}

#[test]
fn reasons_are_compared_exactly_not_as_a_subset() {
    let c = Cairn::with_policies();
    c.replace(
        "policies/tests/invoke_model.yaml",
        "reasons: [interns-low-cost-only, premium-models-ml-platform, principal-cleared-for-data]",
        "reasons: [interns-low-cost-only]",
    );
    c.run(&["policy", "test"])
        .expect_code(1)
        .expect_output("expected determining policies [interns-low-cost-only], got [interns-low-cost-only, premium-models-ml-platform, principal-cleared-for-data]");
}

#[test]
fn cedar_cli_test_files_run_as_they_are() {
    let c = Cairn::with_policies();
    c.run(&[
        "policy",
        "test",
        "--tests",
        "policies/tests/cedar_cli_format.json",
    ])
    .expect_code(0)
    .expect_output("2 passed, 0 failed");
    c.replace(
        "policies/tests/cedar_cli_format.json",
        "\"reason\": [\n      \"interns-low-cost-only\"\n    ]",
        "\"reason\": []",
    );
    c.run(&[
        "policy",
        "test",
        "--tests",
        "policies/tests/cedar_cli_format.json",
    ])
    .expect_code(1)
    .expect_output("1 passed, 1 failed");
}

#[test]
fn coverage_lists_policies_no_test_exercised() {
    let c = Cairn::with_policies();
    append_policy(
        &c,
        "policies/models.cedar",
        "\n@id(\"weekend-freeze\")\nforbid (principal, action == Action::\"invoke_model\", resource)\nwhen { context.max_tokens == 424242 };\n",
    );
    c.run(&["policy", "test", "--min-coverage", "100"])
        .expect_code(1)
        .expect_output("weekend-freeze")
        .expect_output("coverage: 25/26");
    c.run(&["policy", "test", "--min-coverage", "90"])
        .expect_code(0);
}

#[test]
fn schema_missing_is_named() {
    let c = Cairn::with_policies();
    std::fs::remove_file(c.path("policies/schema.cedarschema")).unwrap();
    c.run(&["policy", "validate"])
        .expect_code(1)
        .expect_output("policies/schema.cedarschema")
        .expect_output("not found")
        .expect_output("--schema");
}

#[test]
fn fmt_check_shows_a_diff_and_fmt_keeps_comments() {
    let c = Cairn::with_policies();
    c.append(
        "policies/models.cedar",
        "\n// keep this comment\n@id(\"ugly\")\npermit(principal,action==Action::\"invoke_model\",resource) when {context.max_tokens<5};\n",
    );
    c.run(&["policy", "fmt", "--check"])
        .expect_code(1)
        .expect_output("--- policies/models.cedar")
        .expect_output("+++ policies/models.cedar (formatted)")
        .expect_output("1 of 2 file(s) would be reformatted");
    // The same check as JSON, for machines.
    let r = c.run(&["policy", "fmt", "--check", "--format", "json"]);
    r.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["changed"], 1);
    let files = v["files"].as_array().unwrap();
    let models = files
        .iter()
        .find(|f| f["file"].as_str().unwrap().ends_with("models.cedar"))
        .unwrap();
    assert_eq!(models["changed"], true);
    assert!(models["diff"].as_str().unwrap().contains("+++"));
    c.run(&["policy", "fmt"]).expect_code(0);
    assert!(
        c.read("policies/models.cedar")
            .contains("// keep this comment")
    );
    c.run(&["policy", "fmt", "--check"]).expect_code(0);
}

#[test]
fn keys_bundle_and_compact_answer_in_json_too() {
    let c = Cairn::with_policies();
    let r = c.run(&["keys", "generate", "--out", "k", "--format", "json"]);
    r.expect_code(0);
    let keys: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(keys["key_id"].as_str().unwrap().starts_with("ed25519:"));
    assert!(
        keys["private_key"]
            .as_str()
            .unwrap()
            .ends_with("signing.key")
    );
    let r = bundle(
        &c,
        &["--created", "2026-11-25T00:00:00Z", "--format", "json"],
    );
    r.expect_code(0);
    let b: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(b["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(b["key_id"], keys["key_id"]);
    assert_eq!(b["manifest"]["created"], "2026-11-25T00:00:00Z");
    let r = c.run(&["ingest", "compact", "--lake", "lake", "--format", "json"]);
    r.expect_code(0);
    let s: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        s["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["partitions"] == 0)
    );
}

#[test]
fn authorize_follows_cedar_cli_exit_codes() {
    let c = Cairn::with_policies();
    c.write(
        "ctx.json",
        r#"{"data_classification":"internal","data_level":1,"streaming":false,"max_tokens":10,
            "source_ip":"10.0.0.1","request_time":"2026-11-25T12:00:00Z","guardrail_findings":[]}"#,
    );
    let base = |resource: &str| {
        vec![
            "policy".to_string(),
            "authorize".into(),
            "--policies".into(),
            "policies".into(),
            "--entities".into(),
            "policies/entities/directory.json".into(),
            "--principal".into(),
            "User::\"ivan\"".into(),
            "--action".into(),
            "Action::\"invoke_model\"".into(),
            "--resource".into(),
            resource.into(),
            "--context".into(),
            "ctx.json".into(),
        ]
    };
    // Model entities come from the second file, so merge them into one for the CLI.
    let mut all: Vec<serde_json::Value> =
        serde_json::from_str(&c.read("policies/entities/directory.json")).unwrap();
    all.extend(
        serde_json::from_str::<Vec<serde_json::Value>>(&c.read("policies/entities/models.json"))
            .unwrap(),
    );
    c.write("all.json", &serde_json::to_string(&all).unwrap());
    let run = |resource: &str| {
        let mut args = base(resource);
        args[5] = "all.json".into();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        c.run(&refs)
    };
    run("Model::\"claude-haiku\"")
        .expect_code(0)
        .expect_output("ALLOW")
        .expect_output("  users-invoke-models");
    run("Model::\"claude-sonnet\"")
        .expect_code(2)
        .expect_output("DENY")
        .expect_output("  interns-low-cost-only");
    // As JSON: the same decision and exit code.
    let mut args = base("Model::\"claude-sonnet\"");
    args[5] = "all.json".into();
    args.extend(["--format".to_string(), "json".to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = c.run(&refs);
    r.expect_code(2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["decision"], "DENY");
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "interns-low-cost-only")
    );
    run("Robot::\"x\"").expect_code(1).expect_output("Robot");

    // A usage error is an error (1), never a DENY (2).
    c.run(&[
        "policy",
        "authorize",
        "-p",
        "policies",
        "--entities",
        "all.json",
        "--principal",
        "User::\"ivan\"",
    ])
    .expect_code(1);
    // A schema that was named must exist.
    let mut args = base("Model::\"claude-haiku\"");
    args[5] = "all.json".into();
    args.extend(["--schema".to_string(), "no-such.cedarschema".to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    c.run(&refs)
        .expect_code(1)
        .expect_output("no-such.cedarschema");

    // Entities from standard input, as the Cedar CLI takes them; only one input may be `-`.
    let mut args = base("Model::\"claude-haiku\"");
    args[5] = "-".into();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    c.run_with_input(&refs, &c.read("all.json"))
        .expect_code(0)
        .expect_output("ALLOW");
    let mut args = base("Model::\"claude-haiku\"");
    args[5] = "-".into();
    args[13] = "-".into();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    c.run_with_input(&refs, "[]")
        .expect_code(1)
        .expect_output("only one of");

    c.write(
        "req.json",
        r#"{"principal":"User::\"carol\"","action":"Action::\"invoke_model\"","resource":"Model::\"claude-opus\"",
            "context":{"data_classification":"restricted","data_level":3,"streaming":true,"max_tokens":10,
            "source_ip":"10.0.0.1","request_time":"2026-11-25T12:00:00Z","guardrail_findings":[]}}"#,
    );
    c.run(&[
        "policy",
        "authorize",
        "--policies",
        "policies",
        "--entities",
        "all.json",
        "--request-json",
        "req.json",
    ])
    .expect_code(0)
    .expect_output("ALLOW");
}

fn make_key(c: &Cairn, dir: &str) {
    c.run(&["keys", "generate", "--out", dir]).expect_code(0);
}

#[test]
fn keys_generate_is_private_and_never_overwrites() {
    let c = Cairn::new();
    make_key(&c, "k");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(c.path("k/signing.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let before = c.read("k/signing.key");
    c.run(&["keys", "generate", "--out", "k"])
        .expect_code(2)
        .expect_output("already exists");
    assert_eq!(before, c.read("k/signing.key"));
}

#[test]
fn bundle_is_deterministic_and_verifies() {
    let c = Cairn::with_policies();
    make_key(&c, "k");
    let args = [
        "policy",
        "bundle",
        "--key",
        "k/signing.key",
        "--created",
        "2026-11-25T00:00:00Z",
    ];
    c.run(&[&args[..], &["--out", "a.tar"]].concat())
        .expect_code(0)
        .expect_output("digest:   sha256:");
    c.run(&[&args[..], &["--out", "b.tar"]].concat())
        .expect_code(0);
    assert_eq!(
        std::fs::read(c.path("a.tar")).unwrap(),
        std::fs::read(c.path("b.tar")).unwrap()
    );
    c.run(&["policy", "verify", "a.tar", "--pubkey", "k/signing.pub"])
        .expect_code(0)
        .expect_output("25 policies");
}

/// `cairn policy bundle` with the key in `k/`, into `b.tar`, and `extra` arguments.
fn bundle(c: &Cairn, extra: &[&str]) -> Run {
    let mut args = vec![
        "policy",
        "bundle",
        "--key",
        "k/signing.key",
        "--out",
        "b.tar",
    ];
    args.extend_from_slice(extra);
    c.run(&args)
}

#[test]
fn bundle_refuses_unreviewed_policies() {
    let c = Cairn::with_policies();
    make_key(&c, "k");
    c.replace(
        "policies/tests/invoke_model.yaml",
        "expect: deny",
        "expect: allow",
    );
    bundle(&c, &[])
        .expect_code(1)
        .expect_output("policy test(s) failed");
    assert!(!c.path("b.tar").exists());

    let c = Cairn::with_policies();
    make_key(&c, "k");
    c.append(
        "policies/models.cedar",
        "\npermit (principal, action, resource);\n",
    );
    bundle(&c, &[]).expect_code(1).expect_output("missing-id");
    assert!(!c.path("b.tar").exists());

    // A shared entity file that `policy validate` rejects stops the bundle too.
    let c = Cairn::with_policies();
    make_key(&c, "k");
    c.write(
        "policies/entities/broken.json",
        r#"[{"uid":{"type":"User","id":"x"},"attrs":{"no_such_attribute":1},"parents":[]}]"#,
    );
    bundle(&c, &[]).expect_code(1).expect_output("broken.json");
    assert!(!c.path("b.tar").exists());
}

/// Offsets of the first byte of each member's data, and of its header.
fn member_offsets(bytes: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 512 <= bytes.len() {
        let header = &bytes[pos..pos + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]).into_owned();
        let size_text = String::from_utf8_lossy(&header[124..136]);
        let size =
            usize::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .unwrap();
        out.push((name, pos, pos + 512));
        pos += 512 + size.div_ceil(512) * 512;
    }
    out
}

#[test]
fn any_flipped_byte_truncation_or_other_key_fails_verification() {
    let c = Cairn::with_policies();
    make_key(&c, "k");
    make_key(&c, "other");
    bundle(&c, &[]).expect_code(0);
    let good = std::fs::read(c.path("b.tar")).unwrap();
    let verify = |bytes: &[u8]| {
        std::fs::write(c.path("t.tar"), bytes).unwrap();
        c.run(&["policy", "verify", "t.tar", "--pubkey", "k/signing.pub"])
    };
    verify(&good).expect_code(0);

    let members = member_offsets(&good);
    assert_eq!(members[0].0, "bundle.dsse.json");
    assert_eq!(members[1].0, "schema.cedarschema");
    for (name, header, data) in &members {
        // A byte in the middle of the member's data.
        let mut bad = good.clone();
        bad[data + 40] ^= 0x01;
        let r = verify(&bad);
        r.expect_code(1);
        if name == "bundle.dsse.json" {
            assert!(r.all().contains("bundle.dsse.json"), "{}", r.all());
        } else {
            r.expect_output(&format!("member `{name}`"));
        }
        // A byte of the member's header (the mtime field): named by member.
        let mut bad = good.clone();
        bad[header + 140] ^= 0x01;
        // (miette wraps lines at spaces: look for words, not the phrase.)
        verify(&bad)
            .expect_code(1)
            .expect_output(&format!("`{name}`"))
            .expect_output("altered");
    }
    // A byte of padding and of the end-of-archive blocks.
    let mut bad = good.clone();
    let last = bad.len() - 10;
    bad[last] = 1;
    verify(&bad).expect_code(1).expect_output("differ");

    // Truncated anywhere: said so.
    for cut in [good.len() - 512, good.len() / 2, 700, 100] {
        verify(&good[..cut])
            .expect_code(1)
            .expect_output("truncated");
    }

    // Signed by another key.
    c.run(&["policy", "verify", "b.tar", "--pubkey", "other/signing.pub"])
        .expect_code(1)
        .expect_output("not by the given key");
}

#[test]
fn demo_validates_tests_bundles_and_verifies() {
    let c = Cairn::with_policies();
    c.run(&["demo", "--dir", "out"])
        .expect_code(0)
        .expect_output("signature and every member match");
    assert!(c.path("out/bundle.tar").exists());
    assert!(c.path("out/keys/signing.key").exists());
}

#[test]
fn demo_runs_on_embedded_policies_anywhere() {
    let c = Cairn::new();
    c.run(&["demo", "--dir", "d"]).expect_code(0);
    assert!(c.path("d/policies/schema.cedarschema").exists());
}
