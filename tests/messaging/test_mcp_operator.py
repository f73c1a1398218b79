"""The operator test for MCP: a canary in an MCP query, another in a result (and in an error),
travelling between an MCP client and the private-records server over Veilpost, appears in no
table of the relay's database, in no HTTP body or WebSocket frame the relay received or sent,
and in no line of its log."""

from __future__ import annotations

import base64
import json
import secrets
import sys
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.types import TextContent

from veilpost.mcp import McpHost, connect

from .conftest import Relay
from .mcp_support import RecordSet, build_server, new_agent, running

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "relay"))
from canary_search import capture_values, database_values, found, texts_of


@pytest.mark.asyncio
async def test_mcp_canaries_never_reach_the_relay(
    capturing_relay: tuple[Relay, Path], tmp_path: Path
) -> None:
    relay, capture = capturing_relay
    in_query = "canaryq" + secrets.token_hex(10)
    in_result = "canaryr" + secrets.token_hex(10)
    data = json.loads(RecordSet.load().records[0].model_dump_json())
    data.update(id="PR-9001", summary=f"The secret clause is {in_result}.")
    dataset = tmp_path / "records.json"
    dataset.write_text(json.dumps({"notice": "fictional", "records": [data]}))
    records = RecordSet.load(dataset)

    server = new_agent(relay.url, tmp_path, "records")
    asker = new_agent(relay.url, tmp_path, "asker")
    async with running(asker):
        McpHost(server, build_server(records), allow=[asker.inbox_id])
        async with (
            running(server),
            connect(asker, server.inbox_id, timeout=20) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            searched = await session.call_tool("search_records", {"query": in_query})
            assert searched.structured_content == {"query": in_query, "total": 0, "hits": []}
            fetched = await session.call_tool("get_record", {"record_id": "pr-9001"})
            assert fetched.structured_content is not None
            assert in_result in fetched.structured_content["summary"]
            missing = await session.call_tool("get_record", {"record_id": in_query})
            assert missing.is_error
            assert any(in_query in c.text for c in missing.content if isinstance(c, TextContent))
            topic = asker.client.conversation(f"dm:{server.inbox_id}").topic.encode()

    # Positive controls: the search finds what the relay does see (the DM's topic), and would
    # find a canary in base64, as a payload field would carry it.
    assert found(topic, (t for v in database_values(relay.database) for t in texts_of(v)))
    assert found(topic, (t for v in capture_values(capture) for t in texts_of(v)))
    for canary in (in_query, in_result):
        needle = canary.encode()
        assert found(needle, texts_of(base64.b64encode(b"x" + needle).decode()))
        assert not found(needle, (t for v in database_values(relay.database) for t in texts_of(v)))
        assert not found(needle, (t for v in capture_values(capture) for t in texts_of(v)))
        assert needle not in relay.log.read_bytes()
