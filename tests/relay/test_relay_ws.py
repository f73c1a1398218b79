"""The WebSocket protocol at /ws/v1, through the real ASGI application (webapp.asgi)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.utils import timezone
from relay_support import (
    Device,
    RelayClient,
    b64,
    commit,
    fresh_channel_layer,  # noqa: F401  (autouse fixture)
    gather_envelopes,
    next_id,
    private_message,
    unb64,
    welcome,
)

from webapp.relay import auth, consumers, delivery, hub
from webapp.relay.frames import envelope_frame
from webapp.relay.identifiers import group_topic, installation_id
from webapp.relay.models import Envelope, Installation, Topic

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

GROUP = b"ws-group"
TOPIC = group_topic(GROUP)


async def envelope_count() -> int:
    count: int = await database_sync_to_async(Envelope.objects.count)()
    return count


def _publish_quietly(installation_id_: str, payload: bytes) -> int:
    installation = Installation.objects.get(pk=installation_id_)
    return delivery.publish(installation, TOPIC, next_id(), payload).envelope.sequence


async def publish_without_fanout(installation_id_: str, payload: bytes) -> int:
    """Store an envelope as a publish does, but skip the channel layer: a lost live event."""
    sequence: int = await database_sync_to_async(_publish_quietly)(installation_id_, payload)
    return sequence


# --- Authentication ---------------------------------------------------------------------------


async def test_connection_starts_with_a_challenge() -> None:
    client = await RelayClient.open()

    challenge = client.challenge
    assert challenge["version"] == 1
    assert len(unb64(challenge["nonce"])) == 32
    assert challenge["audience"] == "testserver"
    assert challenge["expires_at"]
    await client.close()


async def test_authentication_registers_a_new_inbox() -> None:
    device = Device()
    client = await RelayClient.open()

    await client.send(device.auth_frame(client.challenge, ref="a1"))
    frame = await client.receive("authenticated")

    assert frame["installation_id"] == device.installation_id == installation_id(device.public_key)
    assert (
        frame["inbox_id"] == device.installation_id
    )  # an inbox is named by its first installation
    assert frame["welcome_topic"] == device.welcome_topic
    assert frame["limits"]["max_envelope_bytes"] == 2 << 20
    assert frame["ref"] == "a1"
    await client.close()


async def test_the_same_key_authenticates_as_the_same_installation() -> None:
    device = Device()
    first = await RelayClient.connect(device)
    second = await RelayClient.connect(device)

    assert first.installation_id == second.installation_id
    await first.close()
    await second.close()


async def test_bad_signature_fails_and_a_fresh_challenge_follows() -> None:
    device, impostor = Device(), Device()
    client = await RelayClient.open()
    frame = device.auth_frame(client.challenge)
    frame["signature"] = b64(impostor.answer(unb64(client.challenge["nonce"])))

    await client.send(frame)

    await client.error("bad_signature")
    retry = await client.receive("challenge")
    assert retry["nonce"] != client.challenge["nonce"]
    await client.send(device.auth_frame(retry))
    await client.receive("authenticated")
    await client.close()


async def test_signature_for_another_audience_fails() -> None:
    device = Device()
    client = await RelayClient.open()
    frame = device.auth_frame({**client.challenge, "audience": "evil.example"})

    await client.send(frame)

    await client.error("bad_signature")
    await client.close()


async def test_a_burnt_challenge_cannot_be_replayed() -> None:
    device = Device()
    client = await RelayClient.open()
    good_answer = device.auth_frame(client.challenge)
    await client.send({**good_answer, "signature": b64(bytes(64))})
    await client.error("bad_signature")
    await client.receive("challenge")

    await client.send(good_answer)  # a valid signature, on a challenge already used

    await client.error("challenge_used")
    await client.close()


async def test_an_answer_from_another_connection_is_refused() -> None:
    device = Device()
    victim = await RelayClient.open()
    attacker = await RelayClient.open()

    await attacker.send(device.auth_frame(victim.challenge))

    await attacker.error("unknown_challenge")
    await victim.close()
    await attacker.close()


async def test_expired_challenge_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    device = Device()
    client = await RelayClient.open()
    later = timezone.now() + timedelta(seconds=61)  # the challenge lasts 60 s
    monkeypatch.setattr(auth, "_now", lambda: later)

    await client.send(device.auth_frame(client.challenge))

    error = await client.error("challenge_expired")
    assert "expired at" in error["message"]
    await client.close()


async def test_small_order_public_key_is_refused() -> None:
    client = await RelayClient.open()
    identity_point = bytes([1]) + bytes(31)
    # With A = identity, [S]B = R + [k]A holds for R = B, S = 1 whatever the message:
    base_point = bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666")
    forged = base_point + (1).to_bytes(32, "little")

    await client.send(
        {
            "type": "auth",
            "nonce": client.challenge["nonce"],
            "public_key": b64(identity_point),
            "signature": b64(forged),
        }
    )

    await client.error("invalid_public_key")
    await client.close()


async def test_unauthenticated_socket_can_only_authenticate() -> None:
    client = await RelayClient.open()

    for frame in (
        {"type": "publish", "topic": TOPIC, "id": "m1", "payload": b64(private_message(GROUP))},
        {"type": "subscribe", "topics": {TOPIC: 0}},
        {"type": "ping"},
    ):
        await client.send(frame)
        await client.error("not_authenticated")

    assert await envelope_count() == 0
    assert not await database_sync_to_async(Topic.objects.filter(name=TOPIC).exists)()
    await client.close()


async def test_too_many_failed_authentications_close_the_socket() -> None:
    client = await RelayClient.open()

    for _ in range(consumers.MAX_AUTH_ATTEMPTS - 1):
        await client.send({**Device().auth_frame(client.challenge), "signature": b64(bytes(64))})
        await client.error("bad_signature")
        client.challenge = await client.receive("challenge")
    await client.send({**Device().auth_frame(client.challenge), "signature": b64(bytes(64))})
    await client.error("bad_signature")

    assert await client.closed() == consumers.CLOSE_AUTH_FAILED


async def test_unauthenticated_socket_is_closed_when_its_challenge_expires(settings: Any) -> None:
    settings.VEILPOST_CHALLENGE_SECONDS = 0.1
    client = await RelayClient.open()

    await client.error("authentication_timeout")
    assert await client.closed() == consumers.CLOSE_AUTH_TIMEOUT


async def test_authenticating_twice_is_refused() -> None:
    device = Device()
    client = await RelayClient.connect(device)

    await client.send(device.auth_frame(client.challenge))

    await client.error("already_authenticated")
    await client.close()


# --- Publishing -------------------------------------------------------------------------------


async def test_publish_is_acknowledged_with_the_sequence() -> None:
    client = await RelayClient.connect()

    first = await client.publish(TOPIC, private_message(GROUP), id="m-1")
    second = await client.publish(TOPIC, private_message(GROUP), id="m-2")

    assert first == {
        "type": "ack",
        "topic": TOPIC,
        "id": "m-1",
        "sequence": 1,
        "duplicate": False,
        "ref": None,
    }
    assert second["sequence"] == 2
    await client.close()


async def test_retried_publish_gets_the_same_sequence_and_no_duplicate() -> None:
    publisher = await RelayClient.connect()
    subscriber = await RelayClient.connect()
    await subscriber.subscribe({TOPIC: 0})
    payload = private_message(GROUP)

    first = await publisher.publish(TOPIC, payload, id="lost-ack")
    retry = await publisher.publish(TOPIC, payload, id="lost-ack")

    assert (retry["sequence"], retry["duplicate"]) == (first["sequence"], True)
    assert [e["sequence"] for e in await subscriber.envelopes(1)] == [1]
    await subscriber.nothing()
    assert await envelope_count() == 1
    await publisher.close()
    await subscriber.close()


async def test_same_id_with_another_payload_is_an_error() -> None:
    client = await RelayClient.connect()
    await client.publish(TOPIC, private_message(GROUP, ciphertext=b"1"), id="x")

    error = await client.publish(TOPIC, private_message(GROUP, ciphertext=b"2"), id="x")

    assert error["code"] == "id_reused"
    assert await envelope_count() == 1
    await client.close()


async def test_second_commit_for_an_epoch_gets_epoch_conflict() -> None:
    alice = await RelayClient.connect()
    bob = await RelayClient.connect()
    await alice.publish(TOPIC, commit(GROUP, 3, b"alice"))

    await bob.send(
        {
            "type": "publish",
            "topic": TOPIC,
            "id": "bob-c",
            "payload": b64(commit(GROUP, 3, b"bob")),
            "ref": 7,
        }
    )
    error = await bob.error("epoch_conflict")

    assert "epoch 3" in error["message"]
    assert (error["epoch"], error["current_epoch"], error["ref"]) == (3, 4, 7)
    assert await envelope_count() == 1
    ack = await bob.publish(TOPIC, commit(GROUP, 4, b"bob"), id="bob-c")  # retry, new epoch
    assert ack["sequence"] == 2
    await alice.close()
    await bob.close()


async def test_group_id_mismatch_is_refused() -> None:
    client = await RelayClient.connect()

    error = await client.publish(TOPIC, private_message(b"another-group"))

    assert error["code"] == "group_mismatch"
    assert await envelope_count() == 0
    await client.close()


async def test_oversized_envelope_is_refused(settings: Any) -> None:
    settings.VEILPOST_MAX_ENVELOPE_BYTES = 1024
    client = await RelayClient.connect()

    error = await client.publish(TOPIC, private_message(GROUP, ciphertext=b"x" * 1100))

    assert error["code"] == "envelope_too_large"
    assert error["limit"] == 1024
    assert await envelope_count() == 0
    await client.close()


async def test_frame_far_beyond_the_limit_is_refused_unread() -> None:
    client = await RelayClient.connect()
    beyond = 2 * django_settings.VEILPOST_MAX_ENVELOPE_BYTES  # base64 of it is 8/3 of that

    await client.communicator.send_to(
        text_data='{"type": "publish", "payload": "' + "A" * beyond + '"}'
    )

    await client.error("frame_too_large")
    await client.close()


async def test_publish_rate_limit(settings: Any) -> None:
    settings.VEILPOST_PUBLISH_RATE = 0.001
    settings.VEILPOST_PUBLISH_BURST = 3
    client = await RelayClient.connect()
    for _ in range(3):
        assert (await client.publish(TOPIC, private_message(GROUP)))["type"] == "ack"

    error = await client.publish(TOPIC, private_message(GROUP))

    assert error["code"] == "rate_limited" and error["retry_after"] > 0
    assert await envelope_count() == 3
    await client.close()


# --- Welcome inboxes --------------------------------------------------------------------------


async def test_welcome_reaches_only_its_recipient() -> None:
    alice, bob_device = await RelayClient.connect(), Device()
    bob = await RelayClient.connect(bob_device)
    eve = await RelayClient.connect()

    await eve.send({"type": "subscribe", "topics": {bob_device.welcome_topic: 0}})
    await eve.error("not_your_inbox")
    ack = await alice.publish(bob_device.welcome_topic, welcome())
    assert ack["sequence"] == 1

    await bob.subscribe({bob_device.welcome_topic: 0})
    (envelope,) = await bob.envelopes(1)
    assert envelope["wire_format"] == "mls_welcome"
    assert unb64(envelope["payload"]) == welcome()
    await eve.nothing()
    for client in (alice, bob, eve):
        await client.close()


async def test_welcome_inbox_refuses_other_messages() -> None:
    alice, bob = await RelayClient.connect(), await RelayClient.connect()

    error = await alice.publish(f"welcome:{bob.installation_id}", private_message(GROUP))

    assert error["code"] == "invalid_envelope"
    await alice.close()
    await bob.close()


# --- Subscribing ------------------------------------------------------------------------------


async def test_backlog_after_the_cursor_then_live() -> None:
    publisher = await RelayClient.connect()
    for _ in range(3):
        await publisher.publish(TOPIC, private_message(GROUP))
    subscriber = await RelayClient.connect()

    subscribed = await subscriber.subscribe({TOPIC: 1})
    assert subscribed["topics"] == {TOPIC: {"cursor": 1, "last_sequence": 3, "first_sequence": 1}}
    backlog = await subscriber.envelopes(2)
    await publisher.publish(TOPIC, private_message(GROUP, 1, ciphertext=b"live"))
    (live,) = await subscriber.envelopes(1)

    assert [e["sequence"] for e in backlog] == [2, 3]
    assert live["sequence"] == 4 and live["epoch"] == 1
    assert live["wire_format"] == "mls_private_message" and live["content_type"] == "application"
    assert unb64(live["payload"]) == private_message(GROUP, 1, ciphertext=b"live")
    await publisher.close()
    await subscriber.close()


async def test_no_gap_and_no_duplicate_when_publishing_races_the_subscription() -> None:
    publisher = await RelayClient.connect()
    subscriber = await RelayClient.connect()
    for _ in range(20):
        await publisher.publish(TOPIC, private_message(GROUP))

    async def publish_more() -> None:
        for _ in range(60):
            await publisher.publish(TOPIC, private_message(GROUP))

    racing = asyncio.ensure_future(publish_more())
    await subscriber.send({"type": "subscribe", "topics": {TOPIC: 5}})
    assert (await subscriber.receive())["type"] == "subscribed"
    sequences = await gather_envelopes(subscriber, 75)
    await racing

    assert sequences == list(range(6, 81))
    await subscriber.nothing()
    await publisher.close()
    await subscriber.close()


async def test_publish_between_joining_and_reading_the_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worst interleaving, forced: one envelope is stored after the subscriber joined the
    group but before it read the backlog (so it is in both), one right after the read."""
    monkeypatch.setattr(hub, "SETTLE_SECONDS", 60)  # no safety net: ordering alone
    publisher = await RelayClient.connect()
    subscriber = await RelayClient.connect()
    await publisher.publish(TOPIC, private_message(GROUP))
    publisher_installation = await database_sync_to_async(Installation.objects.get)(
        pk=publisher.installation_id
    )
    read_backlog = delivery.envelopes_after
    calls = 0

    def publish_and_fan_out() -> None:
        published = delivery.publish(
            publisher_installation, TOPIC, next_id(), private_message(GROUP)
        )
        envelope = published.envelope
        async_to_sync(get_channel_layer().group_send)(  # as another node would
            hub.topic_group(published.topic_pk),
            {
                "type": "relay.envelopes",
                "origin": "another-node",
                "topic_pk": published.topic_pk,
                "topic": TOPIC,
                "envelopes": [[envelope.sequence, envelope.size, envelope_frame(envelope)]],
            },
        )

    def racing_read(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            publish_and_fan_out()  # in the backlog and live
        result = read_backlog(*args, **kwargs)
        if calls == 1:
            publish_and_fan_out()  # live only
        return result

    monkeypatch.setattr(delivery, "envelopes_after", racing_read)

    await subscriber.subscribe({TOPIC: 0})

    assert await gather_envelopes(subscriber, 3) == [1, 2, 3]
    await subscriber.nothing(0.2)
    await publisher.close()
    await subscriber.close()


async def test_a_lost_live_event_is_filled_from_the_database() -> None:
    publisher = await RelayClient.connect()
    subscriber = await RelayClient.connect()
    await subscriber.subscribe({TOPIC: 0})
    await publish_without_fanout(publisher.installation_id or "", private_message(GROUP))

    await publisher.publish(TOPIC, private_message(GROUP))  # sequence 2 reveals the gap

    assert await gather_envelopes(subscriber, 2) == [1, 2]
    await publisher.close()
    await subscriber.close()


async def test_a_lost_last_event_arrives_once_traffic_settles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub, "SETTLE_SECONDS", 0.05)
    publisher = await RelayClient.connect()
    subscriber = await RelayClient.connect()
    await subscriber.subscribe({TOPIC: 0})
    await publisher.publish(TOPIC, private_message(GROUP))
    await publish_without_fanout(publisher.installation_id or "", private_message(GROUP))

    assert await gather_envelopes(subscriber, 2) == [1, 2]
    await publisher.close()
    await subscriber.close()


async def test_unsubscribe_stops_delivery() -> None:
    publisher, subscriber = await RelayClient.connect(), await RelayClient.connect()
    await subscriber.subscribe({TOPIC: 0})

    await subscriber.send({"type": "unsubscribe", "topics": [TOPIC, "group:bm9uZQ"], "ref": "u"})
    assert await subscriber.receive("unsubscribed") == {
        "type": "unsubscribed",
        "topics": [TOPIC],
        "ref": "u",
    }
    await publisher.publish(TOPIC, private_message(GROUP))

    await subscriber.nothing()
    await publisher.close()
    await subscriber.close()


async def test_cursor_beyond_the_topic_is_refused() -> None:
    client = await RelayClient.connect()
    await client.publish(TOPIC, private_message(GROUP))

    await client.send({"type": "subscribe", "topics": {TOPIC: 5}})

    error = await client.error("invalid_cursor")
    assert error["topic"] == TOPIC
    await client.close()


async def test_subscription_limit(settings: Any) -> None:
    settings.VEILPOST_MAX_SUBSCRIPTIONS = 2
    client = await RelayClient.connect()
    await client.subscribe({group_topic(b"a"): 0, group_topic(b"b"): 0})

    await client.send({"type": "subscribe", "topics": {group_topic(b"c"): 0}})

    await client.error("too_many_subscriptions")
    await client.close()


# --- Flow control -----------------------------------------------------------------------------


async def test_window_holds_envelopes_until_acknowledged(settings: Any) -> None:
    settings.VEILPOST_SEND_WINDOW = 3
    publisher, subscriber = await RelayClient.connect(), await RelayClient.connect()
    for _ in range(5):
        await publisher.publish(TOPIC, private_message(GROUP))

    await subscriber.subscribe({TOPIC: 0})
    first = await subscriber.envelopes(3)
    await subscriber.nothing()
    await subscriber.send({"type": "received", "topics": {TOPIC: 2}})
    rest = await subscriber.envelopes(2)

    assert [e["sequence"] for e in first + rest] == [1, 2, 3, 4, 5]
    await subscriber.nothing()
    await publisher.close()
    await subscriber.close()


async def test_slow_consumer_is_disconnected_with_a_reason(settings: Any) -> None:
    settings.VEILPOST_SEND_WINDOW = 2
    settings.VEILPOST_SLOW_CONSUMER_SECONDS = 0.2
    publisher, subscriber = await RelayClient.connect(), await RelayClient.connect()
    await subscriber.subscribe({TOPIC: 0})

    for _ in range(4):
        await publisher.publish(TOPIC, private_message(GROUP))

    assert [e["sequence"] for e in await subscriber.envelopes(2)] == [1, 2]
    error = await subscriber.error("slow_consumer")
    assert "unacknowledged" in error["message"]
    assert await subscriber.closed() == consumers.CLOSE_SLOW_CONSUMER
    await publisher.close()


async def test_acknowledging_consumer_is_not_slow(settings: Any) -> None:
    settings.VEILPOST_SEND_WINDOW = 2
    settings.VEILPOST_SLOW_CONSUMER_SECONDS = 0.3
    publisher, subscriber = await RelayClient.connect(), await RelayClient.connect()
    for _ in range(10):
        await publisher.publish(TOPIC, private_message(GROUP))
    await subscriber.subscribe({TOPIC: 0})

    sequences = []
    for _ in range(10):
        (frame,) = await subscriber.envelopes(1)
        sequences.append(frame["sequence"])
        await asyncio.sleep(0.05)  # slow, but making progress
        await subscriber.send({"type": "received", "topics": {TOPIC: frame["sequence"]}})

    assert sequences == list(range(1, 11))
    await subscriber.nothing(0.4)
    await publisher.close()
    await subscriber.close()


# --- Hostile and malformed input --------------------------------------------------------------

BAD_FRAMES: list[tuple[dict[str, Any], str]] = [
    ({"text": "this is not JSON"}, "invalid_json"),
    ({"text": ""}, "invalid_json"),
    ({"text": "[" * 100_000}, "invalid_json"),
    ({"text": "1" * 5000}, "invalid_json"),  # beyond Python's int digit limit
    ({"bytes": b"\x00\x01binary"}, "binary_frame"),
    ({"text": "[1, 2]"}, "invalid_frame"),
    ({"text": '{"topic": "x"}'}, "invalid_frame"),
    ({"text": '{"type": 5}'}, "invalid_frame"),
    ({"text": '{"type": "shout"}'}, "unknown_type"),
    ({"text": '{"type": "subscribe", "topics": ["a"]}'}, "invalid_frame"),
    ({"text": '{"type": "subscribe", "topics": {}}'}, "invalid_frame"),
    ({"text": '{"type": "subscribe", "topics": {"group:YQ": "1"}}'}, "invalid_frame"),
    ({"text": '{"type": "subscribe", "topics": {"group:YQ": -1}}'}, "invalid_frame"),
    ({"text": '{"type": "subscribe", "topics": {"group:YQ": true}}'}, "invalid_frame"),
    ({"text": '{"type": "subscribe", "topics": {"group:YQ": 1.5}}'}, "invalid_frame"),
    (
        {"text": '{"type": "subscribe", "topics": {"group:YQ": 99999999999999999999}}'},
        "invalid_frame",
    ),
    ({"text": '{"type": "subscribe", "topics": {"nonsense": 0}}'}, "invalid_topic"),
    ({"text": '{"type": "publish", "topic": "group:YQ", "id": "a"}'}, "invalid_frame"),
    (
        {"text": '{"type": "publish", "topic": "group:YQ", "id": "a", "payload": "***"}'},
        "invalid_base64",
    ),
    (
        {"text": '{"type": "publish", "topic": "group:YQ", "id": "a", "payload": "AAE"}'},
        "invalid_base64",
    ),
    (
        {"text": '{"type": "publish", "topic": "group:YQ", "id": "a b", "payload": "AAE="}'},
        "invalid_id",
    ),
    (
        {"text": '{"type": "publish", "topic": "group:YQ", "id": "a", "payload": "AAE="}'},
        "invalid_envelope",
    ),
    ({"text": '{"type": "publish", "topic": null, "id": "a", "payload": "AAE="}'}, "invalid_frame"),
    ({"text": '{"type": "received", "topics": {"group:YQ": "x"}}'}, "invalid_frame"),
    ({"text": '{"type": "ping", "ref": {"nested": 1}}'}, "invalid_frame"),
]


@pytest.mark.parametrize(("event", "code"), BAD_FRAMES)
async def test_bad_frame_gets_its_error_and_harms_nobody(event: dict[str, Any], code: str) -> None:
    publisher, bystander = await RelayClient.connect(), await RelayClient.connect()
    await bystander.subscribe({TOPIC: 0})
    attacker = await RelayClient.connect()

    await attacker.communicator.send_input({"type": "websocket.receive", **event})
    error = await attacker.error(code)

    await attacker.send({"type": "ping", "ref": 1})
    assert await attacker.receive() == {"type": "pong", "ref": 1}  # still usable
    await publisher.publish(TOPIC, private_message(GROUP))
    assert [e["sequence"] for e in await bystander.envelopes(1)] == [1]  # others unharmed
    assert await envelope_count() == 1
    assert "errors" not in error or isinstance(error["errors"], list)
    for client in (publisher, bystander, attacker):
        await client.close()


async def test_error_echoes_the_ref() -> None:
    client = await RelayClient.connect()

    await client.send({"type": "subscribe", "topics": {"nonsense": 0}, "ref": "sub-1"})

    assert (await client.error("invalid_topic"))["ref"] == "sub-1"
    await client.close()


async def test_unknown_fields_are_ignored() -> None:
    client = await RelayClient.connect()

    await client.send({"type": "ping", "ref": "p", "future_field": [1, 2]})

    assert await client.receive() == {"type": "pong", "ref": "p"}
    await client.close()


async def test_revoked_installation_is_disconnected() -> None:
    client = await RelayClient.connect()

    await get_channel_layer().group_send(
        hub.NODES_GROUP, {"type": "relay.revoked", "installation": client.installation_id}
    )

    await client.error("installation_revoked")
    assert await client.closed() == consumers.CLOSE_AUTH_FAILED
