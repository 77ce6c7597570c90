"""Every checking command (`policy validate`, `fmt --check`, `test`, `diff`, `verify`) speaks the
same formats: human, json, github, sarif, junit. SARIF results carry regions with ends and rules
carry descriptions; JUnit parses as XML; GitHub annotations point at the lines."""

import json
import xml.etree.ElementTree as ET

from conftest import run

UNFORMATTED = '@id("loose")\npermit (principal,\n   action == Action::"invoke_model", resource)\nwhen { principal.nope };\n'


def sarif_results(text):
    v = json.loads(text)
    assert v["version"] == "2.1.0"
    driver = v["runs"][0]["tool"]["driver"]
    rules = {r["id"]: r for r in driver["rules"]}
    for r in rules.values():
        assert r["shortDescription"]["text"].strip(), r
    results = v["runs"][0]["results"]
    for r in results:
        assert r["ruleId"] in rules and driver["rules"][r["ruleIndex"]]["id"] == r["ruleId"]
    return results, rules


def region(result):
    return result["locations"][0]["physicalLocation"]["region"]


def junit(text):
    root = ET.fromstring(text)
    cases = root.findall(".//testcase")
    return root, cases, [c for c in cases if c.find("failure") is not None]


def test_validate_in_every_format(workdir):
    (workdir / "policies" / "loose.cedar").write_text(UNFORMATTED)
    args = ["policy", "validate"]
    results, rules = sarif_results(run([*args, "--format", "sarif"], cwd=workdir, check=False).stdout)
    bad = [r for r in results if r["ruleId"] == "cedar::validation"]
    assert bad and bad[0]["level"] == "error"
    reg = region(bad[0])
    # `principal.nope` on line 4: the span ends after it.
    assert reg["startLine"] == 4 and reg["endLine"] == 4 and reg["endColumn"] > reg["startColumn"], reg
    assert "validator" in rules["cedar::validation"]["fullDescription"]["text"]
    gh = run([*args, "--format", "github"], cwd=workdir, check=False)
    assert gh.returncode == 1
    assert "::error file=policies/loose.cedar,line=4," in gh.stdout and "endLine=4" in gh.stdout
    root, cases, failed = junit(run([*args, "--format", "junit"], cwd=workdir, check=False).stdout)
    assert [c.get("name") for c in failed] == ["policies/loose.cedar"]
    assert len(cases) >= 3 and root.get("failures") == "1"
    assert "nope" in failed[0].find("failure").text
    (workdir / "policies" / "loose.cedar").unlink()
    root, cases, failed = junit(run([*args, "--format", "junit"], cwd=workdir).stdout)
    assert root.get("failures") == "0" and not failed and cases


def test_fmt_check_in_every_format(workdir):
    (workdir / "policies" / "loose.cedar").write_text(UNFORMATTED)
    args = ["policy", "fmt", "--check", "--policies", "policies/loose.cedar"]
    gh = run([*args, "--format", "github"], cwd=workdir, check=False)
    assert gh.returncode == 1
    assert gh.stdout.startswith("::error file=policies/loose.cedar,line=2,"), gh.stdout
    results, _ = sarif_results(run([*args, "--format", "sarif"], cwd=workdir, check=False).stdout)
    assert [r["ruleId"] for r in results] == ["cairn::fmt::unformatted"]
    assert region(results[0])["startLine"] == 2 and region(results[0])["endColumn"] == len("permit (principal,") + 1
    _, cases, failed = junit(run([*args, "--format", "junit"], cwd=workdir, check=False).stdout)
    assert len(cases) == 1 and len(failed) == 1 and "+++" in failed[0].find("failure").text
    # Nothing was written by a check.
    assert (workdir / "policies" / "loose.cedar").read_text() == UNFORMATTED
    (workdir / "policies" / "loose.cedar").unlink()
    ok = run(["policy", "fmt", "--check", "--format", "sarif"], cwd=workdir)
    assert json.loads(ok.stdout)["runs"][0]["results"] == []


def test_policy_test_failures_in_sarif(workdir):
    suite = workdir / "policies" / "tests" / "invoke_model.yaml"
    text = suite.read_text()
    marker = "  - name: an intern cannot use a standard model\n"
    assert marker in text
    i = text.index(marker)
    j = text.index("expect: deny", i)
    suite.write_text(text[:j] + "expect: allow" + text[j + len("expect: deny"):])
    line = suite.read_text()[:i].count("\n") + 1
    r = run(["policy", "test", "--format", "sarif"], cwd=workdir, check=False)
    assert r.returncode == 1
    results, rules = sarif_results(r.stdout)
    failed = [x for x in results if x["ruleId"] == "cairn::test::failed"]
    assert len(failed) == 1 and region(failed[0])["startLine"] == line
    assert failed[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "policies/tests/invoke_model.yaml"
    assert "expected allow, got deny" in failed[0]["message"]["text"]


def test_verify_in_junit_and_sarif(workdir):
    run(["keys", "generate", "--out", "keys"], cwd=workdir)
    run(["policy", "bundle", "--key", "keys/signing.key", "--out", "b.tar"], cwd=workdir)
    ok = run(["policy", "verify", "b.tar", "--pubkey", "keys/signing.pub", "--format", "junit"], cwd=workdir)
    root, cases, failed = junit(ok.stdout)
    assert len(cases) == 1 and not failed
    data = bytearray((workdir / "b.tar").read_bytes())
    k = data.index(b"permit")
    data[k:k + 6] = b"PERMIT"
    (workdir / "t.tar").write_bytes(bytes(data))
    bad = run(["policy", "verify", "t.tar", "--pubkey", "keys/signing.pub", "--format", "sarif"], cwd=workdir,
              check=False)
    assert bad.returncode == 1
    results, _ = sarif_results(bad.stdout)
    assert [r["ruleId"] for r in results] == ["cairn::bundle"]
