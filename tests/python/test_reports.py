"""Queries and reports on lakes with known answers: the numbers, which call bypassed the gateway,
detections firing on Stratus positives and silent on clean data, the HTML in headless Chromium,
Athena DDL through a Hive/Trino parser, and the Athena client against moto."""

import copy
import json
import shutil
import uuid

import pyarrow.parquet as pq
import pytest

import ct_fixtures as ct
from conftest import run
from record_writer import SegmentWriter, decision, outcome

PERIOD = ["--from", "2026-11-20", "--to", "2026-11-21"]


def bedrock_call(base, when, session, source_identity=None, account="111122223333"):
    """The samples' InvokeModel event re-issued for one assumed-role session."""
    r = copy.deepcopy(base)
    r["eventID"] = str(uuid.uuid4())
    r["eventTime"] = when
    r["eventName"] = "InvokeModel"
    r["eventSource"] = "bedrock.amazonaws.com"
    ui = r["userIdentity"]
    ui["type"] = "AssumedRole"
    ui["arn"] = f"arn:aws:sts::{account}:assumed-role/cairn-bedrock/{session}"
    ui.setdefault("sessionContext", {})
    if source_identity:
        ui["sessionContext"]["sourceIdentity"] = source_identity
    r["requestParameters"] = {"modelId": "anthropic.claude-3-5-sonnet-20240620-v1:0"}
    return r


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    d = tmp_path_factory.mktemp("known")
    run(["keys", "generate", "--out", "keys"], cwd=d)
    w = SegmentWriter(d / "records", (d / "keys" / "signing.key").read_bytes())
    eng = ["Group::\"engineering\""]
    # alice: three allowed completions and one premium denial on the 20th.
    for i in range(3):
        dec = w.append(decision(f"2026-11-20T09:0{i}:00.000Z", 'User::"alice"', "engineering", "claude-sonnet", "allow", groups=eng))
        w.append(outcome(f"2026-11-20T09:0{i}:01.000Z", dec["id"], "claude-sonnet", "mock", 100, 50, 0.01))
    w.append(decision("2026-11-20T09:10:00.000Z", 'User::"alice"', "engineering", "claude-opus", "deny",
                      reasons=["premium-models-ml-platform"], status=403, groups=eng))
    # bob: three policy denials on the 21st, one determined by two policies.
    for i in range(2):
        w.append(decision(f"2026-11-21T08:0{i}:00.000Z", 'User::"bob"', "sales", "claude-sonnet", "deny",
                          reasons=["principal-cleared-for-data"], status=403))
    w.append(decision("2026-11-21T08:05:00.000Z", 'User::"bob"', "sales", "claude-opus", "deny",
                      reasons=["premium-models-ml-platform", "principal-cleared-for-data"], status=403))
    # carol: two Bedrock calls through the gateway, as assumed-role session cairn-carol.
    for t in ["10:00:00", "10:30:00"]:
        dec = w.append(decision(f"2026-11-21T{t}.000Z", 'User::"carol"', "research", "claude-sonnet", "allow",
                                provider="bedrock", extra={"assumed_role_arn": "arn:aws:iam::111122223333:role/cairn-bedrock",
                                                           "role_session_name": "cairn-carol", "source_identity": "carol"}))
        w.append(outcome(f"2026-11-21T{t[:6]}05.000Z", dec["id"], "claude-sonnet", "bedrock", 400, 200, 0.05))
    # dave: an allowed Bedrock call that CloudTrail never saw.
    dec = w.append(decision("2026-11-21T11:00:00.000Z", 'User::"dave"', "research", "claude-sonnet", "allow",
                            provider="bedrock", extra={"role_session_name": "cairn-dave", "source_identity": "dave"}))
    w.append(outcome("2026-11-21T11:00:04.000Z", dec["id"], "claude-sonnet", "bedrock", 10, 10, 0.001))
    # Two unauthenticated attempts.
    for i in range(2):
        w.append(decision(f"2026-11-21T12:0{i}:00.000Z", 'Anonymous::"anonymous"', None, "claude-haiku", "deny",
                          status=401, reason="unknown_api_key"))
    # erin: a prompt blocked by the input guardrails, then an answer withheld by the output ones.
    w.append(decision("2026-11-21T13:00:00.000Z", 'User::"erin"', "legal", "claude-haiku", "deny",
                      status=400, reason="guardrail_blocked",
                      guardrails={"input": {"findings": {"aws_access_key": 1}, "blocked": ["aws_access_key"], "redacted": 0}}))
    dec = w.append(decision("2026-11-21T13:10:00.000Z", 'User::"erin"', "legal", "claude-haiku", "allow"))
    w.append(outcome("2026-11-21T13:10:01.000Z", dec["id"], "claude-haiku", "mock", 20, 0, 0.0,
                     finish_reason="content_filter",
                     guardrails={"output": {"findings": {"us_ssn": 1}, "blocked": ["us_ssn"], "redacted": 0}}))
    # frank: over his team's budget.
    w.append(decision("2026-11-21T13:05:00.000Z", 'User::"frank"', "legal", "claude-haiku", "deny",
                      status=429, reason="budget_exceeded"))
    w.close("2026-11-21T23:00:00.000Z")
    run(["audit", "verify", "records", "--pubkey", "keys/signing.pub", "--require-sealed"], cwd=d)

    base = next(r for r in ct.sample_records() if r["eventName"] == "InvokeModel")
    calls = [
        bedrock_call(base, "2026-11-21T10:00:30Z", "cairn-carol", "carol"),
        bedrock_call(base, "2026-11-21T10:30:20Z", "cairn-carol", "carol"),
        bedrock_call(base, "2026-11-21T12:00:00Z", "rogue-laptop"),
    ]
    (d / "ct.json").write_text(json.dumps({"Records": calls}))
    run(["ingest", "decisions", "records", "--pubkey", "keys/signing.pub", "--lake", "lake"], cwd=d)
    run(["ingest", "cloudtrail", "ct.json", "--lake", "lake"], cwd=d)
    run(["ingest", "cloudtrail", str(ct.SAMPLES), "--lake", "lake"], cwd=d)
    return d


def report(d, name, *args):
    r = run(["report", name, "--lake", "lake", "--format", "json", *PERIOD, *args], cwd=d)
    data = json.loads(r.stdout)
    return {k: v["rows"] for k, v in data["reports"][0]["sections"].items()}


def test_access_report_numbers(lake):
    s = report(lake, "access")
    summary = s["summary"][0]
    assert summary["requests"] == 15
    assert summary["allowed"] == 7 and summary["denied"] == 8
    assert summary["principals"] == 7
    assert summary["input_tokens"] == 3 * 100 + 2 * 400 + 10 + 20
    assert summary["spend_usd"] == pytest.approx(0.03 + 0.10 + 0.001)
    by_team = {r["team"]: r for r in s["by_team"]}
    assert by_team["engineering"]["requests"] == 4 and by_team["engineering"]["spend_usd"] == pytest.approx(0.03)
    assert by_team["research"]["spend_usd"] == pytest.approx(0.101)
    assert by_team["sales"]["denied"] == 3
    assert s["top_users"][0]["principal"] == 'User::"carol"'
    assert [r["day"] for r in s["by_day"]] == ["2026-11-20", "2026-11-21"]
    assert {r["principal"] for r in s["new_principals"]} == {'User::"alice"', 'User::"bob"', 'User::"carol"', 'User::"dave"',
                                                            'User::"erin"', 'User::"frank"'}
    assert {r["team"]: r["requests"] for r in s["by_team"]}["legal"] == 3
    # A period before anything happened has no requests.
    empty = json.loads(run(["report", "access", "--lake", "lake", "--format", "json", "--from", "2026-01-01", "--to", "2026-01-31"], cwd=lake).stdout)
    assert empty["reports"][0]["sections"]["summary"]["rows"][0]["requests"] == 0


def test_denials_report_numbers(lake):
    s = report(lake, "denials")
    assert s["summary"][0] == {"denied": 8, "by_policy": 4, "unauthenticated": 2, "guardrail": 1, "limited": 1,
                               "principals": 5, "answers_withheld": 1}
    by_policy = {r["policy"]: r["denials"] for r in s["by_policy"]}
    assert by_policy == {"principal-cleared-for-data": 3, "premium-models-ml-platform": 2}
    assert {r["reason"]: r["requests"] for r in s["unauthenticated"]} == {"unknown_api_key": 2}
    assert [(r["reason"], r["model"], r["requests"]) for r in s["guardrails"]] == [("guardrail_blocked", "claude-haiku", 1)]
    assert [(r["guardrail"], r["model"], r["requests"]) for r in s["answers_withheld"]] == [("output_guardrail", "claude-haiku", 1)]
    assert [(r["reason"], r["principal"], r["requests"]) for r in s["limits"]] == [("budget_exceeded", 'User::"frank"', 1)]


def test_spend_report_numbers(lake):
    s = report(lake, "spend")
    assert s["summary"][0]["spend_usd"] == pytest.approx(0.131)
    assert {r["model"]: r["output_tokens"] for r in s["by_model"]} == {"claude-sonnet": 3 * 50 + 2 * 200 + 10, "claude-haiku": 0}
    assert {r["day"]: round(r["spend_usd"], 4) for r in s["by_day"]} == {"2026-11-20": 0.03, "2026-11-21": 0.101}


def test_reconcile_finds_the_call_that_bypassed_the_gateway(lake):
    s = report(lake, "reconcile")
    assert s["summary"][0] == {"bedrock_calls": 3, "through_gateway": 2, "bypassed": 1, "allows_without_call": 1}
    assert len(s["bypassed"]) == 1 and s["bypassed"][0]["user_arn"].endswith("/rogue-laptop")
    assert [r["principal"] for r in s["allows_without_call"]] == ['User::"dave"']
    assert len(s["matched"]) == 2 and all(r["principal"] == 'User::"carol"' for r in s["matched"])


POSITIVES = {
    "aws_cloudtrail_disable_logging": ["aws.defense-evasion.cloudtrail-delete.json",
                                       "aws.defense-evasion.cloudtrail-stop.json"],
    "cairn_cloudtrail_event_selectors_changed": ["aws.defense-evasion.cloudtrail-event-selectors.json"],
    "aws_cloudtrail_console_login_success_without_mfa": ["aws.initial-access.console-login-without-mfa.json"],
    "cairn_iam_access_key_for_another_user": ["aws.persistence.iam-backdoor-user.json"],
    "aws_cloudtrail_bedrock_guardrail_deleted": ["aws.defense-evasion.bedrock-guardrail-delete.json"],
    "instance_credentials_outside_aws": ["aws.credential-access.ec2-steal-instance-credentials.json"],
}

# Each positive sample file holds one event the detection names, except the stolen instance
# credentials, used for GetCallerIdentity and DescribeInstances from the attacker's address.
POSITIVE_HITS = {"instance_credentials_outside_aws": 2}


def built_positives():
    """Positives the samples lack, re-issued from sample records."""
    recs = ct.sample_records()
    base = next(r for r in recs if r["userIdentity"].get("type") == "IAMUser" and not r.get("errorCode"))
    gd = copy.deepcopy(base)
    gd.update({"eventID": str(uuid.uuid4()), "eventSource": "guardduty.amazonaws.com", "eventName": "DeleteDetector",
               "requestParameters": {"detectorId": "12abc34d567e8fa901bc2d34e56789f0"}, "responseElements": None})
    bed = next(r for r in recs if r["eventSource"] == "bedrock.amazonaws.com" and not r.get("errorCode"))
    log = copy.deepcopy(bed)
    log.update({"eventID": str(uuid.uuid4()), "eventName": "DeleteModelInvocationLoggingConfiguration",
                "requestParameters": None, "responseElements": None})
    # A caller whose name merely contains the key owner's: a substring test would miss it.
    key = next(r for r in recs if r["eventName"] == "CreateAccessKey")
    near = copy.deepcopy(key)
    near["eventID"] = str(uuid.uuid4())
    near["userIdentity"].update({"arn": "arn:aws:iam::946986569305:user/admin-ops", "userName": "admin-ops"})
    near["requestParameters"] = {"userName": "admin"}
    near["responseElements"]["accessKey"]["userName"] = "admin"
    return {
        "aws_root_account_usage": [ct.identity_variants()["root"]],
        "aws_cloudtrail_guardduty_detector_deleted_or_updated": [gd],
        "cairn_bedrock_invocation_logging_changed": [log],
        "cairn_iam_access_key_for_another_user": [near],
    }


def own_access_key():
    """An IAM user creating a key for themself: not a detection."""
    key = next(r for r in ct.sample_records() if r["eventName"] == "CreateAccessKey")
    own = copy.deepcopy(key)
    own["eventID"] = str(uuid.uuid4())
    user = own["userIdentity"]["userName"]
    own["requestParameters"] = {"userName": user}
    own["responseElements"]["accessKey"]["userName"] = user
    return own


def detection_hits(d, lake_name):
    r = run(["report", "detections", "--lake", lake_name, "--format", "json"], cwd=d)
    return {k: len(v["rows"]) for k, v in json.loads(r.stdout)["reports"][0]["sections"].items()}


def test_detections_fire_on_positives_and_stay_silent_on_clean_data(tmp_path):
    built = built_positives()
    names = set(POSITIVES) | set(built)
    assert len(names) == 9
    # Clean: every sample file that is not a positive of any detection.
    positive_files = {f for fs in POSITIVES.values() for f in fs} | {"aws.persistence.iam-create-admin-user.json"}
    clean = tmp_path / "clean"
    clean.mkdir()
    for f in ct.SAMPLES.glob("*.json"):
        if f.name not in positive_files:
            shutil.copy(f, clean / f.name)
    (clean / "own-key.json").write_text(json.dumps(own_access_key()))
    run(["ingest", "cloudtrail", "clean", "--lake", "clean-lake"], cwd=tmp_path)
    hits = detection_hits(tmp_path, "clean-lake")
    # The report holds every built-in Sigma rule beside the SQL detections; these must be
    # silent on everything that is not their positive (other rules may fire on the samples).
    assert names <= set(hits) and len(hits) >= 60
    assert all(hits[n] == 0 for n in names), {n: hits[n] for n in names}
    for name in names:
        src = tmp_path / f"pos-{name}"
        src.mkdir()
        for f in POSITIVES.get(name, []):
            shutil.copy(ct.SAMPLES / f, src / f)
        if name in built:
            (src / "built.json").write_text(json.dumps(built[name]))
        run(["ingest", "cloudtrail", src.name, "--lake", f"lake-{name}"], cwd=tmp_path)
        hits = detection_hits(tmp_path, f"lake-{name}")
        # Exactly the planted events, and no other detection fires on them.
        want = POSITIVE_HITS.get(name, len(POSITIVES.get(name, []))) + len(built.get(name, []))
        assert hits[name] == want, (name, hits, want)


def test_query_formats_errors_and_partition_pruning(lake):
    q = "SELECT event_name, count(*) AS n FROM cloudtrail WHERE event_source = 'bedrock.amazonaws.com' GROUP BY event_name ORDER BY n DESC, event_name"
    table = run(["query", "--lake", "lake", q], cwd=lake).stdout
    assert "| event_name" in table and "InvokeModel" in table
    csv = run(["query", "--lake", "lake", "--format", "csv", q], cwd=lake).stdout.splitlines()
    assert csv[0] == "event_name,n"
    rows = json.loads(run(["query", "--lake", "lake", "--format", "json", q], cwd=lake).stdout)
    invoke = next(r for r in rows if r["event_name"] == "InvokeModel")
    assert invoke["n"] >= 4 and rows == sorted(rows, key=lambda r: (-r["n"], r["event_name"]))
    run(["query", "--lake", "lake", "--format", "parquet", "--out", "out.parquet", q], cwd=lake)
    t = pq.read_table(lake / "out.parquet")
    assert t.column_names == ["event_name", "n"] and t.num_rows == len(rows)
    # --stats says when DataFusion answered from the footers alone, and what a real scan read.
    meta = run(["query", "--lake", "lake", "--stats", "SELECT count(*) FROM cloudtrail"], cwd=lake)
    assert "answered from the files' metadata" in meta.stderr and "no rows read" in meta.stderr
    scan = run(["query", "--lake", "lake", "--stats", "SELECT count(*) FROM cloudtrail WHERE event_name = 'InvokeModel'"],
               cwd=lake)
    assert "scanned " in scan.stderr and "metadata" not in scan.stderr
    # JSON helpers under Trino's names.
    r = json.loads(run(["query", "--lake", "lake", "--format", "json",
                        "SELECT json_extract_scalar(request_parameters, '$.modelId') AS m, json_size(user_identity, '$') AS n "
                        "FROM cloudtrail WHERE event_id IS NOT NULL AND json_extract_scalar(user_identity, '$.sessionContext.sourceIdentity') = 'carol'"],
                       cwd=lake).stdout)
    assert len(r) == 2 and r[0]["m"].startswith("anthropic.") and r[0]["n"] >= 4
    # SQL errors say where.
    bad = run(["query", "--lake", "lake", "SELECT event_name FROM cloudtrail WHERE nope = 1"], cwd=lake, check=False)
    assert bad.returncode == 2
    assert "nope" in bad.stderr and "query:1:" in bad.stderr
    bad = run(["query", "--lake", "lake", "SELECT count(* FROM cloudtrail"], cwd=lake, check=False)
    assert bad.returncode == 2 and "query:1:16" in bad.stderr
    assert "SQL syntax error: Expected" in bad.stderr and "ParserError" not in bad.stderr
    typo = run(["query", "--lake", "lake", "SELECT event_nmae FROM cloudtrail"], cwd=lake, check=False)
    assert typo.returncode == 2 and "did you mean `event_name`?" in typo.stderr
    # JSON lines and Markdown.
    lines = run(["query", "--lake", "lake", "--format", "jsonl", q], cwd=lake).stdout.splitlines()
    assert [json.loads(line) for line in lines] == rows
    md = run(["query", "--lake", "lake", "--format", "markdown", q], cwd=lake).stdout.splitlines()
    assert md[0] == "| event_name | n |" and md[1] == "|---|---|" and len(md) == len(rows) + 2
    # One day's query opens only that day's files.
    day_files = list((lake / "lake" / "cloudtrail" / "date=2024-07-30").glob("*.parquet"))
    all_files = list((lake / "lake" / "cloudtrail").rglob("*.parquet"))
    assert 0 < len(day_files) < len(all_files)
    r = run(["query", "--lake", "lake", "--stats", "SELECT event_id FROM cloudtrail WHERE \"date\" = DATE '2024-07-30'"], cwd=lake)
    stats = r.stderr.strip().splitlines()[-1]
    assert f"scanned {len(day_files)} file(s)" in stats and "partitions: 2024-07-30" in stats, stats
    r = run(["query", "--lake", "lake", "--stats", "SELECT event_id FROM cloudtrail"], cwd=lake)
    assert f"scanned {len(all_files)} file(s)" in r.stderr


def test_show_sql_prints_every_query(lake):
    r = run(["report", "all", "--lake", "lake", "--show-sql", *PERIOD], cwd=lake)
    assert r.stdout.count("-- ") >= 25
    assert "DATE '2026-11-20'" in r.stdout
    listing = run(["report", "--list"], cwd=lake).stdout
    for name in ["access", "denials", "spend", "reconcile", "detections", "all"]:
        assert name in listing


def test_several_reports_in_one_run_and_periods_checked(lake):
    both = json.loads(run(["report", "access", "denials", "access", "--lake", "lake", "--format", "json", *PERIOD],
                          cwd=lake).stdout)
    assert [r["report"] for r in both["reports"]] == ["access", "denials"], "each named report once, in order"
    # The footer's suggestion runs as written.
    shown = run(["report", "access", "denials", "spend", "reconcile", "detections", "--lake", "lake", "--show-sql",
                 *PERIOD], cwd=lake)
    assert shown.returncode == 0 and "-- reconcile /" in shown.stdout
    reversed_ = run(["report", "access", "--lake", "lake", "--from", "2026-12-01", "--to", "2026-11-01"], cwd=lake,
                    check=False)
    assert reversed_.returncode == 2 and "--from 2026-12-01 is after --to 2026-11-01" in reversed_.stderr
    typo = run(["report", "denails", "--lake", "lake"], cwd=lake, check=False)
    assert typo.returncode == 2 and "did you mean `denials`?" in typo.stderr


def test_html_report_is_self_contained_and_explorable_in_headless_chromium(lake):
    from playwright.sync_api import sync_playwright
    run(["report", "all", "--lake", "lake", "--out", "report.html", *PERIOD], cwd=lake)
    html = (lake / "report.html").read_text()
    assert html.count("<script") == 1 and "<script src" not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    errors, requests = [], []

    def column(page, section, name):
        """The visible values of a column of a section's table, in order."""
        return page.evaluate("""([section, name]) => {
            const t = document.querySelector(`#${section} table.data`);
            const i = [...t.tHead.rows[0].cells].findIndex(c => c.textContent.trim() === name);
            return [...t.tBodies[0].rows].filter(r => !r.hidden).map(r => r.cells[i].textContent.trim());
        }""", [section, name])

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto((lake / "report.html").as_uri())
        assert page.title() == "Cairn · Audit reports"
        assert page.locator("section").count() >= 25
        assert page.locator("#access-summary .kpi .v").first.inner_text() == "15"
        assert "2026-11-20" in page.locator("#period").inner_text()

        # The evidence: the chain's verdict and the bundle in force.
        verdict = page.locator("#evidence .verdict").inner_text()
        assert "verified on ingest: 15 decisions and 7 outcomes" in verdict and "none failed" in verdict, verdict
        digest = "sha256:" + "ab" * 32
        assert column(page, "evidence", "bundle") == [digest]
        assert column(page, "evidence", "decisions") == ["15"]

        # Charts: requests and denied side by side, whole-number ticks for counts.
        by_day = page.locator("#access-by_day svg.chart")
        bars = by_day.locator("rect").evaluate_all("rs => rs.map(r => [+r.getAttribute('x'), +r.getAttribute('width')])")
        assert len(bars) == 2 * 2 + 2  # two days, two series, two legend keys
        (x1, w1), (x2, _) = bars[0], bars[1]
        assert x2 >= x1 + w1 - 0.01, "the denied bar stands beside the requests bar, not on it"
        ticks = by_day.locator("text.tick").evaluate_all("ts => ts.map(t => t.textContent)")
        assert ticks and all(t.isdigit() for t in ticks), ticks
        assert page.locator("#access-top_users th", has_text="allowed_requests").count() == 1

        # Sorting: text, then numbers (not as text: 10 after 9).
        page.locator("#access-by_principal th button", has_text="principal").click()
        names = column(page, "access-by_principal", "principal")
        assert names == sorted(names, key=str.lower) and len(names) >= 5
        page.locator("#access-by_principal th button", has_text="principal").click()
        assert column(page, "access-by_principal", "principal") == sorted(names, key=str.lower, reverse=True)
        page.locator("#access-by_principal th button", has_text="requests").click()
        counts = [int(v) for v in column(page, "access-by_principal", "requests")]
        assert counts == sorted(counts)
        assert page.locator("#access-by_principal th[aria-sort=ascending]").inner_text().startswith("requests")

        # Filtering: every word must appear in the row.
        box = page.locator("#denials-recent input.filter")
        box.fill("bob")
        shown = column(page, "denials-recent", "principal")
        assert shown == ['User::"bob"'] * 3
        assert page.locator("#denials-recent .count").inner_text() == "3 of 8 rows"
        box.fill("bob opus")
        assert len(column(page, "denials-recent", "principal")) == 1
        box.fill("")
        assert len(column(page, "denials-recent", "principal")) == 8

        # From a denial to its record's fields, and from there to the bundle that decided it.
        link = page.locator("#denials-recent td a").first
        target = link.get_attribute("href")
        link.click()
        assert page.evaluate("location.hash") == target
        record = page.locator(f"[id='{target[1:]}']")
        assert record.evaluate("e => e.tagName") == "DL"
        fields = dict(zip(record.locator("dt").all_inner_texts(), record.locator("dd").all_inner_texts()))
        assert fields["decision_id"] == target[len("#decision-"):]
        assert fields["bundle"] == digest and fields["hash"] and fields["key_id"] and "policies" in fields
        record.locator("dd a", has_text=digest).click()
        assert page.evaluate("location.hash") == "#bundle-" + digest
        assert page.evaluate("document.querySelector(':target').closest('section').id") == "evidence"
        # Every link inside the page has its target in the page.
        dead = page.evaluate("""[...document.querySelectorAll('a[href^="#"]')]
            .filter(a => !document.getElementById(decodeURIComponent(a.hash.slice(1)))).map(a => a.hash)""")
        assert dead == [], dead
        pdf = page.pdf()
        browser.close()
    assert errors == []
    assert requests == [(lake / "report.html").as_uri()], requests
    assert len(pdf) > 10_000
    md = run(["report", "denials", "--lake", "lake", "--format", "md", *PERIOD], cwd=lake).stdout
    assert "| policy | denials | principals |" in md and "| principal-cleared-for-data | 3 | 1 |" in md
    assert "Decision chain verified on ingest" in md and digest in md
    # The signed records' fields are the HTML's and JSON's; a PR comment gets the denials only.
    assert "Decision records of these denials" not in md and "Most recent denials" in md
    js = json.loads(run(["report", "denials", "--lake", "lake", "--format", "json", *PERIOD], cwd=lake).stdout)
    assert js["evidence"]["sections"]["bundles"]["rows"][0]["bundle"] == digest


def flat(text):
    return " ".join(text.split())


def test_list_columns_are_typed_for_duckdb_pyarrow_and_cairn(lake):
    import csv
    import datetime
    import io

    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds
    con = duckdb.connect()
    for t in ["decisions", "cloudtrail"]:
        con.execute(f"create view {t} as select * from read_parquet('{lake}/lake/{t}/*/*.parquet', hive_partitioning=true)")
    types = dict(con.execute("select column_name, column_type from (describe decisions)").fetchall())
    assert types["reasons"] == types["principal_parents"] == types["errors"] == "VARCHAR[]", types
    both = con.execute("""select reasons from decisions where principal = 'User::"bob"' and model = 'claude-opus'""").fetchall()
    assert both == [(["premium-models-ml-platform", "principal-cleared-for-data"],)]
    assert con.execute("""select count(*) from decisions where list_contains(principal_parents, 'Group::"engineering"')""").fetchone()[0] == 4
    ct_types = dict(con.execute("select column_name, column_type from (describe cloudtrail)").fetchall())
    assert ct_types["resources"].startswith("STRUCT(arn VARCHAR, account_id VARCHAR, \"type\" VARCHAR)[]"), ct_types["resources"]
    arns = con.execute("select r.arn, r.type from cloudtrail, unnest(resources) as t(r) where r.arn is not null").fetchall()
    assert arns and all(a.startswith("arn:aws:") for a, _ in arns)

    # pyarrow: the lists as lists, and the partition as a date when its type is named.
    part = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")
    t = ds.dataset(lake / "lake" / "decisions", format="parquet", partitioning=part).to_table(
        filter=ds.field("date") == pa.scalar(datetime.date(2026, 11, 21)))
    assert t.schema.field("reasons").type == pa.list_(pa.string())
    assert t.schema.field("date").type == pa.date32()
    assert t.num_rows == 11

    # cairn query: the same lists in DataFusion, and as JSON text in CSV.
    n = run(["query", "--lake", "lake", "--format", "json",
             "select count(*) as n from decisions where array_has(reasons, 'principal-cleared-for-data')"], cwd=lake)
    assert json.loads(n.stdout) == [{"n": 3}]
    arn = run(["query", "--lake", "lake", "--format", "json",
               "select resources[1]['arn'] as arn from cloudtrail where cardinality(resources) > 0 limit 1"], cwd=lake)
    assert json.loads(arn.stdout)[0]["arn"].startswith("arn:aws:")
    out = run(["query", "--lake", "lake", "--format", "csv",
               "select principal, reasons from decisions where cardinality(reasons) = 2"], cwd=lake).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [json.loads(r["reasons"]) for r in rows] == [["premium-models-ml-platform", "principal-cleared-for-data"]]


def as_layout_1(lake_dir):
    """Rewrites a lake's files as layout 1 wrote them: list columns as JSON text, no marker."""
    import pyarrow as pa
    (lake_dir / "_layout.json").unlink()
    names = {"arn": "ARN", "account_id": "accountId", "type": "type"}
    for f in lake_dir.glob("*/date=*/*.parquet"):
        t = pq.read_table(f, partitioning=None)
        fields, cols = [], []
        for field, col in zip(t.schema, t.columns):
            if pa.types.is_list(field.type):
                def text(v):
                    if v is None:
                        return None
                    if v and isinstance(v[0], dict):
                        v = [{names[k]: x for k, x in item.items()} for item in v]
                    return json.dumps(v, separators=(",", ":"))
                col = pa.array([text(v) for v in col.to_pylist()], pa.string())
                field = pa.field(field.name, pa.string())
            fields.append(field)
            cols.append(col)
        pq.write_table(pa.Table.from_arrays(cols, schema=pa.schema(fields)), f)


def test_a_layout_1_lake_is_refused_then_migrated_by_compact(lake, tmp_path):
    import duckdb
    shutil.copytree(lake / "lake", tmp_path / "lake")
    before = report(lake, "denials")
    count = lambda d, t: duckdb.sql(  # noqa: E731
        f"select count(*) from read_parquet('{d}/{t}/*/*.parquet')").fetchall()[0][0]
    rows_before = {t: count(lake / "lake", t) for t in ["decisions", "cloudtrail"]}
    # A migration stopped after writing a partition's new file, before deleting the old one:
    # the new (current layout) file stands beside the old file holding the same rows.
    migrated = sorted((tmp_path / "lake" / "decisions").glob("date=*/*.parquet"))[0]
    kept = migrated.read_bytes()
    as_layout_1(tmp_path / "lake")
    (migrated.parent / "part-ffffffffffffffffffffffffffffffff.parquet").write_bytes(kept)
    # And one CloudTrail `resources` value of a shape layout 2 cannot hold.
    import pyarrow as pa
    ct_file = next(f for f in sorted((tmp_path / "lake" / "cloudtrail").glob("date=*/*.parquet"))
                   if any(v is not None for v in pq.read_table(f).column("resources").to_pylist()))
    t = pq.read_table(ct_file)
    values = t.column("resources").to_pylist()
    odd = next(i for i, v in enumerate(values) if v is not None)
    values[odd] = '{"not": "a list"}'
    pq.write_table(t.set_column(t.schema.get_field_index("resources"), "resources", pa.array(values, pa.string())),
                   ct_file)
    refused = run(["query", "--lake", "lake", "select count(*) from decisions"], cwd=tmp_path, check=False)
    assert refused.returncode != 0
    assert "is of layout version 1" in flat(refused.stderr) and "cairn ingest compact --lake lake" in flat(refused.stderr)
    (tmp_path / "ct.json").write_text(json.dumps({"Records": ct.sample_records()[:1]}))
    ingest = run(["ingest", "cloudtrail", "ct.json", "--lake", "lake"], cwd=tmp_path, check=False)
    assert ingest.returncode != 0 and "cairn ingest compact" in flat(ingest.stderr)

    out = run(["ingest", "compact", "--lake", "lake"], cwd=tmp_path).stdout
    assert "of an earlier layout rewritten" in out and "the lake is now of layout version 2" in out, out
    assert "1 value(s) that did not convert kept in _quarantine" in out, out
    assert report(tmp_path, "denials") == before
    assert {t: count(tmp_path / "lake", t) for t in rows_before} == rows_before, "no row lost, none twice"
    q = json.loads(run(["query", "--lake", "lake", "--format", "json",
                        "select reason, raw from _quarantine where target_table = 'cloudtrail'"], cwd=tmp_path).stdout)
    assert q == [{"reason": "wrong_shape", "raw": '{"not": "a list"}'}]
    again = run(["ingest", "compact", "--lake", "lake", "--format", "json"], cwd=tmp_path).stdout
    summary = json.loads(again)
    assert summary["layout_current"] and not summary["migrated"]
    assert all(t["migrated"] == 0 for t in summary["tables"])
    run(["ingest", "cloudtrail", "ct.json", "--lake", "lake"], cwd=tmp_path)


def test_athena_ddl_parses_as_hive_and_trino(tmp_path):
    import sqlglot
    ddl = run(["athena", "ddl", "--lake", "s3://audit-bucket/lake", "--database", "cairn"], cwd=tmp_path).stdout
    statements = [s for s in sqlglot.parse(ddl, read="athena") if s is not None]
    assert len(statements) == 9  # the database and eight tables
    tables = {}
    for st in statements[1:]:
        t = st.find(sqlglot.exp.Table)
        tables[t.name] = st
        text = st.sql(dialect="athena")
        assert "projection.date.type" in text and "ZSTD" in text
        assert f"s3://audit-bucket/lake/{t.name}/date=${{date}}/" in text
    assert set(tables) == {"cloudtrail", "genai_spans", "decisions", "outcomes", "bundles", "policies",
                           "cloudtrail_files", "_quarantine"}
    cols = {c.name: c.args["kind"].sql() for c in tables["cloudtrail"].find_all(sqlglot.exp.ColumnDef)}
    assert cols["event_time"] == "TIMESTAMP" and cols["read_only"] == "BOOLEAN" and cols["ingest_record"] == "BIGINT"
    assert cols["date"] == "DATE"
    lists = {c.name: c.args["kind"].sql(dialect="athena") for c in tables["decisions"].find_all(sqlglot.exp.ColumnDef)}
    # (sqlglot writes Athena's array<string> in its Trino spelling.)
    assert all(lists[c].upper() in ("ARRAY<STRING>", "ARRAY(VARCHAR)") for c in ["reasons", "principal_parents", "errors"]), lists
    resources = next(c for c in tables["cloudtrail"].find_all(sqlglot.exp.ColumnDef) if c.name == "resources")
    assert resources.args["kind"].sql(dialect="athena") == "ARRAY(ROW(arn VARCHAR, account_id VARCHAR, type VARCHAR))"
    # And through Hive's dialect too.
    assert all(s is not None for s in sqlglot.parse(ddl, read="hive"))
    # --replace drops each (external) table first, to bring it to the current layout.
    replaced = run(["athena", "ddl", "--lake", "s3://audit-bucket/lake", "--database", "cairn", "--replace"],
                   cwd=tmp_path).stdout
    parsed = [s for s in sqlglot.parse(replaced, read="athena") if s is not None]
    assert len(parsed) == 17 and sum(isinstance(x, sqlglot.exp.Drop) for x in parsed) == 8
    bad = run(["athena", "ddl", "--lake", "/local/dir"], cwd=tmp_path, check=False)
    assert bad.returncode == 2


def test_athena_engine_start_poll_page_against_moto(tmp_path):
    import boto3
    import httpx
    from servers import moto
    with moto(tmp_path) as url:
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true"}
        rows = [{"Data": [{"VarCharValue": "event_name"}, {"VarCharValue": "n"}]}]
        rows += [{"Data": [{"VarCharValue": f"Event{i}"}, {"VarCharValue": str(i)}]} for i in range(2500)]
        httpx.post(f"{url}/moto-api/static/athena/query-results", json={
            "region": "us-east-1",
            "results": [{"rows": rows, "column_info": [
                {"Name": "event_name", "Type": "varchar", "CatalogName": "hive", "SchemaName": "", "TableName": "",
                 "Label": "event_name", "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": True},
                {"Name": "n", "Type": "bigint", "CatalogName": "hive", "SchemaName": "", "TableName": "",
                 "Label": "n", "Precision": 19, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": False}]}],
        }).raise_for_status()
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="results")
        r = run(["query", "--engine", "athena", "--workgroup", "primary", "--output", "s3://results/q/",
                 "--format", "json", "SELECT event_name, count(*) AS n FROM cloudtrail GROUP BY 1"], cwd=tmp_path, env=env)
        out = json.loads(r.stdout)
        assert len(out) == 2500
        assert out[0] == {"event_name": "Event0", "n": 0} and out[-1]["n"] == 2499
        # The query really went to Athena with the SQL, workgroup and database.
        athena = boto3.client("athena", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        ids = athena.list_query_executions()["QueryExecutionIds"]
        q = athena.get_query_execution(QueryExecutionId=ids[0])["QueryExecution"]
        assert q["Query"].startswith("SELECT event_name") and q["QueryExecutionContext"]["Database"] == "cairn"


def test_reports_run_on_athena_with_sql_trino_parses(tmp_path):
    """`cairn report --engine athena` sends each report query (its Athena variant where the
    dialects differ) to Athena; every statement it sent parses as Trino SQL."""
    import boto3
    import sqlglot
    from servers import moto
    with moto(tmp_path) as url:
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true"}
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="results")
        names = ["access", "denials", "spend", "reconcile", "detections", "tools"]
        for name in names:
            r = run(["report", name, "--engine", "athena", "--workgroup", "primary", "--output", "s3://results/r/",
                     "--format", "json", *PERIOD], cwd=tmp_path, env=env)
            sections = json.loads(r.stdout)["reports"][0]["sections"]
            assert sections, name
        athena = boto3.client("athena", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        ids = athena.list_query_executions()["QueryExecutionIds"]
        sent = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"] for i in ids]
    (tmp_path / "empty-lake").mkdir()
    def queries(n):
        """The queries a report runs: its own and the evidence every report states."""
        local = json.loads(run(["report", n, "--lake", str(tmp_path / "empty-lake"), "--format", "json", *PERIOD],
                               cwd=tmp_path).stdout)
        return len(local["reports"][0]["sections"]) + len(local["evidence"]["sections"])
    expected = sum(queries(n) for n in names)
    assert len(sent) == expected, (len(sent), expected)
    for sql in sent:
        assert ":from" not in sql and ":to" not in sql, sql
        sqlglot.parse_one(sql, read="trino")
    # Where the dialects differ, Athena got its own spelling.
    assert any("CROSS JOIN UNNEST" in sql for sql in sent)
    assert not any("json_string_array" in sql for sql in sent)


def test_the_reconcile_report_is_what_its_generator_writes():
    import subprocess
    import sys
    from conftest import REPO
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_reconcile.py"), "--check"])
    assert r.returncode == 0, "reports/src/builtin/reconcile.toml differs: run scripts/gen_reconcile.py"
