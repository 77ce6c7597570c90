"""The gateway's access log: one structured line per request (JSON with `--log-json`), for model
calls, MCP calls and refusals alike, with the decision id that finds the record; never content;
sampled as configured. And metric labels that no client can invent."""

import asyncio
import json

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gateway_harness import ALICE_KEY, Gateway, base_config, chat_body, make_signed_bundle
from test_mcp import probe_server

SECRET_PROMPT = "the vault passphrase is zebra-cobalt-42, summarise the budget"


def start(workdir, extra="", name="gw"):
    make_signed_bundle(workdir)
    return Gateway(workdir, base_config(workdir, extra=probe_server() + extra), name=name,
                   global_args=["--log-json"]).start(timeout=60)


def access_lines(gw):
    out = []
    for line in gw.err.read_text().splitlines():
        try:
            v = json.loads(line)
        except json.JSONDecodeError:
            continue
        if v.get("target") == "cairn::access":
            out.append({**v, **v.get("fields", {})})
    return out


def chat(gw, key=ALICE_KEY, **kw):
    return httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(**kw),
                      headers={"authorization": f"Bearer {key}"} if key else {}, timeout=30)


def test_every_request_has_one_access_line_and_no_content(workdir):
    gw = start(workdir)
    try:
        ok = chat(gw, model="claude-haiku", text=SECRET_PROMPT)
        assert ok.status_code == 200, ok.text
        unknown = chat(gw, model="no-such-model-xyz")
        assert unknown.status_code == 404
        anonymous = chat(gw, key=None)
        assert anonymous.status_code == 401
        models = httpx.get(f"{gw.base_url}/models", headers={"authorization": f"Bearer {ALICE_KEY}"}, timeout=10)
        assert models.status_code == 200

        async def tool(c):
            return await c.call_tool("probe__search_notes", {"query": SECRET_PROMPT})

        async def go():
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=30) as h:
                async with Client(streamable_http_client(gw.url + "/mcp", http_client=h), mode="2026-07-28") as c:
                    return await tool(c)

        asyncio.run(go())
        metrics = httpx.get(f"{gw.url}/metrics", timeout=5).text
    finally:
        gw.stop()
    lines = access_lines(gw)
    by_id = {line["decision_id"]: line for line in lines}
    decisions = [r for r in gw.records() if r.get("kind") == "decision"]
    assert len(by_id) == len(lines), "one line per request"
    assert {r["id"] for r in decisions} <= set(by_id), "every decided request is in the access log"
    first = by_id[ok.headers["x-cairn-decision-id"]]
    assert first["level"] == "INFO" and first["api"] == "openai" and first["principal"] == 'User::"alice"'
    assert first["decision"] == "allow" and first["status"] == 200 and first["model"] == "claude-haiku"
    assert first["input_tokens"] > 0 and first["output_tokens"] > 0 and first["latency_ms"] >= 0
    refused = by_id[unknown.headers["x-cairn-decision-id"]]
    assert refused["decision"] == "deny" and refused["status"] == 404 and refused["reason"]
    anon = by_id[anonymous.headers["x-cairn-decision-id"]]
    assert anon["principal"] == 'Anonymous::"anonymous"' and anon["status"] == 401
    assert by_id[models.headers["x-cairn-decision-id"]]["method"] == "models.list"
    calls = [line for line in lines if line["api"] == "mcp" and line["method"] == "tools/call"]
    assert calls and calls[-1]["tool"] == "probe__search_notes" and calls[-1]["decision"] == "allow"
    # Never the content of a prompt or of tool arguments.
    assert "zebra-cobalt" not in gw.err.read_text()
    # Metric labels are the configuration's names: a client's model name is `unknown`.
    assert "no-such-model-xyz" not in metrics
    assert 'model="unknown"' in metrics
    assert "input, output, cache_read, cache_write" in metrics


def test_a_sample_of_allowed_requests_and_every_refusal(workdir):
    # `[server]` is already in the base configuration: the key comes from the environment.
    make_signed_bundle(workdir)
    gw = Gateway(workdir, base_config(workdir), global_args=["--log-json"],
                 env={"CAIRN_SERVER__ACCESS_LOG_SAMPLE": "0"}).start()
    try:
        for _ in range(5):
            assert chat(gw).status_code == 200
        assert chat(gw, key="not-a-key").status_code == 401
    finally:
        gw.stop()
    lines = access_lines(gw)
    assert [line["decision"] for line in lines] == ["deny"], lines
