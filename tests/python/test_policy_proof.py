"""The policy proof in a pull request's loop: SARIF of `policy diff` and `policy analyze` checked
against the published SARIF 2.1.0 schema, and scripts/policy-check.sh (what the GitHub action
runs) on a real git repository, with and without the label that approves a widening."""

import json
import os
import shutil
import subprocess

import jsonschema

from conftest import REPO, run

WIDEN = '\n@id("temp-debug-access")\npermit (principal, action, resource);\n'
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")


def repo(tmp_path):
    r = tmp_path / "repo"
    shutil.copytree(REPO / "policies", r / "policies")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "policies"]):
        subprocess.run(["git", *args], cwd=r, check=True, env=GIT_ENV)
    return r


def schema():
    return json.loads((REPO / "tests" / "fixtures" / "sarif-schema-2.1.0.json").read_text())


def test_diff_and_analyze_sarif_validate_and_point_at_the_policy(tmp_path):
    r = repo(tmp_path)
    with open(r / "policies" / "models.cedar", "a") as f:
        f.write(WIDEN)
    line = (r / "policies" / "models.cedar").read_text().splitlines().index('@id("temp-debug-access")') + 1
    out = run(["policy", "diff", "--base", "git:HEAD", "--format", "sarif", "--fail-on", "widen"], cwd=r,
              check=False)
    assert out.returncode == 1, out.stderr
    sarif = json.loads(out.stdout)
    jsonschema.validate(sarif, schema())
    results = sarif["runs"][0]["results"]
    assert results and all(x["ruleId"] == "cairn::proof::deny-to-allow" and x["level"] == "error" for x in results)
    for x in results:
        loc = x["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"].endswith("models.cedar")
        assert loc["region"]["startLine"] == line
    analyzed = run(["policy", "analyze", "--format", "sarif"], cwd=r)
    sarif = json.loads(analyzed.stdout)
    jsonschema.validate(sarif, schema())
    ids = {x["ruleId"] for x in sarif["runs"][0]["results"]}
    assert "cairn::analyze::matches-all" in ids, ids


def test_policy_check_script_gates_a_widening_unless_the_label_approves_it(tmp_path):
    r = repo(tmp_path)
    env = dict(os.environ, CAIRN=os.environ["CAIRN_BIN"], BASE_REF="main", REPORT=str(tmp_path / "report.md"),
               GITHUB_OUTPUT=str(tmp_path / "out"), GITHUB_STEP_SUMMARY=str(tmp_path / "summary"))
    script = str(REPO / "scripts" / "policy-check.sh")
    clean = subprocess.run([script, "policies"], cwd=r, env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    report = (tmp_path / "report.md").read_text()
    assert "| `validate` | ✅ passed |" in report and "| `diff` | ✅ passed |" in report
    assert "no change in access" in report

    with open(r / "policies" / "models.cedar", "a") as f:
        f.write(WIDEN)
    gated = subprocess.run([script, "policies"], cwd=r, env=env, capture_output=True, text=True, timeout=300)
    # validate (the analysis warns), test (exact reasons change) and diff (the widening) fail.
    assert gated.returncode == 1, gated.stderr
    report = (tmp_path / "report.md").read_text()
    assert "| `diff` | ❌ failed |" in report and "widens access" in report
    assert "<details>" in report and "temp-debug-access" in report
    assert "widens=true" in (tmp_path / "out").read_text()
    assert (tmp_path / "summary").read_text().count("# Policy check") == 2

    approved = subprocess.run([script, "policies"], cwd=r, capture_output=True, text=True, timeout=300,
                              env=dict(env, PR_LABELS="docs, policy-widening-approved"))
    report = (tmp_path / "report.md").read_text()
    assert "| `diff` | ✅ passed |" in report, report
    assert "approves widening access" in report
    assert approved.returncode == 1, "the other steps still fail"
