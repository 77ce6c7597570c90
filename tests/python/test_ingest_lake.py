"""The audit lake from real parts: CloudTrail (samples, delivery layout on a real S3 server,
every userIdentity type), OTel, bad input, idempotency and a killed ingest; read back with
DuckDB and pyarrow, no Cairn code."""

import copy
import gzip
import hashlib
import json
import os
import signal
import subprocess
import time

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow.fs as pafs
import pytest

import ct_fixtures as ct
from conftest import BIN, REPO, run
from servers import S3_ACCESS_KEY, S3_SECRET_KEY, s3_client, s3_env, seaweedfs


def ingest(kind, src, cwd, *extra, env=None, check=True):
    r = run(["ingest", kind, str(src), *extra, "--format", "json"], cwd=cwd, env=env, check=check)
    return r, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else None)


def duck(lake, table, sql="select * from t"):
    con = duckdb.connect()
    con.execute(f"create view t as select * from read_parquet('{lake}/{table}/*/*.parquet', hive_partitioning=true)")
    return con.execute(sql)


def dicts(result):
    cols = [d[0] for d in result.description]
    return [dict(zip(cols, row)) for row in result.fetchall()]


def test_samples_ingest_with_nothing_quarantined_and_read_back(tmp_path):
    r, s = ingest("cloudtrail", ct.SAMPLES, tmp_path, "--lake", "lake")
    raw = ct.sample_records()
    assert sum(x["read"] for x in s["sources"]) == len(raw) == 311
    assert sum(x["written"] for x in s["sources"]) == 311
    assert all(not x["quarantined"] for x in s["sources"])

    lake = tmp_path / "lake"
    assert duck(lake, "cloudtrail", "select count(*) from t").fetchone()[0] == 311
    # pyarrow, with the Hive partition discovered as a column.
    table = ds.dataset(lake / "cloudtrail", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 311
    assert "date" in table.column_names
    rows = {(r["event_id"], r["event_name"]): r for r in table.to_pylist()}
    for rec in raw:
        row = rows[(rec["eventID"], rec["eventName"])]
        assert row["event_source"] == rec["eventSource"]
        assert row["aws_region"] == rec["awsRegion"]
        assert row["source_ip_address"] == rec["sourceIPAddress"]
        assert row["read_only"] == rec["readOnly"]
        assert row["user_type"] == rec["userIdentity"].get("type")
        assert row["user_arn"] == rec["userIdentity"].get("arn")
        assert row["error_code"] == rec.get("errorCode")
        assert row["event_time"] == ct.event_time(rec)
        assert str(row["date"]) == ct.event_time(rec).date().isoformat()
        assert json.loads(row["request_parameters"]) == rec["requestParameters"] if rec["requestParameters"] is not None else row["request_parameters"] is None
    # The guardrail event's non-RFC 3339 time was parsed, not rejected.
    g = duck(lake, "cloudtrail", "select event_time, date from t where event_name = 'DeleteGuardrail'").fetchone()
    assert (g[0].year, g[0].month, g[0].day, g[0].hour) == (2025, 3, 26, 16)
    # Files are zstd and sorted by time within.
    import pyarrow.parquet as pq
    for f in (lake / "cloudtrail").rglob("*.parquet"):
        md = pq.ParquetFile(f).metadata
        assert md.row_group(0).column(0).compression == "ZSTD"
        times = pq.read_table(f, columns=["event_time"]).column(0).to_pylist()
        assert times == sorted(times)


def test_every_user_identity_type_is_flattened(tmp_path):
    variants = ct.identity_variants()
    records = list(variants.values()) + [ct.assume_role_with_tags()]
    (tmp_path / "ids.json").write_text(json.dumps({"Records": records}))
    _, s = ingest("cloudtrail", "ids.json", tmp_path, "--lake", "lake")
    assert s["sources"][0]["written"] == len(records)
    rows = {r["event_id"]: r for r in dicts(duck(tmp_path / "lake", "cloudtrail"))}
    by = {tag: rows[rec["eventID"]] for tag, rec in variants.items()}
    assert by["root"]["user_type"] == "Root" and by["root"]["user_arn"].endswith(":root")
    assert by["aws-service"]["user_type"] == "AWSService"
    assert by["aws-service"]["user_invoked_by"] == "ec2.amazonaws.com"
    ic = by["identity-center"]
    assert ic["user_type"] == "IdentityCenterUser"
    assert json.loads(ic["user_on_behalf_of"])["userId"] == "544894e8-80c1-707f-60e3-3ba6510dfac1"
    assert ic["user_credential_id"].startswith("EXAMPLE")
    assert by["missing-type"]["user_type"] is None
    assert by["missing-type"]["user_principal_id"] == variants["missing-type"]["userIdentity"]["principalId"]
    a = by["assumed-role-source-identity"]
    assert a["user_type"] == "AssumedRole"
    assert a["user_source_identity"] == "alice"
    assert a["user_session_name"] == "cairn-alice"
    assert a["user_session_issuer_type"] == "Role"
    assert a["user_session_creation_date"].year == 2024  # ISO 8601 basic notation parsed
    fed = by["federated-user"]
    assert fed["user_type"] == "FederatedUser"
    assert ":federated-user/" in fed["user_arn"]
    assert fed["user_session_issuer_type"] == variants["federated-user"]["userIdentity"]["sessionContext"]["sessionIssuer"]["type"]
    tags_row = rows[ct.assume_role_with_tags()["eventID"]]
    assert json.loads(tags_row["user_session_tags"]) == {"cairn-user": "alice", "cairn-team": "engineering"}


def test_bad_input_is_quarantined_counted_and_kept(tmp_path):
    want = ct.bad_inputs(tmp_path / "bad")
    r, s = ingest("cloudtrail", "bad", tmp_path, "--lake", "lake")
    assert r.returncode == 0
    by_reason = {}
    for x in s["sources"]:
        for k, v in x["quarantined"].items():
            by_reason[k] = by_reason.get(k, 0) + v
    for reason, n in want.items():
        assert by_reason.get(reason) == n, (reason, by_reason)
    assert by_reason.get("truncated_input") == 1
    trunc = next(x for x in s["sources"] if x["source"].endswith("truncated.json.gz"))
    # The records before the cut survived (as rows, or as duplicates of the same records in
    # the other files, which share them); only the cut record is quarantined.
    assert trunc["written"] + trunc["duplicates"] >= 1
    assert trunc["read"] == trunc["written"] + trunc["duplicates"] + 1
    q = dicts(duck(tmp_path / "lake", "_quarantine"))
    assert len(q) == sum(by_reason.values())
    bad_time = next(x for x in q if x["reason"] == "unparseable_time")
    assert bad_time["source"].endswith("fields.json") and bad_time["record_number"] == 2
    assert "half past noon" in bad_time["raw"] and "half past noon" in bad_time["detail"]
    invalid = next(x for x in q if x["reason"] == "invalid_json")
    assert invalid["source"].endswith("invalid.jsonl") and invalid["record_number"] == 2
    # Good records in the same files still made it.
    assert duck(tmp_path / "lake", "cloudtrail", "select count(*) from t").fetchone()[0] == sum(x["written"] for x in s["sources"])
    # --strict fails the run, and quarantine rows are not duplicated by the second run.
    r2, s2 = ingest("cloudtrail", "bad", tmp_path, "--lake", "lake2", "--strict", check=False)
    assert r2.returncode == 1


def test_reingest_adds_nothing_and_repeated_events_are_deduplicated(tmp_path):
    ingest("cloudtrail", ct.SAMPLES, tmp_path, "--lake", "lake")
    _, s = ingest("cloudtrail", ct.SAMPLES, tmp_path, "--lake", "lake")
    assert all(x["skipped"] for x in s["sources"])
    # The same events delivered again in another file (CloudTrail repeats events).
    again = tmp_path / "again"
    again.mkdir()
    (again / "repeat.json").write_text(json.dumps({"Records": ct.sample_records()[:40]}))
    _, s = ingest("cloudtrail", again, tmp_path, "--lake", "lake")
    assert s["sources"][0]["written"] == 0 and s["sources"][0]["duplicates"] == 40
    assert duck(tmp_path / "lake", "cloudtrail", "select count(*) from t").fetchone()[0] == 311


def test_killed_halfway_then_rerun_ends_with_each_record_once(tmp_path):
    records = ct.bulk(24_000, days=2)
    src = tmp_path / "src"
    ct.write_layout(src, ct.delivery_layout(records, per_file=300))
    args = [BIN, "ingest", "cloudtrail", str(src), "--lake", "lake", "--jobs", "1", "--flush-rows", "1500"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((tmp_path / "lake").rglob("part-*.parquet"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = duck(tmp_path / "lake", "cloudtrail", "select count(*) from t").fetchone()[0]
    assert 0 < partial < len(records), partial
    _, s = ingest("cloudtrail", src, tmp_path, "--lake", "lake")
    total, distinct = duck(tmp_path / "lake", "cloudtrail", "select count(*), count(distinct event_id) from t").fetchone()
    assert total == distinct == len(records)
    assert sum(x["duplicates"] for x in s["sources"]) == partial


def test_since_until_prune_on_the_delivery_layout(tmp_path):
    src = tmp_path / "src"
    ct.write_layout(src, ct.delivery_layout(ct.bulk(600, days=3), per_file=100))
    _, s = ingest("cloudtrail", src, tmp_path, "--lake", "lake", "--since", "2026-11-21", "--until", "2026-11-21")
    dates = {r[0] for r in duck(tmp_path / "lake", "cloudtrail", "select distinct date from t").fetchall()}
    assert [str(d) for d in dates] == ["2026-11-21"]
    assert all("/2026/11/21/" in x["source"] for x in s["sources"])


def test_s3_delivery_layout_into_an_s3_lake_and_a_local_lake(tmp_path):
    with seaweedfs(tmp_path) as endpoint:
        env = s3_env(endpoint)
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket="trail")
        s3.create_bucket(Bucket="audit")
        records = ct.sample_records() + ct.bulk(500, days=1)
        files = ct.delivery_layout(records)
        for key, data in files.items():
            s3.put_object(Bucket="trail", Key=key, Body=data)
        # A digest file in the layout is not events and is skipped.
        s3.put_object(Bucket="trail", Key=f"AWSLogs/{ct.ORG}/{ct.ACCOUNT}/CloudTrail-Digest/us-east-1/2026/11/20/d.json.gz",
                      Body=gzip.compress(b'{"digest": true}'))
        _, s = ingest("cloudtrail", "s3://trail/AWSLogs/", tmp_path, "--lake", "s3://audit/lake", env=env)
        assert sum(x["written"] for x in s["sources"]) == len(records)
        assert len(s["sources"]) == len(files)
        fs = pafs.S3FileSystem(endpoint_override=endpoint, access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY,
                               region="us-east-1", scheme="http")
        t = ds.dataset("audit/lake/cloudtrail", filesystem=fs, format="parquet", partitioning="hive").to_table()
        assert t.num_rows == len(records)
        assert set(t.column("event_id").to_pylist()) == {r["eventID"] for r in records}
        # Again into the S3 lake: nothing new.
        _, s = ingest("cloudtrail", "s3://trail/AWSLogs/", tmp_path, "--lake", "s3://audit/lake", env=env)
        assert sum(x["written"] for x in s["sources"]) == 0
        # And from S3 into a local lake.
        _, s = ingest("cloudtrail", "s3://trail/AWSLogs/", tmp_path, "--lake", "local", env=env)
        assert duck(tmp_path / "local", "cloudtrail", "select count(*) from t").fetchone()[0] == len(records)
        # Wrong credentials are refused by the server (it checks signatures).
        bad = dict(env, AWS_SECRET_ACCESS_KEY="not-the-secret")
        r, _ = ingest("cloudtrail", "s3://trail/AWSLogs/", tmp_path, "--lake", "x", env=bad, check=False)
        assert r.returncode == 2


def test_otel_spans_with_every_encoding(tmp_path):
    sample = (REPO / "tests" / "fixtures" / "otlp" / "genai_example.jsonl").read_text()
    line = json.loads(sample.splitlines()[0])
    variant = copy.deepcopy(line)
    span = variant["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    import base64
    span["traceId"] = base64.b64encode(bytes.fromhex("0af7651916cd43dd8448eb211c80319c")).decode()
    span["spanId"] = base64.b64encode(bytes.fromhex("b7ad6b7169203331")).decode()
    span["kind"] = "SPAN_KIND_CLIENT"
    span["startTimeUnixNano"] = 1730217104000000000
    span["status"] = {"code": "STATUS_CODE_OK"}
    span["attributes"] = [a for a in span["attributes"] if a["key"] != "gen_ai.provider.name"] + [
        {"key": "gen_ai.system", "value": {"stringValue": "aws.bedrock"}},
        {"key": "gen_ai.request.temperature", "value": {"doubleValue": 0.2}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 17}},
        {"key": "app.tenant", "value": {"stringValue": "acme"}},
    ]
    broken = copy.deepcopy(line)
    del broken["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    src = tmp_path / "spans.jsonl"
    not_otlp = {"eventVersion": "1.08", "eventName": "InvokeModel"}  # a CloudTrail record fed to `ingest otel`
    src.write_text(sample + json.dumps(variant) + "\n" + json.dumps(broken) + "\n{not json\n"
                   + json.dumps(not_otlp) + "\n")
    _, s = ingest("otel", src, tmp_path, "--lake", "lake")
    q = s["sources"][0]["quarantined"]
    assert q == {"missing_required_field": 1, "invalid_json": 1, "wrong_shape": 1}
    df = dicts(duck(tmp_path / "lake", "genai_spans"))
    # Two sample spans and the variant; the other span of the variant line and of the broken
    # line repeat a sample span.
    assert len(df) == 3
    assert s["sources"][0]["duplicates"] == 2
    v = next(x for x in df if x["trace_id"] == "0af7651916cd43dd8448eb211c80319c")
    assert v["span_id"] == "b7ad6b7169203331"
    assert v["kind"] == "CLIENT" and v["status_code"] == "OK"
    assert v["gen_ai_provider_name"] == "aws.bedrock"
    assert v["gen_ai_request_temperature"] == 0.2
    assert v["gen_ai_usage_output_tokens"] == 17
    assert json.loads(v["attributes"]) == {"app.tenant": "acme"}
    first = next(x for x in df if x["name"].startswith("chat anthropic"))
    assert first["gen_ai_usage_input_tokens"] == 812 and first["server_port"] == 443
    assert first["service_name"] == "llm-gateway"
    assert first["duration_ns"] == 1_250_000_000
    assert first["gen_ai_response_finish_reasons"] == ["end_turn"]


def test_compaction_merges_small_files_keeps_every_row_and_settles(tmp_path):
    records = ct.bulk(900, seed=11, days=3)
    # Three runs of 300 records: three files in each day's partition.
    for i in range(3):
        part = tmp_path / f"part{i}.json"
        part.write_text(json.dumps({"Records": records[i * 300:(i + 1) * 300]}))
        ingest("cloudtrail", part, tmp_path, "--lake", "lake")
    files_before = sorted((tmp_path / "lake" / "cloudtrail").glob("date=*/*.parquet"))
    days = {f.parent.name for f in files_before}
    assert len(days) == 3 and len(files_before) == 9
    before = duck(tmp_path / "lake", "cloudtrail", "select event_id, event_time, event_name from t order by event_id").fetchall()

    out = run(["ingest", "compact", "--lake", "lake", "--table", "cloudtrail"], cwd=tmp_path).stdout
    assert "3 partition(s) compacted, 9 file(s) -> 3, 900 rows" in out, out
    files_after = sorted((tmp_path / "lake" / "cloudtrail").glob("date=*/*.parquet"))
    assert len(files_after) == 3 and {f.parent.name for f in files_after} == days
    after = duck(tmp_path / "lake", "cloudtrail", "select event_id, event_time, event_name from t order by event_id").fetchall()
    assert after == before and len({r[0] for r in after}) == 900
    # Rows stay sorted by time inside each file, and pyarrow reads the result too.
    for f in files_after:
        times = pq.read_table(f, columns=["event_time"]).column("event_time").to_pylist()
        assert times == sorted(times)
    assert ds.dataset(tmp_path / "lake" / "cloudtrail", format="parquet", partitioning="hive").count_rows() == 900

    # Nothing left to do: a second run changes nothing.
    out = run(["ingest", "compact", "--lake", "lake", "--table", "cloudtrail"], cwd=tmp_path).stdout
    assert "0 partition(s) compacted" in out, out
    assert sorted((tmp_path / "lake" / "cloudtrail").glob("date=*/*.parquet")) == files_after
    # The same records from a source the manifest does not know: de-duplicated against the
    # compacted files.
    (tmp_path / "again.json").write_text((tmp_path / "part0.json").read_text())
    _, s = ingest("cloudtrail", tmp_path / "again.json", tmp_path, "--lake", "lake")
    assert sum(x["written"] for x in s["sources"]) == 0
    assert sum(x["duplicates"] for x in s["sources"]) == 300

    # The manifest: one file per run, an entry a line.
    manifest = tmp_path / "lake" / "_manifest" / "cloudtrail"
    runs = sorted(manifest.glob("run-*.jsonl"))
    assert len(runs) == 4 and len(list(manifest.iterdir())) == 4
    entries = [json.loads(line) for r in runs for line in r.read_text().splitlines()]
    assert sorted(os.path.basename(e["uri"]) for e in entries) == ["again.json", "part0.json", "part1.json", "part2.json"]
    # An entry in the per-source form earlier versions wrote is still honoured.
    legacy = tmp_path / "legacy.json"
    legacy.write_text((tmp_path / "part1.json").read_text())
    st = legacy.stat()
    uri = str(legacy)
    (manifest / (hashlib.sha256(uri.encode()).hexdigest() + ".json")).write_text(json.dumps({
        "uri": uri, "size": st.st_size, "version": str(st.st_mtime_ns), "sha256": "0" * 64,
        "records_read": 300, "rows_written": 0, "duplicates": 300, "quarantined": 0,
        "ingested_at": "2026-11-30T00:00:00Z"}))
    _, s = ingest("cloudtrail", legacy, tmp_path, "--lake", "lake")
    assert s["sources"][0]["skipped"], s["sources"][0]
