"""Groups of clients through a real relay: membership changes, concurrent commits, policy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from veilpost.client.errors import NotAMember, PermissionDenied
from veilpost.client.policy import Role

from .conftest import Relay
from .messaging_support import Peer, open_peer

pytestmark = pytest.mark.asyncio


async def _open(relay_url: str, names: list[str], peers: list[Peer], tmp: Path) -> list[Peer]:
    opened = [await open_peer(relay_url, name, tmp) for name in names]
    peers.extend(opened)
    return opened


def _in_sync(members: list[Peer], conversation: str) -> bool:
    groups = [p.client.group(conversation) for p in members]
    return len({(g.epoch, g.epoch_authenticator) for g in groups}) == 1


async def test_six_member_group_converges(relay: Relay, peers: list[Peer], tmp_path: Path) -> None:
    a, b, c, d, e, f = await _open(relay.url, list("abcdef"), peers, tmp_path)
    group = await a.client.new_group([b.inbox_id, c.inbox_id], name="six")
    cid = group.id
    for peer in (b, c):
        await peer.wait_for(lambda p: cid in {x.id for x in p.client.conversations()}, what="join")
    await a.client.add_members(cid, [d.inbox_id, e.inbox_id])
    await a.client.set_role(cid, b.inbox_id, Role.ADMIN)
    for peer in (d, e):
        await peer.wait_for(lambda p: cid in {x.id for x in p.client.conversations()}, what="join")
    await b.wait_for(lambda p: p.client.group(cid).epoch == a.client.group(cid).epoch)
    await b.client.add_members(cid, [f.inbox_id])
    await f.wait_for(lambda p: cid in {x.id for x in p.client.conversations()}, what="f joins")
    # b (an admin) removes c.
    await b.wait_for(lambda p: p.client.group(cid).epoch == a.client.group(cid).epoch)
    await b.client.remove_members(cid, [c.inbox_id])
    await c.wait_for(lambda p: not p.client.conversation(cid).active, what="c removed")
    members = [a, b, d, e, f]
    for peer in members:
        await peer.wait_for(lambda p: len(p.client.conversation(cid).members) == 5, what="five")
    # Two members commit at once: one wins the epoch, the other retries on the next.
    await asyncio.gather(d.client.self_update(cid), e.client.self_update(cid))
    await a.client.self_update(cid)
    sent: list[str] = []
    for index, peer in enumerate(members):
        for n in range(3):
            text = f"{peer.name}-{n}-{index}"
            message = await peer.client.send(cid, text)
            assert message.status == "sent", message.error
            sent.append(text)
    for peer in members:
        await peer.wait_for(lambda p: sorted(p.texts(cid)) == sorted(sent), 30, "all messages")
        await peer.wait_for(lambda p: _in_sync(members, cid), 30, "same epoch")
    for peer in members:
        texts = peer.texts(cid)
        assert len(texts) == len(set(texts)) == len(sent)
        assert not peer.client.failures(), peer.client.failures()
    assert c.texts(cid) == []
    names = {p.client.conversation(cid).name for p in members}
    assert names == {"six"}


async def test_non_admin_cannot_remove_a_member(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    a, b, c = await _open(relay.url, ["a", "b", "c"], peers, tmp_path)
    group = await a.client.new_group([b.inbox_id, c.inbox_id])
    cid = group.id
    for peer in (b, c):
        await peer.wait_for(lambda p: cid in {x.id for x in p.client.conversations()}, what="join")
    # b's own client refuses to make the commit.
    with pytest.raises(PermissionDenied) as refused:
        await b.client.remove_members(cid, [c.inbox_id])
    assert "policy.remove_member" in str(refused.value)
    # A client that skips the check (a copy of b's group state, outside b's client): its
    # commit reaches the relay, and every member refuses it.
    from veilpost.mls import Group

    real = b.client.group(cid)
    epoch = real.epoch
    mls = Group.from_bytes(real.to_bytes(), config=real.config)
    leaf = next(
        leaf for leaf, m in mls.members.items() if m.credential.identity == c.inbox_id.encode()
    )
    output = mls.commit(remove=[leaf])
    from veilpost.client.client import message_id_of
    from veilpost.protocol import group_topic

    topic = group_topic(mls.group_id)
    await b.connection.publish(topic, message_id_of(output.commit), output.commit)
    for peer in (a, c):
        await peer.wait_for(
            lambda p: any(r["check"] == "policy.remove_member" for _, r in p.client.failures()),
            what="refusal",
        )
    # b's own client refuses it too: it is not the commit b's client made.
    await b.wait_for(lambda p: bool(p.client.failures()), what="b refuses")
    for peer in (a, b, c):
        assert peer.client.group(cid).epoch == epoch
        assert len(peer.client.conversation(cid).members) == 3


@pytest.mark.asyncio
async def test_a_member_leaves_and_another_commits_it(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    a, b, c = await _open(relay.url, ["a", "b", "c"], peers, tmp_path)
    group = await a.client.new_group([b.inbox_id, c.inbox_id], name="club")
    cid = group.id
    for peer in (b, c):
        await peer.wait_for(lambda p: cid in {x.id for x in p.client.conversations()}, what="join")
    await c.client.leave(cid)  # c is not an admin: leaving needs no permission
    await c.wait_for(lambda p: not p.client.conversation(cid).active, what="c has left")
    for peer in (a, b):
        await peer.wait_for(lambda p: len(p.client.conversation(cid).members) == 2, what="two")
        assert c.inbox_id not in peer.client.conversation(cid).members
        assert not peer.client.failures()
    await b.client.send(cid, "after c left")
    await a.wait_for(lambda p: p.texts(cid) == ["after c left"], what="message")
    assert c.texts(cid) == []
    with pytest.raises(NotAMember):
        await c.client.send(cid, "still here?")


@pytest.mark.asyncio
async def test_a_members_proposal_is_not_committed_by_others(
    relay: Relay, peers: list[Peer], tmp_path: Path
) -> None:
    """A plain member proposes making itself super admin; the admin's next commit does not
    carry it along (clients commit others' proposals only when they are departures)."""
    from veilpost.client.client import message_id_of
    from veilpost.client.policy import metadata_of
    from veilpost.protocol import group_topic

    a, b, c, d = await _open(relay.url, ["a", "b", "c", "d"], peers, tmp_path)
    group = await a.client.new_group([b.inbox_id, c.inbox_id], name="g")
    cid = group.id
    for peer in (b, c):
        await peer.wait_for(lambda p: cid in {x.id for x in p.client.conversations()}, what="join")
    mls = c.client.group(cid)
    metadata = metadata_of(mls.extensions)
    assert metadata is not None
    grab = metadata.with_role(c.inbox_id, Role.SUPER_ADMIN).to_extension()
    async with c.client._lock:
        proposal = mls.propose_group_context_extensions([grab])
    await c.connection.publish(group_topic(mls.group_id), message_id_of(proposal), proposal)
    await a.wait_for(lambda p: bool(p.client.group(cid).cached_proposal_refs), what="cached")
    await a.client.add_members(cid, [d.inbox_id])
    await d.wait_for(lambda p: cid in {x.id for x in p.client.conversations()}, what="d joins")
    for peer in (a, b, c, d):
        await peer.wait_for(lambda p: len(p.client.conversation(cid).members) == 4, what="four")
        assert peer.client.conversation(cid).super_admins == (a.inbox_id,)
