"""The mls-rs adapter (``mlsrs.py``) against mls-rs alone: the peer the interop tests rely on.

Every message goes between members as bytes, as a delivery service would carry it. After
every epoch change all members must agree on the epoch, the whole GroupContext and the
MLS-Exporter output.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from mlsrs import CommitResult, MlsRsError, MlsRsMember, require_mlsrs

require_mlsrs()

GROUP_SIZE = 10
LABEL = b"veilpost interop"


def _broadcast(sender: MlsRsMember, message: bytes, members: Iterable[MlsRsMember]) -> None:
    """Deliver a commit to every member but its sender."""
    for member in members:
        if member is not sender:
            received = member.process(message)
            assert received.kind == "commit"


def _assert_agree(members: list[MlsRsMember], epoch: int) -> bytes:
    """All members are at ``epoch`` with one GroupContext and one exported secret."""
    contexts = {m.group_context() for m in members}
    assert len(contexts) == 1, f"{len(contexts)} different GroupContexts"
    (context,) = contexts
    assert context.epoch == epoch
    secrets = {m.export_secret(LABEL, context.encoded, 32) for m in members}
    assert len(secrets) == 1, f"{len(secrets)} different exported secrets at epoch {epoch}"
    (secret,) = secrets
    assert len(secret) == 32
    return secret


def _commit_to_all(sender: MlsRsMember, result: CommitResult, members: list[MlsRsMember]) -> None:
    _broadcast(sender, result.commit, members)


def test_ten_members_join_talk_update_remove() -> None:
    creator = MlsRsMember(b"member-0")
    group_id = creator.create_group(b"mls-rs selftest group")
    assert group_id == b"mls-rs selftest group"
    assert creator.epoch == 0
    members = [creator]
    seen_secrets = [_assert_agree(members, 0)]

    # Epoch 1: the creator adds nine members in one commit; all join from the one Welcome.
    joiners = [MlsRsMember(f"member-{i}".encode()) for i in range(1, GROUP_SIZE)]
    result = creator.add_members([j.key_package() for j in joiners])
    assert result.welcome is not None
    assert result.ratchet_tree is None  # the tree travels inside the Welcome by default
    for joiner in joiners:
        joiner.join(result.welcome)
    members += joiners
    assert {m.group_id for m in members} == {group_id}
    seen_secrets.append(_assert_agree(members, 1))

    # Application messages in both directions: creator to all, and each joiner to all.
    for sender in members:
        text = b"hello from " + sender.identity
        ciphertext = sender.encrypt(text)
        for receiver in members:
            if receiver is not sender:
                received = receiver.process(ciphertext)
                assert received.kind == "application"
                assert received.data == text

    # Epoch 2: a joiner (not the creator) commits a self-update.
    updater = members[4]
    tree_before = updater.export_ratchet_tree()
    update = updater.self_update()
    assert update.welcome is None
    _commit_to_all(updater, update, members)
    assert updater.export_ratchet_tree() != tree_before  # its leaf and path changed
    seen_secrets.append(_assert_agree(members, 2))

    # Epoch 3: another joiner removes two members; they learn they were removed.
    remover, gone = members[7], [members[2], members[9]]
    removal = remover.remove_members([m.identity for m in gone])
    for member in members:
        if member is not remover:
            received = member.process(removal.commit)
            assert received.kind == "commit"
            assert received.removed is (member in gone)
    members = [m for m in members if m not in gone]
    assert all(m.removed for m in gone)
    seen_secrets.append(_assert_agree(members, 3))

    # The removed members can no longer read the group's messages.
    ciphertext = members[0].encrypt(b"after the removal")
    for member in members[1:]:
        assert member.process(ciphertext).data == b"after the removal"
    for member in gone:
        with pytest.raises(MlsRsError):
            member.process(ciphertext)

    # Epoch 4: a member added by a joiner, tree sent alongside the Welcome.
    late = MlsRsMember(b"member-late", ratchet_tree_in_welcome=False)
    adder = MlsRsMember(b"member-adder", ratchet_tree_in_welcome=False)
    # ``adder`` first joins normally, so that the next commit comes from a member whose
    # client sends the tree out of band.
    result = members[1].add_members([adder.key_package()])
    assert result.welcome is not None
    adder.join(result.welcome)
    _commit_to_all(members[1], result, members)
    members.append(adder)
    seen_secrets.append(_assert_agree(members, 4))

    result = adder.add_members([late.key_package()])
    assert result.welcome is not None and result.ratchet_tree is not None
    with pytest.raises(MlsRsError, match="ratchet tree not provided"):
        late.join(result.welcome)  # the GroupInfo in this Welcome has no ratchet_tree
    late.join(result.welcome, result.ratchet_tree)
    _commit_to_all(adder, result, members)
    members.append(late)
    seen_secrets.append(_assert_agree(members, 5))
    assert late.export_ratchet_tree() == adder.export_ratchet_tree()

    # Each epoch exported a different secret.
    assert len(set(seen_secrets)) == len(seen_secrets)


def test_proposals_by_reference_then_commit() -> None:
    alice, bob, carol, dave = (MlsRsMember(n) for n in (b"alice", b"bob", b"carol", b"dave"))
    alice.create_group()
    result = alice.add_members([bob.key_package(), carol.key_package()])
    assert result.welcome is not None
    bob.join(result.welcome)
    carol.join(result.welcome)
    members = [alice, bob, carol]

    # Bob proposes adding Dave and removing Carol; Alice commits both.
    proposals = bob.propose_add([dave.key_package()]) + bob.propose_remove([b"carol"])
    for proposal in proposals:
        for member in (alice, carol):
            assert member.process(proposal).kind == "proposal"
    commit = alice.commit()
    assert commit.welcome is not None
    for member in (bob, carol):
        received = member.process(commit.commit)
        assert received.removed is (member is carol)
        if member is bob:
            assert received.applied_proposals == 2
    dave.join(commit.welcome)
    members = [alice, bob, dave]
    _assert_agree(members, 2)


def test_save_and_load_state() -> None:
    alice, bob = MlsRsMember(b"alice"), MlsRsMember(b"bob")
    alice.create_group(b"saved group")
    result = alice.add_members([bob.key_package()])
    assert result.welcome is not None
    bob.join(result.welcome)

    restored = MlsRsMember.load_state(bob.save_state())
    assert restored.identity == b"bob"
    assert restored.signature_public_key == bob.signature_public_key
    assert restored.group_context() == bob.group_context()
    assert restored.export_secret(LABEL, b"", 16) == alice.export_secret(LABEL, b"", 16)

    # The restored member carries on: it reads, sends and commits.
    assert restored.process(alice.encrypt(b"to the restored bob")).data == b"to the restored bob"
    assert alice.process(restored.encrypt(b"from the restored bob")).data == (
        b"from the restored bob"
    )
    update = restored.self_update()
    assert alice.process(update.commit).kind == "commit"
    _assert_agree([alice, restored], 2)

    with pytest.raises(MlsRsError):
        MlsRsMember.load_state(b"not a state")


def test_refusals() -> None:
    alice, bob = MlsRsMember(b"alice"), MlsRsMember(b"bob")
    with pytest.raises(MlsRsError, match="in no group"):
        alice.encrypt(b"x")
    alice.create_group()
    with pytest.raises(MlsRsError, match="already in a group"):
        alice.create_group()
    result = alice.add_members([bob.key_package()])
    assert result.welcome is not None
    bob.join(result.welcome)

    own = alice.encrypt(b"mine")
    with pytest.raises(MlsRsError, match="from self"):
        alice.process(own)
    assert bob.process(own).data == b"mine"
    with pytest.raises(MlsRsError):  # replay: the key for that generation is gone
        bob.process(own)
    with pytest.raises(MlsRsError, match="No member found"):
        alice.remove_members([b"nobody"])
    with pytest.raises(MlsRsError, match="duplicate"):
        alice.add_members([MlsRsMember(b"bob").key_package()])
    with pytest.raises(MlsRsError):
        bob.process(b"\x00\x01\x00\x01garbage")


def test_competing_commits() -> None:
    """Two members commit in the same epoch; the delivery service orders Bob's first."""
    alice, bob, carol = (MlsRsMember(n) for n in (b"alice", b"bob", b"carol"))
    alice.create_group()
    result = alice.add_members([bob.key_package(), carol.key_package()])
    assert result.welcome is not None
    bob.join(result.welcome)
    carol.join(result.welcome)

    losing = alice.self_update(apply=False)
    assert alice.epoch == 1  # still pending
    winning = bob.self_update(apply=False)
    for member in (bob, alice, carol):  # Bob applies his own commit by processing it
        assert member.process(winning.commit).kind == "commit"
    _assert_agree([alice, bob, carol], 2)
    for member in (bob, carol):
        with pytest.raises(MlsRsError, match="epoch"):
            member.process(losing.commit)
