"""Two clients exchange DMs through a real relay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .conftest import Relay
from .messaging_support import Peer, open_peer

pytestmark = pytest.mark.asyncio


async def _alice_and_bob(relay: Relay, peers: list[Peer], tmp_path: Path) -> tuple[Peer, Peer]:
    alice = await open_peer(relay.url, "alice", tmp_path)
    peers.append(alice)
    bob = await open_peer(relay.url, "bob", tmp_path)
    peers.append(bob)
    return alice, bob


async def test_two_clients_exchange_dms_both_ways(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    alice, bob = await _alice_and_bob(relay, peers, tmp_path)
    dm = await alice.client.new_dm(bob.inbox_id)
    assert dm.id == f"dm:{bob.inbox_id}"
    sent = await alice.client.send(dm.id, "hello bob")
    assert sent.status == "sent", sent.error
    bob_dm = f"dm:{alice.inbox_id}"
    await bob.wait_for(lambda p: p.texts(bob_dm) == ["hello bob"], what="bob gets hello")
    reply = await bob.client.send(bob_dm, "hi alice")
    assert reply.status == "sent"
    await alice.wait_for(lambda p: p.texts(dm.id) == ["hello bob", "hi alice"], what="alice")
    received = next(m for m in bob.messages(bob_dm) if m.text == "hello bob")
    assert received.sender_inbox_id == alice.inbox_id
    assert received.id == sent.id


async def test_two_calls_at_once_make_one_dm_and_both_can_send_at_once(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    """The second call waits for the DM the first is making (it is not returned half made)."""
    alice, bob = await _alice_and_bob(relay, peers, tmp_path)

    async def dm_and_send(text: str) -> tuple[str, str]:
        dm = await alice.client.new_dm(bob.inbox_id)
        sent = await alice.client.send(dm.id, text)
        return dm.id, sent.status

    first, second = await asyncio.gather(dm_and_send("one"), dm_and_send("two"))
    assert first == second == (f"dm:{bob.inbox_id}", "sent")
    assert len(alice.client._conversation_groups(first[0])) == 1
    await bob.wait_for(
        lambda p: sorted(p.texts(f"dm:{alice.inbox_id}")) == ["one", "two"], what="bob gets both"
    )


async def test_catch_up_subscribes_a_group_the_relay_does_not_count_it_in(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    """A Welcome processed, then the process ended before its subscription reached the relay:
    the relay does not count the installation in the topic, and reading its history is
    refused. Catching up subscribes first (it used to fail with not_a_member)."""
    from veilpost.protocol import group_topic

    alice, bob = await _alice_and_bob(relay, peers, tmp_path)
    dm = await alice.client.new_dm(bob.inbox_id)
    await alice.client.send(dm.id, "before")
    bob_dm = f"dm:{alice.inbox_id}"
    await bob.wait_for(lambda p: p.texts(bob_dm) == ["before"], what="bob joins")
    (group,) = bob.client._conversation_groups(bob_dm)
    topic = group_topic(group.group_id)
    await bob.connection.rest("DELETE", f"/conversations/{topic}")  # not a member any more
    await alice.client.send(dm.id, "after")
    await bob.client.catch_up(topic)
    assert bob.texts(bob_dm) == ["before", "after"]
