"""CloudTrail test inputs built from the shared Stratus samples (never hand-written events):
the delivery layout, the `userIdentity` types the samples lack, bad input, and bulk data."""

import copy
import gzip
import io
import json
import random
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import REPO

SAMPLES = REPO / "tests" / "fixtures" / "cloudtrail" / "stratus-red-team"
ACCOUNT = "111122223333"
ORG = "o-exampleorgid"


def sample_records() -> list:
    out = []
    for f in sorted(SAMPLES.glob("*.json")):
        d = json.loads(f.read_text())
        out.extend(d if isinstance(d, list) else d.get("Records", [d]))
    return out


def event_time(r) -> datetime:
    t = r["eventTime"].replace(" ", "T")
    t = t.split(".")[0].rstrip("Z")
    return datetime.fromisoformat(t).replace(tzinfo=timezone.utc)


def delivery_key(region: str, day: datetime, n: int) -> str:
    stamp = day.strftime("%Y%m%dT%H%MZ")
    return (f"AWSLogs/{ORG}/{ACCOUNT}/CloudTrail/{region}/{day:%Y/%m/%d}/"
            f"{ACCOUNT}_CloudTrail_{region}_{stamp}_{n:04d}.json.gz")


def gz_records(records) -> bytes:
    return gzip.compress(json.dumps({"Records": records}).encode())


def delivery_layout(records, region="us-east-1", per_file=20):
    """{key: gzipped {"Records": [...]}} grouped by day, as CloudTrail delivers."""
    by_day = defaultdict(list)
    for r in records:
        by_day[event_time(r).date()].append(r)
    out = {}
    for day, rs in sorted(by_day.items()):
        for i in range(0, len(rs), per_file):
            dt = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
            out[delivery_key(region, dt, i // per_file)] = gz_records(rs[i:i + per_file])
    return out


def write_layout(root: Path, files: dict):
    for key, data in files.items():
        p = root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _new_id(tag: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cairn-test/{tag}"))


def identity_variants() -> dict:
    """A sample record re-issued under each userIdentity type the samples do not have, in the
    shapes the CloudTrail userIdentity reference documents; keyed by a test name."""
    recs = sample_records()
    iam = next(r for r in recs if r["userIdentity"].get("type") == "IAMUser")
    assumed = next(r for r in recs if r["userIdentity"].get("type") == "AssumedRole")
    acct = iam["userIdentity"]["accountId"]
    out = {}

    def variant(base, tag, identity):
        r = copy.deepcopy(base)
        r["eventID"] = _new_id(tag)
        r["userIdentity"] = identity
        out[tag] = r

    variant(iam, "root", {"type": "Root", "principalId": acct, "arn": f"arn:aws:iam::{acct}:root",
                          "accountId": acct, "accessKeyId": "ASIAEXAMPLEROOT00001"})
    variant(iam, "aws-service", {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"})
    variant(iam, "identity-center", {
        "type": "IdentityCenterUser", "accountId": acct,
        "onBehalfOf": {"userId": "544894e8-80c1-707f-60e3-3ba6510dfac1",
                       "identityStoreArn": f"arn:aws:identitystore::{acct}:identitystore/d-9067642ac7"},
        "credentialId": "EXAMPLEVHULjJdTUdPJfofVa1sufHDoj7aYcOYcxFVllWR_Whr1fEXAMPLE"})
    missing = copy.deepcopy(iam["userIdentity"])
    missing.pop("type", None)
    variant(iam, "missing-type", missing)
    src = copy.deepcopy(assumed["userIdentity"])
    src["arn"] = src["arn"].rsplit("/", 1)[0] + "/cairn-alice"
    src["sessionContext"]["sourceIdentity"] = "alice"
    src["sessionContext"]["attributes"]["creationDate"] = "20241017T200750Z"
    variant(assumed, "assumed-role-source-identity", src)
    # The samples carry a real FederatedUser event (aws.persistence.sts-federation-token).
    out["federated-user"] = next(r for r in recs if r["userIdentity"].get("type") == "FederatedUser")
    return out


def assume_role_with_tags() -> dict:
    """An AssumeRole event from the samples' STS calls, re-issued with session tags."""
    recs = sample_records()
    base = next(r for r in recs if r["eventSource"] == "sts.amazonaws.com")
    r = copy.deepcopy(base)
    r["eventID"] = _new_id("assume-role-tags")
    r["eventName"] = "AssumeRole"
    r["requestParameters"] = {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/cairn-bedrock",
                              "roleSessionName": "cairn-alice", "sourceIdentity": "alice",
                              "tags": [{"key": "cairn-user", "value": "alice"}, {"key": "cairn-team", "value": "engineering"}],
                              "transitiveTagKeys": ["cairn-user"]}
    return r


def bulk(n: int, seed=7, days=3, start=datetime(2026, 11, 20, tzinfo=timezone.utc)):
    """`n` realistic records: sample records re-issued with new ids and times spread over days."""
    rng = random.Random(seed)
    base = sample_records()
    out = []
    for i in range(n):
        r = copy.deepcopy(base[i % len(base)])
        t = start + timedelta(seconds=rng.randrange(days * 86400))
        r["eventTime"] = t.strftime("%Y-%m-%dT%H:%M:%SZ")
        r["eventID"] = str(uuid.UUID(int=rng.getrandbits(128)))
        r["requestID"] = str(uuid.UUID(int=rng.getrandbits(128)))
        out.append(r)
    return out


def bad_inputs(root: Path) -> dict:
    """Files with one kind of bad input each, and how many records of each reason they hold."""
    recs = sample_records()[:6]
    root.mkdir(parents=True, exist_ok=True)
    good = gz_records(recs)
    # A gzip stream cut in the middle: the records before the cut survive.
    (root / "truncated.json.gz").write_bytes(good[: len(good) // 2])
    lines = [json.dumps(r) for r in recs[:3]]
    lines.insert(1, '{"eventTime": "2024-10-17T20:09:52Z", "eventName": ')  # invalid JSON
    (root / "invalid.jsonl").write_text("\n".join(lines) + "\n")
    shaped = [recs[0], 42, "a string", [1, 2]]
    (root / "wrong-shape.json").write_text(json.dumps(shaped))
    no_time = copy.deepcopy(recs[1])
    del no_time["eventTime"]
    bad_time = copy.deepcopy(recs[2])
    bad_time["eventTime"] = "half past noon"
    (root / "fields.json").write_text(json.dumps([no_time, bad_time, recs[3]]))
    return {
        "invalid_json": 1,
        "wrong_shape": 3,
        "missing_required_field": 1,
        "unparseable_time": 1,
    }
