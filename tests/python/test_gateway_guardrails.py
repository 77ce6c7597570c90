"""Local guardrails against the real gateway: every detector on prompts (what reaches the
upstream is checked on a capturing OpenAI-compatible server), streamed output checked across
chunk boundaries, and no detected text in logs, spans or records."""

import base64
import json

import httpx
import pytest
from openai import OpenAI

from capture_upstream import CaptureUpstream
from gateway_harness import ALICE_KEY, Gateway, base_config, make_signed_bundle
from otlp_receiver import Receiver

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n-----END RSA PRIVATE KEY-----"

# (detector, prompt, expected status, the text that must never leave or be written)
CASES = [
    ("email", "Reply to jane.doe@example.com about it", 200, "jane.doe@example.com"),
    ("phone", "Call me on (415) 555-0132 tomorrow", 200, "555-0132"),
    ("iban", "Pay into GB82 WEST 1234 5698 7654 32 today", 200, "GB82 WEST 1234"),
    ("payment_card", "My card is 4111 1111 1111 1111 ok", 400, "4111 1111 1111 1111"),
    ("us_ssn", "SSN 123-45-6789 for the form", 400, "123-45-6789"),
    ("aws_access_key", "Why does AKIAIOSFODNN7EXAMPLE fail", 403, "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_key", "secret = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 403, "wJalrXUtnFEMI/K7MDENG"),
    ("private_key", f"Is this key valid?\n{PRIVATE_KEY}", 403, "MIIEowIBAAKCAQEAu1SU1"),
    ("jwt", f"decode {JWT} please", 403, JWT),
    ("denied_term", "What is the launch date of Project Nightingale?", 400, "Project Nightingale"),
    ("denied_topic", "Explain how to synthesise a nerve agent", 400, "nerve agent"),
]


def config(workdir, upstream, otlp):
    return base_config(workdir, f"""
[guardrails]
denied_terms = ["project nightingale"]
max_prompt_chars = 4000

[guardrails.denied_topics]
weapons = ["nerve agent", "enriched uranium"]

[guardrails.by_classification.public]
email = "block"

[telemetry]
otlp_endpoint = "{otlp.endpoint}"
batch_delay_ms = 50

[providers.mock]
chunk_words = 3
{upstream.model_toml()}
[[models]]
id = "claude-haiku"
provider = "mock"
region = "us-east-1"
max_data_level = 1
cost_tier = "low"
input_usd_per_mtok = 0.8
output_usd_per_mtok = 4.0
""")


@pytest.fixture
def env(workdir):
    make_signed_bundle(workdir)
    with CaptureUpstream() as up, Receiver() as otlp:
        gw = Gateway(workdir, config(workdir, up, otlp), env={"CAIRN_LOG": "debug"}).start()
        yield gw, up, otlp
        gw.stop()


def post(gw, text, model="captured", classification=None, **kw):
    headers = {"authorization": f"Bearer {ALICE_KEY}"}
    if classification:
        headers["x-cairn-data-classification"] = classification
    body = {"model": model, "messages": [{"role": "user", "content": text}], **kw}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def echo(text):
    """A prompt the mock answers with `text`, split into chunks at each U+001F."""
    return "mock:echo-base64 " + base64.b64encode(text.encode()).decode()


def everything_written(gw, otlp):
    """Logs, records and exported span bytes, as one text."""
    spans = b"".join(otlp.bodies).decode("latin-1")
    records = "".join(p.read_text() for p in sorted(gw.records_dir.glob("*.jsonl")))
    return gw.out.read_text() + gw.err.read_text() + records + spans


def test_every_detector_on_prompts(env):
    gw, up, otlp = env
    ids = {}
    for kind, text, status, secret in CASES:
        r = post(gw, text)
        assert r.status_code == status, (kind, r.text)
        ids[kind] = r.headers["x-cairn-decision-id"]
        if status == 200:
            assert r.headers["x-cairn-redacted"] == kind
            sent = up.requests[-1]["messages"][0]["content"]
            assert f"[REDACTED:{kind}]" in sent and secret not in sent, sent
        elif status == 400:
            assert r.json()["error"]["code"] == "content_policy_violation"
            assert kind in r.json()["error"]["message"] and secret not in r.text
        else:
            assert "no-secrets-in-prompts" in r.json()["error"]["message"]
    # The size limit, and a per-classification override (e-mail addresses blocked for public data).
    assert post(gw, "word " * 1000).status_code == 400
    r = post(gw, "Reply to jane.doe@example.com", classification="public")
    assert r.status_code == 400 and "email" in r.json()["error"]["message"]
    # Nothing that was blocked reached the upstream.
    leaked = [s for _, _, st, s in CASES if st != 200 and any(s in str(p) for p in up.prompts())]
    assert not leaked, leaked

    otlp.wait_for(lambda spans: sum(1 for s in spans if s["parent_span_id"] == "") >= len(CASES) + 2)
    gw.stop()
    decisions = {r["id"]: r for r in gw.records() if r["kind"] == "decision"}
    for kind, _, status, _ in CASES:
        d = decisions[ids[kind]]
        assert d["guardrails"]["input"]["findings"] == {kind: 1}, (kind, d)
        assert kind in d["context"]["guardrail_findings"]
        assert d["reason"] == {200: "policy", 400: "guardrail_blocked", 403: "policy"}[status]
        if status == 403:
            assert d["reasons"] == ["no-secrets-in-prompts"]
    written = everything_written(gw, otlp)
    for kind, _, _, secret in CASES:
        assert secret not in written, f"{kind} text was written: {secret}"


def test_streamed_output_is_checked_across_chunks(env):
    gw, up, otlp = env
    c = OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0)
    filler = "The deployment notes follow in order. " * 12

    def stream(text):
        got, finish = "", None
        for chunk in c.chat.completions.create(model="claude-haiku", stream=True,
                                               messages=[{"role": "user", "content": echo(text)}]):
            for ch in chunk.choices:
                got += ch.delta.content or ""
                finish = ch.finish_reason or finish
        return got, finish

    # An access key id split across two chunks: the text before it flows, the key never does.
    got, finish = stream(filler + "Use AKIAIOSF\x1fODNN7EXAMPLE\x1f for the upload. " + filler)
    assert finish == "content_filter"
    assert got and filler.startswith(got), got
    assert "AKIA" not in got and "ODNN7" not in got

    # A private key block split inside its header: blocked as well.
    got, finish = stream(filler + "-----BEGIN RSA PRI\x1fVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1\x1fLfVLPH\n-----END RSA PRIVATE KEY-----")
    assert finish == "content_filter" and "MIIE" not in got and "BEGIN" not in got

    # An e-mail address split across chunks is redacted and the rest arrives whole.
    got, finish = stream("Write to jane.d\x1foe@exam\x1fple.org for access. " + filler)
    assert finish == "stop"
    assert got == "Write to [REDACTED:email] for access. " + filler

    # Without streaming: a card number in the answer withholds the answer.
    r = post(gw, echo("Your card 4111 1111 1111 1111 is on file."), model="claude-haiku")
    assert r.status_code == 200
    assert r.json()["choices"][0]["finish_reason"] == "content_filter"
    assert r.json()["choices"][0]["message"]["content"] == ""

    otlp.wait_for(lambda spans: sum(1 for s in spans if s["parent_span_id"] == "") >= 4)
    gw.stop()
    outs = [r for r in gw.records() if r["kind"] == "outcome"]
    assert [o["guardrails"]["output"]["findings"] for o in outs] == [
        {"aws_access_key": 1}, {"private_key": 1}, {"email": 1}, {"payment_card": 1}]
    assert [o["finish_reason"] for o in outs] == ["content_filter", "content_filter", "stop", "content_filter"]
    # Usage is what the provider produced, filtered or not.
    assert all(o["usage"]["output_tokens"] > 0 for o in outs)
    written = everything_written(gw, otlp)
    for secret in ("AKIAIOSFODNN7EXAMPLE", "MIIEowIBAAKCAQEAu1SU1", "jane.doe@example.org", "4111 1111 1111 1111"):
        assert secret not in written, secret


def test_tool_call_arguments_are_checked_both_ways(env):
    gw, up, otlp = env
    c = OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0)

    def call(stream):
        kw = {"model": "captured", "messages": [{"role": "user", "content": "mail the team"}]}
        if not stream:
            choice = c.chat.completions.create(**kw).choices[0]
            calls = choice.message.tool_calls or []
            return "".join(t.function.arguments for t in calls), choice.finish_reason
        args, finish = "", None
        for chunk in c.chat.completions.create(stream=True, **kw):
            for ch in chunk.choices:
                for t in ch.delta.tool_calls or []:
                    args += t.function.arguments or ""
                finish = ch.finish_reason or finish
        return args, finish

    # An e-mail address split across argument pieces is redacted; the arguments stay JSON, also
    # when the address follows a JSON escape (the detectors read the decoded strings).
    up.tool_call_args = ['{"to": "jane.d', 'oe@example.org", "cc": "Hi,\\nbob@exa', 'mple.org", "body": "',
                         "see you at ten" + "." * 200 + '"}']
    for stream in (False, True):
        args, finish = call(stream)
        assert finish == "tool_calls"
        assert json.loads(args)["to"] == "[REDACTED:email]", args
        assert json.loads(args)["cc"] == "Hi,\n[REDACTED:email]", args

    # An access key id in the arguments withholds the call, escaped or not.
    for pieces in (['{"note": "AKIAIOSF', 'ODNN7EXAMPLE"}'], ['{"note": "see\\nAKIAIOSF', 'ODNN7EXAMPLE"}'],
                   ['{"note": "\\u0041KIAIOSFODNN7EXAMPLE"}']):
        up.tool_call_args = pieces
        for stream in (False, True):
            args, finish = call(stream)
            assert finish == "content_filter", (pieces, stream, args)
            assert "KIA" not in args and "ODNN7" not in args

    # Arguments of earlier tool calls in the prompt are checked on the way in.
    up.tool_call_args = None
    history = [
        {"role": "user", "content": "mail the team"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_0", "type": "function",
            "function": {"name": "send_mail", "arguments": '{"to": "jane.doe@example.org"}'}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sent"},
    ]
    c.chat.completions.create(model="captured", messages=history)
    sent = up.requests[-1]["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(sent) == {"to": "[REDACTED:email]"}

    gw.stop()
    outs = [r for r in gw.records() if r["kind"] == "outcome"]
    assert [o["guardrails"]["output"]["findings"] for o in outs[:8]] == [{"email": 2}] * 2 + [{"aws_access_key": 1}] * 6
    written = everything_written(gw, otlp) + json.dumps(up.requests)
    for secret in ("jane.doe@example.org", "bob@example.org", "AKIAIOSFODNN7EXAMPLE", "KIAIOSFODNN7"):
        assert secret not in written, secret
