"""OIDC bearer tokens from a real issuer served by the test: discovery, JWKS, three key types,
key rotation mid-run, and a set of attacks that must each get 401 and a record."""

import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest
from openai import OpenAI

from gateway_harness import Gateway, base_config, chat_body, make_signed_bundle
from oidc_issuer import Issuer, b64u, unsigned_token


@pytest.fixture
def issuer():
    i = Issuer()
    i.add_key("rsa1", "RS256")
    i.add_key("ec1", "ES256")
    i.add_key("ed1", "EdDSA")
    yield i
    i.close()


def oidc_config(workdir, issuer_url, **settings):
    """The test config trusting `issuer_url` for audience `cairn`, plus `[auth.oidc]` settings."""
    lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
    return base_config(workdir, extra=f'\n[auth.oidc]\nissuer = "{issuer_url}"\naudiences = ["cairn"]\n{lines}')


@pytest.fixture
def gw(workdir, issuer):
    make_signed_bundle(workdir)
    g = Gateway(workdir, oidc_config(workdir, issuer.url, leeway_seconds=5, refresh_min_interval_ms=500)).start()
    yield g
    g.stop()


def post(gw, token, model="claude-sonnet"):
    return httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(model=model),
                      headers={"authorization": f"Bearer {token}"}, timeout=10)


def test_tokens_of_each_key_type_map_to_principals(gw, issuer):
    for kid in ["rsa1", "ec1", "ed1"]:
        r = post(gw, issuer.token(kid))
        assert r.status_code == 200, (kid, r.text)
    # The claims decide: an intern (groups claim) is refused a standard model.
    intern = issuer.token("rsa1", sub="ivan", groups=["interns"], clearance="internal")
    r = post(gw, intern)
    assert r.status_code == 403
    assert "interns-low-cost-only" in r.json()["error"]["message"]
    # The SDK works with a token as its API key.
    c = OpenAI(base_url=gw.base_url, api_key=issuer.token("ed1"), max_retries=0)
    assert sorted(m.id for m in c.models.list()) == ["claude-haiku", "claude-sonnet"]
    gw.stop()
    rec = next(r for r in gw.records() if r.get("principal") == 'User::"ivan"')
    assert rec["principal_parents"] == ['Group::"interns"']
    assert rec["principal_attrs"]["clearance"] == 1
    assert rec["auth"]["method"] == "oidc"
    assert rec["auth"]["issuer"] == issuer.url


def test_key_rotation_mid_run(gw, issuer):
    assert post(gw, issuer.token("rsa1")).status_code == 200
    fetches = issuer.jwks_fetches
    issuer.add_key("rsa2", "RS256")
    # A token signed with the new key names a kid the gateway has not seen: it refetches once.
    assert post(gw, issuer.token("rsa2")).status_code == 200
    assert issuer.jwks_fetches == fetches + 1
    assert post(gw, issuer.token("rsa2")).status_code == 200
    assert issuer.jwks_fetches == fetches + 1
    # Unknown kids cannot make the gateway hammer the issuer.
    for _ in range(5):
        assert post(gw, forge_kid(issuer, "nope")).status_code == 401
    assert issuer.jwks_fetches <= fetches + 2


def forge_kid(issuer, kid):
    """A token signed by rsa1 that names another kid."""
    alg, key = issuer.keys["rsa1"]
    import jwt
    return jwt.encode(issuer.claims(), key, algorithm="RS256", headers={"kid": kid})


def test_attacks_are_rejected_and_recorded(gw, issuer):
    good = issuer.token("rsa1")
    h, p, s = good.split(".")
    claims = issuer.claims()

    # HS256 with the RSA public key as the HMAC secret (algorithm confusion).
    pem = issuer.public_pem("rsa1")
    hs_header = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}).encode())
    hs_signing = f"{hs_header}.{p}".encode()
    hs = f"{hs_header}.{p}.{b64u(hmac.new(pem, hs_signing, hashlib.sha256).digest())}"

    tampered_payload = b64u(json.dumps({**claims, "sub": "mallory", "groups": ["break-glass"]}).encode())
    attacks = {
        "alg none": unsigned_token(claims, {"alg": "none", "typ": "JWT", "kid": "rsa1"}),
        "HS256 with the RSA public key": hs,
        "expired": issuer.token("rsa1", exp=int(time.time()) - 3600, nbf=int(time.time()) - 7200),
        "not yet valid": issuer.token("rsa1", nbf=int(time.time()) + 3600),
        "wrong audience": issuer.token("rsa1", aud="someone-else"),
        "wrong issuer": issuer.token("rsa1", iss="https://evil.example"),
        "unknown kid": forge_kid(issuer, "kid-that-does-not-exist"),
        "tampered payload": f"{h}.{tampered_payload}.{s}",
        "oversized": issuer.token("rsa1", padding="x" * 10_000),
        "garbage": "garbage.garbage.garbage",
        "missing exp": issuer.token("rsa1", exp=None),
    }
    ids = {}
    for name, token in attacks.items():
        r = post(gw, token)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.json()["error"]["type"] == "authentication_error"
        ids[r.headers["x-cairn-decision-id"]] = name
    gw.stop()
    by_id = {r["id"]: r for r in gw.records() if r["kind"] == "decision"}
    reasons = {}
    for decision_id, name in ids.items():
        rec = by_id[decision_id]
        assert rec["status"] == 401 and rec["decision"] == "deny"
        assert rec["principal"] == 'Anonymous::"anonymous"'
        reasons[name] = rec["reason"]
    assert reasons["expired"] == "token_expired"
    assert reasons["not yet valid"] == "token_not_yet_valid"
    assert reasons["wrong audience"] == "wrong_audience"
    assert reasons["wrong issuer"] == "wrong_issuer"
    assert reasons["unknown kid"] == "unknown_kid"
    assert reasons["tampered payload"] == "bad_signature"
    assert reasons["HS256 with the RSA public key"] == "algorithm_mismatch"
    assert reasons["oversized"] == "token_too_large"


def test_leeway_encryption_keys_and_revocation(workdir, issuer):
    make_signed_bundle(workdir)
    issuer.add_key("enc1", "RS256")
    issuer.uses["enc1"] = "enc"
    config = oidc_config(workdir, issuer.url, leeway_seconds=5, refresh_min_interval_ms=100,
                         refresh_interval_s=10)
    gw = Gateway(workdir, config).start()
    try:
        now = int(time.time())
        # `exp` a moment ago is within the leeway; long ago is not. Likewise `nbf`.
        assert post(gw, issuer.token("ec1", exp=now - 2)).status_code == 200
        assert post(gw, issuer.token("ec1", exp=now - 60)).status_code == 401
        assert post(gw, issuer.token("ec1", nbf=now + 2)).status_code == 200
        assert post(gw, issuer.token("ec1", nbf=now + 60)).status_code == 401
        # A key published for encryption never verifies a signature.
        assert post(gw, issuer.token("enc1")).status_code == 401
        # A key the issuer withdraws stops verifying once the set is fetched again (here by
        # the periodic refresh), even for a token that verified before.
        token = issuer.token("ed1")
        assert post(gw, token).status_code == 200
        del issuer.keys["ed1"]
        deadline = time.time() + 15
        while post(gw, token).status_code == 200:
            assert time.time() < deadline, "a withdrawn key still verifies"
            time.sleep(0.5)
        assert post(gw, issuer.token("ec1")).status_code == 200
    finally:
        gw.stop()


def test_a_discovery_document_naming_another_issuer_is_refused(workdir):
    make_signed_bundle(workdir)
    i = Issuer()
    i.add_key("rsa1", "RS256")
    i.announced_issuer = "https://login.evil.example"
    gw = Gateway(workdir, oidc_config(workdir, i.url)).start()
    try:
        r = post(gw, i.token("rsa1"))
        assert r.status_code in (401, 503), r.text
        assert i.jwks_fetches == 0, "the key set of a mismatched issuer was never fetched"
    finally:
        gw.stop()
        i.close()
    log = gw.err.read_text()
    assert "login.evil.example" in log, log[-2000:]
