"""`cairn detect`: Sigma rules compiled to SQL over the lake. SigmaHQ rule ids fire on the Stratus
samples; the same SQL run by DuckDB over the same Parquet finds the same events; SARIF validates
against the SARIF 2.1.0 schema; a rule that does not compile is listed with its reason; user
rules and broken files; and every compiled rule sent through the Athena client (moto) parses as
Trino SQL."""

import json
import shutil

import duckdb
import pytest

import ct_fixtures as ct
from conftest import REPO, run


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    d = tmp_path_factory.mktemp("detect")
    shutil.copytree(ct.SAMPLES, d / "ct")
    run(["ingest", "cloudtrail", "ct", "--lake", "lake"], cwd=d)
    return d


def detect(d, *args, check=True):
    return run(["detect", "--lake", "lake", *args], cwd=d, check=check)


def test_sigmahq_rules_fire_on_the_samples_with_their_ids_and_authors(lake):
    doc = json.loads(detect(lake, "--format", "json").stdout)
    fired = {r["rule"]["id"]: r for r in doc["results"] if r["hits"]}
    # SigmaHQ's own ids (merged upstream), each on the Stratus technique it describes.
    for rule_id, event in [
        ("4db60cc0-36fb-42b7-9b58-a5b53019fb74", "StopLogging"),        # CloudTrail Important Change
        ("77caf516-34e5-4df9-b4db-20744fea0a60", "ConsoleLogin"),       # console login without MFA
        ("59b70e4d-dd17-44a9-b740-acf07ae3eb6a", "DeleteGuardrail"),    # Bedrock guardrail deleted
        ("e386b9b5-af12-450e-afff-761730fb8a98", "DeleteFlowLogs"),     # VPC flow logs deleted
    ]:
        assert rule_id in fired, (rule_id, sorted(fired))
        assert event in {h["event_name"] for h in fired[rule_id]["hits"]}
        # The Detection Rule License asks that matches name the rule's author.
        assert fired[rule_id]["rule"]["author"], rule_id
        assert fired[rule_id]["rule"]["origin"].startswith("builtin:sigmahq/cloudtrail/")
    # Cairn's own Bedrock rules fire on the Stratus model-access sample.
    access = fired["ee293626-7c30-409c-9eef-a411e776b159"]
    assert {h["event_name"] for h in access["hits"]} == {
        "PutUseCaseForModelAccess", "CreateFoundationModelAgreement", "PutFoundationModelEntitlement"}
    assert doc["rules_run"] == 63 and doc["hits"] == sum(len(r["hits"]) for r in doc["results"])
    assert [n["name"] for n in doc["not_compiled"]] == ["aws_delete_saml_provider"]
    assert "`status`" in doc["not_compiled"][0]["reason"]


def test_duckdb_finds_the_same_events_with_the_same_sql(lake):
    """The compiled SQL is portable: DuckDB, given Trino's JSON function names as macros, runs
    each rule's SQL over the same Parquet files and finds exactly the events Cairn found."""
    doc = json.loads(detect(lake, "--format", "json").stdout)
    con = duckdb.connect()
    con.execute("""
        CREATE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p);
        CREATE MACRO json_format(j) AS CAST(j AS VARCHAR);
        CREATE MACRO regexp_like(s, p) AS regexp_matches(s, p);
    """)
    con.execute(f"CREATE VIEW cloudtrail AS SELECT * FROM read_parquet('{lake}/lake/cloudtrail/*/*.parquet', "
                "hive_partitioning = true, hive_types = {'date': DATE})")
    compared = 0
    for r in doc["results"]:
        got = sorted(row[1] for row in con.execute(r["sql"]).fetchall())
        assert got == sorted(h["event_id"] for h in r["hits"]), r["rule"]["name"]
        compared += 1
    assert compared == 63
    assert sum(len(r["hits"]) for r in doc["results"]) > 20


def test_sarif_validates_against_the_schema(lake):
    import jsonschema
    sarif = json.loads(detect(lake, "--format", "sarif").stdout)
    schema = json.loads((REPO / "tests" / "fixtures" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.validate(sarif, schema)
    run0 = sarif["runs"][0]
    rules = run0["tool"]["driver"]["rules"]
    results = run0["results"]
    assert results and all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    guard = next(r for r in results if r["ruleId"] == "59b70e4d-dd17-44a9-b740-acf07ae3eb6a")
    assert guard["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        "reports/rules/sigmahq/cloudtrail/aws_cloudtrail_bedrock_guardrail_deleted.yml"
    assert (REPO / guard["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]).is_file()
    assert guard["level"] == "warning" and "DeleteGuardrail" in guard["message"]["text"]


def test_list_show_sql_markdown_and_errors(lake):
    listing = detect(lake, "--list").stdout
    assert "aws_cloudtrail_disable_logging" in listing and "not compiled: detection `selection`: field `status`" in listing
    assert "64 rule(s): 63 compile to SQL, 1 do not" in listing
    sql = detect(lake, "--show-sql", "aws_cloudtrail_disable_logging", "--from", "2026-11-01", "--to", "2026-11-30").stdout
    assert "BETWEEN DATE '2026-11-01' AND DATE '2026-11-30'" in sql and "'stoplogging'" in sql
    # By id too, and one rule at a time.
    one = json.loads(detect(lake, "--rule", "4db60cc0-36fb-42b7-9b58-a5b53019fb74", "--format", "json").stdout)
    assert one["rules_run"] == 1 and len(one["results"][0]["hits"]) >= 2
    # Every hit is counted; only --max-hits of them are formatted.
    capped = json.loads(detect(lake, "--rule", "4db60cc0-36fb-42b7-9b58-a5b53019fb74", "--max-hits", "1",
                               "--format", "json").stdout)["results"][0]
    assert capped["hit_count"] >= 2 and len(capped["hits"]) == 1 and capped["truncated"]
    table = detect(lake, "--rule", "4db60cc0-36fb-42b7-9b58-a5b53019fb74", "--max-hits", "1").stdout
    assert f"{capped['hit_count'] - 1} more; --max-hits 0 shows every hit" in table
    md = detect(lake, "--format", "md").stdout
    assert md.startswith("## Detections") and "| Rule | Level | Hits | Id |" in md and "<details><summary>SQL</summary>" in md
    bad = detect(lake, "--show-sql", "aws_cloudtrail_disable_loging", check=False)
    assert bad.returncode == 2 and "did you mean `aws_cloudtrail_disable_logging`?" in bad.stderr
    bad = detect(lake, "--show-sql", "aws_delete_saml_provider", check=False)
    assert bad.returncode == 2 and "does not compile" in bad.stderr
    # No hits in the period: exit 0 even with --fail-on-hits; hits: exit 1.
    quiet = detect(lake, "--from", "2020-01-01", "--to", "2020-01-02", "--fail-on-hits")
    assert "63 rule(s) ran: 0 with hits, 0 hit(s)" in quiet.stdout
    assert detect(lake, "--fail-on-hits", check=False).returncode == 1


def test_own_rules_and_broken_files(lake):
    rules = lake / "my-rules"
    rules.mkdir(exist_ok=True)
    (rules / "stop.yml").write_text("""title: Trail stopped by christophe
id: 6b0b8a7e-0000-4000-8000-000000000001
author: test
logsource: {product: aws, service: cloudtrail}
detection:
    sel:
        eventName|endswith: Logging
        userIdentity.arn|contains: christophe
    condition: sel
level: high
""")
    (rules / "windows.yml").write_text("""title: Not for CloudTrail
logsource: {product: windows, category: process_creation}
detection:
    sel: {Image|endswith: '\\\\cmd.exe'}
    condition: sel
""")
    doc = json.loads(detect(lake, "--rules", "my-rules", "--format", "json").stdout)
    assert doc["rules_run"] == 1 and doc["results"][0]["hits"][0]["event_name"] == "StopLogging"
    assert "only `product: aws, service: cloudtrail`" in doc["not_compiled"][0]["reason"]
    both = json.loads(detect(lake, "--rules", "my-rules", "--rules", "builtin", "--format", "json").stdout)
    assert both["rules_run"] == 64
    (rules / "broken.yml").write_text("title: broken\ndetection:\n  sel: [\n")
    bad = detect(lake, "--rules", "my-rules", check=False)
    assert bad.returncode == 2 and "broken.yml" in bad.stderr


def test_detect_runs_every_compiled_rule_on_athena(tmp_path):
    import boto3
    import sqlglot
    from servers import moto
    with moto(tmp_path) as url:
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true"}
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="results")
        r = run(["detect", "--engine", "athena", "--workgroup", "primary", "--output", "s3://results/d/",
                 "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json"], cwd=tmp_path, env=env)
        assert json.loads(r.stdout)["rules_run"] == 63
        athena = boto3.client("athena", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        ids = athena.list_query_executions()["QueryExecutionIds"]
        sent = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"] for i in ids]
    assert len(sent) == 63
    for sql in sent:
        assert ":from" not in sql and "DATE '2026-11-01'" in sql, sql
        sqlglot.parse_one(sql, read="trino")
    assert any("json_extract_scalar(" in s for s in sent) and any(" ESCAPE '\\'" in s for s in sent)
