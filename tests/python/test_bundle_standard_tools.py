"""A bundle verifies with standard tools and no Cairn code: Python's tarfile and hashlib, and
the `cryptography` package's Ed25519 over the DSSE pre-authentication encoding."""

import base64
import hashlib
import io
import json
import tarfile

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from conftest import run


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def verify_without_cairn(bundle: bytes, pubkey_pem: bytes) -> dict:
    members = {}
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:") as tar:
        for m in tar.getmembers():
            members[m.name] = tar.extractfile(m).read()
    envelope = json.loads(members["bundle.dsse.json"])
    payload = base64.b64decode(envelope["payload"])
    key = load_pem_public_key(pubkey_pem)
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    key.verify(sig, pae(envelope["payloadType"], payload))  # raises InvalidSignature
    manifest = json.loads(payload)
    for f in manifest["files"]:
        data = members[f["path"]]
        assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
        assert len(data) == f["size"]
    return manifest


def test_bundle_verifies_with_standard_tools(workdir):
    run(["keys", "generate", "--out", "k"], cwd=workdir)
    run(["policy", "bundle", "--key", "k/signing.key", "--out", "b.tar"], cwd=workdir)
    bundle = (workdir / "b.tar").read_bytes()
    pub = (workdir / "k" / "signing.pub").read_bytes()
    manifest = verify_without_cairn(bundle, pub)
    assert manifest["format"] == "cairn.policy-bundle/v1"
    ids = {p["id"] for p in manifest["policies"]}
    assert "interns-low-cost-only" in ids and len(ids) == 25
    assert manifest["tests"]["passed"] == manifest["tests"]["cases"] > 0


def test_standard_tools_reject_a_tampered_manifest(workdir):
    run(["keys", "generate", "--out", "k"], cwd=workdir)
    run(["policy", "bundle", "--key", "k/signing.key", "--out", "b.tar"], cwd=workdir)
    bundle = bytearray((workdir / "b.tar").read_bytes())
    # Change one character of a policy id inside the signed payload, keeping its length.
    start = bundle.index(b'"payload": "') + len(b'"payload": "')
    end = bundle.index(b'"', start)
    payload = base64.b64decode(bytes(bundle[start:end]))
    i = payload.index(b'"id": "') + len(b'"id": "')
    payload = payload[:i] + (b"X" if payload[i:i + 1] != b"X" else b"Y") + payload[i + 1:]
    forged = base64.b64encode(payload)
    assert len(forged) == end - start
    bundle[start:end] = forged
    with pytest.raises(InvalidSignature):
        verify_without_cairn(bytes(bundle), (workdir / "k" / "signing.pub").read_bytes())
