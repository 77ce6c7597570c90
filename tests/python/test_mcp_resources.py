"""MCP resources and prompts through the gateway, with the official MCP Python SDK as the client:
decided by Cedar (`read_resource`, `get_prompt`), listed only where allowed, namespaced at
`/mcp`, recorded; in front of Cairn's demo notes server and the npm reference server."""

import json
import os
import subprocess

import pytest
from mcp.shared.exceptions import MCPError

from conftest import BIN
from gateway_harness import ALICE_KEY, CI_KEY
from test_mcp import (EVERYTHING, MODES, free_port, mcp_records, modern, modern_headers, outcome_of, raw, session, start,
                      wait_http)


@pytest.fixture
def notes_gateway(workdir, tmp_path):
    root = tmp_path / "notes"
    (root / "private").mkdir(parents=True)
    (root / "budget.md").write_text("Budget: travel frozen until March.\n")
    (root / "roadmap.md").write_text("Roadmap: MCP behind the gateway.\n")
    (root / "private" / "oncall.md").write_text("pager: +1 555 0100\n")
    servers = f"""
[[mcp.servers]]
name = "notes"
command = ["{BIN}", "gateway", "demo-mcp-server", "--root", "{root}"]
owner_team = "platform"
max_data_level = 1
"""
    gw = start(workdir, servers)
    yield gw
    gw.stop()


@pytest.mark.parametrize("mode", MODES)
def test_resources_are_listed_where_readable_and_read_by_policy(notes_gateway, mode):
    gw = notes_gateway
    private = "cairn://notes/note:///private/oncall.md"

    async def calls(c):
        listed = [r.uri for r in (await c.list_resources()).resources]
        templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
        budget = await c.read_resource("cairn://notes/note:///budget.md")
        with pytest.raises(MCPError) as denied:
            await c.read_resource(private)
        with pytest.raises(MCPError) as unknown:
            await c.read_resource("cairn://nowhere/note:///budget.md")
        return listed, templates, budget, denied.value, unknown.value

    listed, templates, budget, denied, unknown = session(gw, ALICE_KEY, mode)(calls)
    listed = [str(u) for u in listed]
    assert "cairn://notes/note:///budget.md" in listed and "cairn://notes/note:///roadmap.md" in listed
    assert private not in listed, "alice is not SRE: the private note is filtered out"
    assert templates == ["cairn://notes/note:///{name}"]
    assert "travel frozen" in budget.contents[0].text
    assert str(budget.contents[0].uri) == "cairn://notes/note:///budget.md", "the read's URI is namespaced too"
    assert denied.code == -32010 and denied.error.data["policies"] == ["private-resources-for-sre"]
    assert unknown.code == -32602 and "cairn://server/uri" in unknown.error.message

    reads = mcp_records(gw, "resources/read")
    ok = [r for r in reads if r["decision"] == "allow"][-1]
    assert ok["action"] == 'Action::"read_resource"'
    assert ok["resource"] == 'McpResource::"notes/note:///budget.md"'
    assert ok["resource_attrs"]["scheme"] == "note" and ok["reasons"] == ["mcp-resources-and-prompts-for-everyone"]
    out = outcome_of(gw, ok["id"])
    assert out["reason"] == "ok" and out["extra"]["mcp"]["resource"] == "note:///budget.md"
    assert "travel frozen" not in json.dumps(gw.records()), "no resource text in the records"
    no = [r for r in reads if r["decision"] == "deny" and r["reason"] == "policy"][-1]
    assert no["id"] == denied.error.data["decision_id"]
    lists = mcp_records(gw, "resources/list")
    assert lists[-1]["action"] == 'Action::"list_resources"' and lists[-1]["extra"]["mcp"]["filtered"] == 1


def test_resource_listing_and_reading_never_disagree(notes_gateway):
    """Every listed resource reads; every resource of the server left out of a listing is
    refused, for each principal; one server alone keeps its own URIs."""
    gw = notes_gateway
    own = ["note:///budget.md", "note:///roadmap.md", "note:///private/oncall.md"]
    for path, every in (("/mcp/notes", own), ("/mcp", [f"cairn://notes/{u}" for u in own])):
        for key in (ALICE_KEY, CI_KEY):
            async def check(c):
                listed = {str(r.uri) for r in (await c.list_resources()).resources}
                assert listed <= set(every) and listed, (path, listed)
                for uri in every:
                    try:
                        await c.read_resource(uri)
                        allowed = True
                    except MCPError as e:
                        assert e.code == -32010, e
                        allowed = False
                    assert allowed == (uri in listed), (path, key, uri, listed)

            session(gw, key, "2026-07-28", path)(check)


@pytest.mark.parametrize("mode", MODES)
def test_prompts_are_listed_got_and_their_arguments_checked(notes_gateway, mode):
    gw = notes_gateway

    async def calls(c):
        names = [p.name for p in (await c.list_prompts()).prompts]
        got = await c.get_prompt("notes__summarize_note", {"note_id": "budget.md"})
        with pytest.raises(MCPError) as secret:
            await c.get_prompt("notes__summarize_note", {"note_id": "card 4111 1111 1111 1111"})
        return names, got, secret.value

    names, got, secret = session(gw, ALICE_KEY, mode)(calls)
    assert names == ["notes__summarize_note"]
    assert str(got.messages[0].content.uri) == "cairn://notes/note:///budget.md", "links are namespaced"
    assert "budget.md" in got.messages[1].content.text
    assert secret.code == -32011 and secret.error.data["detectors"] == ["payment_card"]

    gets = mcp_records(gw, "prompts/get")
    ok = [r for r in gets if r["decision"] == "allow"][-1]
    assert ok["action"] == 'Action::"get_prompt"' and ok["resource"] == 'Prompt::"notes/summarize_note"'
    assert set(ok["extra"]["mcp"]["arguments"]) == {"note_id"}
    assert ok["context"]["arguments"]["__entity"]["type"] == "PromptArguments"
    assert all(n not in json.dumps(gw.records()) for n in ("4111 1111 1111 1111", "4111111111111111"))
    # Arguments are strings in MCP: anything else is the client's error, decided by no one.
    bad = raw(gw, modern("prompts/get", {"name": "notes__summarize_note", "arguments": {"note_id": 3}}),
              modern_headers("prompts/get", "notes__summarize_note"))
    assert bad.json()["error"]["code"] == -32602
    assert mcp_records(gw, "prompts/get")[-1]["reason"] == "invalid_arguments"


def test_a_confidential_session_sees_no_resources_or_prompts_of_an_internal_server(notes_gateway):
    async def calls(c):
        return (await c.list_resources()).resources, (await c.list_prompts()).prompts, \
            (await c.list_resource_templates()).resource_templates

    async def go():
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        headers = {"Authorization": f"Bearer {ALICE_KEY}", "x-cairn-data-classification": "confidential"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(streamable_http_client(notes_gateway.url + "/mcp", http_client=http),
                              mode="2026-07-28") as c:
                return await calls(c)

    import asyncio
    resources, prompts, templates = asyncio.run(go())
    assert resources == [] and prompts == [] and templates == []
    # Filtered by policy, not missing: the server answered, and every entry was decided.
    for method in ("resources/list", "prompts/list", "resources/templates/list"):
        rec = mcp_records(notes_gateway, method)[-1]["extra"]["mcp"]
        assert rec["filtered"] >= 1 and rec["listed"] == 0 and "unavailable" not in rec, (method, rec)


def everything_over_http():
    """The npm reference server in its Streamable HTTP mode, on a free port."""
    port = free_port()
    proc = subprocess.Popen(["node", str(EVERYTHING), "streamableHttp"], env={**os.environ, "PORT": str(port)},
                            stderr=subprocess.PIPE, text=True)
    if wait_http(f"http://127.0.0.1:{port}/mcp", timeout=30):
        return proc, port
    proc.kill()
    raise RuntimeError(f"server-everything did not start: {proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_the_npm_reference_server_s_tools_resources_and_prompts(workdir, transport):
    proc = None
    if transport == "stdio":
        where = f'command = ["node", "{EVERYTHING}", "stdio"]'
    else:
        proc, port = everything_over_http()
        where = f'url = "http://127.0.0.1:{port}/mcp"'
    servers = f"""
[[mcp.servers]]
name = "everything"
{where}
max_data_level = 1
"""
    gw = start(workdir, servers)
    try:
        async def calls(c):
            echo = await c.call_tool("everything__echo", {"message": "through the gateway"})
            assert "through the gateway" in "".join(getattr(x, "text", "") for x in echo.content)
            resources = [str(r.uri) for r in (await c.list_resources()).resources]
            templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
            first = await c.read_resource(resources[0])
            dynamic = await c.read_resource("cairn://everything/demo://resource/dynamic/text/1")
            prompts = [p.name for p in (await c.list_prompts()).prompts]
            simple = await c.get_prompt("everything__simple-prompt", {})
            embedded = await c.get_prompt("everything__resource-prompt", {"resourceType": "Text", "resourceId": "1"})
            return resources, templates, first, dynamic, prompts, simple, embedded

        resources, templates, first, dynamic, prompts, simple, embedded = session(gw, ALICE_KEY, "2026-07-28")(calls)
        assert resources and all(u.startswith("cairn://everything/demo://") for u in resources)
        assert "cairn://everything/demo://resource/dynamic/text/{resourceId}" in templates
        assert first.contents and str(first.contents[0].uri) == resources[0]
        assert dynamic.contents[0].text
        assert "everything__simple-prompt" in prompts and "everything__resource-prompt" in prompts
        assert simple.messages
        uris = [str(m.content.resource.uri) for m in embedded.messages if getattr(m.content, "type", "") == "resource"]
        assert uris == ["cairn://everything/demo://resource/dynamic/text/1"], embedded.messages
        outcomes = [r for r in gw.records() if r.get("kind") == "outcome"]
        assert {r["extra"]["mcp"].get("upstream", "ok") for r in outcomes} == {"ok"}, outcomes
    finally:
        gw.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
