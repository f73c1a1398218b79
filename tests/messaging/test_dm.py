"""Two clients exchange DMs through a real relay."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Relay
from .messaging_support import Peer, open_peer

pytestmark = pytest.mark.asyncio


async def test_two_clients_exchange_dms_both_ways(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    alice = await open_peer(relay.url, "alice", tmp_path)
    peers.append(alice)
    bob = await open_peer(relay.url, "bob", tmp_path)
    peers.append(bob)
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
