"""The worker protocol (``veilpost.bridge.Bridge``, ``docs/browser.md``) end to end: bridges
around real clients on a real relay. Every command, every error path, the folding of
reactions, read receipts and profiles into events and lists, names across a restart, safety
fingerprints, unread counts and markRead, paging tokens, and attachments."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from veilpost.bridge import Bridge, _decode_token, _encode_token, _recipient
from veilpost.client import content
from veilpost.client.client import Message
from veilpost.client.errors import RelayError
from veilpost.client.identity import fingerprint
from veilpost.client.storage import MessageCursor
from veilpost.transport import RelayUnavailable

from .conftest import Relay
from .messaging_support import Peer, open_peer

pytestmark = pytest.mark.asyncio

JSON = dict[str, Any]
_ids = itertools.count(1)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true; that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {result!r})")
        await asyncio.sleep(0.1)


@dataclass
class Side:
    """A bridge around a peer's client, as the worker drives it."""

    peer: Peer
    bridge: Bridge
    seen: list[JSON] = field(default_factory=list)

    @property
    def inbox(self) -> str:
        return self.peer.inbox_id

    async def reply(self, cmd: Any, args: Any = None, *, raw: Any = None) -> JSON:
        request_id = next(_ids)
        request = raw if raw is not None else {"id": request_id, "cmd": cmd, "args": args or {}}
        answer = await self.bridge.handle(request)
        if raw is None:
            assert answer["id"] == request_id
        return answer

    async def call(self, cmd: str, **args: Any) -> JSON:
        answer = await self.reply(cmd, args)
        assert answer["ok"], answer
        result: JSON = answer["result"]
        return result

    async def error(self, cmd: str, **args: Any) -> JSON:
        answer = await self.reply(cmd, args)
        assert answer["ok"] is False, answer
        assert set(answer) == {"id", "ok", "error"}
        error: JSON = answer["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
        return error

    async def event(self, match: Callable[[JSON], bool], what: str, timeout: float = 20.0) -> JSON:
        """The first event (seen before, or arriving within ``timeout``) that matches."""
        for event in self.seen:
            if match(event):
                return event
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.peer.name}: no event {what}; saw {self.seen[-8:]}")
            try:
                event = await asyncio.wait_for(self.bridge.next_event(), remaining)
            except TimeoutError:
                continue
            self.seen.append(event)
            if match(event):
                return event

    async def conversations(self) -> list[JSON]:
        result = await self.call("listConversations")
        conversations: list[JSON] = result["conversations"]
        return conversations

    async def conversation(self, cid: str) -> JSON:
        for conversation in await self.conversations():
            if conversation["id"] == cid:
                return conversation
        raise AssertionError(f"{self.peer.name}: no conversation {cid}")

    async def messages(self, cid: str, **args: Any) -> list[JSON]:
        result = await self.call("messages", conversationId=cid, limit=200, **args)
        messages: list[JSON] = result["messages"]
        return messages

    async def texts(self, cid: str) -> list[str]:
        return [m["text"] for m in await self.messages(cid) if m["kind"] == "text"]


@pytest_asyncio.fixture
async def sides(peers: list[Peer]) -> AsyncIterator[list[Side]]:
    opened: list[Side] = []
    yield opened
    for side in opened:
        await side.bridge.close()


async def open_side(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp: Path, name: str, **kw: Any
) -> Side:
    peer = await open_peer(relay.url, name, tmp, **kw)
    peers.append(peer)
    side = Side(peer, Bridge(peer.client, origin=relay.url))
    sides.append(side)
    await side.call("hello")  # starts the bridge (its event pump)
    return side


async def pair(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp: Path
) -> tuple[Side, Side, str, str]:
    """Two sides with names and a DM (made by ``a``): ``(a, b, a's id of it, b's)``."""
    a = await open_side(relay, peers, sides, tmp, "a")
    b = await open_side(relay, peers, sides, tmp, "b")
    await a.call("setName", name="Alice")
    await b.call("setName", name="Bob")
    dm = (await a.call("newDm", recipient=b.inbox))["conversation"]
    assert dm["id"] == f"dm:{b.inbox}"
    await b.event(
        lambda e: e["event"] == "conversation" and e["conversation"]["id"] == f"dm:{a.inbox}",
        "b joins the DM",
    )
    return a, b, dm["id"], f"dm:{a.inbox}"


def message_event(cid: str, check: Callable[[JSON], bool]) -> Callable[[JSON], bool]:
    return lambda e: e["event"] == "message" and e["conversationId"] == cid and check(e["message"])


def conversation_event(cid: str, check: Callable[[JSON], bool]) -> Callable[[JSON], bool]:
    return lambda e: (
        e["event"] == "conversation" and e["conversation"]["id"] == cid and check(e["conversation"])
    )


# -- hello, names, invite links, recipients ----------------------------------------------------


async def test_hello_names_and_invite_links(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    a = await open_side(relay, peers, sides, tmp_path, "a")
    hello = await a.call("hello")
    assert hello == {
        "inboxId": a.inbox,
        "installationId": a.peer.client.installation_id,
        "name": None,
        "link": f"{relay.url}/#dm/{a.inbox}",
    }
    assert await a.call("setName", name="  Alice  ") == {}
    assert (await a.call("hello"))["name"] == "Alice"

    # The invite link opens a DM with its inbox; the name arrives inside it.
    b = await open_side(relay, peers, sides, tmp_path, "b")
    dm = (await b.call("newDm", recipient=hello["link"]))["conversation"]
    assert dm["id"] == f"dm:{a.inbox}" and dm["kind"] == "dm" and dm["peerInboxId"] == a.inbox
    assert dm["title"] == a.inbox[:8]  # no name yet: a short inbox id
    named = await b.event(
        conversation_event(dm["id"], lambda c: c["title"] == "Alice"), "a's name reaches b"
    )
    member = next(m for m in named["conversation"]["members"] if m["inboxId"] == a.inbox)
    assert member["name"] == "Alice" and not member["isMe"]
    assert (await b.conversation(dm["id"]))["title"] == "Alice"
    # Profiles are folded: never listed as messages.
    assert all(m["kind"] != "unknown" for m in await b.messages(dm["id"]))

    # A new name travels to every conversation.
    await a.call("setName", name="Alicia")
    await b.event(conversation_event(dm["id"], lambda c: c["title"] == "Alicia"), "new name")

    # Any link spelling with "#dm/<inbox>" works, and so does a bound 0x address.
    c = await open_side(relay, peers, sides, tmp_path, "c")
    other = await c.call("newDm", recipient=f"https://elsewhere.example/chat#dm/{a.inbox}/")
    assert other["conversation"]["id"] == f"dm:{a.inbox}"
    wallet = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    address = await a.peer.client.bind_address(wallet)
    d = await open_side(relay, peers, sides, tmp_path, "d")
    by_address = await d.call("newDm", recipient=address.lower())
    assert by_address["conversation"]["id"] == f"dm:{a.inbox}"


async def test_names_survive_a_restart(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    _, b, _, bdm = await pair(relay, peers, sides, tmp_path)
    await b.event(conversation_event(bdm, lambda c: c["title"] == "Alice"), "a's name")
    before = await b.conversation(bdm)

    # Restart b: same key, same store; a new bridge knows the names at once.
    await b.bridge.close()
    await b.peer.close()
    sides.remove(b)
    peers.remove(b.peer)
    again = await open_side(
        relay,
        peers,
        sides,
        tmp_path,
        "b2",
        key=b.peer.key,
        store_key=b.peer.store_key,
        store_path=b.peer.store_path,
    )
    assert (await again.call("hello"))["name"] == "Bob"
    after = await again.conversation(bdm)
    assert after["title"] == "Alice"
    assert after["members"] == before["members"]
    # Nothing was sent again for a name that did not change.
    profiles = [
        m
        for m in again.peer.messages(bdm)
        if isinstance(m.content, content.Profile) and m.sender_inbox_id == again.inbox
    ]
    assert len(profiles) == 1


async def test_a_new_bridge_folds_what_was_stored_without_one(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    a, b, adm, bdm = await pair(relay, peers, sides, tmp_path)
    hello = (await b.call("send", conversationId=bdm, text="hello"))["message"]
    await a.event(message_event(adm, lambda m: m["id"] == hello["id"]), "hello reaches a")
    await b.bridge.close()  # b's client runs on, without a bridge
    await a.call("react", conversationId=adm, messageId=hello["id"], emoji="👍")
    await a.call("markRead", conversationId=adm)
    await a.call("setName", name="Alicia")

    def stored() -> bool:
        values = [m.content for m in b.peer.messages(bdm)]
        return (
            any(isinstance(v, content.Reaction) for v in values)
            and any(isinstance(v, content.ReadReceipt) for v in values)
            and content.Profile("Alicia") in values
        )

    await b.peer.wait_for(lambda _: stored(), what="b's client stores all three")
    while not b.peer.client.events.empty():  # lost, as in a crash before they were taken in
        b.peer.client.events.get_nowait()
    fresh = Side(b.peer, Bridge(b.peer.client, origin=relay.url))
    sides.append(fresh)

    async def folded() -> bool:
        conversation = await fresh.conversation(bdm)
        message = next(m for m in await fresh.messages(bdm) if m["id"] == hello["id"])
        return bool(
            conversation["title"] == "Alicia"
            and message["reactions"] == [{"emoji": "👍", "count": 1, "mine": False}]
            and message["readBy"] == [a.inbox]
        )

    await eventually(folded, "the new bridge folds the stored messages")


# -- errors ------------------------------------------------------------------------------------


async def test_error_paths(
    relay: Relay,
    peers: list[Peer],
    sides: list[Side],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _, dm, _ = await pair(relay, peers, sides, tmp_path)
    text = (await a.call("send", conversationId=dm, text="hello"))["message"]

    # Malformed requests and unknown commands.
    answer = await a.reply(None, raw="not an object")
    assert answer["ok"] is False and answer["id"] is None
    assert answer["error"]["code"] == "invalid_request"
    assert (await a.error("explode"))["code"] == "unknown_command"
    answer = await a.reply(None, raw={"id": 7, "args": {}})
    assert answer == {
        "id": 7,
        "ok": False,
        "error": {"code": "unknown_command", "message": "unknown command None"},
    }
    answer = await a.reply(None, raw={"id": 8, "cmd": "hello", "args": [1]})
    assert answer["error"]["code"] == "invalid_args" and answer["error"]["field"] == "args"

    # Bad arguments name their field.
    cases: list[tuple[str, JSON, str]] = [
        ("send", {"text": "x"}, "conversationId"),
        ("send", {"conversationId": 5, "text": "x"}, "conversationId"),
        ("send", {"conversationId": dm, "text": ""}, "text"),
        ("send", {"conversationId": dm, "text": "x", "colour": "red"}, "colour"),
        ("messages", {"conversationId": dm, "limit": 0}, "limit"),
        ("messages", {"conversationId": dm, "limit": 201}, "limit"),
        ("messages", {"conversationId": dm, "limit": True}, "limit"),
        ("messages", {"conversationId": dm, "before": "!!not a token"}, "before"),
        ("messages", {"conversationId": dm, "before": "bm9wZQ"}, "before"),
        (
            "sendAttachment",
            {"conversationId": dm, "filename": "a.png", "mimeType": "image/png", "data": "*"},
            "data",
        ),
        (
            "sendAttachment",
            {"conversationId": dm, "filename": "../a", "mimeType": "image/png", "data": ""},
            "filename",
        ),
        (
            "sendAttachment",
            {"conversationId": dm, "filename": "a.png", "mimeType": "png", "data": ""},
            "mimeType",
        ),
        ("react", {"conversationId": dm, "messageId": text["id"], "emoji": ""}, "emoji"),
        ("react", {"conversationId": dm, "messageId": text["id"], "emoji": "x" * 300}, "emoji"),
        (
            "react",
            {"conversationId": dm, "messageId": text["id"], "emoji": "👍", "remove": 1},
            "remove",
        ),
        ("setName", {"name": "two\nlines"}, "name"),
        ("setName", {}, "name"),
        ("newDm", {"recipient": "https://x.example/#dm/"}, "recipient"),
        ("newGroup", {"name": "g", "members": "not a list"}, "members"),
        ("newGroup", {"name": "g", "members": [""]}, "members[0]"),
        ("newGroup", {"name": "g", "members": ["x", "https://x.example/#dm/"]}, "members[1]"),
        ("addMembers", {"conversationId": dm, "members": []}, "members"),
    ]
    for cmd, args, field_name in cases:
        answer = await a.reply(cmd, args)
        assert answer["ok"] is False, (cmd, args, answer)
        assert answer["error"]["code"] == "invalid_args", (cmd, args, answer)
        assert answer["error"]["field"] == field_name, (cmd, args, answer)
        assert field_name.split("[")[0] in answer["error"]["message"]

    # The client's refusals keep their codes.
    assert (await a.error("newDm", recipient="ab" * 16))["code"] == "unknown_recipient"
    assert (await a.error("newDm", recipient="0x" + "11" * 20))["code"] == "unknown_recipient"
    assert (await a.error("newDm", recipient=a.inbox))["code"] == "unknown_recipient"
    assert (await a.error("newGroup", name="g", members=["cd" * 16]))["code"] == (
        "unknown_recipient"
    )
    missing = await a.error("send", conversationId="dm:" + "ef" * 16, text="x")
    assert missing["code"] == "conversation_not_found"
    for cmd in ("react", "retry", "fetchAttachment"):
        args = {"conversationId": dm, "messageId": "00" * 16}
        if cmd == "react":
            args["emoji"] = "👍"
        assert (await a.error(cmd, **args))["code"] == "message_not_found", cmd
    reply_to_nothing = await a.error("send", conversationId=dm, text="x", replyTo="00" * 16)
    assert reply_to_nothing["code"] == "message_not_found"
    not_file = await a.error("fetchAttachment", conversationId=dm, messageId=text["id"])
    assert not_file["code"] == "not_attachment"
    assert (await a.error("leave", conversationId=dm))["code"] == "permission_denied"

    # A relay refusal keeps the relay's code.
    async def refuse() -> list[JSON]:
        raise RelayError("rate_limited", "slow down", status=429)

    monkeypatch.setattr(a.peer.connection, "conversations", refuse)
    assert (await a.error("markRead", conversationId=dm))["code"] == "rate_limited"
    # ... but listing degrades to what is known locally.
    assert [c["id"] for c in await a.conversations()] == [dm]
    monkeypatch.undo()

    # Anything else is an internal error, answered and logged.
    def explode() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(a.peer.client, "conversations", explode)
    with caplog.at_level(logging.ERROR, logger="veilpost.bridge"):
        error = await a.error("listConversations")
    assert error == {"code": "internal_error", "message": "RuntimeError: boom"}
    assert any("listConversations" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    assert (await a.call("listConversations"))["conversations"][0]["id"] == dm


# -- groups, membership, permissions, fingerprints -------------------------------------------


async def test_group_commands_permissions_and_fingerprints(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    a, b, _, _ = await pair(relay, peers, sides, tmp_path)
    c = await open_side(relay, peers, sides, tmp_path, "c")
    await c.call("setName", name="Carol")

    group = (await a.call("newGroup", name=" team ", members=[b.inbox]))["conversation"]
    gid = group["id"]
    assert group["kind"] == "group" and group["name"] == "team" and group["title"] == "team"
    assert group["myRole"] == "super_admin" and group["active"] is True
    assert group["peerInboxId"] is None
    assert sorted(m["inboxId"] for m in group["members"]) == sorted([a.inbox, b.inbox])
    joined = await b.event(conversation_event(gid, lambda c: True), "b joins the group")
    assert joined["conversation"]["myRole"] == "member"

    assert await a.call("addMembers", conversationId=gid, members=[c.inbox]) == {}
    await c.event(conversation_event(gid, lambda c: len(c["members"]) == 3), "c joins")
    # The newcomer learns the others' names (they send their profile again).
    await c.event(
        conversation_event(
            gid, lambda conv: {m["name"] for m in conv["members"]} == {"Alice", "Bob", "Carol"}
        ),
        "c learns every name",
    )

    # Safety fingerprints: the same for one member on every side, and the record's.
    c_record = await c.peer.client.identity(c.inbox)
    expected = fingerprint(c_record)
    for side in (a, b, c):

        async def seen(side: Side = side) -> bool:
            conv = await side.conversation(gid)
            member = next(m for m in conv["members"] if m["inboxId"] == c.inbox)
            return bool(member["fingerprint"] == expected)

        await eventually(seen, f"{side.peer.name} sees c's fingerprint")
    assert len(expected.split()) == 12

    # Rename: a notice and a conversation event on the other side.
    assert await a.call("rename", conversationId=gid, name="crew") == {}
    await b.event(conversation_event(gid, lambda c: c["title"] == "crew"), "rename reaches b")
    notice = await b.event(
        message_event(gid, lambda m: m["kind"] == "notice" and "crew" in m["text"]), "notice"
    )
    assert notice["message"]["text"] == "Alice renamed the conversation to “crew”"
    notices = [m["text"] for m in await b.messages(gid) if m["kind"] == "notice"]
    assert notices == ["Alice added Carol", "Alice renamed the conversation to “crew”"]

    # A member may not remove others; a DM cannot be left.
    denied = await b.error("removeMembers", conversationId=gid, members=[c.inbox])
    assert denied["code"] == "permission_denied"

    # c leaves; a removes b, who then is no longer a member.
    assert await c.call("leave", conversationId=gid) == {}
    await a.event(
        conversation_event(
            gid, lambda conv: c.inbox not in {m["inboxId"] for m in conv["members"]}
        ),
        "c has left",
    )
    assert await a.call("removeMembers", conversationId=gid, members=[b.inbox]) == {}
    gone = await b.event(conversation_event(gid, lambda c: c["active"] is False), "b removed")
    assert gone["conversation"]["members"] == []
    assert (await b.error("send", conversationId=gid, text="still here?"))["code"] == "not_a_member"
    texts = [m["text"] for m in await a.messages(gid) if m["kind"] == "notice"]
    assert any("is no longer a member" in t for t in texts), texts


# -- replies, reactions ------------------------------------------------------------------------


async def test_replies_and_reactions_are_folded(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    a, b, adm, bdm = await pair(relay, peers, sides, tmp_path)
    hello = (await a.call("send", conversationId=adm, text="hello"))["message"]
    assert hello["mine"] and hello["status"] == "sent" and hello["kind"] == "text"
    assert hello["senderName"] == "Alice" and hello["reactions"] == [] and hello["readBy"] == []
    got = await b.event(message_event(bdm, lambda m: m["id"] == hello["id"]), "hello reaches b")
    assert got["message"]["status"] == "received" and not got["message"]["mine"]
    assert got["message"]["senderName"] == "Alice"

    answer = await b.call("send", conversationId=bdm, text="hi back", replyTo=hello["id"])
    reply = answer["message"]
    assert reply["replyTo"] == {"id": hello["id"], "text": "hello", "senderName": "Alice"}
    seen = await a.event(message_event(adm, lambda m: m["id"] == reply["id"]), "the reply")
    assert seen["message"]["replyTo"] == {"id": hello["id"], "text": "hello", "senderName": "Alice"}
    assert seen["message"]["kind"] == "text" and seen["message"]["text"] == "hi back"

    def reactions(*expected: tuple[str, int, bool]) -> Callable[[JSON], bool]:
        wanted = [{"emoji": e, "count": n, "mine": mine} for e, n, mine in expected]
        return message_event(adm, lambda m: m["id"] == hello["id"] and m["reactions"] == wanted)

    assert await b.call("react", conversationId=bdm, messageId=hello["id"], emoji="👍") == {}
    await a.event(reactions(("👍", 1, False)), "b's reaction")
    await a.call("react", conversationId=adm, messageId=hello["id"], emoji="👍")
    await a.event(reactions(("👍", 2, True)), "both react")
    await b.call("react", conversationId=bdm, messageId=hello["id"], emoji="🎉")
    await a.event(reactions(("👍", 2, True), ("🎉", 1, False)), "a second emoji")
    await b.call("react", conversationId=bdm, messageId=hello["id"], emoji="👍", remove=True)
    await a.event(reactions(("👍", 1, True), ("🎉", 1, False)), "b takes one back")

    # Lists hold no reactions, and show them on their target.
    listed = await a.messages(adm)
    assert [m["text"] for m in listed if m["kind"] != "notice"] == ["hello", "hi back"]
    target = next(m for m in listed if m["id"] == hello["id"])
    assert target["reactions"] == [
        {"emoji": "👍", "count": 1, "mine": True},
        {"emoji": "🎉", "count": 1, "mine": False},
    ]
    # The other side folded the same.
    b_target = next(m for m in await b.messages(bdm) if m["id"] == hello["id"])
    assert b_target["reactions"] == [
        {"emoji": "👍", "count": 1, "mine": False},
        {"emoji": "🎉", "count": 1, "mine": True},
    ]


# -- read receipts, unread, markRead --------------------------------------------------------


async def test_unread_counts_read_receipts_and_mark_read(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    a, b, adm, bdm = await pair(relay, peers, sides, tmp_path)
    sent = [(await b.call("send", conversationId=bdm, text=f"b{i}"))["message"] for i in range(3)]

    async def unread(side: Side, cid: str) -> int:
        return int((await side.conversation(cid))["unread"])

    async def a_has_three() -> bool:
        return await a.texts(adm) == ["b0", "b1", "b2"]

    await eventually(a_has_three, "a receives b's messages")
    # Profiles and commits are envelopes too, but only b's three texts count.
    assert await unread(a, adm) == 3
    assert await unread(b, bdm) == 0  # b's own messages never count
    mine = (await a.call("send", conversationId=adm, text="a0"))["message"]
    assert await unread(a, adm) == 3  # nor do a's

    assert await a.call("markRead", conversationId=adm) == {}
    assert await unread(a, adm) == 0
    rows = {row["topic"]: row for row in await a.peer.connection.conversations()}
    topic = a.peer.client.conversation(adm).topic
    assert rows[topic]["read_cursor"] == rows[topic]["last_sequence"]
    assert rows[topic]["unread"] == 0

    # b learns that a read its messages: events, and readBy in lists.
    for message in sent:

        def read_by_a(m: JSON, i: str = message["id"]) -> bool:
            return bool(m["id"] == i and m["readBy"] == [a.inbox])

        await b.event(message_event(bdm, read_by_a), f"{message['text']} read by a")
    listed = {m["text"]: m for m in await b.messages(bdm)}
    assert all(listed[f"b{i}"]["readBy"] == [a.inbox] for i in range(3))
    assert listed["a0"]["readBy"] == []  # not b's message
    assert await unread(b, bdm) == 1  # a's text; a's receipt does not count

    # Nothing new since: no second receipt.
    await a.call("markRead", conversationId=adm)

    def receipts(side: Side, cid: str) -> int:
        return sum(isinstance(m.content, content.ReadReceipt) for m in side.peer.messages(cid))

    assert receipts(a, adm) == 1
    # Something new: a new receipt, and b's new message is read too.
    late = (await b.call("send", conversationId=bdm, text="b3"))["message"]

    async def a_has_it() -> bool:
        return "b3" in await a.texts(adm)

    await eventually(a_has_it, "b3 reaches a")
    assert await unread(a, adm) == 1
    await a.call("markRead", conversationId=adm)
    assert receipts(a, adm) == 2 and await unread(a, adm) == 0
    await b.event(
        message_event(bdm, lambda m: m["id"] == late["id"] and m["readBy"] == [a.inbox]), "b3 read"
    )
    # b's own message before b's markRead stays b's: marking read keeps b's count right.
    await b.call("markRead", conversationId=bdm)
    assert await unread(b, bdm) == 0
    assert mine["readBy"] == []


async def test_conversations_newest_activity_first(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    a = await open_side(relay, peers, sides, tmp_path, "a")
    b = await open_side(relay, peers, sides, tmp_path, "b")
    c = await open_side(relay, peers, sides, tmp_path, "c")
    to_b = (await a.call("newDm", recipient=b.inbox))["conversation"]["id"]
    to_c = (await a.call("newDm", recipient=c.inbox))["conversation"]["id"]
    await a.call("send", conversationId=to_b, text="first")
    await a.call("send", conversationId=to_c, text="second")
    order = [conv["id"] for conv in await a.conversations()]
    assert order == [to_c, to_b]
    last = (await a.conversations())[0]["lastMessage"]
    assert last["text"] == "second" and last["mine"]

    await b.event(conversation_event(f"dm:{a.inbox}", lambda _: True), "b joins")
    await b.call("send", conversationId=f"dm:{a.inbox}", text="from b")

    async def b_first() -> bool:
        return [conv["id"] for conv in await a.conversations()] == [to_b, to_c]

    await eventually(b_first, "b's message moves its DM up")
    # A read receipt is not activity that moves a conversation.
    await c.event(conversation_event(f"dm:{a.inbox}", lambda _: True), "c joins")

    async def c_has_it() -> bool:
        return await c.texts(f"dm:{a.inbox}") == ["second"]

    await eventually(c_has_it, "c receives")
    await c.call("markRead", conversationId=f"dm:{a.inbox}")

    async def receipt_in() -> bool:
        return any(isinstance(m.content, content.ReadReceipt) for m in a.peer.messages(to_c))

    await eventually(receipt_in, "c's receipt reaches a")
    assert [conv["id"] for conv in await a.conversations()] == [to_b, to_c]


# -- paging ------------------------------------------------------------------------------------


async def test_messages_paging_tokens(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    a, _, adm, _ = await pair(relay, peers, sides, tmp_path)
    ids = []
    for i in range(7):
        message = (await a.call("send", conversationId=adm, text=f"m{i}"))["message"]
        ids.append(message["id"])
        if i % 2:  # reactions and receipts in between are folded, not listed
            await a.call("react", conversationId=adm, messageId=message["id"], emoji="👀")
            await a.peer.client.send(adm, content.ReadReceipt())

    first = await a.call("messages", conversationId=adm, limit=3)
    assert [m["text"] for m in first["messages"]] == ["m4", "m5", "m6"]  # oldest first
    token = first["nextBefore"]
    assert isinstance(token, str) and token
    second = await a.call("messages", conversationId=adm, limit=3, before=token)
    assert [m["text"] for m in second["messages"]] == ["m1", "m2", "m3"]
    assert second["messages"][0]["reactions"] == [{"emoji": "👀", "count": 1, "mine": True}]
    # A token pages the same way every time.
    assert await a.call("messages", conversationId=adm, limit=3, before=token) == second
    third = await a.call("messages", conversationId=adm, limit=3, before=second["nextBefore"])
    kinds = [m["kind"] for m in third["messages"]]
    assert kinds == ["notice", "text"]  # the DM's creation, then m0
    assert third["messages"][1]["text"] == "m0"
    assert third["nextBefore"] is None  # the start
    everything = first["messages"] + second["messages"] + third["messages"]
    assert sorted(m["id"] for m in everything if m["kind"] == "text") == sorted(ids)
    # A page that is exactly the rest ends with null too.
    exact = await a.call("messages", conversationId=adm, limit=8)
    assert len(exact["messages"]) == 8 and exact["nextBefore"] is None
    default = await a.call("messages", conversationId=adm)
    assert default["messages"] == exact["messages"]


# -- attachments -------------------------------------------------------------------------------


async def test_attachments_inline_with_data_and_remote_without(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    a, b, adm, bdm = await pair(relay, peers, sides, tmp_path)
    image = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
    sent = await a.call(
        "sendAttachment",
        conversationId=adm,
        filename="cat.png",
        mimeType="image/png",
        data=base64.b64encode(image).decode(),
    )
    assert sent["message"]["kind"] == "attachment"
    event = await b.event(
        message_event(
            bdm, lambda m: m["kind"] == "attachment" and m["id"] == sent["message"]["id"]
        ),
        "the image",
    )
    attachment = event["message"]["attachment"]
    assert attachment == {
        "filename": "cat.png",
        "mimeType": "image/png",
        "size": len(image),
        "inline": True,
        "data": base64.b64encode(image).decode(),
    }

    notes = b"line one\n"
    await a.call(
        "sendAttachment",
        conversationId=adm,
        filename="notes.txt",
        mimeType="text/plain",
        data=base64.b64encode(notes).decode(),
    )
    big = os.urandom(1536 * 1024)
    remote = await a.call(
        "sendAttachment",
        conversationId=adm,
        filename="scan.pdf",
        mimeType="application/pdf",
        data=base64.b64encode(big).decode(),
    )
    assert remote["message"]["attachment"]["inline"] is False

    async def all_three() -> list[JSON]:
        listed = [m for m in await b.messages(bdm) if m["kind"] == "attachment"]
        return listed if len(listed) == 3 else []

    listed = await eventually(all_three, "three attachments", 30)
    text_file, pdf = listed[1]["attachment"], listed[2]["attachment"]
    assert text_file == {
        "filename": "notes.txt",
        "mimeType": "text/plain",
        "size": len(notes),
        "inline": True,
    }
    assert pdf["inline"] is False and "data" not in pdf
    assert (pdf["filename"], pdf["mimeType"]) == ("scan.pdf", "application/pdf")
    assert pdf["size"] >= len(big)
    for message, data in ((listed[1], notes), (listed[2], big)):
        fetched = await b.call("fetchAttachment", conversationId=bdm, messageId=message["id"])
        assert base64.b64decode(fetched["data"]) == data
        assert fetched["filename"] == message["attachment"]["filename"]
        assert fetched["mimeType"] == message["attachment"]["mimeType"]


# -- retry, events ---------------------------------------------------------------------------


async def test_retry_of_a_failed_message(
    relay: Relay,
    peers: list[Peer],
    sides: list[Side],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b, adm, bdm = await pair(relay, peers, sides, tmp_path)

    async def offline(topic: str, publish_id: str, payload: bytes) -> int:
        raise RelayUnavailable("the relay is unreachable")

    monkeypatch.setattr(a.peer.connection, "publish", offline)
    failed = (await a.call("send", conversationId=adm, text="later"))["message"]
    assert failed["status"] == "failed"
    monkeypatch.undo()
    retried = (await a.call("retry", conversationId=adm, messageId=failed["id"]))["message"]
    assert retried["id"] == failed["id"] and retried["status"] == "sent"
    await a.event(
        message_event(adm, lambda m: m["id"] == failed["id"] and m["status"] == "sent"),
        "the status change as an event",
    )

    async def b_has_it_once() -> bool:
        return await b.texts(bdm) == ["later"]

    await eventually(b_has_it_once, "b receives it once")


async def test_events_iterator(
    relay: Relay, peers: list[Peer], sides: list[Side], tmp_path: Path
) -> None:
    a, b, adm, bdm = await pair(relay, peers, sides, tmp_path)
    await a.call("send", conversationId=adm, text="over the iterator")
    iterator = b.bridge.events()

    async def next_message() -> JSON:
        async for event in iterator:
            if event["event"] == "message" and event["message"]["text"] == "over the iterator":
                return event
        raise AssertionError("the iterator ended")

    event = await asyncio.wait_for(next_message(), 20)
    assert event["conversationId"] == bdm
    assert set(event["message"]) == {
        "id",
        "conversationId",
        "senderInboxId",
        "senderName",
        "mine",
        "kind",
        "text",
        "status",
        "sentAt",
        "replyTo",
        "reactions",
        "attachment",
        "readBy",
    }
    conversation = await b.conversation(bdm)
    assert set(conversation) == {
        "id",
        "kind",
        "title",
        "name",
        "description",
        "peerInboxId",
        "members",
        "myRole",
        "active",
        "lastMessage",
        "unread",
        "updatedAt",
    }
    assert set(conversation["members"][0]) == {"inboxId", "name", "fingerprint", "isMe", "role"}
    assert conversation["lastMessage"]["text"] == "over the iterator"
    assert conversation["updatedAt"] == conversation["lastMessage"]["sentAt"] > 0


# -- the rules themselves, without a relay ---------------------------------------------------


def _mine(topic: str | None, sequence: int | None, sent_at_ns: int) -> Message:
    return Message(
        id="m",
        conversation_id="dm:x",
        sender_inbox_id="me",
        sender_installation_id="me",
        sent_at_ns=sent_at_ns,
        content_type="veilpost.org/text:1.0",
        encoded=b"",
        status="sent" if sequence is not None else "sending",
        sequence=sequence,
        topic=topic,
    )


async def test_a_read_position_compares_sequences_on_its_topic_and_times_elsewhere() -> None:
    position = {"topic": "group:T", "sequence": 10, "ns": 1_000}
    covers = Bridge._covers
    # Same topic: the relay's order decides, whatever the local clock says.
    assert covers(position, _mine("group:T", 9, 5_000), "group:T")
    assert not covers(position, _mine("group:T", 11, 500), "group:T")
    assert not covers(position, _mine("group:T", 10, 500), "group:T")  # the receipt itself
    # A received own message (another device) has no topic: the conversation's.
    assert covers(position, _mine(None, 9, 5_000), "group:T")
    # The other group of a DM made twice: local time decides.
    assert covers(position, _mine("group:U", 99, 999), "group:T")
    assert not covers(position, _mine("group:U", 1, 1_001), "group:T")
    # Not stored by the relay yet: not read.
    assert not covers(position, _mine("group:T", None, 1), "group:T")


async def test_page_tokens_and_recipients() -> None:
    cursor = MessageCursor(1_700_000_000_123_456_789, "ab" * 16)
    token = _encode_token(cursor)
    assert token.isascii() and "=" not in token and "/" not in token
    assert _decode_token(token) == cursor
    assert _recipient(" 0xAbC ") == "0xAbC"
    assert _recipient("http://relay.example/#dm/" + "cd" * 16) == "cd" * 16
    assert _recipient("veilpost:#dm/%20" + "cd" * 16 + "/") == "cd" * 16
