"""`veilpost mcp`: this profile's messaging as MCP tools over stdio, driven by the `mcp`
SDK's own client as an MCP host would drive it, talking to the echo agent through a real
relay."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import mcp
import pytest
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import TextContent

from veilpost.client.storage import new_key

from .conftest import Relay
from .mcp_support import ROOT, agent_env, start_agent_file, stop_process

pytestmark = pytest.mark.asyncio


async def _call(client: mcp.Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    text = "".join(c.text for c in result.content if isinstance(c, TextContent))
    assert not result.is_error, f"{tool}: {text}"
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_veilpost_mcp_talks_to_the_echo_agent(relay: Relay, tmp_path: Path) -> None:
    echo_env = agent_env(relay.url, tmp_path / "echo.sqlite3")
    echo, echo_inbox = await start_agent_file(
        ROOT / "examples" / "echo_agent.py",
        echo_env,
        tmp_path / "echo.log",
        r"echo agent ready: inbox (\w+)",
    )
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "veilpost.cli", "mcp"],
        env={
            "VEILPOST_RELAY_URL": relay.url,
            "VEILPOST_DB_PATH": str(tmp_path / "host.sqlite3"),
            "VEILPOST_DB_KEY": new_key().hex(),
        },
        cwd=ROOT,
    )
    problems: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):  # e.g. a line on stdout that is not MCP
            problems.append(message)

    stderr = tmp_path / "mcp.stderr"
    try:
        with stderr.open("w") as errlog:
            transport = stdio_client(params, errlog=errlog)
            async with mcp.Client(transport, message_handler=on_message) as client:
                tools = {tool.name for tool in (await client.list_tools()).tools}
                assert tools == {
                    "get_identity",
                    "list_conversations",
                    "read_messages",
                    "send_message",
                    "start_dm",
                    "create_group",
                    "wait_for_messages",
                }
                me = await _call(client, "get_identity")
                assert len(me["inbox_id"]) == 32 and me["relay_url"] == relay.url

                sent = await _call(client, "send_message", to=echo_inbox, text="hello over mcp")
                dm = f"dm:{echo_inbox}"
                assert sent["conversation_id"] == dm and sent["status"] == "sent"
                heard = await _call(client, "wait_for_messages", timeout_seconds=20)
                assert not heard["timed_out"]
                assert [
                    (m["text"], m["sender_inbox_id"], m["from_me"]) for m in heard["messages"]
                ] == [("echo: hello over mcp", echo_inbox, False)]
                nothing = await _call(client, "wait_for_messages", timeout_seconds=0.2)
                assert nothing == {"messages": [], "timed_out": True}

                listed = await _call(client, "list_conversations")
                assert [
                    (c["id"], c["kind"], c["peer_inbox_id"]) for c in listed["conversations"]
                ] == [(dm, "dm", echo_inbox)]
                assert listed["next_cursor"] is None

                for n in range(3):
                    await _call(client, "send_message", to=dm, text=f"number {n}")
                echoes: list[str] = []
                while len(echoes) < 3:
                    more = await _call(
                        client, "wait_for_messages", timeout_seconds=20, conversation_id=dm
                    )
                    assert not more["timed_out"]
                    echoes += [m["text"] for m in more["messages"]]
                assert sorted(echoes) == [f"echo: number {n}" for n in range(3)]

                # The history, three at a time from the newest page back, each message once.
                pages: list[list[dict[str, Any]]] = []
                cursor = None
                while True:
                    arguments: dict[str, Any] = {"conversation_id": dm, "limit": 3}
                    if cursor is not None:
                        arguments["cursor"] = cursor
                    page = await _call(client, "read_messages", **arguments)
                    pages.append(page["messages"])
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                assert all(len(p) == 3 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 3
                history = [m for page in reversed(pages) for m in page]
                texts = [m for m in history if m["content_type"] == "veilpost.org/text:1.0"]
                assert [m["text"] for m in texts if m["from_me"]] == [
                    "hello over mcp",
                    "number 0",
                    "number 1",
                    "number 2",
                ]
                assert sorted(m["text"] for m in texts if not m["from_me"]) == sorted(
                    ["echo: hello over mcp", *echoes]
                )
                # Besides: the notice of the DM's creation, shown by its fallback.
                others = [m for m in history if m not in texts]
                assert [m["content_type"] for m in others] == ["veilpost.org/group_updated:1.0"]
                assert "added 1 member" in others[0]["text"]
                assert len({m["id"] for m in history}) == len(history) == 9

                again = await _call(client, "start_dm", peer=echo_inbox)
                assert again["id"] == dm
                group = await _call(client, "create_group", members=[echo_inbox], name="mcp team")
                assert group["kind"] == "group" and group["name"] == "mcp team"
                assert sorted(group["members"]) == sorted([me["inbox_id"], echo_inbox])

                wrong = await client.call_tool(
                    "read_messages", {"conversation_id": "dm:" + "0" * 32}
                )
                assert wrong.is_error
                assert "no conversation" in "".join(
                    c.text for c in wrong.content if isinstance(c, TextContent)
                )
    finally:
        stop_process(echo)
    assert problems == []
    assert "veilpost mcp: inbox" in stderr.read_text()  # logs and notes go to stderr
