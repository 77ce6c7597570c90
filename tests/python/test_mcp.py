"""The MCP gateway with the official MCP Python SDK as the client, over Streamable HTTP, in
both protocol eras (2026-07-28 and the handshake era), in front of real upstream servers:
a Python SDK server and the npm reference servers, over stdio."""

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters  # noqa: F401  (the SDK's public entry points)
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import REPO, run
from gateway_harness import ALICE_KEY, CI_KEY, Gateway, base_config, make_signed_bundle

PROBE = REPO / "tests" / "python" / "mcp_probe_server.py"
NPM = Path(os.environ.get("CAIRN_NPM", Path.home() / ".cache" / "cairn" / "npm")) / "node_modules"
EVERYTHING = NPM / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
FILESYSTEM = NPM / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"
MODES = ["2026-07-28", "legacy"]
# A secret the gateway's environment holds and no upstream may see.
GATEWAY_SECRET = "gateway-secret-0123456789"


def probe_server(name="probe", extra=""):
    return f"""
[[mcp.servers]]
name = "{name}"
command = ["{sys.executable}", "{PROBE}"]
owner_team = "platform"
max_data_level = 1
env = {{ PROBE_SETTING = "visible" }}
{extra}
"""


def start(workdir, servers, extra=""):
    make_signed_bundle(workdir)
    gw = Gateway(workdir, base_config(workdir, extra=servers + extra), env={"CAIRN_TEST_SECRET": GATEWAY_SECRET})
    return gw.start(timeout=60)


@pytest.fixture
def gateway(workdir):
    gw = start(workdir, probe_server())
    yield gw
    gw.stop()


def session(gw, key, mode, path="/mcp"):
    """Runs `fn(client)` with an SDK client speaking `mode`, authenticated with `key`."""

    async def go(fn):
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            async with Client(streamable_http_client(gw.url + path, http_client=http), mode=mode) as c:
                return await fn(c)

    return lambda fn: asyncio.run(go(fn))


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


def mcp_records(gw, method=None):
    out = [r for r in gw.records() if r.get("kind") == "decision" and "mcp" in (r.get("extra") or {})]
    return [r for r in out if method is None or r["extra"]["mcp"].get("method") == method]


def outcome_of(gw, decision_id):
    for r in gw.records():
        if r.get("kind") == "outcome" and r.get("decision_id") == decision_id:
            return r
    return None


@pytest.mark.parametrize("mode", MODES)
def test_listing_is_namespaced_and_filtered_by_policy(gateway, mode):
    names = lambda c: c.list_tools()  # noqa: E731

    alice = {t.name for t in session(gateway, ALICE_KEY, mode)(lambda c: names(c)).tools}
    # Engineering may call read and write tools; the destructive one needs SRE.
    assert "probe__search_notes" in alice and "probe__write_file" in alice
    assert "probe__delete_note" not in alice
    bot = {t.name for t in session(gateway, CI_KEY, mode)(lambda c: names(c)).tools}
    assert "probe__search_notes" in bot
    assert "probe__write_file" not in bot and "probe__delete_note" not in bot

    # One server alone, under its own names.
    own = {t.name for t in session(gateway, ALICE_KEY, mode, "/mcp/probe")(lambda c: names(c)).tools}
    assert "search_notes" in own and "delete_note" not in own

    lists = mcp_records(gateway, "tools/list")
    assert lists, "each listing is recorded"
    last = lists[-1]
    assert last["action"] == 'Action::"list_tools"'
    assert last["extra"]["mcp"]["filtered"] >= 1
    assert last["extra"]["mcp"]["listed"] == len(own)


@pytest.mark.parametrize("mode", MODES)
def test_calls_allowed_denied_and_limited_by_an_argument(gateway, mode):
    async def calls(c):
        await c.list_tools()
        ok = await c.call_tool("probe__search_notes", {"query": "roadmap"})
        with pytest.raises(MCPError) as denied:
            await c.call_tool("probe__delete_note", {"note_id": "n1"})
        scratch = await c.call_tool("probe__write_file", {"path": "/srv/scratch/a.txt", "content": "hi"})
        with pytest.raises(MCPError) as outside:
            await c.call_tool("probe__write_file", {"path": "/etc/passwd", "content": "x"})
        return ok, denied.value, scratch, outside.value

    ok, denied, scratch, outside = session(gateway, ALICE_KEY, mode)(calls)
    assert "roadmap" in text(ok) and not ok.is_error
    assert "wrote 2 bytes" in text(scratch)
    assert denied.code == -32010, denied
    assert "denied by policy" in denied.error.message
    assert outside.code == -32010
    assert outside.error.data["policies"] == ["file-writes-only-in-scratch"]

    calls_ = mcp_records(gateway, "tools/call")
    by_tool = {}
    for r in calls_:
        by_tool.setdefault(r["resource"], []).append(r)
    allowed = by_tool['Tool::"probe/search_notes"'][-1]
    assert allowed["decision"] == "allow" and allowed["reasons"] == ["tools-read-for-everyone"]
    assert allowed["principal"] == 'User::"alice"'
    assert allowed["resource_attrs"]["risk"] == "read"
    # Arguments are named, sized and hashed; their text is nowhere in the record.
    assert set(allowed["extra"]["mcp"]["arguments"]) == {"query"}
    assert "roadmap" not in json.dumps(allowed)
    out = outcome_of(gateway, allowed["id"])
    assert out is not None and out["reason"] == "ok" and out["extra"]["mcp"]["is_error"] is False
    assert "roadmap" not in json.dumps(out)
    refused = by_tool['Tool::"probe/delete_note"'][-1]
    assert refused["decision"] == "deny" and refused["reason"] == "policy"
    assert refused["id"] == denied.error.data["decision_id"]
    paths = by_tool['Tool::"probe/write_file"']
    assert [r["decision"] for r in paths[-2:]] == ["allow", "deny"]
    assert paths[-1]["reasons"] == ["file-writes-only-in-scratch"]


def test_listing_and_calls_never_disagree(gateway):
    """A tool is listed exactly when some call of it is allowed: every unlisted tool's call is
    denied, and every listed tool has an allowed call (with the arguments the policies want)."""
    args = {
        "search_notes": {"query": "q"},
        "delete_note": {"note_id": "n"},
        "write_file": {"path": "/srv/scratch/f", "content": "c"},
        "environment": {},
        "contact_card": {"name": "Bo"},
        "pid": {},
    }

    for key in (ALICE_KEY, CI_KEY):
        async def check(c):
            listed = {t.name.split("__", 1)[1] for t in (await c.list_tools()).tools}
            for tool, a in args.items():
                try:
                    await c.call_tool(f"probe__{tool}", a)
                    allowed = True
                except MCPError as e:
                    assert e.code == -32010, e
                    allowed = False
                assert allowed == (tool in listed), (key, tool, listed)

        session(gateway, key, "2026-07-28")(check)


def test_guardrails_on_arguments_and_results(gateway):
    async def calls(c):
        await c.list_tools()
        with pytest.raises(MCPError) as secret:
            await c.call_tool("probe__search_notes", {"query": "AKIAIOSFODNN7EXAMPLE"})
        with pytest.raises(MCPError) as card:
            await c.call_tool("probe__search_notes", {"query": "card 4111 1111 1111 1111"})
        redacted = await c.call_tool("probe__contact_card", {"name": "Bo"})
        with pytest.raises(MCPError) as leaked:
            await c.call_tool("probe__contact_card", {"name": "leak"})
        return secret.value, card.value, redacted, leaked.value

    secret, card, redacted, leaked = session(gateway, ALICE_KEY, "2026-07-28")(calls)
    # A secret in the arguments: the policy forbids it (a denial, with the policy named).
    assert secret.code == -32010 and secret.error.data["policies"] == ["no-secrets-in-tool-arguments"]
    # A card number: allowed by policy, blocked by the guardrail's action.
    assert card.code == -32011 and card.error.data["detectors"] == ["payment_card"]
    # The result's email address is redacted before it reaches the client.
    assert "@example.com" not in text(redacted) and "Bo" in text(redacted)
    # A blocked result never reaches the client.
    assert leaked.code == -32011 and "result" in leaked.error.message
    rec = [r for r in mcp_records(gateway, "tools/call") if r["id"] == card.error.data["decision_id"]][0]
    assert rec["guardrails"]["input"]["findings"] == {"payment_card": 1}
    assert rec["guardrails"]["input"]["blocked"] == ["payment_card"]
    # (The number, not its first digits: a hash or a signature may hold "4111" by chance.)
    assert all(n not in json.dumps(gateway.records()) for n in ("4111 1111 1111 1111", "4111111111111111"))


def test_upstreams_never_see_the_client_s_or_the_gateway_s_credentials(gateway):
    async def env(c):
        await c.list_tools()
        return json.loads(text(await c.call_tool("probe__environment", {})))

    environment = session(gateway, ALICE_KEY, "legacy")(env)
    assert environment["PROBE_SETTING"] == "visible"
    everything = json.dumps(environment)
    assert ALICE_KEY not in everything
    assert GATEWAY_SECRET not in everything and "CAIRN_TEST_SECRET" not in everything


def raw(gw, body, headers=None, key=ALICE_KEY, path="/mcp"):
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if key:
        h["authorization"] = f"Bearer {key}"
    h.update(headers or {})
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(gw.url + path, content=data, headers=h, timeout=30)


def modern(method, params=None, id_=1):
    p = dict(params or {})
    p["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": p}


def modern_headers(method, name=None):
    h = {"mcp-protocol-version": "2026-07-28", "mcp-method": method}
    if name is not None:
        h["mcp-name"] = name
    return h


def test_bad_input_gets_a_json_rpc_error_and_a_record(gateway):
    before = len(mcp_records(gateway))
    cases = [
        (raw(gateway, b"{not json"), 400, -32700),
        (raw(gateway, b"[]"), 400, -32600),
        (raw(gateway, {"jsonrpc": "2.0", "id": 1, "result": {}}), 400, -32600),
        # The body says one tool, the header another.
        (raw(gateway, modern("tools/call", {"name": "probe__search_notes", "arguments": {"query": "q"}}),
             modern_headers("tools/call", "probe__delete_note")), 400, -32020),
        (raw(gateway, modern("tools/list"), modern_headers("tools/call")), 400, -32020),
        (raw(gateway, modern("tools/list"), {"mcp-method": "tools/list"}), 400, -32020),
        (raw(gateway, modern("completion/complete"), modern_headers("completion/complete")), 404, -32601),
        # Another server's namespace, a tool that does not exist, arguments against the schema.
        (raw(gateway, modern("tools/call", {"name": "other__search_notes"}),
             modern_headers("tools/call", "other__search_notes")), 200, -32602),
        (raw(gateway, modern("tools/call", {"name": "probe__nope"}),
             modern_headers("tools/call", "probe__nope")), 200, -32602),
        (raw(gateway, modern("tools/call", {"name": "probe__search_notes", "arguments": {"query": 7}}),
             modern_headers("tools/call", "probe__search_notes")), 200, -32602),
        (raw(gateway, modern("tools/call", {"name": "probe__search_notes", "arguments": {}}),
             modern_headers("tools/call", "probe__search_notes")), 200, -32602),
        # The handshake era without a session, and with one the gateway never issued.
        (raw(gateway, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), 400, -32600),
        (raw(gateway, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, {"mcp-session-id": "forged"}), 404, -32600),
        (raw(gateway, b"x" * (2 * 1024 * 1024)), 413, -32600),
        (raw(gateway, modern("tools/list"), {**modern_headers("tools/list"), "origin": "http://evil.example"}), 403, -32600),
    ]
    unsupported = raw(gateway, {**modern("tools/list"), "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2099-01-01", "io.modelcontextprotocol/clientCapabilities": {}}}},
        {"mcp-protocol-version": "2099-01-01", "mcp-method": "tools/list"})
    cases.append((unsupported, 400, -32022))
    for i, (r, status, code) in enumerate(cases):
        assert r.status_code == status, (i, r.status_code, r.text)
        body = r.json()
        assert body["error"]["code"] == code, (i, body)
        assert body["error"]["message"], i
    assert unsupported.json()["error"]["data"]["supported"] == ["2026-07-28"]
    # Every refusal has its record, each with a reason.
    recs = mcp_records(gateway)[before:]
    assert len(recs) == len(cases), [r["reason"] for r in recs]
    assert all(r["decision"] == "deny" and r["reason"] for r in recs)


def test_authentication_as_a_protected_resource(gateway):
    r = raw(gateway, modern("tools/list"), modern_headers("tools/list"), key=None)
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert 'resource_metadata="' in challenge
    url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
    assert url.endswith("/.well-known/oauth-protected-resource/mcp")
    meta = httpx.get(url, timeout=5).json()
    assert meta["resource"] == gateway.url + "/mcp"
    assert meta["bearer_methods_supported"] == ["header"]
    bad = raw(gateway, modern("tools/list"), modern_headers("tools/list"), key="not-a-key")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == -32013
    recs = mcp_records(gateway)
    assert [r["reason"] for r in recs[-2:]] and all(r["principal"] == 'Anonymous::"anonymous"' for r in recs[-2:])
    # A session is its principal's: alice's session id is unknown to the service account.
    init = raw(gateway, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    assert init.json()["result"]["protocolVersion"] == "2025-06-18"
    sid = init.headers["mcp-session-id"]
    mine = raw(gateway, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, {"mcp-session-id": sid})
    assert mine.status_code == 200 and mine.json()["result"]["tools"]
    theirs = raw(gateway, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, {"mcp-session-id": sid}, key=CI_KEY)
    assert theirs.status_code == 404
    assert httpx.get(gateway.url + "/mcp", timeout=5).status_code == 405


def test_a_crashing_upstream_is_restarted_and_the_crash_recorded(gateway):
    async def calls(c):
        await c.list_tools()
        first = text(await c.call_tool("probe__pid", {}))
        with pytest.raises(MCPError) as crashed:
            await c.call_tool("probe__crash", {})
        second = text(await c.call_tool("probe__pid", {}))
        return first, crashed.value, second

    first, crashed, second = session(gateway, ALICE_KEY, "2026-07-28")(calls)
    assert crashed.code == -32012 and "exited" in crashed.error.message
    assert first != second, "a new process answers after the crash"
    out = outcome_of(gateway, crashed.error.data["decision_id"])
    assert out["reason"] == "upstream_exited"
    err = gateway.err.read_text()
    assert "MCP server exited" in err


def test_the_chain_verifies_after_mcp_traffic(gateway):
    async def calls(c):
        await c.list_tools()
        await c.call_tool("probe__search_notes", {"query": "q"})

    session(gateway, ALICE_KEY, "legacy")(calls)
    gateway.stop()
    proc = run(["audit", "verify", str(gateway.records_dir), "--pubkey", str(gateway.workdir / "keys" / "signing.pub")],
               cwd=gateway.workdir)
    assert "ok" in proc.stdout.lower()


@pytest.mark.skipif(not EVERYTHING.exists(), reason="npm servers not installed (scripts/test.sh installs them)")
def test_npm_reference_servers_over_stdio(workdir, tmp_path):
    root = tmp_path / "share"
    (root / "scratch").mkdir(parents=True)
    (root / "scratch" / "hello.txt").write_text("hello from the filesystem server")
    servers = f"""
[[mcp.servers]]
name = "everything"
command = ["node", "{EVERYTHING}", "stdio"]
max_data_level = 1

[[mcp.servers]]
name = "files"
command = ["node", "{FILESYSTEM}", "{root}"]
max_data_level = 1

[mcp.servers.tools.write_file]
risk = "write"
"""
    gw = start(workdir, servers)
    try:
        async def calls(c):
            names = {t.name for t in (await c.list_tools()).tools}
            echo = await c.call_tool("everything__echo", {"message": "through the gateway"})
            read = await c.call_tool("files__read_text_file", {"path": str(root / "scratch" / "hello.txt")})
            wrote = await c.call_tool("files__write_file", {"path": str(root / "scratch" / "new.txt"), "content": "x"})
            with pytest.raises(MCPError) as outside:
                await c.call_tool("files__write_file", {"path": str(root / "new.txt"), "content": "x"})
            return names, echo, read, wrote, outside.value

        names, echo, read, wrote, outside = session(gw, ALICE_KEY, "2026-07-28")(calls)
        assert "everything__echo" in names and "files__read_text_file" in names
        assert "through the gateway" in text(echo)
        assert "hello from the filesystem server" in text(read)
        assert not wrote.is_error and (root / "scratch" / "new.txt").read_text() == "x"
        assert outside.error.data["policies"] == ["file-writes-only-in-scratch"]
        assert not (root / "new.txt").exists()
    finally:
        gw.stop()


def test_tool_decisions_land_in_the_lake_and_the_tools_report(gateway, tmp_path):
    import duckdb
    import pyarrow.dataset as ds

    async def calls(c):
        await c.list_tools()
        await c.call_tool("probe__search_notes", {"query": "q"})
        with pytest.raises(MCPError):
            await c.call_tool("probe__delete_note", {"note_id": "n"})

    session(gateway, ALICE_KEY, "2026-07-28")(calls)
    gateway.stop()
    lake = tmp_path / "lake"
    run(["ingest", "decisions", str(gateway.records_dir), "--pubkey", str(gateway.workdir / "keys" / "signing.pub"),
         "--lake", str(lake)], cwd=gateway.workdir)
    rows = duckdb.sql(
        f"SELECT mcp_server, mcp_tool, mcp_method, decision FROM read_parquet('{lake}/decisions/**/*.parquet', "
        "hive_partitioning = true) WHERE action = 'Action::\"call_tool\"' ORDER BY ts").fetchall()
    assert rows == [("probe", "search_notes", "tools/call", "allow"), ("probe", "delete_note", "tools/call", "deny")]
    table = ds.dataset(lake / "decisions", format="parquet", partitioning="hive").to_table()
    assert {"mcp_server", "mcp_tool", "mcp_method"} <= set(table.column_names)
    report = json.loads(run(["report", "tools", "--lake", str(lake), "--format", "json"], cwd=gateway.workdir).stdout)
    sections = report["reports"][0]["sections"]
    summary = sections["summary"]["rows"][0]
    assert summary["calls"] == 2 and summary["allowed"] == 1 and summary["denied"] == 1
    by_policy = sections["denials_by_policy"]["rows"]
    assert by_policy == [{"policy": "(no permit)", "tool": 'Tool::"probe/delete_note"', "denials": 1, "principals": 1}]


def test_kill_9_during_tool_calls_loses_no_answered_call(workdir):
    from gateway_harness import kill9_under_load

    gw = start(workdir, probe_server())
    answered = []

    def traffic(n, stop):
        client = httpx.Client(timeout=5)
        tools = [("probe__search_notes", {"query": "q"}), ("probe__delete_note", {"note_id": "n"}),
                 ("probe__write_file", {"path": "/etc/x", "content": "c"})]
        i = 0
        while not stop.is_set():
            i += 1
            name, args = tools[(i + n) % len(tools)]
            body = modern("tools/call", {"name": name, "arguments": args}, id_=i)
            try:
                r = client.post(gw.url + "/mcp", json=body, headers={
                    **modern_headers("tools/call", name), "authorization": f"Bearer {ALICE_KEY}"})
                answered.append((r.headers["x-cairn-decision-id"], r.json()))
            except httpx.HTTPError:
                pass  # the gateway died mid-call: nothing was answered

    kill9_under_load(gw, traffic, clients=6)
    assert len(answered) > 30, len(answered)

    gw2 = Gateway(workdir, gw.config_path.read_text(), name="gw2").start(timeout=60)
    gw2.stop()
    records = {r["id"]: r for r in gw2.records() if r["kind"] == "decision"}
    missing = [i for i, _ in answered if i not in records]
    assert not missing, f"{len(missing)} answered calls have no record: {missing[:5]}"
    for decision_id, body in answered:
        assert records[decision_id]["decision"] == ("allow" if "result" in body else "deny"), body
    v = run(["audit", "verify", "records", "--pubkey", "keys/signing.pub", "--require-sealed"], cwd=workdir)
    assert "chain and signatures intact" in v.stdout


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=20):
    """Until something answers HTTP at `url` (any status)."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            httpx.get(url, timeout=1)
            return True
        except httpx.HTTPError:
            time.sleep(0.1)
    return False


def start_remote(tmp_path, port, stateless=True):
    """The recording Python SDK server on `port` (Streamable HTTP); its headers log."""
    import subprocess
    log = tmp_path / "headers.jsonl"
    args = [sys.executable, str(REPO / "tests" / "python" / "mcp_http_server.py"), str(port), str(log)]
    upstream = subprocess.Popen(args + (["--stateless"] if stateless else []))
    wait_http(f"http://127.0.0.1:{port}/mcp")
    return upstream, log


@pytest.mark.parametrize("stateless", [False, True])
def test_a_remote_upstream_gets_the_gateway_s_credential_never_the_client_s(workdir, tmp_path, stateless):
    port = free_port()
    upstream, log = start_remote(tmp_path, port, stateless)
    try:
        servers = f"""
[[mcp.servers]]
name = "remote"
url = "http://127.0.0.1:{port}/mcp"
bearer_env = "REMOTE_MCP_TOKEN"
headers = {{ x-tenant = "acme" }}
max_data_level = 2
"""
        make_signed_bundle(workdir)
        gw = Gateway(workdir, base_config(workdir, extra=servers),
                     env={"REMOTE_MCP_TOKEN": "gateway-token-for-remote"}).start(timeout=60)
        try:
            async def calls(c):
                names = {t.name for t in (await c.list_tools()).tools}
                found = await c.call_tool("remote__lookup", {"term": "cairn"})
                with pytest.raises(MCPError) as denied:
                    await c.call_tool("remote__purge", {"target": "all"})
                return names, found, denied.value

            names, found, denied = session(gw, ALICE_KEY, "2026-07-28")(calls)
        finally:
            gw.stop()
        assert names == {"remote__lookup"}, "the destructive tool is filtered out"
        assert "cairn: found remotely" in text(found)
        assert denied.code == -32010
        seen = [json.loads(line) for line in log.read_text().splitlines()]
        posts = [s for s in seen if s["method"] == "POST"]
        assert posts, seen
        for s in posts:
            h = s["headers"]
            assert h.get("authorization") == "Bearer gateway-token-for-remote", h
            assert h.get("x-tenant") == "acme"
            assert ALICE_KEY not in json.dumps(h)
        # The purge call never reached the upstream: it was decided at the gateway.
        calls = [s["body"] for s in posts if '"tools/call"' in s["body"]]
        assert any("lookup" in b for b in calls)
        assert not any("purge" in b for b in calls)
        out = [r for r in gw.records() if r.get("kind") == "outcome" and r.get("extra", {}).get("mcp", {}).get("server") == "remote"]
        assert out and out[-1]["reason"] == "ok"
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


def test_rate_limits_per_principal_and_tool(workdir):
    limits = """
[[limits.rules]]
name = "tool-calls"
scope = "user_tool"
requests_per_minute = 2
"""
    gw = start(workdir, probe_server(), limits)
    try:
        async def calls(c):
            await c.list_tools()
            for _ in range(2):
                await c.call_tool("probe__search_notes", {"query": "q"})
            with pytest.raises(MCPError) as limited:
                await c.call_tool("probe__search_notes", {"query": "q"})
            other = await c.call_tool("probe__pid", {})
            return limited.value, other

        limited, other = session(gw, ALICE_KEY, "2026-07-28")(calls)
        assert limited.code == -32015 and "tool-calls" in limited.error.message
        assert not other.is_error, "another tool has its own counter"
        # Another principal on the same tool has its own counter too.
        bot = session(gw, CI_KEY, "2026-07-28")(lambda c: c.call_tool("probe__search_notes", {"query": "q"}))
        assert not bot.is_error
        rec = [r for r in mcp_records(gw, "tools/call") if r.get("status") == 429]
        assert len(rec) == 1 and rec[0]["extra"]["limit"]["rule"] == "tool-calls"
    finally:
        gw.stop()


def test_tool_calls_are_spans_without_their_arguments(workdir):
    from otlp_receiver import Receiver

    make_signed_bundle(workdir)
    with Receiver() as otlp:
        telemetry = f'\n[telemetry]\notlp_endpoint = "{otlp.endpoint}"\nbatch_delay_ms = 50\n'
        gw = Gateway(workdir, base_config(workdir, extra=probe_server() + telemetry)).start(timeout=60)
        try:
            async def calls(c):
                await c.list_tools()
                await c.call_tool("probe__search_notes", {"query": "a-secret-plan"})

            session(gw, ALICE_KEY, "2026-07-28")(calls)
            spans = otlp.wait_for(lambda s: any(x["name"] == "tools/call probe__search_notes" for x in s))
        finally:
            gw.stop()
    root = next(s for s in spans if s["name"] == "tools/call probe__search_notes" and s["kind"] == 2)
    a = root["attrs"]
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.name"] == "probe__search_notes"
    assert a["mcp.method.name"] == "tools/call"
    assert a["mcp.protocol.version"] == "2026-07-28"
    assert a["cairn.decision"] == "allow"
    children = {s["name"]: s for s in spans if s["parent_span_id"] == root["span_id"]}
    assert "policy" in children and "tools/call search_notes" in children
    assert children["tools/call search_notes"]["kind"] == 3  # CLIENT
    assert any(s["name"] == "tools/list" for s in spans)
    assert b"a-secret-plan" not in b"".join(otlp.bodies)


def test_param_headers_are_mirrored_by_the_sdk_and_checked(gateway):
    async def call(c):
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert tools["probe__regional"].input_schema["properties"]["region"]["x-mcp-header"] == "Region"
        return await c.call_tool("probe__regional", {"region": "eu-west-1", "query": "q"})

    assert "q in eu-west-1" in text(session(gateway, ALICE_KEY, "2026-07-28")(call))
    body = modern("tools/call", {"name": "probe__regional", "arguments": {"region": "eu-west-1", "query": "q"}})
    missing = raw(gateway, body, modern_headers("tools/call", "probe__regional"))
    assert missing.status_code == 400 and missing.json()["error"]["code"] == -32020
    wrong = raw(gateway, body, {**modern_headers("tools/call", "probe__regional"), "mcp-param-region": "us-east-1"})
    assert wrong.status_code == 400 and "Mcp-Param-Region" in wrong.json()["error"]["message"]
