"""The parts of MCP over Veilpost that need no relay: the requests a client waits on
(deadlines), a server's session table (per-inbox and total limits, idleness), the
allow-list's rules, and the meeting of Veilpost's MCP content with the `mcp` SDK's types.
(Needs the `mcp` SDK: not part of the in-Pyodide run.)"""

from __future__ import annotations

import pytest
from mcp.shared.message import SessionMessage
from mcp.types import (
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)

from veilpost.client.content import MAX_MCP_MESSAGE_BYTES, InvalidContent, McpMessage
from veilpost.crypto.ethereum import address_of_private_key
from veilpost.mcp import AllowList, AllowListError
from veilpost.mcp.content import error_message, opens_session, to_mcp_message, to_session_message
from veilpost.mcp.sessions import PendingRequests, SessionKey, SessionTable

# -- pending requests ---------------------------------------------------------------------------


def test_pending_requests_expire_at_their_deadline() -> None:
    pending = PendingRequests(timeout=10)
    pending.add(1, "initialize", now=100)
    pending.add("1", "tools/list", now=105)  # another id: JSON keeps 1 and "1" apart
    assert 1 in pending and "1" in pending and 2 not in pending and len(pending) == 2
    assert pending.next_deadline() == 110
    assert pending.expire(now=109.9) == []
    [first] = pending.expire(now=110)
    assert (first.request_id, first.method, first.sent_at, first.deadline) == (
        1,
        "initialize",
        100,
        110,
    )
    assert pending.answer(1) is None  # given up on: a late answer is dropped
    assert pending.answer("1") is not None and len(pending) == 0
    assert pending.next_deadline() is None


def test_pending_requests_refuse_reused_ids_and_drain_in_order() -> None:
    pending = PendingRequests(timeout=1)
    pending.add(3, "a", now=2)
    pending.add(4, "b", now=1)
    with pytest.raises(ValueError, match="already waiting"):
        pending.add(3, "c", now=3)
    assert [p.request_id for p in pending.drain()] == [4, 3]
    assert len(pending) == 0
    with pytest.raises(ValueError, match="positive"):
        PendingRequests(timeout=0)


# -- the session table --------------------------------------------------------------------------


def _key(inbox: str, session: str) -> SessionKey:
    return SessionKey(f"dm:{inbox}", inbox, session)


def test_sessions_are_limited_per_inbox_and_in_all() -> None:
    table: SessionTable[str] = SessionTable(max_per_inbox=2, max_sessions=3, idle_seconds=60)
    assert table.add(_key("a", "1"), "a1", now=0) == []
    assert table.add(_key("a", "2"), "a2", now=1) == []
    assert table.get(_key("a", "1"), now=2) == "a1"  # a1 is now the most recently used
    # A third session of inbox a ends a's least recently used one, a2; b's are untouched.
    assert table.add(_key("a", "3"), "a3", now=3) == [(_key("a", "2"), "a2")]
    assert table.add(_key("b", "1"), "b1", now=4) == []
    # Beyond the total: the least recently used of all ends.
    assert table.add(_key("c", "1"), "c1", now=5) == [(_key("a", "1"), "a1")]
    assert list(table) == [_key("a", "3"), _key("b", "1"), _key("c", "1")]
    with pytest.raises(ValueError, match="exists"):
        table.add(_key("c", "1"), "again", now=6)


def test_sessions_end_when_idle_and_keys_keep_inboxes_apart() -> None:
    table: SessionTable[str] = SessionTable(max_per_inbox=4, max_sessions=8, idle_seconds=10)
    table.add(_key("a", "s"), "a", now=0)
    table.add(SessionKey("dm:a", "b", "s"), "b-in-a's-name", now=0)  # same session id, other inbox
    assert len(table) == 2
    table.get(_key("a", "s"), now=8)
    assert table.idle(now=10) == [(SessionKey("dm:a", "b", "s"), "b-in-a's-name")]
    assert table.idle(now=17.9) == []
    assert table.idle(now=18) == [(_key("a", "s"), "a")]
    assert table.get(_key("a", "s"), now=19) is None
    assert table.remove(_key("a", "s")) is None
    with pytest.raises(ValueError):
        SessionTable(max_per_inbox=3, max_sessions=2, idle_seconds=1)


# -- the allow-list -----------------------------------------------------------------------------

INBOX = "3f0c" + "a" * 28
ADDRESS = address_of_private_key(bytes(range(1, 33)))


def test_allow_list_entries() -> None:
    allow = AllowList.parse(f" {INBOX.upper()}, {ADDRESS.lower()}\n")
    assert allow.inboxes == {INBOX} and allow.addresses == {ADDRESS}  # normalized
    assert allow.decide(INBOX) and allow.decide(INBOX.upper())
    assert not allow.decide("b" * 32)
    assert allow.decide("b" * 32, [ADDRESS.lower()])  # an address bound to the caller
    assert not allow.decide("b" * 32, [address_of_private_key(bytes(range(2, 34)))])
    assert AllowList.parse("*").decide("b" * 32)
    assert not AllowList.parse("") and not AllowList([]).decide(INBOX)
    assert AllowList.of([INBOX]).inboxes == {INBOX} and AllowList.of(allow) is allow
    for bad in ("alice", "0x1234", "3f0c"):
        with pytest.raises(AllowListError, match="allow-list entry"):
            AllowList.parse(bad)


# -- SDK messages -------------------------------------------------------------------------------


def test_sdk_messages_become_content_and_back() -> None:
    messages: list[JSONRPCMessage] = [
        JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/list"),
        JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized"),
        JSONRPCResponse(jsonrpc="2.0", id=1, result={"tools": []}),
        error_message(None, -32600, "what?"),
    ]
    for message in messages:
        content = to_mcp_message("s1", SessionMessage(message))
        assert content.session == "s1"
        assert to_session_message(content).message == message


def test_sdk_types_take_what_the_codec_takes_and_big_results_do_not_travel() -> None:
    well_formed_json_rpc = McpMessage(
        "s", b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":{"x":1}}}'
    )
    assert isinstance(to_session_message(well_formed_json_rpc).message, JSONRPCError)
    big = JSONRPCResponse(jsonrpc="2.0", id=1, result={"x": "y" * MAX_MCP_MESSAGE_BYTES})
    with pytest.raises(InvalidContent, match="at most"):
        to_mcp_message("s", big)


def test_which_messages_open_a_server_session() -> None:
    def request(method: str, params: object = None) -> McpMessage:
        message: dict[str, object] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            message["params"] = params
        return McpMessage.from_json("s", message)

    assert opens_session(request("initialize", {"protocolVersion": "2025-11-25"}))
    assert opens_session(request("server/discover"))
    modern = {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
    assert opens_session(request("tools/call", {"name": "x", **modern}))
    # A 2025 request after the handshake, a bare _meta, a notification: not an opening.
    assert not opens_session(request("tools/call", {"name": "x"}))
    assert not opens_session(request("tools/call", {"_meta": {"progressToken": 1}}))
    assert not opens_session(
        McpMessage.from_json("s", {"jsonrpc": "2.0", "method": "notifications/initialized"})
    )
