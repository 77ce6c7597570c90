"""An MCP server (the official Python SDK, stdio) for the gateway's tests: tools of every risk,
one that reports the environment it was started with (what the gateway passed on), one that
returns data the output guardrails act on, and one that crashes mid-call."""

import json
import os
from typing import Annotated

from pydantic import Field

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("cairn-probe")

READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)


@server.tool(annotations=READ)
def search_notes(query: str) -> str:
    """Searches the notes."""
    return f"1 note matches {query!r}"


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
def delete_note(note_id: str) -> str:
    """Deletes a note."""
    return f"deleted {note_id}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
def write_file(path: str, content: str) -> str:
    """Writes a file (only says so)."""
    return f"wrote {len(content)} bytes to {path}"


@server.tool(annotations=READ)
def environment() -> str:
    """The environment this server was started with."""
    return json.dumps(dict(os.environ))


@server.tool(annotations=READ)
def contact_card(name: str) -> str:
    """A contact, with an email address the output guardrails redact."""
    return f"{name}: {name.lower()}@example.com, card 4111 1111 1111 1111" if name == "leak" else f"{name}: {name.lower()}@example.com"


@server.tool(annotations=READ)
def crash() -> str:
    """Exits the process before answering."""
    os._exit(3)


@server.tool(annotations=READ)
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool(annotations=READ)
def regional(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], query: str) -> str:
    """A query in one region; the region is mirrored in the Mcp-Param-Region header."""
    return f"{query} in {region}"


if __name__ == "__main__":
    server.run("stdio")
