"""Bundles in the lake: `cairn ingest bundles` verifies each bundle on the way in (a tampered or
foreign one is quarantined, never written), the gateway deposits every bundle it loads, and the
reconcile report joins a Bedrock call in CloudTrail to its decision, the text of the policies
that determined it and the commit they came from (known answers from a real git repository)."""

import copy
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import uuid

import duckdb
import httpx
import pytest

import ct_fixtures as ct
from conftest import REPO, run
from gateway_harness import ALICE_KEY, Gateway, base_config, chat_body, refuses_service
from record_writer import SegmentWriter, decision, outcome
from servers import s3_client, s3_env, seaweedfs


def git(d, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", *args], cwd=d, check=True, capture_output=True, text=True, env=env).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A policy repository with one commit and a remote whose URL carries a token."""
    d = tmp_path_factory.mktemp("policy-repo")
    shutil.copytree(REPO / "policies", d / "policies")
    git(d, "init", "-q")
    git(d, "add", "policies")
    git(d, "commit", "-q", "-m", "reviewed policies")
    git(d, "remote", "add", "origin", "https://x-access-token:ghs_secret@git.example.com/acme/policies.git")
    run(["keys", "generate", "--out", "keys"], cwd=d)
    r = run(["policy", "bundle", "--key", "keys/signing.key", "--out", "bundles/reviewed.tar", "--format", "json",
             "--source-repository", git(d, "remote", "get-url", "origin")], cwd=d)
    made = json.loads(r.stdout)
    made["commit"] = git(d, "rev-parse", "HEAD")
    return d, made


def bedrock_call(when, session, source_identity):
    base = next(r for r in ct.sample_records() if r["eventName"] == "InvokeModel")
    r = copy.deepcopy(base)
    r.update({"eventID": str(uuid.uuid4()), "eventTime": when, "eventName": "InvokeModel",
              "eventSource": "bedrock.amazonaws.com",
              "requestParameters": {"modelId": "anthropic.claude-3-5-sonnet-20240620-v1:0"}})
    ui = r["userIdentity"]
    ui["type"] = "AssumedRole"
    ui["arn"] = f"arn:aws:sts::111122223333:assumed-role/cairn-bedrock/{session}"
    ui.setdefault("sessionContext", {})["sourceIdentity"] = source_identity
    return r


def test_a_call_leads_to_its_decision_policies_text_and_commit(repo):
    d, made = repo
    digest, commit = made["digest"], made["commit"]
    assert made["manifest"]["source_commit"] == commit
    # The remote's token never reaches the manifest.
    assert made["manifest"]["source_repository"] == "https://git.example.com/acme/policies.git"

    w = SegmentWriter(d / "records", (d / "keys" / "signing.key").read_bytes())
    dec = w.append(decision("2026-11-21T10:00:00.000Z", 'User::"carol"', "research", "claude-sonnet", "allow",
                            provider="bedrock", reasons=["users-invoke-models"], bundle=digest,
                            extra={"role_session_name": "cairn-carol", "source_identity": "carol"}))
    w.append(outcome("2026-11-21T10:00:05.000Z", dec["id"], "claude-sonnet", "bedrock", 400, 200, 0.05))
    # A decision by a bundle nobody ingested.
    w.append(decision("2026-11-21T11:00:00.000Z", 'User::"dave"', "research", "claude-haiku", "allow",
                      reasons=["users-invoke-models"], bundle="sha256:" + "cd" * 32))
    w.close("2026-11-21T23:00:00.000Z")
    (d / "ct.json").write_text(json.dumps({"Records": [bedrock_call("2026-11-21T10:00:02Z", "cairn-carol", "carol")]}))
    run(["ingest", "decisions", "records", "--pubkey", "keys/signing.pub", "--lake", "lake"], cwd=d)
    run(["ingest", "cloudtrail", "ct.json", "--lake", "lake"], cwd=d)
    r = run(["ingest", "bundles", "bundles", "--pubkey", "keys/signing.pub", "--lake", "lake"], cwd=d)
    assert "1 bundle, 25 policies" in r.stdout, r.stdout

    out = run(["report", "reconcile", "--lake", "lake", "--format", "json", "--from", "2026-11-21", "--to", "2026-11-21"],
              cwd=d)
    sections = {k: v["rows"] for k, v in json.loads(out.stdout)["reports"][0]["sections"].items()}
    [row] = sections["provenance"]
    assert row["decision_id"] == dec["id"]
    assert row["policy_id"] == "users-invoke-models"
    assert row["source_commit"] == commit
    assert row["source_repository"] == "https://git.example.com/acme/policies.git"
    assert row["bundle"] == digest
    text = (d / "policies" / "models.cedar").read_text()
    assert row["policy_text"] in text and row["policy_text"].startswith('@id("users-invoke-models")')
    line = text[: text.index(row["policy_text"])].count("\n") + 1
    assert row["policy_at"] == f"policies/models.cedar:{line}"
    assert [m["bundle"] for m in sections["bundles_missing"]] == ["sha256:" + "cd" * 32]

    ev = run(["report", "access", "--lake", "lake", "--format", "json", "--from", "2026-11-21", "--to", "2026-11-21"],
             cwd=d)
    evidence = json.loads(ev.stdout)["evidence"]["sections"]["bundles"]["rows"]
    by_digest = {b["bundle"]: b for b in evidence}
    assert by_digest[digest]["source_commit"] == commit
    assert by_digest["sha256:" + "cd" * 32]["source_commit"] == "(bundle not in the lake)"

    # The same tables read by DuckDB with no Cairn code: every policy of the bundle, in its file.
    con = duckdb.connect()
    n, files = con.execute(
        f"SELECT count(*), count(DISTINCT file) FROM read_parquet('{d}/lake/policies/*/*.parquet', hive_partitioning = true)"
        f" WHERE bundle = '{digest}'").fetchone()
    assert (n, files) == (25, len(list((d / "policies").glob("*.cedar"))))
    assert con.execute(
        f"SELECT source_commit FROM read_parquet('{d}/lake/bundles/*/*.parquet', hive_partitioning = true)"
    ).fetchall() == [(commit,)]


def flip_in_member(src, dst, member):
    """A copy of the bundle with one byte of `member`'s data changed (its header left alone)."""
    data = bytearray(src.read_bytes())
    with tarfile.open(src) as t:
        info = t.getmember(member)
    data[info.offset_data] ^= 0x01
    dst.write_bytes(bytes(data))


def test_a_tampered_or_foreign_bundle_is_quarantined_with_why(repo, tmp_path):
    d, _ = repo
    (tmp_path / "in").mkdir()
    flip_in_member(d / "bundles" / "reviewed.tar", tmp_path / "in" / "tampered.tar", "policies/models.cedar")
    shutil.copy(d / "bundles" / "reviewed.tar", tmp_path / "in" / "good.tar")
    (tmp_path / "in" / "notes.txt").write_text("not a bundle")
    run(["keys", "generate", "--out", "other"], cwd=tmp_path)
    r = run(["ingest", "bundles", "in", "--pubkey", str(d / "keys" / "signing.pub"), "--lake", "lake",
             "--format", "json"], cwd=tmp_path)
    s = json.loads(r.stdout)
    by = {x["source"].rsplit("/", 1)[1]: x for x in s["sources"]}
    assert by["good.tar"]["written"] == 1 and by["good.tar"]["kinds"] == {"bundles": 1, "policies": 25}
    assert by["tampered.tar"]["written"] == 0 and by["tampered.tar"]["quarantined"] == {"bundle_rejected": 1}
    assert [k["reason"] for k in s["skipped"]] == ["not a policy bundle (read: .tar; or name the file itself)"]
    q = duckdb.connect().execute(
        f"SELECT reason, detail FROM read_parquet('{tmp_path}/lake/_quarantine/*/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert len(q) == 1 and q[0][0] == "bundle_rejected"
    assert "tampered.tar" in q[0][1] and "policies/models.cedar" in q[0][1], q

    # Signed by another key: quarantined, and not remembered as ingested, so the right key
    # later reads it.
    foreign = run(["ingest", "bundles", "in/good.tar", "--pubkey", "other/signing.pub", "--lake", "lake2",
                   "--strict"], cwd=tmp_path, check=False)
    assert foreign.returncode == 1 and "bundle_rejected 1" in foreign.stdout, foreign.stdout
    again = run(["ingest", "bundles", "in/good.tar", "--pubkey", str(d / "keys" / "signing.pub"), "--lake", "lake2"],
                cwd=tmp_path)
    assert "1 bundle, 25 policies" in again.stdout, again.stdout


def depositing_gateway(repo, tmp_path):
    """A gateway enforcing the repository's bundle, keeping what it loads in tmp_path/deposit."""
    d, _ = repo
    shutil.copytree(d / "keys", tmp_path / "keys")
    shutil.copy(d / "bundles" / "reviewed.tar", tmp_path / "bundle.tar")
    return Gateway(tmp_path, base_config(tmp_path), env={"CAIRN_POLICY__DEPOSIT_DIR": str(tmp_path / "deposit")})


def test_the_gateway_deposits_every_bundle_it_loads(repo, tmp_path):
    d, made = repo
    gw = depositing_gateway(repo, tmp_path).start()
    try:
        r = httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(),
                       headers={"authorization": f"Bearer {ALICE_KEY}"})
        assert r.status_code == 200, r.text
    finally:
        gw.stop()
    bundle = (d / "bundles" / "reviewed.tar").read_bytes()
    kept = tmp_path / "deposit" / (hashlib.sha256(bundle).hexdigest() + ".tar")
    assert kept.read_bytes() == bundle
    run(["ingest", "decisions", "records", "--pubkey", "keys/signing.pub", "--lake", "lake"], cwd=tmp_path)
    run(["ingest", "bundles", "deposit", "--pubkey", "keys/signing.pub", "--lake", "lake"], cwd=tmp_path)
    # Every decision's bundle is in the lake: the deposited one.
    counts = run(["query", "--lake", "lake", "--format", "json",
                  "SELECT count(*) AS decisions, count(DISTINCT d.bundle) AS bundles, count(b.digest) AS in_lake"
                  " FROM decisions d LEFT JOIN bundles b ON b.digest = d.bundle"],
                 cwd=tmp_path)
    [c] = json.loads(counts.stdout)
    assert c["decisions"] >= 1 and c["bundles"] == 1 and c["in_lake"] == c["decisions"], c


def test_a_deposit_directory_that_cannot_be_written_keeps_the_bundle_from_loading(repo, tmp_path):
    gw = depositing_gateway(repo, tmp_path)
    (tmp_path / "deposit").write_text("a file where the directory should be")
    assert "policy.deposit_dir" in refuses_service(gw)


def test_the_gateway_deposits_to_s3_and_the_lake_ingests_from_there(repo, tmp_path):
    d, made = repo
    with seaweedfs(tmp_path) as endpoint:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket="bundles")
        gw = depositing_gateway(repo, tmp_path)
        gw.env = dict(s3_env(endpoint), CAIRN_POLICY__DEPOSIT_DIR="s3://bundles/deposit")
        gw.start()
        gw.stop()
        bundle = (d / "bundles" / "reviewed.tar").read_bytes()
        kept = s3.get_object(Bucket="bundles", Key="deposit/" + hashlib.sha256(bundle).hexdigest() + ".tar")
        assert kept["Body"].read() == bundle
        s3.put_object(Bucket="bundles", Key="deposit/readme.txt", Body=b"not a bundle")
        r = run(["ingest", "bundles", "s3://bundles/deposit/", "--pubkey", str(d / "keys" / "signing.pub"),
                 "--lake", "lake", "--format", "json"], cwd=tmp_path, env=s3_env(endpoint))
        s = json.loads(r.stdout)
        assert [x["kinds"] for x in s["sources"]] == [{"bundles": 1, "policies": 25}], s
        assert [k["source"] for k in s["skipped"]] == ["s3://bundles/deposit/readme.txt"]
    got = duckdb.connect().execute(
        f"SELECT digest FROM read_parquet('{tmp_path}/lake/bundles/*/*.parquet', hive_partitioning = true)").fetchall()
    assert got == [(made["digest"],)]



def test_a_deposit_name_taken_by_other_bytes_keeps_the_bundle_from_loading(repo, tmp_path):
    d, _ = repo
    gw = depositing_gateway(repo, tmp_path)
    bundle = (d / "bundles" / "reviewed.tar").read_bytes()
    (tmp_path / "deposit").mkdir()
    (tmp_path / "deposit" / (hashlib.sha256(bundle).hexdigest() + ".tar")).write_bytes(b"planted")
    assert "with other contents" in refuses_service(gw)
