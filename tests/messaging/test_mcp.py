"""MCP over Veilpost against a real relay, with real MLS and the `mcp` SDK's own client and
server sessions: the private-records agent (as `veilpost run` runs it) through a DM, its
allow-list, sessions kept apart per peer, timeouts, a lost agent, catch-up, malformed
payloads."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import mcp
import pytest
from mcp import ClientSession
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp.types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    CONNECTION_CLOSED,
    INVALID_REQUEST,
    LATEST_PROTOCOL_VERSION,
    PROTOCOL_VERSION_META_KEY,
    REQUEST_TIMEOUT,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    TextContent,
)

from veilpost.agent import Agent
from veilpost.client import content
from veilpost.client.client import message_id_of
from veilpost.crypto.ethereum import address_of_private_key
from veilpost.mcp import (
    NOT_ALLOWED,
    TOO_MANY,
    UNKNOWN_SESSION,
    McpHost,
    McpPayloadError,
    connect,
    current_caller,
)
from veilpost.protocol import group_topic

from .conftest import Relay
from .mcp_support import (
    RECORDS_AGENT,
    RECORDS_DIR,
    RecordSet,
    agent_env,
    new_agent,
    running,
    start_agent_file,
    stop_process,
    until,
)

pytestmark = pytest.mark.asyncio


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_private_records_agent_over_veilpost(relay: Relay, tmp_path: Path) -> None:
    records = RecordSet.load()
    wallet = secrets.token_bytes(32)
    address = address_of_private_key(wallet)
    asker = new_agent(relay.url, tmp_path, "asker", wallet_key=wallet)
    stranger = new_agent(relay.url, tmp_path, "stranger")
    script_wallet = secrets.token_bytes(32)  # the example MCP client script's
    allowed = f"{address}, {address_of_private_key(script_wallet)}"
    env = agent_env(relay.url, tmp_path / "records.sqlite3", PRIVATE_RECORDS_ALLOW=allowed)
    process, inbox = await start_agent_file(
        RECORDS_AGENT, env, tmp_path / "records.log", r"private records agent ready: inbox (\w+)"
    )
    try:
        async with running(asker, stranger):
            assert asker.address == address
            # The allow-list names an address: the agent finds it in the asker's identity record.
            async with (
                connect(asker, inbox, timeout=20) as (read, write),
                ClientSession(read, write) as session,
            ):
                initialized = await session.initialize()
                assert initialized.server_info.name == "private-records"
                listed = await session.list_tools()
                assert {t.name for t in listed.tools} == {
                    "search_records",
                    "get_record",
                    "count_records",
                }
                query = "indemnity liability"
                found = await session.call_tool("search_records", {"query": query, "limit": 50})
                expected = records.search(query, limit=50)
                assert expected.total >= 2  # the query means something in this data set
                assert found.structured_content == expected.model_dump()
                best = expected.hits[0].id
                fetched = await session.call_tool("get_record", {"record_id": best.lower()})
                record = records.get(best)
                assert record is not None and fetched.structured_content == record.model_dump()
                counted = await session.call_tool("count_records", {"by": "kind"})
                assert counted.structured_content == records.counts("kind").model_dump()
                missing = await session.call_tool("get_record", {"record_id": "PR-0000"})
                assert missing.is_error and "no record 'PR-0000'" in _text(missing)
            # The high-level client negotiates on its own (the 2026 protocol, no handshake).
            async with mcp.Client(connect(asker, inbox, timeout=20)) as client:
                again = await client.call_tool("search_records", {"query": "lease", "limit": 3})
                assert again.structured_content == records.search("lease", limit=3).model_dump()

            async with (
                connect(stranger, inbox, timeout=20) as (read, write),
                ClientSession(read, write) as session,
            ):
                with pytest.raises(MCPError) as refused:
                    await session.initialize()
                assert refused.value.error.code == NOT_ALLOWED
                assert f"inbox {stranger.inbox_id} is not allowed" in refused.value.error.message

            # The web chat's way in: plain text, the same data and allow-list.
            dm = f"dm:{inbox}"
            await asker.client.send(dm, f"record {best}")
            await stranger.client.send(dm, "counts")

            def replies(agent: Any) -> list[str]:
                return [
                    m.text
                    for m in agent.client.messages(dm, limit=100, newest_first=False)
                    if m.sender_inbox_id == inbox and m.content_type.startswith("veilpost.org/text")
                ]

            await until(lambda: replies(asker) and replies(stranger), 20, "chat replies")
            assert replies(asker)[0].startswith(f"{best}: {record.title}")
            assert "not on this agent's allow-list" in replies(stranger)[0]
            assert stranger.inbox_id in replies(stranger)[0]
            stranger_inbox = stranger.inbox_id

            # In a group the agent answers nobody, not even an allowed member: every member
            # would read the record.
            group = await asker.client.new_group([inbox, stranger.inbox_id], name="leak?")
            await asker.client.send(group.id, f"record {best}")
            await asker.client.send(dm, "counts")  # a DM after it: its answer comes after
            await until(lambda: len(replies(asker)) >= 2, 20, "the DM answer after the group")

            def in_group(agent: Any, sender: str) -> list[str]:
                if group.id not in {c.id for c in agent.client.conversations()}:
                    return []
                return [
                    m.text
                    for m in agent.client.messages(group.id, limit=100, newest_first=False)
                    if m.sender_inbox_id == sender
                ]

            await until(lambda: in_group(stranger, asker.inbox_id), 20, "the group message")
            await asyncio.sleep(0.5)
            assert in_group(stranger, inbox) == [] and in_group(asker, inbox) == []

        # The README's MCP client, as a person runs it.
        script_env = agent_env(
            relay.url, tmp_path / "script.sqlite3", VEILPOST_WALLET_KEY=script_wallet.hex()
        )
        asked = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(RECORDS_DIR / "ask_records.py"), inbox, "search", "lease"],
            env=script_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout) == records.search("lease").model_dump()
    finally:
        stop_process(process)
    log = (tmp_path / "records.log").read_text()
    assert f"refused an MCP initialize from inbox {stranger_inbox}" in log


def _probe_server(calls: list[str]) -> MCPServer:
    server = MCPServer("probe")

    @server.tool()
    async def whoami(pause: float = 0.0) -> dict[str, str]:
        """Who is calling, as the host says."""
        caller = current_caller()
        calls.append(caller.inbox_id)
        await asyncio.sleep(pause)
        return {"inbox": caller.inbox_id, "session": caller.session}

    return server


async def _whoami(agent: Any, server_inbox: str, session_id: str) -> dict[str, str]:
    async with (
        connect(agent, server_inbox, timeout=20, session=session_id) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("whoami", {"pause": 0.3})
        assert result.structured_content is not None
        return dict(result.structured_content)


async def test_each_peer_gets_its_own_sessions(relay: Relay, tmp_path: Path) -> None:
    calls: list[str] = []
    server = new_agent(relay.url, tmp_path, "server")
    alice = new_agent(relay.url, tmp_path, "alice")
    bob = new_agent(relay.url, tmp_path, "bob")
    eve = new_agent(relay.url, tmp_path, "eve")
    async with running(alice, bob, eve):
        host = McpHost(server, _probe_server(calls), allow=[alice.inbox_id, bob.inbox_id.upper()])
        async with running(server):
            answers = await asyncio.gather(
                _whoami(alice, server.inbox_id, "shared"),
                _whoami(alice, server.inbox_id, "alice-2"),
                _whoami(bob, server.inbox_id, "shared"),  # the same session id as Alice's
            )
            assert list(answers) == [
                {"inbox": alice.inbox_id, "session": "shared"},
                {"inbox": alice.inbox_id, "session": "alice-2"},
                {"inbox": bob.inbox_id, "session": "shared"},
            ]
            assert sorted((k.inbox_id, k.session) for k in host.sessions) == sorted(
                [
                    (alice.inbox_id, "shared"),
                    (alice.inbox_id, "alice-2"),
                    (bob.inbox_id, "shared"),
                ]
            )
            # Eve names Bob's session: she reaches nothing of his, and is refused anyway; her
            # request never reaches the server.
            before = list(calls)
            async with connect(eve, server.inbox_id, timeout=20, session="shared") as (read, write):
                request = JSONRPCRequest(
                    jsonrpc="2.0",
                    id=1,
                    method="tools/call",
                    params={"name": "whoami", "arguments": {}},
                )
                await write.send(SessionMessage(request))
                answer = await read.receive()
            assert isinstance(answer, SessionMessage) and isinstance(answer.message, JSONRPCError)
            assert answer.message.error.code == NOT_ALLOWED
            assert calls == before
            assert all(k.inbox_id != eve.inbox_id for k in host.sessions)
        await host.close()


async def test_requests_under_way_are_capped_and_refusals_rate_limited(
    relay: Relay, tmp_path: Path
) -> None:
    calls: list[str] = []
    server = new_agent(relay.url, tmp_path, "server")
    alice = new_agent(relay.url, tmp_path, "alice")
    eve = new_agent(relay.url, tmp_path, "eve")
    async with running(alice, eve):
        host = McpHost(server, _probe_server(calls), allow=[alice.inbox_id], max_in_flight=2)
        async with running(server):

            def call(request_id: int, pause: float) -> SessionMessage:
                # The 2026-07-28 protocol: every request says its version, no handshake.
                meta = {
                    PROTOCOL_VERSION_META_KEY: LATEST_PROTOCOL_VERSION,
                    CLIENT_CAPABILITIES_META_KEY: {},
                    CLIENT_INFO_META_KEY: {"name": "raw", "version": "1"},
                }
                arguments = {"name": "whoami", "arguments": {"pause": pause}, "_meta": meta}
                return SessionMessage(
                    JSONRPCRequest(
                        jsonrpc="2.0", id=request_id, method="tools/call", params=arguments
                    )
                )

            # Three slow calls at once in one session: the third is over the cap.
            async with connect(alice, server.inbox_id, timeout=20, session="raw") as (read, write):
                for request_id in (101, 102, 103):
                    await write.send(call(request_id, 1.5))
                answers: dict[str | int | None, JSONRPCResponse | JSONRPCError] = {}
                while len(answers) < 3:
                    item = await asyncio.wait_for(read.receive(), 20)
                    assert isinstance(item, SessionMessage)
                    assert isinstance(item.message, JSONRPCResponse | JSONRPCError)
                    answers[item.message.id] = item.message
                assert isinstance(answers[103], JSONRPCError)
                assert answers[103].error.code == TOO_MANY
                assert not isinstance(answers[101], JSONRPCError), answers[101]
                assert not isinstance(answers[102], JSONRPCError), answers[102]
                await write.send(call(104, 0))  # the answers went out: room again
                item = await asyncio.wait_for(read.receive(), 20)
                assert isinstance(item, SessionMessage)
                assert isinstance(item.message, JSONRPCResponse), item.message
                assert item.message.id == 104
            # Eve, off the allow-list, asks twice at once: one refusal, then silence.
            async with connect(eve, server.inbox_id, timeout=20, session="e") as (read, write):
                await write.send(call(1, 0))
                await write.send(call(2, 0))
                first = await asyncio.wait_for(read.receive(), 20)
                assert isinstance(first, SessionMessage)
                assert isinstance(first.message, JSONRPCError)
                assert first.message.error.code == NOT_ALLOWED
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(read.receive(), 2)
        await host.close()


async def test_timeout_lost_agent_and_catch_up(relay: Relay, tmp_path: Path) -> None:
    quiet = new_agent(relay.url, tmp_path, "quiet")  # runs, serves no MCP: never answers
    client = new_agent(relay.url, tmp_path, "client")
    server = new_agent(relay.url, tmp_path, "server")
    McpHost(server, _probe_server([]), allow="*")
    async with running(server):
        server_inbox = server.inbox_id  # registered on the relay once, then offline
    async with running(quiet) as _, running(client) as (client_task,):
        async with (
            connect(client, quiet.inbox_id, timeout=1.5) as (read, write),
            ClientSession(read, write) as session,
        ):
            started = asyncio.get_running_loop().time()
            with pytest.raises(MCPError) as timed_out:
                await session.initialize()
            assert 1.4 < asyncio.get_running_loop().time() - started < 5
            assert timed_out.value.error.code == REQUEST_TIMEOUT
            assert "no answer to initialize" in timed_out.value.error.message
            assert "within 1.5 s" in timed_out.value.error.message

        # The server is offline: the request waits at the relay, and is answered when the
        # server comes back and catches up.
        async with (
            connect(client, server_inbox, timeout=30, session="later") as (read, write),
            ClientSession(read, write) as session,
        ):
            initializing = asyncio.create_task(session.initialize())
            await asyncio.sleep(1.0)
            assert not initializing.done()
            async with running(server):
                initialized = await asyncio.wait_for(initializing, 20)
                assert initialized.server_info.name == "probe"
                result = await session.call_tool("whoami", {})
                assert result.structured_content == {"inbox": client.inbox_id, "session": "later"}

        # The agent under a session stops while a request waits: a clear error, no hang.
        async with (
            connect(client, quiet.inbox_id, timeout=30) as (read, write),
            ClientSession(read, write) as session,
        ):
            waiting = asyncio.create_task(session.send_ping())
            await asyncio.sleep(0.3)
            client_task.cancel()
            with pytest.raises(MCPError) as lost:
                await asyncio.wait_for(waiting, 10)
            assert lost.value.error.code == CONNECTION_CLOSED
            assert "agent under this MCP session stopped" in lost.value.error.message


async def test_malformed_payloads_get_an_error_and_change_nothing(
    relay: Relay, tmp_path: Path
) -> None:
    server = new_agent(relay.url, tmp_path, "server")
    client = new_agent(relay.url, tmp_path, "client")
    McpHost(server, _probe_server([]), allow="*")
    async with running(server, client):
        async with connect(client, server.inbox_id, timeout=20, session="raw") as (read, write):
            dm = client.client.conversation(f"dm:{server.inbox_id}")
            group = client.client.group(dm.id)
            for bad in (b'{"jsonrpc": "2.0", "method": ', b'{"jsonrpc":"2.0","id":{}}'):
                # What a broken or hostile client could put in an MLS message: the codec's
                # checks are bypassed by encoding the content by hand.
                encoded = content.EncodedContent(
                    type=content.CONTENT_TYPE_MCP, parameters=(("session", "raw"),), content=bad
                )
                payload = group.encrypt(content.pad(encoded.to_bytes()))
                await client.client.relay.publish(
                    group_topic(group.group_id), message_id_of(payload), payload
                )
                problem = await asyncio.wait_for(read.receive(), 20)
                assert isinstance(problem, McpPayloadError)
                assert "could not read a message of session raw" in str(problem)
                assert "malformed MCP message" in str(problem)
            # No session was opened, and the DM carries on: a session opens with initialize.
            hello = JSONRPCRequest(
                jsonrpc="2.0",
                id="i1",
                method="initialize",
                params={
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            )
            await write.send(SessionMessage(hello))
            answer = await asyncio.wait_for(read.receive(), 20)
            assert isinstance(answer, SessionMessage)
            assert isinstance(answer.message, JSONRPCResponse) and answer.message.id == "i1"
            assert answer.message.result["serverInfo"]["name"] == "probe"
            # A well-formed JSON-RPC message that is no MCP message the server accepts.
            odd = JSONRPCRequest(jsonrpc="2.0", id=5, method="tools/call", params={"name": 5})
            await write.send(SessionMessage(odd))
            refused = await asyncio.wait_for(read.receive(), 20)
            assert isinstance(refused, SessionMessage)
            assert isinstance(refused.message, JSONRPCError) and refused.message.id == 5
            assert refused.message.error.code in (INVALID_REQUEST, -32602)
        assert json.loads(json.dumps(server.client.failures())) == []


async def test_after_a_server_restart(relay: Relay, tmp_path: Path) -> None:
    """Server sessions live in memory. After a restart, a client of the 2026-07-28 protocol
    (context in every request) carries on; one that did the 2025 handshake is told plainly
    to open a new session, and that works."""
    first = new_agent(relay.url, tmp_path, "server")
    client = new_agent(relay.url, tmp_path, "client")
    McpHost(first, _probe_server([]), allow="*")
    async with running(client), running(first) as (first_task,):
        inbox = first.inbox_id
        async with (
            mcp.Client(connect(client, inbox, timeout=20, session="modern")) as modern,
            connect(client, inbox, timeout=20, session="legacy") as (read, write),
            ClientSession(read, write) as legacy,
        ):
            await legacy.initialize()
            assert (await modern.call_tool("whoami", {})).structured_content == {
                "inbox": client.inbox_id,
                "session": "modern",
            }
            first_task.cancel()
            await asyncio.gather(first_task, return_exceptions=True)
            # The same profile in a new process: a new agent and host on the same database.
            again = Agent(db_path=first.db_path, db_key=first._db_key, relay_url=relay.url)
            McpHost(again, _probe_server([]), allow="*")
            async with running(again):
                after = await modern.call_tool("whoami", {})
                assert after.structured_content == {"inbox": client.inbox_id, "session": "modern"}
                with pytest.raises(MCPError) as unknown:
                    await legacy.call_tool("whoami", {})
                assert unknown.value.error.code == UNKNOWN_SESSION
                assert "open a new session and initialize" in unknown.value.error.message
                async with (
                    connect(client, inbox, timeout=20, session="legacy-2") as (read2, write2),
                    ClientSession(read2, write2) as renewed,
                ):
                    await renewed.initialize()
                    result = await renewed.call_tool("whoami", {})
                    assert result.structured_content == {
                        "inbox": client.inbox_id,
                        "session": "legacy-2",
                    }
