"""CloudTrail's digest files checked offline (`cairn ingest cloudtrail --verify-integrity`), on a
delivery layout built here the way CloudTrail builds it: hourly digests listing each log file's
SHA-256, signed with RSA (SHA256withRSA, PKCS #1 v1.5) over the documented signing string with a
key made in the test, chained by previousDigestSignature. Each kind of tampering is named."""

import base64
import gzip
import hashlib
import json
import shutil

import duckdb
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import ct_fixtures as ct
from conftest import run
from servers import s3_client, s3_env, seaweedfs

ACCOUNT, REGION, BUCKET = "111122223333", "us-east-1", "trail-bucket"
DAY = "AWSLogs/{a}/{kind}/{r}/2026/11/21".format


def log_key(hour, n):
    return f"{DAY(a=ACCOUNT, kind='CloudTrail', r=REGION)}/{ACCOUNT}_CloudTrail_{REGION}_20261121T{hour:02d}{n}5Z_f{hour}{n}.json.gz"


def digest_key(hour):
    return f"{DAY(a=ACCOUNT, kind='CloudTrail-Digest', r=REGION)}/{ACCOUNT}_CloudTrail-Digest_{REGION}_trail_{REGION}_20261121T{hour:02d}0000Z.json.gz"


KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
DER = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
FINGERPRINT = hashlib.md5(DER).hexdigest()


def sign(text: str) -> str:
    return KEY.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256()).hex()


def build(root):
    """Two chained digests (11:00 lists two logs of 10h, 12:00 two of 11h) and one log no digest
    lists. Returns {key: bytes} of what CloudTrail would deliver, and each digest's signature."""
    events = ct.sample_records()
    files, logs = {}, {}
    for i, (hour, n) in enumerate([(10, 1), (10, 2), (11, 1), (11, 2), (11, 3)]):
        body = json.dumps({"Records": events[i * 5:(i + 1) * 5]}).encode()
        files[log_key(hour, n)] = gzip.compress(body)
        logs[(hour, n)] = hashlib.sha256(body).hexdigest()
    signatures, previous = {}, None
    for end, hour in [(11, 10), (12, 11)]:
        key = digest_key(end)
        digest = {
            "awsAccountId": ACCOUNT, "digestStartTime": f"2026-11-21T{hour:02d}:00:00Z",
            "digestEndTime": f"2026-11-21T{end:02d}:00:00Z", "digestS3Bucket": BUCKET, "digestS3Object": key,
            "digestPublicKeyFingerprint": FINGERPRINT, "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": f"2026-11-21T{hour:02d}:59:00Z", "oldestEventTime": f"2026-11-21T{hour:02d}:01:00Z",
            "previousDigestS3Bucket": BUCKET if previous else None,
            "previousDigestS3Object": previous[0] if previous else None,
            "previousDigestHashValue": previous[1] if previous else None,
            "previousDigestHashAlgorithm": "SHA-256" if previous else None,
            "previousDigestSignature": previous[2] if previous else None,
            "logFiles": [{"s3Bucket": BUCKET, "s3Object": log_key(hour, n), "hashValue": logs[(hour, n)],
                          "hashAlgorithm": "SHA-256", "newestEventTime": f"2026-11-21T{hour:02d}:59:00Z",
                          "oldestEventTime": f"2026-11-21T{hour:02d}:01:00Z"} for n in (1, 2)],
        }
        body = json.dumps(digest).encode()
        sha = hashlib.sha256(body).hexdigest()
        prev_sig = previous[2] if previous else "null"
        signatures[key] = sign(f"{digest['digestEndTime']}\n{BUCKET}/{key}\n{sha}\n{prev_sig}")
        files[key] = gzip.compress(body)
        previous = (key, sha, signatures[key])
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    # A local copy keeps the newest digest's signature (S3 metadata) beside it; the older one's
    # is in the newest digest's previousDigestSignature.
    newest = digest_key(12)
    (root / (newest + ".sig")).write_text(signatures[newest])
    return files, signatures


@pytest.fixture
def trail(tmp_path):
    root = tmp_path / "copy"
    files, signatures = build(root)
    (tmp_path / "keys.json").write_text(json.dumps({"PublicKeyList": [{
        "Value": base64.b64encode(DER).decode(), "ValidityStartTime": "2026-11-01T00:00:00Z",
        "ValidityEndTime": "2026-12-01T00:00:00Z", "Fingerprint": FINGERPRINT}]}))
    return tmp_path, root, files, signatures


def ingest(d, src="copy", lake="lake", env=None):
    r = run(["ingest", "cloudtrail", src, "--verify-integrity", "--public-keys", "keys.json", "--lake", lake,
             "--format", "json"], cwd=d, env=env)
    return json.loads(r.stdout)


def verdicts(d, lake="lake"):
    rows = duckdb.connect().execute(
        f"SELECT kind, file, integrity, detail FROM read_parquet('{d}/{lake}/cloudtrail_files/*/*.parquet',"
        " hive_partitioning = true)").fetchall()
    return {(k, f.split("AWSLogs/", 1)[1].rsplit("/", 1)[1]): (state, detail) for k, f, state, detail in rows}


def name(key):
    return key.rsplit("/", 1)[1]


def test_an_untouched_copy_verifies_and_every_row_says_so(trail):
    d, _, _, _ = trail
    s = ingest(d)
    assert s["integrity"] == {"digests verified": 2, "logs verified": 4, "logs no_digest": 1}, s["integrity"]
    by_state = dict(duckdb.connect().execute(
        f"SELECT integrity, count(*) FROM read_parquet('{d}/lake/cloudtrail/*/*.parquet', hive_partitioning = true)"
        " GROUP BY 1").fetchall())
    assert by_state == {"verified": 20, "no_digest": 5}, by_state
    r = run(["report", "access", "--lake", "lake", "--format", "json", "--from", "2026-11-21", "--to", "2026-11-21"],
            cwd=d)
    ev = json.loads(r.stdout)["evidence"]["sections"]
    states = {row["integrity"]: row["files"] for row in ev["cloudtrail_integrity"]["rows"]}
    assert states == {"verified": 6, "no_digest": 1}, states
    [unverified] = ev["cloudtrail_unverified"]["rows"]
    assert unverified["integrity"] == "no_digest" and unverified["file"].endswith(name(log_key(11, 3)))


def rewrite_log(root, key):
    body = json.loads(gzip.decompress((root / key).read_bytes()))
    body["Records"][0]["eventName"] = "Nothing to see here"
    (root / key).write_bytes(gzip.compress(json.dumps(body).encode()))


def alter_digest(root, key):
    body = json.loads(gzip.decompress((root / key).read_bytes()))
    body["newestEventTime"] = "2026-11-21T11:30:00Z"
    (root / key).write_bytes(gzip.compress(json.dumps(body).encode()))


def flip_signature(root, key):
    sig = (root / (key + ".sig")).read_text()
    (root / (key + ".sig")).write_text(("1" if sig[0] != "1" else "2") + sig[1:])


@pytest.mark.parametrize("tamper,expect", [
    ("log file", {("log", name(log_key(11, 1))): "hash_mismatch", ("log", name(log_key(11, 2))): "verified",
                  ("digest", name(digest_key(12))): "verified"}),
    ("digest", {("digest", name(digest_key(12))): "bad_signature", ("log", name(log_key(11, 1))): "bad_signature",
                ("digest", name(digest_key(11))): "verified", ("log", name(log_key(10, 1))): "verified"}),
    ("signature", {("digest", name(digest_key(12))): "bad_signature", ("log", name(log_key(11, 2))): "bad_signature"}),
    ("chain link", {("digest", name(digest_key(12))): "chain_gap", ("log", name(log_key(11, 1))): "chain_gap",
                    ("log", name(log_key(10, 1))): "no_digest"}),
    ("removed log", {("log", name(log_key(10, 2))): "missing", ("digest", name(digest_key(11))): "verified"}),
])
def test_each_kind_of_tampering_is_named(trail, tamper, expect):
    d, root, _, _ = trail
    if tamper == "log file":
        rewrite_log(root, log_key(11, 1))
    elif tamper == "digest":
        alter_digest(root, digest_key(12))
    elif tamper == "signature":
        flip_signature(root, digest_key(12))
    elif tamper == "chain link":
        (root / digest_key(11)).unlink()
    elif tamper == "removed log":
        (root / log_key(10, 2)).unlink()
    ingest(d)
    got = verdicts(d)
    for k, state in expect.items():
        assert got[k][0] == state, (tamper, k, got[k])
    if tamper == "log file":
        assert "the file was changed" in got[("log", name(log_key(11, 1)))][1]
    if tamper == "chain link":
        assert name(digest_key(11)) in got[("digest", name(digest_key(12)))][1]


def test_a_key_of_another_fingerprint_is_named(trail):
    d, _, _, _ = trail
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    (d / "keys.json").write_text(json.dumps({"PublicKeyList": [
        {"Value": base64.b64encode(other).decode(), "Fingerprint": "00" * 16}]}))
    ingest(d)
    state, detail = verdicts(d)[("digest", name(digest_key(12)))]
    assert state == "bad_signature" and FINGERPRINT in detail, detail


def test_bad_key_files_are_usage_errors(trail):
    d, _, _, _ = trail
    (d / "keys.json").write_text("{}")
    r = run(["ingest", "cloudtrail", "copy", "--verify-integrity", "--public-keys", "keys.json", "--lake", "lake"],
            cwd=d, check=False)
    assert r.returncode == 2 and "list-public-keys" in r.stderr, r.stderr
    r = run(["ingest", "cloudtrail", "copy", "--verify-integrity", "--lake", "lake"], cwd=d, check=False)
    assert r.returncode == 2 and "--public-keys" in r.stderr, r.stderr


def test_on_s3_the_signature_comes_from_the_object_metadata(trail):
    d, root, files, signatures = trail
    with seaweedfs(d) as endpoint:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET)
        for key, data in files.items():
            meta = {"signature": signatures[key], "signature-algorithm": "SHA256withRSA"} if key in signatures else {}
            s3.put_object(Bucket=BUCKET, Key=key, Body=data, Metadata=meta)
        s = ingest(d, src=f"s3://{BUCKET}/AWSLogs/", lake="s3lake", env=s3_env(endpoint))
        assert s["integrity"] == {"digests verified": 2, "logs verified": 4, "logs no_digest": 1}, s["integrity"]
        # The newest digest's metadata altered: caught, though its content is untouched.
        s3.put_object(Bucket=BUCKET, Key=digest_key(12), Body=files[digest_key(12)],
                      Metadata={"signature": signatures[digest_key(11)], "signature-algorithm": "SHA256withRSA"})
        ingest(d, src=f"s3://{BUCKET}/AWSLogs/", lake="s3lake2", env=s3_env(endpoint))
        assert verdicts(d, "s3lake2")[("digest", name(digest_key(12)))][0] == "bad_signature"


def test_strict_fails_on_a_file_that_does_not_verify(trail):
    d, root, _, _ = trail
    rewrite_log(root, log_key(10, 1))
    r = run(["ingest", "cloudtrail", "copy", "--verify-integrity", "--public-keys", "keys.json", "--lake", "lake",
             "--strict"], cwd=d, check=False)
    assert r.returncode == 1 and "1 CloudTrail file(s) did not verify" in r.stderr, r.stdout + r.stderr
    # A copy with no failure passes --strict (a log no digest lists is not a failure).
    shutil.rmtree(root)
    build(root)
    ok = run(["ingest", "cloudtrail", "copy", "--verify-integrity", "--public-keys", "keys.json", "--lake", "lake2",
              "--strict"], cwd=d, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_date_window_judges_only_the_files_inside_it(trail):
    d, _, _, _ = trail
    r = run(["ingest", "cloudtrail", "copy", "--verify-integrity", "--public-keys", "keys.json", "--lake", "lake",
             "--since", "2026-11-22", "--format", "json"], cwd=d)
    # Every log of the copy is of the 21st: none is judged, and none is called missing.
    assert json.loads(r.stdout).get("integrity", {}) == {}, r.stdout
    inside = run(["ingest", "cloudtrail", "copy", "--verify-integrity", "--public-keys", "keys.json", "--lake", "lake2",
                  "--since", "2026-11-21", "--until", "2026-11-21", "--format", "json"], cwd=d)
    assert json.loads(inside.stdout)["integrity"] == {"digests verified": 2, "logs verified": 4, "logs no_digest": 1}


def test_a_replaced_previous_digest_breaks_the_chain(trail):
    d, root, _, _ = trail
    # The older digest replaced by another validly signed one (same key, other content): the
    # newer digest's previousDigestHashValue no longer matches it.
    body = json.loads(gzip.decompress((root / digest_key(11)).read_bytes()))
    body["logFiles"] = body["logFiles"][:1]
    raw = json.dumps(body).encode()
    (root / digest_key(11)).write_bytes(gzip.compress(raw))
    sha = hashlib.sha256(raw).hexdigest()
    (root / (digest_key(11) + ".sig")).write_text(
        sign(f"{body['digestEndTime']}\n{BUCKET}/{digest_key(11)}\n{sha}\nnull"))
    ingest(d)
    got = verdicts(d)
    assert got[("digest", name(digest_key(12)))][0] == "chain_gap", got
