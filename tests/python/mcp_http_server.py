"""A remote MCP server (the official Python SDK, Streamable HTTP) that writes the headers and body
of every request it receives to a file: the gateway's tests read it to check that the upstream
gets the gateway's credential for it and never the client's.

    python mcp_http_server.py PORT HEADERS_FILE [--stateless]
"""

import json
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

port, log = int(sys.argv[1]), sys.argv[2]
stateless = "--stateless" in sys.argv
server = MCPServer("cairn-remote-probe")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=True))
def lookup(term: str) -> str:
    """Looks a term up."""
    return f"{term}: found remotely"


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
def purge(target: str) -> str:
    """Purges a target."""
    return f"purged {target}"


app = server.streamable_http_app(json_response=False, stateless_http=stateless)


async def recording(scope, receive, send):
    if scope["type"] != "http":
        return await app(scope, receive, send)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    body = bytearray()

    async def receive_and_record():
        message = await receive()
        if message["type"] == "http.request":
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                entry = {"path": scope["path"], "method": scope["method"], "headers": headers,
                         "body": body.decode("utf-8", "replace")}
                with open(log, "a") as f:
                    f.write(json.dumps(entry) + "\n")
        return message

    await app(scope, receive_and_record, send)


if __name__ == "__main__":
    uvicorn.run(recording, host="127.0.0.1", port=port, log_level="warning")
