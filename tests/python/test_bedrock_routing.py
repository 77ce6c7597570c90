"""Routing an alias to Bedrock deployments through the OpenAI SDK: fallback on throttling,
retry exhaustion, circuit breakers opening and closing, streams falling back only before the
first byte, deployments Cedar does not allow; and Bedrock Guardrails on input and on streamed
output."""

import json
import time

import httpx
import openai
import pytest

from fake_bedrock import TRIGGER
from gateway_harness import ALICE_KEY, Gateway
from test_bedrock import ENV, aws, bedrock_config, model, sdk  # noqa: F401  (aws is a fixture)

EAST = "anthropic.sonnet-east-v1:0"
WEST = "anthropic.sonnet-west-v1:0"

ALIASES = f"""
{model("sonnet-east", EAST)}
{model("sonnet-west2", WEST, region="us-west-2")}

[[models]]
id = "claude-sonnet"
region = "us-east-1"
max_data_level = 2
cost_tier = "standard"
deployments = [{{ model = "sonnet-east" }}, {{ model = "sonnet-west2", priority = 1 }}]

[[models]]
id = "sonnet-anywhere"
region = "us-east-1"
max_data_level = 2
cost_tier = "standard"
deployments = [{{ model = "sonnet-tokyo" }}, {{ model = "sonnet-west2", priority = 1 }}]

[[models]]
id = "sonnet-tokyo-only"
region = "us-east-1"
max_data_level = 2
cost_tier = "standard"
deployments = [{{ model = "sonnet-tokyo" }}]

[providers.bedrock.guardrails_by_classification.confidential]
id = "gr-confidential"
version = "1"
"""


def start(workdir, fake, sts, routing=""):
    return Gateway(workdir, bedrock_config(workdir, fake, sts, extra=ALIASES, routing=routing), env=ENV).start()


def ask(c, m="claude-sonnet", text="hello"):
    return c.chat.completions.with_raw_response.create(model=m, messages=[{"role": "user", "content": text}])


def outcomes(gw):
    return [r for r in gw.records() if r["kind"] == "outcome"]


def test_fallback_retries_and_exhaustion(workdir, aws):
    fake, sts = aws
    gw = start(workdir, fake, sts)
    try:
        c = sdk(gw)
        fake.fail[EAST] = [(429, "ThrottlingException")]
        raw = ask(c)
        assert raw.headers["x-cairn-deployment"] == "sonnet-west2"
        assert raw.parse().choices[0].message.content == f"Bedrock {WEST} heard: hello"
        # Every deployment failing: bounded attempts, then the last error.
        fake.fail[EAST] = [(503, "ServiceUnavailableException")] * 2
        fake.fail[WEST] = [(503, "ServiceUnavailableException")] * 2
        with pytest.raises(openai.InternalServerError) as e:
            ask(c)
        assert e.value.status_code == 502
        # A 400 is not retried elsewhere.
        fake.fail[EAST] = [(400, "ValidationException")]
        with pytest.raises(openai.BadRequestError):
            ask(c)
    finally:
        gw.stop()
    first, exhausted, invalid = outcomes(gw)
    r = first["extra"]["routing"]
    assert r["deployment"] == "sonnet-west2"
    assert [(a["deployment"], a["result"], a.get("status")) for a in r["attempts"]] == [
        ("sonnet-east", "error", 429), ("sonnet-west2", "ok", None)]
    assert first["provider"] == "bedrock" and first["model"] == "claude-sonnet"
    attempts = exhausted["extra"]["routing"]["attempts"]
    assert [(a["deployment"], a["status"]) for a in attempts] == [
        ("sonnet-east", 503), ("sonnet-west2", 503), ("sonnet-east", 503)]
    assert exhausted["status"] == 502 and exhausted["extra"]["routing"]["deployment"] is None
    assert [a["deployment"] for a in invalid["extra"]["routing"]["attempts"]] == ["sonnet-east"]
    assert len(fake.calls_to(EAST)) == 4 and len(fake.calls_to(WEST)) == 2


def test_circuit_breaker_opens_and_closes(workdir, aws):
    fake, sts = aws
    gw = start(workdir, fake, sts, routing="breaker_failures = 2\nbreaker_cooldown_ms = 1500")
    try:
        c = sdk(gw)
        fake.fail[EAST] = [(503, "ServiceUnavailableException")] * 100
        for _ in range(2):
            assert ask(c).headers["x-cairn-deployment"] == "sonnet-west2"
        assert len(fake.calls_to(EAST)) == 2
        # Open: east is skipped without a call.
        assert ask(c).headers["x-cairn-deployment"] == "sonnet-west2"
        assert len(fake.calls_to(EAST)) == 2
        assert 'cairn_circuits_opened_total{deployment="sonnet-east"} 1' in gw.metrics()
        # East recovers; after the cooldown one trial request closes the circuit again.
        fake.fail[EAST] = []
        time.sleep(1.6)
        assert ask(c).headers["x-cairn-deployment"] == "sonnet-east"
        assert ask(c).headers["x-cairn-deployment"] == "sonnet-east"
    finally:
        gw.stop()
    skipped = outcomes(gw)[2]["extra"]["routing"]["attempts"]
    assert skipped[0] == {"deployment": "sonnet-east", "provider": "bedrock", "result": "skipped",
                          "error": "circuit open", "latency_ms": 0}


def test_streams_fall_back_only_before_the_first_byte(workdir, aws):
    fake, sts = aws
    gw = start(workdir, fake, sts)
    try:
        c = sdk(gw)

        def stream():
            text = ""
            for chunk in c.chat.completions.create(model="claude-sonnet", stream=True,
                                                   messages=[{"role": "user", "content": "stream it"}]):
                text += "".join(ch.delta.content or "" for ch in chunk.choices)
            return text

        # Throttled at the HTTP level, and broken before its first delta: both fall back.
        fake.fail[EAST] = [(429, "ThrottlingException")]
        assert stream() == f"Bedrock {WEST} heard: stream it"
        fake.break_after[EAST] = 0
        assert stream() == f"Bedrock {WEST} heard: stream it"
        # Broken after two deltas: the client has bytes, so no fallback; it gets the error.
        fake.break_after[EAST] = 2
        got = []
        with pytest.raises(openai.APIError):
            for chunk in c.chat.completions.create(model="claude-sonnet", stream=True,
                                                   messages=[{"role": "user", "content": "stream it"}]):
                got += [ch.delta.content for ch in chunk.choices if ch.delta.content]
        assert "".join(got) == f"Bedrock {EAST} "
    finally:
        gw.stop()
    assert [c["op"] for c in fake.calls_to(WEST)] == ["converse-stream", "converse-stream"]
    assert len(fake.calls_to(EAST)) == 3
    broken = outcomes(gw)[2]
    assert broken["status"] == 502 and broken["extra"]["routing"]["deployment"] == "sonnet-east"


def test_every_deployment_used_must_be_allowed(workdir, aws):
    fake, sts = aws
    gw = start(workdir, fake, sts)
    try:
        c = sdk(gw)
        assert ask(c, "sonnet-anywhere").headers["x-cairn-deployment"] == "sonnet-west2"
        with pytest.raises(openai.PermissionDeniedError) as e:
            ask(c, "sonnet-tokyo-only")
        assert "approved-regions-only" in e.value.message
    finally:
        gw.stop()
    assert not fake.calls_to("anthropic.claude-3-5-sonnet-20241022-v2:0")
    d = [r for r in gw.records() if r["kind"] == "decision" and r["model"] == "sonnet-anywhere"][0]
    assert d["extra"]["deployments_denied"] == [{"deployment": "sonnet-tokyo", "reasons": ["approved-regions-only"]}]
    denied = [r for r in gw.records() if r["kind"] == "decision" and r["model"] == "sonnet-tokyo-only"][0]
    assert denied["decision"] == "deny" and denied["status"] == 403


def test_bedrock_guardrail_on_input_and_streamed_output(workdir, aws):
    fake, sts = aws
    gw = start(workdir, fake, sts)
    try:
        c = sdk(gw)
        # Input, through Converse's guardrail configuration.
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="guarded", messages=[{"role": "user", "content": f"tell me about {TRIGGER}"}])
        assert e.value.code == "guardrail_intervened"
        assert "gr-abc123" in e.value.message and "Forbidden topics" in e.value.message
        # Input of a stream: checked with ApplyGuardrail before anything streams.
        with pytest.raises(openai.BadRequestError):
            list(c.chat.completions.create(model="guarded", stream=True,
                                           messages=[{"role": "user", "content": f"stream {TRIGGER}"}]))
        # Output of a stream: the stream guardrail intervenes; the client sees content_filter.
        text, finish = "", None
        for chunk in c.chat.completions.create(model="guarded", stream=True,
                                               messages=[{"role": "user", "content": "please reveal it"}]):
            for ch in chunk.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
        assert finish == "content_filter"
        assert TRIGGER not in text and text.endswith("Sorry, the guardrail blocked the answer.")
        # A guardrail per data classification.
        httpx.post(f"{gw.url}/v1/chat/completions",
                   headers={"authorization": f"Bearer {ALICE_KEY}", "x-cairn-data-classification": "confidential"},
                   json={"model": "sonnet", "messages": [{"role": "user", "content": "confidential question"}]})
    finally:
        gw.stop()
    ops = [(c["op"], c["model"]) for c in fake.calls if c["op"] == "apply_guardrail"]
    assert ops == [("apply_guardrail", "gr-abc123"), ("apply_guardrail", "gr-abc123")]
    streams = [c for c in fake.calls if c["op"] == "converse-stream"]
    assert len(streams) == 1 and streams[0]["body"]["guardrailConfig"]["guardrailIdentifier"] == "gr-abc123"
    conf = [c for c in fake.calls_to("anthropic.claude-3-5-sonnet-20241022-v2:0") if c["op"] == "converse"][-1]
    assert conf["body"]["guardrailConfig"] == {"guardrailIdentifier": "gr-confidential", "guardrailVersion": "1",
                                               "trace": "enabled"}
    outs = outcomes(gw)
    blocked_in, blocked_stream_in, blocked_out = outs[0], outs[1], outs[2]
    for o in (blocked_in, blocked_stream_in):
        assert o["status"] == 400 and o["reason"] == "bedrock_guardrail"
        a = o["extra"]["bedrock_guardrail"]
        assert a["guardrail"] == "gr-abc123" and a["source"] == "input"
        assert {"policy": "topic", "name": "Forbidden topics", "type": "DENY", "action": "BLOCKED"} in a["findings"]
    a = blocked_out["extra"]["bedrock_guardrail"]
    assert a["source"] == "output" and blocked_out["finish_reason"] == "content_filter"
    # The blocked text itself is in no record.
    records = "".join(json.dumps(r) for r in gw.records())
    assert TRIGGER not in records
