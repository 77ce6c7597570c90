"""The MCP gateway as an OAuth 2.1 resource server, tried with the MCP Python SDK's own OAuth
client against a real authorization server (the test issuer): discovery from the 401, a token
for the gateway's resource, refusals of tokens for anything else; and RFC 8693 token exchange
towards a remote upstream that must know the caller."""

import asyncio
import base64
import json
import time

import httpx
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from gateway_harness import ALICE_KEY, Gateway, base_config, make_signed_bundle
from oidc_issuer import Issuer
from test_mcp import free_port, mcp_records, probe_server, start_remote, text

CLIENT_ID, CLIENT_SECRET = "agent-app", "agent-secret-0123456789"
GATEWAY_CLIENT, GATEWAY_CLIENT_SECRET = "cairn-gateway", "exchange-secret-0123456789"


class Storage:
    """The SDK's token storage, in memory."""

    def __init__(self):
        self.tokens, self.client = None, None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, info):
        self.client = info


@pytest.fixture
def issuer():
    i = Issuer()
    i.add_key("rsa1", "RS256")
    i.clients[CLIENT_ID] = (CLIENT_SECRET, "alice")
    i.clients[GATEWAY_CLIENT] = (GATEWAY_CLIENT_SECRET, "cairn-gateway")
    yield i
    i.close()


def oauth_gateway(workdir, issuer, servers, env=None):
    """A gateway on a port chosen first, so its resource URI is known to its config."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    extra = f"""
[auth.oidc]
issuer = "{issuer.url}"
audiences = ["{resource}"]
leeway_seconds = 5

[mcp]
resource = "{resource}"
{servers}
"""
    make_signed_bundle(workdir)
    env = {"CAIRN_SERVER__LISTEN": f"127.0.0.1:{port}", **(env or {})}
    gw = Gateway(workdir, base_config(workdir, extra=extra), env=env).start(timeout=60)
    return gw, resource


def sdk(url, auth=None, headers=None):
    async def go(fn):
        async with httpx2.AsyncClient(auth=auth, headers=headers or {}, timeout=30) as http:
            async with Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as c:
                return await fn(c)

    return lambda fn: asyncio.run(go(fn))


def test_the_sdk_s_oauth_client_discovers_the_issuer_and_gets_a_token_for_the_gateway(workdir, issuer):
    gw, resource = oauth_gateway(workdir, issuer, probe_server())
    try:
        provider = ClientCredentialsOAuthProvider(
            server_url=resource, storage=Storage(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            issuer=issuer.url)

        async def calls(c):
            names = {t.name for t in (await c.list_tools()).tools}
            found = await c.call_tool("probe__search_notes", {"query": "roadmap"})
            return names, found

        names, found = sdk(resource, auth=provider)(calls)
        assert "probe__search_notes" in names and "roadmap" in text(found)
        # The SDK found the issuer through the gateway's metadata and asked for a token for the
        # gateway's resource (RFC 8707), which the gateway then took.
        grants = [r for r in issuer.token_requests if r.get("grant_type") == "client_credentials"]
        assert grants and grants[-1]["resource"] == resource
        rec = [r for r in mcp_records(gw, "tools/call") if r["decision"] == "allow"][-1]
        assert rec["principal"] == 'User::"alice"'
        assert rec["auth"]["method"] == "oidc" and rec["auth"]["issuer"] == issuer.url
        meta = httpx.get(f"{gw.url}/.well-known/oauth-protected-resource/mcp", timeout=5).json()
        assert meta["resource"] == resource and meta["authorization_servers"] == [issuer.url]
    finally:
        gw.stop()


def test_tokens_for_anything_but_the_gateway_are_refused_and_recorded(workdir, issuer):
    gw, resource = oauth_gateway(workdir, issuer, probe_server())
    try:
        now = int(time.time())
        cases = {
            "wrong_audience": issuer.token(aud="cairn"),
            "another_resource": issuer.token(aud="http://127.0.0.1:1/mcp"),
            "expired": issuer.token(aud=resource, iat=now - 3600, nbf=now - 3600, exp=now - 600),
        }
        for name, token in cases.items():
            # The SDK's client is refused at connect (no OAuth provider to try again with).
            with pytest.raises(Exception):  # noqa: B017  (the SDK wraps the 401 in its own types)
                sdk(resource, headers={"Authorization": f"Bearer {token}"})(lambda c: c.list_tools())
            r = httpx.post(resource, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}},
                headers={"Authorization": f"Bearer {token}", "mcp-protocol-version": "2026-07-28",
                         "mcp-method": "tools/list"}, timeout=10)
            assert r.status_code == 401, (name, r.text)
            assert 'resource_metadata="' in r.headers["www-authenticate"]
            assert r.json()["error"]["code"] == -32013
        good = sdk(resource, headers={"Authorization": f"Bearer {issuer.token(aud=resource)}"})(
            lambda c: c.list_tools())
        assert good.tools
        refusals = [r for r in mcp_records(gw) if r["decision"] == "deny" and r["reason"] in (
            "wrong_audience", "token_expired")]
        reasons = {r["reason"] for r in refusals}
        assert reasons == {"wrong_audience", "token_expired"}, reasons
        assert all(r["principal"] == 'Anonymous::"anonymous"' for r in refusals)
        # No token text in any record.
        everything = json.dumps(gw.records())
        assert all(t not in everything for t in cases.values())
    finally:
        gw.stop()


def test_token_exchange_gives_the_upstream_a_token_for_itself_never_the_client_s(workdir, issuer, tmp_path):
    port = free_port()
    upstream, log = start_remote(tmp_path, port)
    audience = "https://tools.internal.example/mcp"
    servers = f"""
[[mcp.servers]]
name = "remote"
url = "http://127.0.0.1:{port}/mcp"
bearer_env = "REMOTE_MCP_TOKEN"
max_data_level = 2

[mcp.servers.token_exchange]
token_endpoint = "{issuer.url}/token"
client_id = "{GATEWAY_CLIENT}"
client_secret_env = "EXCHANGE_SECRET"
audience = "{audience}"
"""
    try:
        gw, resource = oauth_gateway(workdir, issuer, servers, env={
            "REMOTE_MCP_TOKEN": "gateway-token-for-remote", "EXCHANGE_SECRET": GATEWAY_CLIENT_SECRET})
        try:
            client_token = issuer.token(sub="alice", aud=resource)
            as_alice = sdk(resource, headers={"Authorization": f"Bearer {client_token}"})

            async def twice(c):
                first = await c.call_tool("remote__lookup", {"term": "cairn"})
                second = await c.call_tool("remote__lookup", {"term": "again"})
                return first, second

            first, second = as_alice(twice)
            assert "cairn: found remotely" in text(first) and "again" in text(second)
            # Another caller gets a token of its own, never alice's cached one.
            erin_token = issuer.token(sub="erin", aud=resource)
            erin = sdk(resource, headers={"Authorization": f"Bearer {erin_token}"})(
                lambda c: c.call_tool("remote__lookup", {"term": "erin"}))
            assert "erin: found remotely" in text(erin)

            # The token endpoint refuses (the gateway's secret rotated there, not here): fail closed.
            issuer.clients[GATEWAY_CLIENT] = ("rotated-elsewhere", "cairn-gateway")

            async def refused_exchange(c):
                with pytest.raises(MCPError) as e:
                    await c.call_tool("remote__lookup", {"term": "y"})
                return e.value

            late = issuer.token(sub="frank", aud=resource)
            no_token = sdk(resource, headers={"Authorization": f"Bearer {late}"})(refused_exchange)
            assert no_token.code == -32012 and "token exchange" in no_token.error.message
            rec = [r for r in gw.records() if r.get("kind") == "outcome"][-1]
            assert rec["reason"] == "token_exchange" and "invalid_client" in rec["error"]

            # An API key is no OAuth token: nothing to exchange, so the call fails closed.
            async def by_key(c):
                with pytest.raises(MCPError) as e:
                    await c.call_tool("remote__lookup", {"term": "x"})
                return e.value

            refused = sdk(resource, headers={"Authorization": f"Bearer {ALICE_KEY}"})(by_key)
            assert refused.code == -32012 and "exchanged OAuth tokens" in refused.error.message
            out = [r for r in gw.records() if r.get("kind") == "outcome"
                   and r.get("extra", {}).get("mcp", {}).get("server") == "remote"]
            assert out[-1]["reason"] == "token_exchange"
        finally:
            gw.stop()

        exchanges = [r for r in issuer.token_requests if r.get("grant_type", "").endswith("token-exchange")]
        # One exchange for alice's two calls (kept until it nears expiry), one for erin's, and
        # the refused one.
        assert [e["subject_token"] for e in exchanges] == [client_token, erin_token, late], exchanges
        ex = exchanges[0]
        assert ex["audience"] == audience
        assert ex["subject_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
        seen = [json.loads(line) for line in log.read_text().splitlines()]
        posts = [s for s in seen if s["method"] == "POST"]
        calls = [s for s in posts if '"tools/call"' in s["body"]]
        assert len(calls) == 3, calls
        subs = []
        for s in calls:
            bearer = s["headers"]["authorization"].split(" ", 1)[1]
            claims = jwt.decode(bearer, options={"verify_signature": False})
            assert claims["aud"] == audience and claims["act"] == {"sub": GATEWAY_CLIENT}
            subs.append(claims["sub"])
        assert subs == ["alice", "alice", "erin"]
        # The gateway's own requests (listing) carry its own credential; the client's token and
        # the gateway's client secret never reach the upstream.
        own = [s for s in posts if '"tools/call"' not in s["body"]]
        assert own and all(s["headers"].get("authorization") == "Bearer gateway-token-for-remote" for s in own)
        everything = json.dumps(seen)
        assert all(t not in everything for t in (client_token, erin_token, late, GATEWAY_CLIENT_SECRET))
        assert base64.b64encode(f"{GATEWAY_CLIENT}:{GATEWAY_CLIENT_SECRET}".encode()).decode() not in everything
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
