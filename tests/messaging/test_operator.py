"""The operator test: after a conversation carrying a random canary in a text, a reply, a group
name and attachments (inline and as a blob), the canary appears nowhere in the relay's
database nor in anything the relay received or sent."""

from __future__ import annotations

import base64
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from veilpost.client import content

from .conftest import Relay
from .messaging_support import Peer, open_peer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "relay"))
from canary_search import capture_values, database_values, found, texts_of


@pytest_asyncio.fixture
async def operator_peers() -> AsyncIterator[list[Peer]]:
    opened: list[Peer] = []
    yield opened
    for peer in opened:
        await peer.close()


@pytest.mark.asyncio
async def test_canary_never_reaches_the_relay(
    capturing_relay: tuple[Relay, Path], operator_peers: list[Peer], tmp_path: Path
) -> None:
    relay, capture = capturing_relay
    canary = "canary-" + secrets.token_hex(12)
    alice = await open_peer(relay.url, "alice", tmp_path)
    bob = await open_peer(relay.url, "bob", tmp_path)
    operator_peers += [alice, bob]
    group = await alice.client.new_group([bob.inbox_id], name=f"group {canary}")
    await alice.client.update_metadata(group.id, description=f"about {canary}")
    first = await alice.client.send(group.id, f"the secret is {canary}")
    await alice.client.send(group.id, content.Reply(reference=first.id, content=f"re {canary}"))
    await alice.client.send_attachment(
        group.id, f"{canary}.txt", "text/plain", canary.encode() * 10
    )
    big = canary.encode() * (1_200_000 // len(canary))
    await alice.client.send_attachment(group.id, "big.bin", "application/octet-stream", big)
    dm = await bob.client.new_dm(alice.inbox_id)
    await bob.client.send(dm.id, f"dm {canary}")
    await bob.wait_for(
        lambda p: len([m for m in p.messages(group.id) if m.status == "received"]) >= 4, 30
    )
    await alice.wait_for(lambda p: f"dm {canary}" in p.texts(f"dm:{bob.inbox_id}"), 30)
    received = [m for m in bob.messages(group.id) if m.status == "received"]
    assert (await bob.client.fetch_attachment(received[-1])).data == big
    assert bob.client.conversation(group.id).name == f"group {canary}"

    needle = canary.encode()
    topic = bob.client.conversation(group.id).topic.encode()
    # Positive controls: the search finds what the relay does see (the topic name), and would
    # find the canary in base64, as a payload field would carry it.
    assert found(topic, (t for v in database_values(relay.database) for t in texts_of(v)))
    assert found(topic, (t for v in capture_values(capture) for t in texts_of(v)))
    assert found(needle, texts_of(base64.b64encode(b"x" + needle).decode()))
    assert not found(needle, (t for v in database_values(relay.database) for t in texts_of(v)))
    assert not found(needle, (t for v in capture_values(capture) for t in texts_of(v)))
    log = relay.log.read_bytes()
    assert needle not in log
