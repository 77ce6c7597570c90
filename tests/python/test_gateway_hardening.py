"""Ambiguities an attack run found, each closed: repeated security headers, the bearer scheme's
case, client errors that were blamed on the bundle. Every refusal still has its one record."""

import re
import socket

import httpx
import pytest

from gateway_harness import ALICE_KEY, chat_body, default_gateway


@pytest.fixture
def gw(workdir):
    g = default_gateway(workdir)
    yield g
    g.stop()


def post(gw, headers, body=None):
    return httpx.post(f"{gw.base_url}/chat/completions", json=body or chat_body(), headers=headers, timeout=10)


def record_of(gw, response):
    decision_id = response.headers["x-cairn-decision-id"]
    return next(r for r in gw.records() if r.get("id") == decision_id)


def test_repeated_classification_headers_decide_as_the_strictest(gw):
    auth = ("authorization", f"Bearer {ALICE_KEY}")
    alone = post(gw, [auth, ("x-cairn-data-classification", "restricted")])
    assert alone.status_code == 403, alone.text
    # A client's own label first, a proxy's appended after: the proxy's stricter label counts.
    both = post(gw, [auth, ("x-cairn-data-classification", "public"), ("x-cairn-data-classification", "restricted")])
    assert both.status_code == alone.status_code, both.text
    joined = post(gw, [auth, ("x-cairn-data-classification", "public, restricted")])
    assert joined.status_code == alone.status_code, joined.text
    unknown = post(gw, [auth, ("x-cairn-data-classification", "public"), ("x-cairn-data-classification", "secret-ish")])
    assert unknown.status_code == 400
    gw.stop()
    assert record_of(gw, both)["context"]["data_classification"] == "restricted"
    assert record_of(gw, joined)["context"]["data_classification"] == "restricted"
    assert record_of(gw, unknown)["reason"] == "invalid_request"


def test_two_authorization_headers_are_refused_and_the_scheme_is_case_insensitive(gw):
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"]:
        r = post(gw, [("authorization", f"{scheme} {ALICE_KEY}")])
        assert r.status_code == 200, (scheme, r.text)
    twice = post(gw, [("authorization", f"Bearer {ALICE_KEY}"), ("authorization", "Bearer someone-else")])
    assert twice.status_code == 401
    assert twice.json()["error"]["type"] == "authentication_error"
    gw.stop()
    rec = record_of(gw, twice)
    assert rec["reason"] == "ambiguous_credentials"
    assert rec["principal"] == 'Anonymous::"anonymous"'


def test_an_absurd_max_tokens_is_the_clients_error_not_the_bundles(gw):
    r = post(gw, [("authorization", f"Bearer {ALICE_KEY}")], chat_body(max_tokens=2**63))
    assert r.status_code == 400, r.text
    assert "max_tokens" in r.json()["error"]["message"]
    gw.stop()
    assert record_of(gw, r)["reason"] == "invalid_request"


def raw_request(gw, head: bytes) -> bytes:
    """Sends bytes as they are (no client would send these) and reads what comes back."""
    host, port = gw.addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        out = b""
        try:
            s.sendall(head)
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, BrokenPipeError):
            # The server answers and closes before reading all of an oversized head; the reset
            # that follows can overtake its answer.
            pass
        return out


def refusals(gw, reason):
    m = re.search(rf'^cairn_transport_refusals_total\{{reason="{reason}"\}} (\d+)$', gw.metrics(), re.M)
    return int(m.group(1)) if m else 0


def test_refusals_before_a_request_exists_are_counted(gw):
    """A head over the limit and conflicting framing never become requests (no record, no
    decision id), so the metric is where they show."""
    big = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"a" * 1_000_000 + b"\r\n\r\n"
    answer = raw_request(gw, big)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    framing = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
               b"Content-Length: 4\r\n\r\nabcd")
    answer = raw_request(gw, framing)
    assert answer.startswith(b"HTTP/1.1 400") and b"x-cairn-decision-id" not in answer
    assert refusals(gw, "head_too_large") == 1
    assert refusals(gw, "malformed") == 1
    # And the server still serves.
    assert post(gw, [("authorization", f"Bearer {ALICE_KEY}")]).status_code == 200
    gw.stop()
    # The one request served: its decision and outcome, then the shutdown's seal.
    assert [r["kind"] for r in gw.records()] == ["decision", "outcome", "seal"]
