"""`cairn policy diff` on real decision records (the demo's): a change that would deny what was
allowed is shown before it merges, against a directory, a signed bundle or a git commit."""

import json
import os
import shutil
import subprocess

from conftest import run

NEW_FORBID = """
// Engineering loses Sonnet (a change under review).
@id("no-sonnet-for-engineering")
forbid (
  principal in Group::"engineering",
  action == Action::"invoke_model",
  resource == Model::"claude-sonnet"
);
"""


def demo(tmp_path):
    run(["demo", "--dir", "demo"], cwd=tmp_path, timeout=300)
    return tmp_path / "demo"


def allowed_sonnet_for_engineering(records_dir):
    out = []
    for seg in sorted(records_dir.glob("*.jsonl")):
        for line in seg.read_text().splitlines():
            r = json.loads(line)
            if (r["kind"] == "decision" and r.get("resource") == 'Model::"claude-sonnet"'
                    and 'Group::"engineering"' in r.get("principal_parents", [])
                    and "reasons" in r and "users-invoke-models" in r["reasons"]):
                out.append(r["id"])
    return out


def test_a_new_forbid_shows_the_decisions_it_would_change(tmp_path):
    d = demo(tmp_path)
    head = tmp_path / "head"
    shutil.copytree(d / "policies", head)
    (head / "review.cedar").write_text(NEW_FORBID)
    expected = allowed_sonnet_for_engineering(d / "records")
    assert expected, "the demo records have engineering calls to claude-sonnet"

    out = run(["policy", "diff", "--policies", str(head), "--base", str(d / "policies"),
               "--records", str(d / "records"), "--pubkey", str(d / "keys" / "signing.pub"),
               "--format", "json"], cwd=tmp_path)
    report = json.loads(out.stdout)
    changed = [c for c in report["changes"] if c["base"]["decision"] != c["head"]["decision"]]
    assert report["summary"].get("allow_to_deny") == len(expected)
    assert sorted(c["id"] for c in changed) == sorted(expected)
    assert all(c["head"]["reasons"] == ["no-sonnet-for-engineering"] for c in changed)
    assert all(c["base"]["decision"] == "allow" for c in changed)

    human = run(["policy", "diff", "--policies", str(head), "--base", str(d / "policies"),
                 "--records", str(d / "records")], cwd=tmp_path)
    assert f"changed: {len(expected)} allow→deny" in human.stdout
    assert "head: deny (no-sonnet-for-engineering)" in human.stdout
    failing = run(["policy", "diff", "--policies", str(head), "--base", str(d / "policies"),
                   "--records", str(d / "records"), "--fail-on-change"], cwd=tmp_path, check=False)
    assert failing.returncode == 1

    # The same change as findings located at the new forbid, in every machine format.
    import xml.etree.ElementTree as ET
    common = ["policy", "diff", "--policies", str(head), "--base", str(d / "policies"),
              "--records", str(d / "records")]
    forbid_line = (head / "review.cedar").read_text().splitlines().index('@id("no-sonnet-for-engineering")') + 1
    sarif = json.loads(run([*common, "--format", "sarif"], cwd=tmp_path).stdout)
    everything = sarif["runs"][0]["results"]
    assert everything and all(r["level"] == "warning" for r in everything)
    results = [r for r in everything if r["ruleId"] == "cairn::diff::allow-to-deny"]
    assert {r["ruleId"] for r in everything} <= {"cairn::diff::allow-to-deny", "cairn::diff::reasons",
                                                 "cairn::proof::allow-to-deny"}
    # The proof finds the narrowing too, with a request Cedar confirms, at the same forbid.
    proven = [r for r in everything if r["ruleId"] == "cairn::proof::allow-to-deny"]
    # (in both environments whose principals can be in engineering: users and service accounts)
    assert len(proven) == 2 and all(r["message"]["text"].startswith("narrows ") for r in proven)
    assert all(r["locations"][0]["physicalLocation"]["region"]["startLine"] == forbid_line for r in proven)
    loc = results[0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("review.cedar")
    assert loc["region"]["startLine"] == forbid_line and loc["region"]["endLine"] > forbid_line
    assert sum(int(r["message"]["text"].split()[0]) for r in results) == len(expected)
    rule = next(r for r in sarif["runs"][0]["tool"]["driver"]["rules"] if r["id"] == "cairn::diff::allow-to-deny")
    assert "denied by the new policies" in rule["shortDescription"]["text"]
    gh = run([*common, "--format", "github", "--fail-on-change"], cwd=tmp_path, check=False)
    assert gh.returncode == 1 and gh.stdout.startswith("::error file=") and f"line={forbid_line}," in gh.stdout
    root = ET.fromstring(run([*common, "--format", "junit"], cwd=tmp_path).stdout)
    assert root.get("failures") == "0", "without --fail-on-change a change is a warning"
    root = ET.fromstring(run([*common, "--format", "junit", "--fail-on-change"], cwd=tmp_path, check=False).stdout)
    assert int(root.get("failures")) == len(everything)
    assert any("unchanged" in c.get("name") for c in root.iter("testcase"))


def test_base_from_a_signed_bundle_and_from_git(tmp_path):
    d = demo(tmp_path)
    # The deployed bundle against the same policies: nothing changes.
    same = run(["policy", "diff", "--policies", str(d / "policies"), "--base", str(d / "bundle.tar"),
                "--base-pubkey", str(d / "keys" / "signing.pub"), "--records", str(d / "records"),
                "--fail-on-change"], cwd=tmp_path)
    assert " 0 changed" in same.stdout
    unsigned = run(["policy", "diff", "--policies", str(d / "policies"), "--base", str(d / "bundle.tar"),
                    "--records", str(d / "records")], cwd=tmp_path, check=False)
    assert unsigned.returncode == 2 and "--base-pubkey" in unsigned.stderr

    repo = tmp_path / "repo"
    shutil.copytree(d / "policies", repo / "policies")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "policies"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    (repo / "policies" / "review.cedar").write_text(NEW_FORBID)
    out = run(["policy", "diff", "--base", "git:HEAD", "--records", str(d / "records"), "--format", "json"],
              cwd=repo)
    report = json.loads(out.stdout)
    assert report["summary"].get("allow_to_deny") == len(allowed_sonnet_for_engineering(d / "records"))
    bad = run(["policy", "diff", "--base", "git:no-such-ref", "--records", str(d / "records")], cwd=repo,
              check=False)
    assert bad.returncode == 2 and "git archive" in bad.stderr


ARGUMENT_FORBID = """
// Searches about incidents go through the incident tool (a change under review).
@id("no-incident-searches")
forbid (
  principal,
  action == Action::"call_tool",
  resource
)
when
{
  resource.name == "search_notes" &&
  context.arguments.hasTag("query") &&
  context.arguments.getTag("query") like "*incident*"
};
"""


def test_tool_decisions_replay_and_argument_dependence_is_shown_not_guessed(tmp_path):
    d = demo(tmp_path)
    args = ["--base", str(d / "policies"), "--records", str(d / "records"), "--format", "json"]
    same = json.loads(run(["policy", "diff", "--policies", str(d / "policies"), *args], cwd=tmp_path).stdout)
    assert same["changes"] == [], "the same policies replay every decision, tool calls included, unchanged"
    assert same["replayed"] > 0

    head = tmp_path / "head"
    shutil.copytree(d / "policies", head)
    (head / "review.cedar").write_text(ARGUMENT_FORBID)
    report = json.loads(run(["policy", "diff", "--policies", str(head), *args], cwd=tmp_path).stdout)
    changed = report["changes"]
    # The demo's allowed search: its query is kept as a hash, so the head's answer depends on it.
    searches = [c for c in changed if c["resource"] == 'Tool::"notes/search_notes"']
    assert searches, changed
    for c in searches:
        # The base decides without the arguments (its path rule reads `argument_names`, which
        # the record keeps); the head's new policy reads the query itself.
        assert c["base"]["decision"] == "allow"
        assert c["head"] == {"decision": "depends", "reasons": ["no-incident-searches"]}
    assert report["summary"].get("arguments") == len(searches)
    assert "allow_to_deny" not in report["summary"] and "deny_to_allow" not in report["summary"]
    human = run(["policy", "diff", "--policies", str(head), "--base", str(d / "policies"),
                 "--records", str(d / "records")], cwd=tmp_path)
    assert "depends on the arguments (read by no-incident-searches)" in human.stdout
