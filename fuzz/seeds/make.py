#!/usr/bin/env python3
"""Writes the starting inputs of each fuzz target into fuzz/seeds/TARGET/ from the repository's
own fixtures and policies. scripts/fuzz.sh runs it before a target's first run; the corpus the
fuzzer grows from them (minimised) is what fuzz/corpus/ keeps."""
import hashlib
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "seeds"
SEP = "\n%%\n"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


claims = {"iss": "https://issuer.fuzz", "sub": "alice", "aud": "cairn", "exp": 4102444800,
          "nbf": 0, "iat": 1, "groups": ["eng", "admins"], "email": "a@example.com"}
for header in ['{"alg":"EdDSA","kid":"k1"}', '{"alg":"EdDSA"}',
               '{"alg":"EdDSA","kid":"k1","crit":["b64"],"b64":false}',
               '{"alg":"RS256","kid":"k1"}', '{"alg":"none"}']:
    put("bearer", b"\x01" + (header + "\n" + json.dumps(claims)).encode())
put("bearer", b"\x01" + b'{"alg":"EdDSA","kid":"k1"}\n{"iss":"https://issuer.fuzz","sub":7,"exp":1e19}')
put("bearer", b"\x00eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln")
put("bearer", b"\x00sk-fuzz-0123456789")
put("bearer", b"\x02" + json.dumps(claims).encode())

put("headers", "authorization: Bearer sk-fuzz-0123456789\nx-cairn-data-classification: public\n")
put("headers", "Authorization: BEARER sk-fuzz-0123456789\nx-cairn-data-classification: public\n"
               "x-cairn-data-classification: restricted, internal\n")
put("headers", "authorization: Bearer a\nauthorization: Bearer b\n")
put("headers", "authorization: Basic YTpi\ncontent-length: 3\ncontent-length: 4\n")

chats = [
    {"model": "claude-sonnet", "messages": [{"role": "user", "content": "hello"}]},
    {"model": "m", "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 64,
     "temperature": 0.2, "top_p": 0.9, "stop": ["\n"], "user": "u",
     "messages": [{"role": "system", "content": "be brief"},
                  {"role": "user", "content": [{"type": "text", "text": "my key is AKIAIOSFODNN7EXAMPLE"}]}]},
    {"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
     "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
     "tool_choice": "auto", "max_completion_tokens": 2147483647},
]
for c in chats:
    put("chat_request", json.dumps(c))

chunks = [{"id": "x", "choices": [{"delta": {"content": "Hel"}}]},
          {"id": "x", "choices": [{"delta": {"content": "lo, mail me at a@example.com"}}]},
          {"id": "x", "choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}}]},
          {"id": "x", "choices": [{"delta": {}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}}}]
sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
put("upstream_response", b"\x03" + sse.encode())
put("upstream_response", b"\x00" + sse.replace("\n", "\r\n").encode())
put("upstream_response", b"\x05" + json.dumps({"id": "c", "model": "m", "choices": [
    {"message": {"content": "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----"},
     "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode())

for f in sorted((ROOT / "tests" / "fixtures" / "cloudtrail").rglob("*.json*")):
    data = f.read_bytes()
    if len(data) < 64 * 1024:
        put("cloudtrail", b"\x07" + data)
put("cloudtrail", b'\x00{"Records":[{"eventTime":"2026-01-01T00:00:00Z","eventSource":"s","eventName":"n","eventID":"1"},{"eventTime":"x"}]}')
put("cloudtrail", b'\x02{"eventTime":"2026-01-01T00:00:00.5+02:00","eventSource":"s","eventName":"n","eventID":"1"}\n{"a":1}\n')

for f in sorted((ROOT / "tests" / "fixtures" / "otlp").glob("*")):
    put("otlp", f.read_bytes())

seg = ROOT / "tests" / "fixtures" / "records-v1" / "segment-00000000000000000001.jsonl"
lines = seg.read_text().splitlines(keepends=True)
put("record_lines", "".join(lines[:6]))
bodies = []
for line in lines[:6]:
    cut = line.rfind(',"hash":"')
    bodies.append(line[:cut] + "}\n")
put("record_lines", "".join(bodies))

pol = ROOT / "policies"
schema = (pol / "schema.cedarschema").read_text()
policies = [(pol / n).read_text() for n in ("models.cedar", "tools_and_audit.cedar")]
put("policy_sources", SEP.join([schema] + policies))
for suite in sorted((pol / "tests").glob("*")):
    text = suite.read_text()
    if len(text) < 32 * 1024:
        put("policy_sources", SEP.join([schema, policies[0], text]))
put("policy_sources", SEP.join([schema, '@id("a")\npermit (principal, action, resource) when { context.x > 1 };']))

members = [("schema.cedarschema", schema)] + [
    (f"policies/{n}", (pol / n).read_text()) for n in ("models.cedar", "tools_and_audit.cedar")]
put("bundle", b"\x01" + SEP.join(f"{p}\n{t}" for p, t in members).encode())
manifest = {"format": "cairn.policy-bundle/v1", "version": "1", "source_commit": "0" * 40,
            "created": "2026-01-01T00:00:00Z",
            "files": [{"path": p, "sha256": hashlib.sha256(t.encode()).hexdigest(), "size": len(t.encode())}
                      for p, t in members],
            "policies": [], "tests": {"cases": 1, "passed": 1, "coverage_percent": 100}}
put("bundle", b"\x02" + SEP.join([json.dumps(manifest, indent=2)] + [f"{p}\n{t}" for p, t in members]).encode())
put("bundle", b"\x00" + b"not a tar archive")

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}
mcp_head = "mcp-protocol-version: 2026-07-28\nmcp-method: {m}\n{extra}\n"
for method, params, extra in [
    ("tools/call", {"name": "files__write_file", "arguments": {"path": "/srv/scratch/a", "content": "x"}},
     "mcp-name: files__write_file\n"),
    ("tools/call", {"name": "files__Grüße", "arguments": {}}, "mcp-name: =?base64?ZmlsZXNfX0dyw7zDn2U=?=\n"),
    ("tools/list", {}, ""),
    ("server/discover", {}, ""),
]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": META}}
    put("mcp_message", mcp_head.format(m=method, extra=extra) + "\n" + json.dumps(body))
put("mcp_message", "\n\n" + json.dumps({"jsonrpc": "2.0", "id": "a", "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}))
put("mcp_message", "\n\n" + json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
put("mcp_message", "\n\n" + json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
    "name": "write_file", "annotations": {"readOnlyHint": False, "destructiveHint": False},
    "inputSchema": {"type": "object", "required": ["path"], "additionalProperties": False,
                    "properties": {"path": {"type": "string"}, "n": {"type": ["integer", "null"]}}},
    "arguments": {"path": "/a", "n": 2.0}}}))
