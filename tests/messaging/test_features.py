"""Client features end to end against a real relay: DM races, devices, addresses, content
types and attachments, failures that do not block, late messages, key packages, history."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from veilpost.client import content
from veilpost.client.client import message_id_of
from veilpost.client.identity import InstallationKey
from veilpost.crypto.ethereum import address_of_private_key
from veilpost.protocol import group_topic, welcome_topic

from .conftest import Relay
from .messaging_support import Peer, open_peer

pytestmark = pytest.mark.asyncio


async def _pair(relay: Relay, peers: list[Peer], tmp: Path) -> tuple[Peer, Peer]:
    a = await open_peer(relay.url, "a", tmp)
    b = await open_peer(relay.url, "b", tmp)
    peers += [a, b]
    return a, b


async def test_dm_created_by_both_sides_at_once_is_one_conversation(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    a, b = await _pair(relay, peers, tmp_path)
    dm_a, dm_b = await asyncio.gather(a.client.new_dm(b.inbox_id), b.client.new_dm(a.inbox_id))
    assert dm_a.id == f"dm:{b.inbox_id}" and dm_b.id == f"dm:{a.inbox_id}"
    # Each side ends up in both groups and sends on the same one (the smaller group id).
    await a.wait_for(lambda p: len(p.client._conversation_groups(dm_a.id)) == 2, what="both")
    await b.wait_for(lambda p: len(p.client._conversation_groups(dm_b.id)) == 2, what="both")
    assert a.client.group(dm_a.id).group_id == b.client.group(dm_b.id).group_id
    assert [c.id for c in a.client.conversations()] == [dm_a.id]
    await a.client.send(dm_a.id, "one")
    await b.client.send(dm_b.id, "two")
    await a.wait_for(lambda p: sorted(p.texts(dm_a.id)) == ["one", "two"], what="a sees both")
    await b.wait_for(lambda p: sorted(p.texts(dm_b.id)) == ["one", "two"], what="b sees both")
    # Asking again returns the same DM.
    assert (await a.client.new_dm(b.inbox_id)).id == dm_a.id


async def test_second_installation_joins_every_conversation(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    alice, bob = await _pair(relay, peers, tmp_path)
    carol = await open_peer(relay.url, "carol", tmp_path)
    peers.append(carol)
    dm = await alice.client.new_dm(bob.inbox_id)
    group = await alice.client.new_group([bob.inbox_id, carol.inbox_id], name="team")
    await bob.wait_for(lambda p: len(p.client.conversations()) == 2, what="bob joins")
    phone_key = InstallationKey.generate()
    await alice.client.admit_installation(phone_key.public_key)
    phone = await open_peer(
        relay.url, "alice-phone", tmp_path, key=phone_key, expect_inbox=alice.inbox_id
    )
    peers.append(phone)
    assert phone.inbox_id == alice.inbox_id != phone.client.installation_id
    await alice.client.sync_installations()
    await phone.wait_for(lambda p: len(p.client.conversations()) == 2, what="phone joins both")
    await bob.client.send(f"dm:{alice.inbox_id}", "to all of alice")
    await carol.wait_for(lambda p: len(p.client.conversation(group.id).members) == 3)
    await carol.client.send(group.id, "hello team")
    for device in (alice, phone):
        await device.wait_for(lambda p: p.texts(dm.id) == ["to all of alice"], what="dm")
        await device.wait_for(lambda p: p.texts(group.id) == ["hello team"], what="group")
    # The phone speaks for alice; bob sees alice's inbox, from another installation.
    await phone.client.send(dm.id, "from the phone")
    await bob.wait_for(lambda p: "from the phone" in p.texts(f"dm:{alice.inbox_id}"))
    message = next(m for m in bob.messages(f"dm:{alice.inbox_id}") if m.text == "from the phone")
    assert message.sender_inbox_id == alice.inbox_id
    assert message.sender_installation_id == phone_key.installation_id


async def test_dm_by_ethereum_address(relay: Relay, peers: list[Peer], tmp_path: Path) -> None:
    agent, user = await _pair(relay, peers, tmp_path)
    wallet = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    address = await agent.client.bind_address(wallet)
    assert address == address_of_private_key(wallet)
    dm = await user.client.new_dm(address.lower())
    assert dm.id == f"dm:{agent.inbox_id}"
    await user.client.send(dm.id, "hi by address")
    await agent.wait_for(lambda p: p.texts(f"dm:{user.inbox_id}") == ["hi by address"])


async def test_content_types_and_attachments(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    a, b = await _pair(relay, peers, tmp_path)
    dm = await a.client.new_dm(b.inbox_id)
    first = await a.client.send(dm.id, "look at this")
    await a.client.send(dm.id, content.Markdown("**bold**"))
    await a.client.send(dm.id, content.Reply(reference=first.id, content="a reply"))
    await a.client.send(
        dm.id, content.Reaction(reference=first.id, action="added", content="👍", schema="unicode")
    )
    await a.client.send(dm.id, content.ReadReceipt())
    small = os.urandom(2000)
    await a.client.send_attachment(dm.id, "photo.png", "image/png", small)
    big = os.urandom(1536 * 1024)
    await a.client.send_attachment(dm.id, "scan.pdf", "application/pdf", big)
    bdm = f"dm:{a.inbox_id}"
    await b.wait_for(lambda p: len(p.messages(bdm)) == 7, 30, "seven messages")
    received = b.messages(bdm)
    assert received[0].text == "look at this"
    assert received[1].content == content.Markdown("**bold**")
    assert isinstance(received[2].content, content.Reply)
    assert received[2].content.reference == first.id
    assert received[3].content.content == "👍" and received[3].content.reference == first.id
    assert isinstance(received[4].content, content.ReadReceipt)
    inline = await b.client.fetch_attachment(received[5])
    assert (inline.filename, inline.data) == ("photo.png", small)
    assert isinstance(received[6].content, content.RemoteAttachment)
    remote = await b.client.fetch_attachment(received[6])
    assert (remote.filename, remote.mime_type, remote.data) == ("scan.pdf", "application/pdf", big)


async def test_unprocessable_envelope_is_recorded_and_does_not_block(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    a, b = await _pair(relay, peers, tmp_path)
    dm = await a.client.new_dm(b.inbox_id)
    mls = a.client.group(dm.id)
    good = mls.encrypt(content.pad(content.default_registry().encode("x").to_bytes()))
    forged = bytearray(good)
    forged[-5] ^= 0x55  # same cleartext header, broken ciphertext
    topic = group_topic(mls.group_id)
    await a.connection.publish(topic, message_id_of(bytes(forged)), bytes(forged))
    await a.client.send(dm.id, "after the bad one")
    bdm = f"dm:{a.inbox_id}"
    await b.wait_for(lambda p: p.texts(bdm) == ["after the bad one"], what="later message")
    failures = b.client.failures()
    assert len(failures) == 1 and failures[0][0].startswith(topic + "#")
    assert "Error" in failures[0][1]["reason"]


async def test_application_message_from_a_past_epoch_decrypts(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    a, b = await _pair(relay, peers, tmp_path)
    dm = await a.client.new_dm(b.inbox_id)
    bdm = f"dm:{a.inbox_id}"
    await b.wait_for(lambda p: bool(p.client.conversations()), what="join")
    mls_b = b.client.group(bdm)
    data = content.pad(content.default_registry().encode("late but fine").to_bytes())
    late = mls_b.encrypt(data)  # encrypted in epoch n ...
    epoch = mls_b.epoch
    await a.client.self_update(dm.id)  # ... the group moves to n + 1 ...
    await b.wait_for(lambda p: p.client.group(bdm).epoch == epoch + 1, what="b advances")
    await b.connection.publish(group_topic(mls_b.group_id), message_id_of(late), late)  # ... then
    await a.wait_for(lambda p: "late but fine" in p.texts(dm.id), what="late message")


async def test_key_package_lifecycle(relay: Relay, peers: list[Peer], tmp_path: Path) -> None:
    from veilpost.client.client import (
        KEY_PACKAGE_BATCH,
        LAST_RESORT_ROTATION_SECONDS,
        RETIRED_KEY_GRACE_SECONDS,
    )

    a, b = await _pair(relay, peers, tmp_path)
    remaining, last_resort = await b.connection.key_package_count()
    assert (remaining, last_resort) == (KEY_PACKAGE_BATCH, True)
    stored = len(b.client.store.items("key_packages"))
    assert stored == KEY_PACKAGE_BATCH + 1
    await a.client.new_dm(b.inbox_id)
    await b.wait_for(lambda p: bool(p.client.conversations()), what="join")
    # The claimed package's private keys are deleted once used.
    assert len(b.client.store.items("key_packages")) == stored - 1
    assert await b.client.ensure_key_packages() == 0  # 19 left: above the low-water mark
    for _ in range(KEY_PACKAGE_BATCH - 1):
        await a.connection.claim_key_packages(b.inbox_id)
    assert (await b.connection.key_package_count())[0] == 0
    assert await b.client.ensure_key_packages() == KEY_PACKAGE_BATCH
    # Rotation of the last-resort package, then deletion of the retired private key.
    import time

    now = int(time.time())
    assert await b.client.ensure_key_packages(now=now + LAST_RESORT_ROTATION_SECONDS) == 1
    metas = {r: m for r, m in b.client._key_package_meta() if m["last_resort"]}
    assert len(metas) == 2 and sum(m.get("retired") is None for m in metas.values()) == 1
    retired = next(r for r, m in metas.items() if m.get("retired") is not None)
    later = now + LAST_RESORT_ROTATION_SECONDS + RETIRED_KEY_GRACE_SECONDS
    await b.client.ensure_key_packages(now=later)  # rotates again, and forgets the first
    metas = {r: m for r, m in b.client._key_package_meta() if m["last_resort"]}
    assert retired not in metas and len(metas) == 2


async def test_history_pages_both_ways(relay: Relay, peers: list[Peer], tmp_path: Path) -> None:
    a, b = await _pair(relay, peers, tmp_path)
    dm = await a.client.new_dm(b.inbox_id)
    for n in range(7):
        await a.client.send(dm.id, f"m{n}")
    newest: list[str] = []
    cursor = None
    while True:
        page = a.client.messages(dm.id, limit=3, before=cursor)
        if not page:
            break
        newest += [m.text for m in page if isinstance(m.content, str)]
        cursor = a.client.message_cursor(dm.id, page[-1].id)
    assert newest == [f"m{n}" for n in reversed(range(7))], newest
    # Oldest first: the group-updated notice of the DM's creation, then the texts.
    oldest = a.client.messages(dm.id, limit=3, newest_first=False)
    assert isinstance(oldest[0].content, content.GroupUpdated)
    assert oldest[0].content.added_inboxes == (b.inbox_id,)
    assert [m.text for m in oldest[1:]] == ["m0", "m1"]
    after = a.client.message_cursor(dm.id, oldest[-1].id)
    nxt = a.client.messages(dm.id, limit=3, newest_first=False, after=after)
    assert [m.text for m in nxt] == ["m2", "m3", "m4"]
    assert welcome_topic(a.client.installation_id) in a.client.topics()


async def test_lost_acks_and_a_restart_lose_nothing(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    from veilpost.transport import RelayUnavailable

    a, b = await _pair(relay, peers, tmp_path)
    c = await open_peer(relay.url, "c", tmp_path)
    peers.append(c)
    group = await a.client.new_group([b.inbox_id], name="acks")
    await b.wait_for(lambda p: bool(p.client.conversations()), what="b joins")
    real = a.connection.publish

    async def ack_lost(topic: str, publish_id: str, payload: bytes) -> int:
        await real(topic, publish_id, payload)  # the relay stores it, but the ack is lost
        raise RelayUnavailable("connection lost before the ack")

    a.connection.publish = ack_lost  # type: ignore[method-assign]
    message = await a.client.send(group.id, "ack lost")
    assert message.status == "failed"
    with pytest.raises(RelayUnavailable):
        await a.client.add_members(group.id, [c.inbox_id])  # the Commit is stored, unacked
    a.connection.publish = real  # type: ignore[method-assign]
    # The echoes settle both: the message is sent, the Commit merged and its Welcome sent.
    await c.wait_for(lambda p: bool(p.client.conversations()), what="c joins")
    await b.wait_for(lambda p: p.texts(group.id) == ["ack lost"], what="b gets it once")
    await a.wait_for(
        lambda p: [m.status for m in p.messages(group.id) if m.text == "ack lost"] == ["sent"],
        what="marked sent",
    )

    async def unreachable(topic: str, publish_id: str, payload: bytes) -> int:
        raise RelayUnavailable("no network")

    a.connection.publish = unreachable  # type: ignore[method-assign]
    offline = await a.client.send(group.id, "written offline")
    assert offline.status == "failed"
    await a.close()  # "crash"; then start again from the same encrypted file
    peers.remove(a)
    again = await open_peer(
        relay.url, "a", tmp_path, key=a.key, store_key=a.store_key, store_path=a.store_path
    )
    peers.append(again)
    for peer in (b, c):
        await peer.wait_for(lambda p: "written offline" in p.texts(group.id), what="after restart")
    assert b.texts(group.id) == ["ack lost", "written offline"]
    sent = [m for m in again.messages(group.id) if m.text == "written offline"]
    assert len(sent) == 1 and sent[0].status == "sent"


async def test_a_relay_cannot_move_an_installation_to_another_inbox(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    from veilpost.client.errors import IdentityError

    a = await open_peer(relay.url, "a", tmp_path)
    peers.append(a)
    # A relay that lies about the inbox: the client sees another inbox id than its own.
    a.client.inbox_id = "0" * 32
    with pytest.raises(IdentityError, match="cannot move an installation"):
        await a.client.start()


async def test_a_forged_dm_is_refused(relay: Relay, peers: list[Peer], tmp_path: Path) -> None:
    """Mallory makes a group whose metadata claims to be the DM of alice and bob, with bob
    and herself in it: bob refuses the Welcome and keeps sending on the real DM."""
    from veilpost.client.policy import GroupMetadata
    from veilpost.mls import Group

    alice, bob = await _pair(relay, peers, tmp_path)
    mallory = await open_peer(relay.url, "mallory", tmp_path)
    peers.append(mallory)
    real = await alice.client.new_dm(bob.inbox_id)
    await bob.wait_for(lambda p: bool(p.client.conversations()), what="bob joins the real DM")
    forged = Group.create(
        mallory.client.suite,
        mallory.client.signer,
        group_id=bytes(16),  # the smallest group id: it would be chosen to send on
        extensions=[GroupMetadata.dm(alice.inbox_id, bob.inbox_id).to_extension()],
        config=mallory.client._config(),
    )
    await mallory.client.identity(bob.inbox_id)
    claimed = await mallory.connection.claim_key_packages(bob.inbox_id)
    package = next(c.key_package for c in claimed if c.key_package is not None)
    output = forged.commit(add=[package])
    forged.merge_pending_commit()
    assert output.welcome is not None
    target = welcome_topic(bob.client.installation_id)
    await mallory.connection.publish(target, message_id_of(output.welcome), output.welcome)
    await bob.wait_for(lambda p: bool(p.client.failures()), what="bob refuses the forged DM")
    assert "other inboxes than its pair" in bob.client.failures()[0][1]["reason"]
    await bob.client.send(f"dm:{alice.inbox_id}", "only for alice")
    await alice.wait_for(lambda p: p.texts(real.id) == ["only for alice"], what="alice")
    assert bob.client.group(f"dm:{alice.inbox_id}").group_id != bytes(16)
