"""The official OpenAI Python SDK against the real `cairn gateway serve`: completions, streams,
model lists, and every error status arriving as the SDK's typed exception, each recorded."""

import httpx
import openai
import pytest
from openai import OpenAI

from gateway_harness import ALICE_KEY, CI_KEY, Gateway, base_config, chat_body, default_gateway


@pytest.fixture
def gw(workdir):
    g = default_gateway(workdir)
    yield g
    g.stop()


def client(gw, key=ALICE_KEY, **kw):
    return OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, **kw)


def test_completion_stream_and_usage_agree(gw):
    c = client(gw)
    raw = c.chat.completions.with_raw_response.create(
        model="claude-sonnet", messages=[{"role": "user", "content": "tell me about cairns"}]
    )
    done = raw.parse()
    decision_id = raw.headers["x-cairn-decision-id"]
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.prompt_tokens == 4
    assert done.usage.completion_tokens == len(done.choices[0].message.content.split())

    text, usage, finish = "", None, None
    stream = c.chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "user", "content": "tell me about cairns"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    assert text == done.choices[0].message.content
    assert finish == "stop"
    assert usage.prompt_tokens == done.usage.prompt_tokens
    assert usage.completion_tokens == done.usage.completion_tokens

    gw.stop()
    records = gw.records()
    decision = next(r for r in records if r["id"] == decision_id)
    assert decision["decision"] == "allow"
    assert decision["principal"] == 'User::"alice"'
    assert decision["reasons"] == ["users-invoke-models"]
    assert decision["context"]["data_classification"] == "internal"
    assert decision["bundle"].startswith("sha256:")
    outcome = next(r for r in records if r.get("decision_id") == decision_id)
    assert outcome["kind"] == "outcome"
    assert outcome["usage"] == {"input_tokens": 4, "output_tokens": done.usage.completion_tokens}
    assert outcome["cost_usd"] > 0
    streamed = [r for r in records if r["kind"] == "outcome" and r.get("stream")]
    assert streamed and streamed[0]["usage"]["output_tokens"] == done.usage.completion_tokens


def test_models_list_is_what_cedar_allows(gw):
    assert sorted(m.id for m in client(gw).models.list()) == ["claude-haiku", "claude-sonnet"]
    assert [m.id for m in client(gw, key=CI_KEY).models.list()] == ["claude-haiku"]


def test_every_error_status_is_typed_and_recorded(gw, workdir):
    c = client(gw)
    seen = {}

    def expect(exc, status, fn):
        with pytest.raises(exc) as e:
            fn()
        assert e.value.status_code == status
        seen[e.value.response.headers["x-cairn-decision-id"]] = status
        assert e.value.body["type"]  # OpenAI error shape: {"error": {"message", "type", ...}}

    expect(openai.AuthenticationError, 401,
           lambda: client(gw, key="wrong").chat.completions.create(**chat_body()))
    expect(openai.PermissionDeniedError, 403,
           lambda: c.chat.completions.create(**chat_body(model="claude-opus")))
    expect(openai.NotFoundError, 404,
           lambda: c.chat.completions.create(**chat_body(model="no-such-model")))
    expect(openai.BadRequestError, 400,
           lambda: c.chat.completions.create(**chat_body(), extra_headers={"x-cairn-data-classification": "top-secret"}))
    expect(openai.BadRequestError, 400,
           lambda: c.chat.completions.create(model="claude-haiku", messages=[{"role": "wizard", "content": "x"}]))
    expect(openai.APIStatusError, 413,
           lambda: c.chat.completions.create(**chat_body(text="x " * 600_000)))

    # 429 from the provider, with Retry-After.
    g429 = Gateway(workdir, base_config(workdir, records="records429", extra="[providers.mock]\nfail_status = 429\n"), name="gw429").start()
    try:
        with pytest.raises(openai.RateLimitError) as e:
            client(g429).chat.completions.create(**chat_body())
        assert e.value.response.headers["retry-after"] == "1"
    finally:
        g429.stop()
    outcome = [r for r in g429.records("records429") if r["kind"] == "outcome"]
    assert outcome[0]["status"] == 429

    # A provider's 500 is the provider's failure: 502, never the gateway's own 503.
    g500 = Gateway(workdir, base_config(workdir, records="records500", extra="[providers.mock]\nfail_status = 500\n"), name="gw500").start()
    try:
        with pytest.raises(openai.InternalServerError) as e:
            client(g500).chat.completions.create(**chat_body())
        assert e.value.status_code == 502 and e.value.body["type"] == "api_error"
    finally:
        g500.stop()
    outcome = [r for r in g500.records("records500") if r["kind"] == "outcome"]
    assert outcome[0]["status"] == 502

    # 503 with no valid bundle: not ready, every request refused, and recorded.
    g503 = Gateway(workdir, base_config(workdir, records="records503", bundle="missing.tar"), name="gw503").start(ready=False)
    try:
        assert httpx.get(f"{g503.url}/readyz").status_code == 503
        with pytest.raises(openai.InternalServerError) as e:
            client(g503).chat.completions.create(**chat_body())
        assert e.value.status_code == 503
    finally:
        g503.stop()
    assert [r["reason"] for r in g503.records("records503") if r["kind"] == "decision"] == ["no_bundle"]

    gw.stop()
    by_id = {r["id"]: r for r in gw.records() if r["kind"] == "decision"}
    for decision_id, status in seen.items():
        assert by_id[decision_id]["status"] == status, by_id[decision_id]
        assert by_id[decision_id]["decision"] == "deny"
    unauth = next(r for r in by_id.values() if r["status"] == 401)
    assert unauth["principal"] == 'Anonymous::"anonymous"'
    assert unauth["auth"]["error"] == "unknown_api_key"


def test_traceparent_is_honoured_and_propagated(gw):
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(),
                   headers={"authorization": f"Bearer {ALICE_KEY}", "traceparent": tp})
    assert r.status_code == 200
    back = r.headers["traceparent"].split("-")
    assert back[1] == "4bf92f3577b34da6a3ce929d0e0e4736" and back[2] != "00f067aa0ba902b7"
    r2 = httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(), headers={"authorization": f"Bearer {ALICE_KEY}"})
    assert len(r2.headers["traceparent"].split("-")[1]) == 32
    gw.stop()
    rec = next(x for x in gw.records() if x["id"] == r.headers["x-cairn-decision-id"])
    assert rec["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_no_config_gateway_works_with_the_printed_dev_key(tmp_path):
    """`cairn gateway serve` with no arguments (here with --listen to stay off port 8080)."""
    import os
    import shutil
    import subprocess
    import time

    from conftest import BIN, REPO

    shutil.copytree(REPO / "policies", tmp_path / "policies")
    out = tmp_path / "out.log"
    proc = subprocess.Popen([BIN, "gateway", "serve", "--listen", "127.0.0.1:0"], cwd=tmp_path,
                            stdout=open(out, "w"), stderr=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    try:
        addr = key = None
        for _ in range(600):
            for line in out.read_text().splitlines():
                if "listening on http://" in line:
                    addr = line.split("http://")[1].strip()
                if line.startswith("dev API key: "):
                    key = line.split()[3]
            if addr and key:
                break
            time.sleep(0.05)
        assert addr and key
        assert (tmp_path / ".cairn" / "dev-api-key").read_text().strip() == key
        c = OpenAI(base_url=f"http://{addr}/v1", api_key=key, max_retries=0)
        r = c.chat.completions.create(model="claude-haiku", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert list((tmp_path / ".cairn" / "records").glob("segment-*.jsonl"))
