"""Verifying AWS Signature Version 4 with botocore, an implementation independent of the AWS
SDK for Rust that signs Cairn's requests."""

import hmac

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def parse_authorization(value: str) -> dict:
    scheme, _, rest = value.partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        raise ValueError(f"not SigV4: {scheme}")
    parts = dict(p.strip().split("=", 1) for p in rest.split(","))
    akid, date, region, service, _ = parts["Credential"].split("/")
    return {"access_key": akid, "date": date, "region": region, "service": service,
            "signed_headers": parts["SignedHeaders"].split(";"), "signature": parts["Signature"]}


def verify(method: str, url: str, headers: dict, body: bytes, secrets: dict):
    """Returns (ok, access_key, why). `secrets` maps access key id -> (secret, session token or None)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        a = parse_authorization(lower.get("authorization", ""))
    except (ValueError, KeyError) as e:
        return False, None, f"bad Authorization header: {e}"
    if a["access_key"] not in secrets:
        return False, a["access_key"], "unknown access key"
    secret, token = secrets[a["access_key"]]
    if token is not None and lower.get("x-amz-security-token") != token:
        return False, a["access_key"], "wrong or missing session token"
    signed = {h: lower[h] for h in a["signed_headers"] if h in lower}
    req = AWSRequest(method=method, url=url, data=body, headers=signed)
    req.context["timestamp"] = lower.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(a["access_key"], secret, token), a["service"], a["region"])
    canonical = signer.canonical_request(req)
    expected = signer.signature(signer.string_to_sign(req, canonical), req)
    if not hmac.compare_digest(expected, a["signature"]):
        return False, a["access_key"], "signature mismatch"
    return True, a["access_key"], ""
