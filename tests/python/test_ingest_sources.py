"""Decision records into the lake (verified on the way, tampering quarantined) and CloudTrail's
LookupEvents API from a fake endpoint that checks SigV4 with botocore."""

import json
import re
import shutil
import time

import duckdb
import httpx

import ct_fixtures as ct
import sigv4
from background import BackgroundServer, QuietHandler
from conftest import run
from gateway_harness import ALICE_KEY, CI_KEY, Gateway, base_config, chat_body, make_signed_bundle


def ingest(args, cwd, env=None, check=True):
    r = run(["ingest", *args, "--format", "json"], cwd=cwd, env=env, check=check)
    return json.loads(r.stdout)


def q(lake, sql):
    con = duckdb.connect()
    for t in ["decisions", "outcomes", "_quarantine", "cloudtrail"]:
        import glob
        if glob.glob(f"{lake}/{t}/*/*.parquet"):
            con.execute(f"create view \"{t}\" as select * from read_parquet('{lake}/{t}/*/*.parquet', hive_partitioning=true)")
    return con.execute(sql).fetchall()


def test_decision_records_are_verified_into_the_lake(workdir):
    make_signed_bundle(workdir)
    gw = Gateway(workdir, base_config(workdir)).start()
    sent = []
    for i in range(12):
        key = ALICE_KEY if i % 3 else CI_KEY
        model = ["claude-haiku", "claude-sonnet", "claude-opus"][i % 3]
        r = httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(model=model, stream=i % 4 == 0),
                       headers={"authorization": f"Bearer {key}"})
        r.read()
        sent.append((r.headers["x-cairn-decision-id"], r.status_code))
    gw.stop()
    s = ingest(["decisions", "records", "--pubkey", "keys/signing.pub", "--lake", "lake"], cwd=workdir)
    assert not any(x["quarantined"] for x in s["sources"])
    kinds = {k: sum(x.get("kinds", {}).get(k, 0) for x in s["sources"]) for k in ["decisions", "outcomes", "seals"]}
    assert kinds["decisions"] == len(sent) and kinds["seals"] >= 1
    assert sum(kinds.values()) == sum(x["read"] for x in s["sources"]), "every record read is of one kind"
    human = run(["ingest", "decisions", "records", "--pubkey", "keys/signing.pub", "--lake", "lake2"], cwd=workdir).stdout
    seals = "1 seal" if kinds["seals"] == 1 else f"{kinds['seals']} seals"
    assert f"records read (verified: {kinds['decisions']} decisions, {kinds['outcomes']} outcomes, {seals})" in human, human
    rows = dict(q(workdir / "lake", "select id, status from decisions"))
    assert set(rows) == {i for i, _ in sent}
    allowed = {i for i, st in sent if st == 200}
    joined = q(workdir / "lake", "select d.id, o.output_tokens, o.cost_usd from decisions d join outcomes o on o.decision_id = d.id")
    assert {j[0] for j in joined} == allowed
    assert all(j[1] > 0 and j[2] > 0 for j in joined)
    assert q(workdir / "lake", "select count(*) from decisions where decision = 'deny' and list_contains(reasons, 'premium-models-ml-platform')")[0][0] > 0
    # Again: nothing new.
    s = ingest(["decisions", "records", "--pubkey", "keys/signing.pub", "--lake", "lake"], cwd=workdir)
    assert sum(x["written"] for x in s["sources"]) == 0

    # A copy with one record altered: that record is quarantined, named by segment and line.
    shutil.copytree(workdir / "records", workdir / "tampered")
    seg = sorted((workdir / "tampered").glob("segment-*.jsonl"))[0]
    lines = seg.read_text().splitlines(keepends=True)
    altered = re.sub(r'"ts":"(\d{4})', lambda m: '"ts":"%04d' % (int(m.group(1)) - 1), lines[4], count=1)
    assert altered != lines[4]
    lines[4] = altered
    seg.write_text("".join(lines))
    s = ingest(["decisions", "tampered", "--pubkey", "keys/signing.pub", "--lake", "lake2"], cwd=workdir)
    assert s["sources"][0]["quarantined"] == {"record_altered": 1}
    qrow = q(workdir / "lake2", "select source, record_number, reason, detail from _quarantine")[0]
    assert qrow[1] == 5 and qrow[2] == "record_altered"
    assert f"{seg.name}:5" in qrow[3]
    # The wrong key quarantines everything, it does not ingest it.
    run(["keys", "generate", "--out", "other"], cwd=workdir)
    s = ingest(["decisions", "records", "--pubkey", "other/signing.pub", "--lake", "lake3"], cwd=workdir)
    assert sum(x["written"] for x in s["sources"]) == 0
    assert sum(x["quarantined"].get("record_altered", 0) for x in s["sources"]) == sum(x["read"] for x in s["sources"])


class LookupEventsFake(BackgroundServer):
    """CloudTrail's JSON protocol for LookupEvents, paged, rejecting any request whose SigV4
    signature does not verify with botocore."""

    def __init__(self, events, secrets, page=4):
        self.events, self.secrets, self.page = events, secrets, page
        self.calls, self.rejected = [], 0
        fake = self

        class H(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                ok, _, why = sigv4.verify("POST", f"http://{self.headers['host']}{self.path}", dict(self.headers), body, fake.secrets)
                if not ok:
                    fake.rejected += 1
                    self.reply(403, {"__type": "InvalidSignatureException", "message": why})
                    return
                target = self.headers.get("x-amz-target", "")
                if not target.endswith("LookupEvents"):
                    self.reply(400, {"__type": "UnknownOperationException"})
                    return
                fake.calls.append(time.monotonic())
                req = json.loads(body or b"{}")
                start = int(req.get("NextToken", "0"))
                chunk = fake.events[start:start + fake.page]
                out = {"Events": [{"EventId": e["eventID"], "EventName": e["eventName"],
                                   "EventSource": e["eventSource"], "EventTime": time.time(),
                                   "CloudTrailEvent": json.dumps(e)} for e in chunk]}
                if start + fake.page < len(fake.events):
                    out["NextToken"] = str(start + fake.page)
                self.reply(200, out)

            def reply(self, status, obj):
                self.respond(status, json.dumps(obj).encode(), "application/x-amz-json-1.1")

        self.serve(H)


def test_an_unreadable_segment_holds_back_the_later_ones_until_it_reads(workdir):
    """A segment that cannot be read is retried by the next run, and the segments after it wait
    for it, so the chain is checked in order and no record is quarantined for the gap."""
    make_signed_bundle(workdir)
    config = base_config(workdir).replace("[records]\n", "[records]\nsegment_max_bytes = 4096\n", 1)
    gw = Gateway(workdir, config).start()
    for i in range(12):
        httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(model="claude-haiku"),
                   headers={"authorization": f"Bearer {ALICE_KEY}"}).read()
    gw.stop()
    segments = sorted((workdir / "records").glob("segment-*.jsonl"))
    assert len(segments) >= 3, segments
    good = segments[1].read_bytes()
    # The second segment cannot be opened (here: a link to nowhere, as a lost mount would be).
    segments[1].unlink()
    segments[1].symlink_to(workdir / "gone" / segments[1].name)
    args = ["decisions", "records", "--pubkey", "keys/signing.pub", "--lake", "lake"]
    s = ingest(args, cwd=workdir)
    by = {x["source"].rsplit("/", 1)[1]: x for x in s["sources"]}
    assert by[segments[0].name]["written"] > 0
    assert "next run" in (by[segments[1].name]["error"] or "")
    for later in segments[2:]:
        assert "not read yet" in (by[later.name]["skipped"] or ""), by[later.name]
    # Readable again: the next run reads it and the ones after, in order, with nothing broken.
    segments[1].unlink()
    segments[1].write_bytes(good)
    s = ingest(args, cwd=workdir)
    assert all("chain_broken" not in x["quarantined"] for x in s["sources"]), s["sources"]
    total = sum(1 for seg in segments for line in seg.read_text().splitlines()
                if json.loads(line)["kind"] != "seal")
    rows = q(workdir / "lake", "select (select count(*) from decisions) + (select count(*) from outcomes)")[0][0]
    assert rows == total


def test_lookup_events_pages_at_two_requests_a_second(tmp_path):
    events = ct.sample_records()[:13]
    with LookupEventsFake(events, {"AKIDLOOKUPTEST": ("lookup-secret", None)}) as fake:
        env = {"AWS_ACCESS_KEY_ID": "AKIDLOOKUPTEST", "AWS_SECRET_ACCESS_KEY": "lookup-secret",
               "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": fake.url, "AWS_EC2_METADATA_DISABLED": "true"}
        s = ingest(["cloudtrail", "--lookup", "--lake", "lake"], cwd=tmp_path, env=env)
        assert s["sources"][0]["written"] == len(events)
        assert fake.rejected == 0 and len(fake.calls) == 4
        gaps = [b - a for a, b in zip(fake.calls, fake.calls[1:])]
        assert min(gaps) >= 0.45, gaps
        assert q(tmp_path / "lake", "select count(*) from cloudtrail")[0][0] == len(events)
        # Signed with another secret: the fake refuses, the ingest fails with the reason.
        bad = dict(env, AWS_SECRET_ACCESS_KEY="wrong")
        r = run(["ingest", "cloudtrail", "--lookup", "--lake", "lake2"], cwd=tmp_path, env=bad, check=False)
        assert r.returncode == 2 and fake.rejected == 1
        assert "InvalidSignature" in r.stderr or "signature" in r.stderr.lower()


def test_ingest_output_stays_short_with_many_sources(tmp_path):
    files = ct.delivery_layout(ct.sample_records(), per_file=2)
    assert len(files) > 10, len(files)
    ct.write_layout(tmp_path / "trail", files)
    first = run(["ingest", "cloudtrail", "trail", "--lake", "lake"], cwd=tmp_path).stdout
    assert f"{len(files)} source(s) read (listed with --verbose" in first
    assert len(first.splitlines()) < 6, first
    verbose = run(["ingest", "cloudtrail", "trail", "--lake", "lake2", "--verbose"], cwd=tmp_path).stdout
    assert sum(1 for line in verbose.splitlines() if ".json.gz" in line) == len(files)
    again = run(["ingest", "cloudtrail", "trail", "--lake", "lake"], cwd=tmp_path).stdout
    assert f"{len(files)} source(s) already ingested, unchanged" in again
    assert ".json.gz" not in again and len(again.splitlines()) == 2, again
