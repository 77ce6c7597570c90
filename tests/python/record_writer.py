"""An independent Python implementation of docs/decision-record.md: writes signed, hash-chained
decision record segments, so tests can build known-answer lakes (including Bedrock decisions)
and show that the format is implementable without Cairn."""

import base64
import hashlib
import json
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key

GENESIS = "0" * 64


def key_id(public_raw: bytes) -> str:
    return "ed25519:" + hashlib.sha256(public_raw).hexdigest()[:16]


class SegmentWriter:
    def __init__(self, directory: Path, private_key_pem: bytes):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = load_pem_private_key(private_key_pem, password=None)
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(raw)
        self.seq = 0
        self.prev = GENESIS
        self.lines = []

    def append(self, record: dict) -> dict:
        self.seq += 1
        body = dict(record)
        body.update({"v": 1, "seq": self.seq, "key_id": self.key_id, "prev": self.prev})
        body.setdefault("id", str(uuid.uuid4()))
        text = json.dumps(body, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()
        sig = self.key.sign(b"cairn.decision-record.v1\n" + digest.encode())
        line = text[:-1] + f',"hash":"{digest}","sig":"{base64.b64encode(sig).decode()}"' + "}"
        self.lines.append(line)
        self.prev = digest
        return body

    def close(self, ts: str):
        self.append({"kind": "seal", "ts": ts, "id": str(uuid.uuid4()), "sealed_records": len(self.lines),
                     "seal_reason": "shutdown"})
        (self.dir / "segment-00000000000000000001.jsonl").write_text("\n".join(self.lines) + "\n")


def decision(ts, principal, team_attr, model, decision, provider="mock", reasons=None, status=None, reason="policy",
             extra=None, groups=None, **kw):
    attrs = {"department": team_attr, "clearance": 1}
    rec = {"kind": "decision", "ts": ts, "principal": principal, "principal_parents": groups or [],
           "principal_attrs": attrs, "action": 'Action::"invoke_model"', "resource": f'Model::"{model}"',
           "resource_attrs": {"provider": provider}, "context": {"data_classification": "internal"},
           "decision": decision, "reasons": reasons or [], "errors": [], "reason": reason,
           "bundle": "sha256:" + "ab" * 32, "model": model, "provider": provider, "stream": False,
           "auth": {"method": "api_key", "subject": principal}}
    if status is not None:
        rec["status"] = status
    if extra:
        rec["extra"] = extra
    rec.update(kw)
    return rec


def outcome(ts, decision_id, model, provider, input_tokens, output_tokens, cost, status=200, finish_reason="stop",
            **kw):
    rec = {"kind": "outcome", "ts": ts, "decision_id": decision_id, "model": model, "provider": provider,
           "status": status, "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
           "cost_usd": cost, "latency_ms": 120, "finish_reason": finish_reason}
    rec.update(kw)
    return rec
