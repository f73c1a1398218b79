"""The node's fan-out (``webapp.relay.hub``) and pipelined publishing, through real sockets of
the ASGI application: one channel-layer membership per node and topic, envelopes from other
nodes put back in order, gaps filled from the database once for the node."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from relay_support import (
    RelayClient,
    b64,
    fresh_channel_layer,  # noqa: F401  (autouse fixture)
    gather_envelopes,
    next_id,
    private_message,
)

from webapp.relay import delivery, hub
from webapp.relay.frames import envelope_frame
from webapp.relay.identifiers import group_topic
from webapp.relay.models import Installation

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

GROUP = b"hub-group"
TOPIC = group_topic(GROUP)


def _store(installation_id: str) -> delivery.Published:
    installation = Installation.objects.get(pk=installation_id)
    return delivery.publish(installation, TOPIC, next_id(), private_message(GROUP))


async def store_quietly(client: RelayClient) -> delivery.Published:
    """Store an envelope as another node would, without telling this node."""
    published: delivery.Published = await database_sync_to_async(_store)(client.installation_id)
    return published


async def from_another_node(published: list[delivery.Published]) -> None:
    layer: Any = get_channel_layer()
    await layer.group_send(
        hub.topic_group(published[0].topic_pk),
        {
            "type": "relay.envelopes",
            "origin": "another-node",
            "topic_pk": published[0].topic_pk,
            "topic": TOPIC,
            "envelopes": [
                [p.envelope.sequence, p.envelope.size, envelope_frame(p.envelope)]
                for p in published
            ],
        },
    )


async def test_the_node_joins_a_topic_group_once_and_leaves_with_its_last_subscriber() -> None:
    first, second = await RelayClient.connect(), await RelayClient.connect()
    await first.subscribe({TOPIC: 0})
    await second.subscribe({TOPIC: 0})
    layer: Any = get_channel_layer()
    node = hub.get_hub()
    (group,) = [name for name in layer.groups if name.startswith("topic.")]

    assert list(layer.groups[group]) == [node.channel]

    await first.send({"type": "unsubscribe", "topics": [TOPIC]})
    await first.receive("unsubscribed")
    assert list(layer.groups[group]) == [node.channel]
    await second.send({"type": "unsubscribe", "topics": [TOPIC]})
    await second.receive("unsubscribed")
    await asyncio.sleep(0.01)  # the discard runs in the background
    assert not layer.groups.get(group)
    await first.close()
    await second.close()


async def test_envelopes_from_other_nodes_are_put_back_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub, "HOLD_SECONDS", 5)  # the gap fills before: no database read
    subscriber = await RelayClient.connect()
    await subscriber.subscribe({TOPIC: 0})
    one, two, three = [await store_quietly(subscriber) for _ in range(3)]

    await from_another_node([three])
    await from_another_node([two])
    await subscriber.nothing(0.1)  # 1 is still missing: 2 and 3 wait
    await from_another_node([one])

    assert await gather_envelopes(subscriber, 3) == [1, 2, 3]
    await subscriber.nothing(0.1)
    await subscriber.close()


async def test_a_gap_that_does_not_fill_is_read_from_the_database_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub, "HOLD_SECONDS", 0.05)
    reads = 0
    real = delivery.envelopes_after

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return real(*args, **kwargs)

    subscribers = [await RelayClient.connect() for _ in range(3)]
    for client in subscribers:
        await client.subscribe({TOPIC: 0})
    monkeypatch.setattr(delivery, "envelopes_after", counting)
    await store_quietly(subscribers[0])  # never announced
    last = await store_quietly(subscribers[0])

    await from_another_node([last])

    for client in subscribers:
        assert await gather_envelopes(client, 2) == [1, 2]
    assert reads == 1  # the node read sequence 1 once, not once per connection
    for client in subscribers:
        await client.close()


async def test_pipelined_publishes_are_acknowledged_in_order() -> None:
    publisher = await RelayClient.connect()
    ids = [next_id() for _ in range(40)]
    for index, client_id in enumerate(ids):  # no waiting between frames
        await publisher.send(
            {
                "type": "publish",
                "topic": TOPIC,
                "id": client_id,
                "payload": b64(private_message(GROUP)),
                "ref": index,
            }
        )

    acks = [await publisher.receive("ack") for _ in ids]

    assert [a["id"] for a in acks] == ids
    assert [a["sequence"] for a in acks] == list(range(1, 41))
    assert [a["ref"] for a in acks] == list(range(40))
    await publisher.close()


async def test_a_refused_publish_in_a_pipeline_gets_its_error_in_its_place() -> None:
    publisher = await RelayClient.connect()
    frames = [
        {"id": "good-1", "payload": b64(private_message(GROUP))},
        {"id": "good-1", "payload": b64(private_message(GROUP, ciphertext=b"else"))},
        {"id": "good-2", "payload": b64(private_message(GROUP))},
    ]
    for index, frame in enumerate(frames):
        await publisher.send({"type": "publish", "topic": TOPIC, "ref": index, **frame})

    answers = [await publisher.receive() for _ in frames]

    assert [(a["type"], a["ref"]) for a in answers] == [("ack", 0), ("error", 1), ("ack", 2)]
    assert answers[1]["code"] == "id_reused"
    assert answers[2]["sequence"] == 2
    await publisher.close()


async def test_an_envelope_stored_while_the_node_joins_the_topic_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A subscriber at the topic's head reads no backlog; an envelope stored after its position
    was read but before the node's fan-out knew the topic still arrives (the settle check)."""
    monkeypatch.setattr(hub, "SETTLE_SECONDS", 0.05)
    publisher = await RelayClient.connect()
    await publisher.publish(TOPIC, private_message(GROUP))
    read_positions = delivery.open_topics
    backlog_reads = 0
    real_backlog = delivery.envelopes_after

    def racing_open(*args: Any, **kwargs: Any) -> Any:
        positions = read_positions(*args, **kwargs)
        _store(publisher.installation_id or "")  # stored now, fanned out to nobody
        return positions

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal backlog_reads
        backlog_reads += 1
        return real_backlog(*args, **kwargs)

    monkeypatch.setattr(delivery, "open_topics", racing_open)
    monkeypatch.setattr(delivery, "envelopes_after", counting)
    subscriber = await RelayClient.connect()

    assert (await subscriber.subscribe({TOPIC: 1}))["topics"][TOPIC]["last_sequence"] == 1
    assert await gather_envelopes(subscriber, 1) == [2]
    assert backlog_reads == 1  # the node's one fill, not a read for the subscription
    await subscriber.nothing(0.1)
    await publisher.close()
    await subscriber.close()
