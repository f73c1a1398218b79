"""Ask the private-records agent from an MCP client, over Veilpost: the `mcp` SDK's own
client on the transport :func:`veilpost.mcp.connect`.

    export VEILPOST_DB_KEY=$(.venv/bin/veilpost keygen) VEILPOST_DB_PATH=me.sqlite3
    .venv/bin/python examples/private_records/ask_records.py <agent inbox or 0x> search indemnity
    .venv/bin/python examples/private_records/ask_records.py <agent> record PR-1004
    .venv/bin/python examples/private_records/ask_records.py <agent> counts kind
    .venv/bin/python examples/private_records/ask_records.py <agent> tools

It prints the tool's structured result as JSON. This profile's inbox (``veilpost identity``
with the same variables) or bound address must be on the agent's allow-list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

import mcp
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent

from veilpost.agent import Agent, AgentConfigError
from veilpost.mcp import connect

USAGE = "usage: ask_records.py AGENT (search WORDS… | record ID | counts [BY] | tools)"


def _call(command: str, rest: list[str]) -> tuple[str, dict[str, Any]] | None:
    if command == "search" and rest:
        return "search_records", {"query": " ".join(rest)}
    if command == "record" and len(rest) == 1:
        return "get_record", {"record_id": rest[0]}
    if command == "counts" and len(rest) <= 1:
        return "count_records", {"by": rest[0] if rest else "status"}
    return None


async def ask(agent: Agent, server: str, command: str, rest: list[str]) -> int:
    running = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 30)
        async with mcp.Client(connect(agent, server, timeout=30)) as client:
            if command == "tools":
                listed = await client.list_tools()
                print(json.dumps({t.name: t.description for t in listed.tools}, indent=1))
                return 0
            call = _call(command, rest)
            if call is None:
                print(USAGE, file=sys.stderr)
                return 2
            result = await client.call_tool(*call)
            if result.is_error:
                text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
                print(f"error: {text}", file=sys.stderr)
                return 1
            print(json.dumps(result.structured_content, indent=1, ensure_ascii=False))
            return 0
    except MCPError as exc:
        print(f"error: {exc.error.message}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"error: cannot reach the relay at {agent.relay_url}", file=sys.stderr)
        return 3
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        agent = Agent.from_env()
    except AgentConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(ask(agent, argv[0], argv[1], argv[2:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
