"""Mixed groups of Veilpost and mls-rs members, with messages passed only as bytes.

Each test runs one group through many epochs on :class:`mixed_group.MixedGroup`, an in-memory
relay that treats both implementations alike. After every commit, every member, whichever
implementation, must be in the same epoch with the same GroupContext, the same MLS-Exporter
output and the same ratchet tree (``MixedGroup.check_agreement``); every application message
must reach every other member.

The groups are made both ways round (mls-rs creates and adds Veilpost members by Welcome;
Veilpost creates and adds mls-rs members), with the ratchet tree inside the Welcome and beside
it, and with Veilpost sending its handshake messages as PrivateMessage (its default) and as
PublicMessage (what mls-rs sends). Commits that add, remove and update come from both sides,
by value and by reference.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mixed_group import MixedGroup, VeilpostMember, implementation, wall_clock
from mlsrs import MlsRsError, MlsRsMember, require_mlsrs

from veilpost.codec import decode
from veilpost.mls import GroupConfig, MlsError
from veilpost.mls.framing import ContentType, MLSMessage, PrivateMessage, PublicMessage, WireFormat

require_mlsrs()

Maker = Callable[[bytes], MlsRsMember | VeilpostMember]

TREE_PLACEMENT = pytest.mark.parametrize(
    "tree_in_welcome", [True, False], ids=["tree in Welcome", "tree alongside"]
)
VEILPOST_HANDSHAKE = pytest.mark.parametrize(
    "handshake",
    [WireFormat.MLS_PRIVATE_MESSAGE, WireFormat.MLS_PUBLIC_MESSAGE],
    ids=["veilpost PrivateMessage handshakes", "veilpost PublicMessage handshakes"],
)


class Makers:
    """New members of either implementation, all placing the tree the same way."""

    def __init__(self, tree_in_welcome: bool, handshake: WireFormat) -> None:
        self.tree_in_welcome = tree_in_welcome
        self.config = GroupConfig(
            clock=wall_clock,
            handshake_wire_format=handshake,
            ratchet_tree_in_welcome=tree_in_welcome,
        )

    def rs(self, identity: bytes) -> MlsRsMember:
        return MlsRsMember(identity, ratchet_tree_in_welcome=self.tree_in_welcome)

    def vp(self, identity: bytes) -> VeilpostMember:
        return VeilpostMember(identity, config=self.config)


def _check_welcomes(group: MixedGroup, tree_in_welcome: bool) -> None:
    """Both implementations made Welcomes, each with the tree inside or beside it."""
    every_member = {**group.former, **group.members}
    makers = {implementation(every_member[committer]) for committer, _, _ in group.welcomes}
    assert makers == {"mls-rs", "veilpost"}
    for _, _, tree in group.welcomes:
        assert (tree is None) is tree_in_welcome


def _handshake_formats(group: MixedGroup) -> dict[str, set[WireFormat]]:
    """The wire formats of the proposals and commits each implementation sent."""
    formats: dict[str, set[WireFormat]] = {"mls-rs": set(), "veilpost": set()}
    every_member = {**group.former, **group.members}
    for sender, data in group.log:
        message = decode(MLSMessage, data)
        body = message.body
        if isinstance(body, PublicMessage):
            is_handshake = body.content.content_type != ContentType.APPLICATION
        else:
            assert isinstance(body, PrivateMessage)
            is_handshake = body.content_type != ContentType.APPLICATION
        if is_handshake:
            formats[implementation(every_member[sender])].add(message.wire_format)
    return formats


@TREE_PLACEMENT
@VEILPOST_HANDSHAKE
def test_mlsrs_creates_the_group_and_adds_veilpost_members(
    tree_in_welcome: bool, handshake: WireFormat
) -> None:
    make = Makers(tree_in_welcome, handshake)
    group = MixedGroup.founded_by(make.rs(b"rs-creator"), b"made by mls-rs")

    # Epoch 1: five Veilpost and five mls-rs members from one mls-rs Welcome.
    joiners = [make.vp(b"vp-%d" % i) if i % 2 else make.rs(b"rs-%d" % i) for i in range(1, 11)]
    group.add(b"rs-creator", joiners)
    assert (group.count("veilpost"), group.count("mls-rs")) == (5, 6)
    group.everyone_sends()

    # mls-rs commits: a joiner removes a Veilpost member, the creator adds a new one.
    group.remove(b"rs-4", [b"vp-3"])
    late = group.members[b"rs-creator"].encrypt(b"not for vp-3")
    with pytest.raises(MlsError):
        group.former[b"vp-3"].process(late)
    group.add(b"rs-creator", [make.vp(b"vp-11")])
    group.send(b"vp-11", b"the newest member speaks")

    # Veilpost commits, processed by mls-rs: a self-update, an add of an mls-rs member (its
    # Welcome made by Veilpost), a remove of two mls-rs members, and an add and a remove in
    # one commit.
    group.self_update(b"vp-1")
    group.add(b"vp-5", [make.rs(b"rs-12")])
    group.remove(b"vp-11", [b"rs-2", b"rs-6"])
    group.add_and_remove(b"vp-7", [make.rs(b"rs-13"), make.vp(b"vp-13")], [b"rs-8", b"vp-9"])

    # The members Veilpost added commit in turn.
    group.self_update(b"rs-12")
    group.self_update(b"vp-13")
    group.self_update(b"rs-creator")
    assert len(group.members) >= 10
    group.everyone_sends()

    assert group.epochs[-1].epoch == 10
    _check_welcomes(group, tree_in_welcome)
    formats = _handshake_formats(group)
    assert formats == {"mls-rs": {WireFormat.MLS_PUBLIC_MESSAGE}, "veilpost": {handshake}}


@TREE_PLACEMENT
@VEILPOST_HANDSHAKE
def test_veilpost_creates_the_group_and_adds_mlsrs_members(
    tree_in_welcome: bool, handshake: WireFormat
) -> None:
    make = Makers(tree_in_welcome, handshake)
    group = MixedGroup.founded_by(make.vp(b"vp-creator"), b"made by veilpost")

    # Epoch 1: nine mls-rs and three Veilpost members from one Veilpost Welcome.
    joiners: list[MlsRsMember | VeilpostMember] = [make.rs(b"rs-%d" % i) for i in range(1, 10)]
    joiners[2:2] = [make.vp(b"vp-1"), make.vp(b"vp-2")]
    joiners.append(make.vp(b"vp-3"))
    group.add(b"vp-creator", joiners)
    assert (group.count("veilpost"), group.count("mls-rs")) == (4, 9)
    group.everyone_sends()

    # mls-rs's first path in a tree Veilpost made (every parent node blank), then mls-rs
    # adds to the Veilpost group and removes its creator (leaf 0) and another member.
    group.self_update(b"rs-5")
    group.add(b"rs-2", [make.vp(b"vp-4"), make.rs(b"rs-10")])
    group.remove(b"rs-7", [b"vp-creator", b"vp-1"])
    group.everyone_sends()

    # Veilpost adds and removes mls-rs members in one commit, then updates.
    group.add_and_remove(b"vp-2", [make.rs(b"rs-11")], [b"rs-1", b"rs-3"])
    group.self_update(b"vp-4")

    # Both sides restart from saved state, then commit.
    group.reload(b"vp-2")
    group.reload(b"rs-4")
    group.self_update(b"rs-4")
    group.self_update(b"vp-2")
    group.remove(b"rs-10", [b"vp-3"])
    assert len(group.members) >= 10
    group.everyone_sends()

    assert group.epochs[-1].epoch == 9
    _check_welcomes(group, tree_in_welcome)
    formats = _handshake_formats(group)
    assert formats == {"mls-rs": {WireFormat.MLS_PUBLIC_MESSAGE}, "veilpost": {handshake}}


@VEILPOST_HANDSHAKE
def test_proposals_by_reference_across_implementations(handshake: WireFormat) -> None:
    make = Makers(True, handshake)
    group = MixedGroup.founded_by(make.rs(b"rs-creator"), b"proposals")
    group.add(
        b"rs-creator",
        [make.vp(b"vp-%d" % i) if i % 2 else make.rs(b"rs-%d" % i) for i in range(1, 10)],
    )
    assert len(group.members) == 10

    # mls-rs commits proposals from both implementations (Veilpost's sent as ``handshake``).
    group.propose_add(b"vp-1", [make.rs(b"rs-10")])
    group.propose_remove(b"rs-2", [b"vp-3"])
    group.propose_remove(b"vp-5", [b"rs-4"])
    group.commit_proposals(b"rs-6")

    # Veilpost commits them.
    group.propose_add(b"rs-8", [make.vp(b"vp-11")])
    group.propose_remove(b"rs-creator", [b"rs-6"])
    group.propose_add(b"vp-7", [make.vp(b"vp-12")])
    group.commit_proposals(b"vp-1")

    # A proposer commits its own proposals together with another member's.
    group.propose_remove(b"vp-11", [b"rs-2"])
    group.propose_add(b"rs-10", [make.rs(b"rs-13")])
    group.commit_proposals(b"vp-11")
    group.everyone_sends()
    assert group.epochs[-1].epoch == 4
    assert len(group.members) == 10


def test_a_removed_member_of_either_implementation_reads_nothing_more() -> None:
    make = Makers(True, WireFormat.MLS_PRIVATE_MESSAGE)
    group = MixedGroup.founded_by(make.vp(b"vp-creator"), b"removals")
    group.add(b"vp-creator", [make.rs(b"rs-1"), make.vp(b"vp-1"), make.rs(b"rs-2")])
    group.remove(b"vp-1", [b"rs-1"])
    group.remove(b"rs-2", [b"vp-creator"])
    message = group.members[b"vp-1"].encrypt(b"members only")
    with pytest.raises(MlsRsError):
        group.former[b"rs-1"].process(message)
    with pytest.raises(MlsError):
        group.former[b"vp-creator"].process(message)
    assert group.members[b"rs-2"].process(message).data == b"members only"
