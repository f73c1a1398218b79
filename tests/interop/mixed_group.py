"""An in-memory delivery service for groups that mix Veilpost and mls-rs members.

:class:`VeilpostMember` drives a :class:`veilpost.mls.Group` through the same byte-level calls
as :class:`mlsrs.MlsRsMember` (``key_package``, ``create_group``, ``join``, ``add_members``,
``remove_members``, ``self_update``, ``propose_*``, ``commit``, ``encrypt``, ``process``,
``export_secret``, ``save_state``/``load_state``), so that :class:`MixedGroup` can treat the two
implementations alike. :class:`MixedGroup` plays the relay: it carries ``MLSMessage`` bytes
(and nothing else) between members, hands each Welcome, and the ratchet tree when it travels
beside the Welcome, to the members it adds, and after every epoch change checks that all
members agree (:meth:`MixedGroup.check_agreement`).

Members are named by their Basic credential identity, which must be unique in a group (mls-rs
refuses duplicates and removes members by identity).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mlsrs import CIPHER_SUITE, CommitResult, MlsRsMember, Received

from veilpost.codec import encode
from veilpost.crypto import CipherSuite
from veilpost.mls import (
    ApplicationMessage,
    Group,
    GroupConfig,
    KeyPackageBundle,
    OwnMessage,
    ProposalReceived,
    SigningIdentity,
    StagedCommit,
    make_key_package,
)

__all__ = [
    "EXPORTER_CONTEXT",
    "EXPORTER_LABEL",
    "EpochView",
    "MixedGroup",
    "Peer",
    "VeilpostMember",
    "VeilpostReceived",
]

EXPORTER_LABEL = b"veilpost interop"
EXPORTER_CONTEXT = b"every member, both implementations"


def wall_clock() -> int:
    """Unix time in whole seconds: mls-rs checks key package lifetimes against the real
    clock, so Veilpost's key packages and checks use it too."""
    return int(time.time())


@dataclass(frozen=True)
class VeilpostReceived(Received):
    """:class:`mlsrs.Received` plus what Veilpost also reports: the sender's identity."""

    sender: bytes | None = None


class VeilpostMember:
    """One Veilpost member of (at most) one group, with :class:`mlsrs.MlsRsMember`'s calls.

    ``config`` is the member's :class:`GroupConfig`; the relay's view of a commit is simple:
    a commit is accepted at once, and the committer merges it by processing its own commit
    bytes (the echo from the delivery service), as a Veilpost client does.
    """

    def __init__(
        self, identity: bytes, *, config: GroupConfig, suite: CipherSuite | None = None
    ) -> None:
        self.identity = bytes(identity)
        self.config = config
        self.suite = suite or CipherSuite(CIPHER_SUITE)
        self.signer = SigningIdentity.generate(self.suite, self.identity)
        self._bundles: list[KeyPackageBundle] = []
        self._group: Group | None = None

    def __repr__(self) -> str:
        return f"VeilpostMember({self.identity!r}, {self._group!r})"

    @property
    def group(self) -> Group:
        if self._group is None:
            raise AssertionError(f"{self.identity!r} is in no group")
        return self._group

    @property
    def removed(self) -> bool:
        return self._group is not None and self._group.removed

    @property
    def epoch(self) -> int:
        return self.group.epoch

    @property
    def group_id(self) -> bytes:
        return self.group.group_id

    def group_context_bytes(self) -> bytes:
        return encode(self.group.group_context)

    # -- joining --------------------------------------------------------------------------------

    def key_package(self) -> bytes:
        bundle = make_key_package(self.suite, self.signer, now=wall_clock())
        self._bundles.append(bundle)
        return bundle.to_message()

    def create_group(self, group_id: bytes | None = None) -> bytes:
        self._group = Group.create(
            self.suite, self.signer, group_id=group_id, config=self.config, now=wall_clock()
        )
        return self._group.group_id

    def join(self, welcome: bytes, ratchet_tree: bytes | None = None) -> None:
        """Join with the newest key package (the one the Welcome was made for)."""
        self._group = Group.join_from_welcome(
            welcome,
            self._bundles.pop(),
            ratchet_tree=ratchet_tree,
            provider=self.suite.provider,
            config=self.config,
        )

    # -- commits and proposals ------------------------------------------------------------------

    def _leaves(self, identities: Iterable[bytes]) -> list[int]:
        by_identity = {m.credential.identity: i for i, m in self.group.members.items()}
        return [by_identity[bytes(identity)] for identity in identities]

    def _commit(self, **kwargs: object) -> CommitResult:
        output = self.group.commit(**kwargs)  # type: ignore[arg-type]
        echo = self.group.process(output.commit)  # the relay accepted it and echoes it back
        assert isinstance(echo, StagedCommit) and echo.own, echo
        tree = None
        if output.welcome is not None and not self.config.ratchet_tree_in_welcome:
            tree = self.group.ratchet_tree()
        return CommitResult(commit=output.commit, welcome=output.welcome, ratchet_tree=tree)

    def add_members(self, key_packages: Sequence[bytes]) -> CommitResult:
        return self._commit(add=list(key_packages), include_proposals=False)

    def remove_members(self, identities: Sequence[bytes]) -> CommitResult:
        return self._commit(remove=self._leaves(identities), include_proposals=False)

    def add_and_remove(
        self, key_packages: Sequence[bytes], identities: Sequence[bytes]
    ) -> CommitResult:
        """One commit that adds and removes (mls-rs's bindings cannot make one)."""
        return self._commit(
            add=list(key_packages), remove=self._leaves(identities), include_proposals=False
        )

    def self_update(self) -> CommitResult:
        return self._commit(update=True, include_proposals=False)

    def commit(self) -> CommitResult:
        """Commit the proposals received by reference this epoch."""
        return self._commit()

    def propose_add(self, key_packages: Sequence[bytes]) -> list[bytes]:
        return [self.group.propose_add(kp) for kp in key_packages]

    def propose_remove(self, identities: Sequence[bytes]) -> list[bytes]:
        return [self.group.propose_remove(leaf) for leaf in self._leaves(identities)]

    # -- messages -------------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes) -> bytes:
        return self.group.encrypt(plaintext)

    def process(self, message: bytes) -> VeilpostReceived:
        event = self.group.process(message)
        if isinstance(event, ApplicationMessage):
            return VeilpostReceived(
                "application", data=event.data, sender=event.credential.identity
            )
        if isinstance(event, StagedCommit):
            self.group.merge_staged_commit(event)
            applied = len(event.added) + len(event.removed) + len(event.updated)
            return VeilpostReceived("commit", removed=event.self_removed, applied_proposals=applied)
        if isinstance(event, ProposalReceived):
            return VeilpostReceived("proposal")
        assert not isinstance(event, OwnMessage), "the relay echoed a message to its sender"
        raise AssertionError(f"unexpected event {event!r}")

    # -- secrets and state ----------------------------------------------------------------------

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return self.group.export_secret(label, context, length)

    def export_ratchet_tree(self) -> bytes:
        return self.group.ratchet_tree()

    def save_state(self) -> bytes:
        return self.group.to_bytes()

    def load_state(self, state: bytes) -> None:
        """Replace the group with the one saved in ``state`` (as after a restart)."""
        self._group = Group.from_bytes(state, self.suite.provider, config=self.config)


Peer = MlsRsMember | VeilpostMember


@dataclass(frozen=True)
class EpochView:
    """What a member must agree on with every other member after an epoch change."""

    epoch: int
    group_context: bytes
    exported_secret: bytes
    ratchet_tree: bytes


def epoch_view(member: Peer) -> EpochView:
    if isinstance(member, MlsRsMember):
        context = member.group_context()
        epoch, context_bytes = context.epoch, context.encoded
    else:
        epoch, context_bytes = member.epoch, member.group_context_bytes()
    return EpochView(
        epoch,
        context_bytes,
        member.export_secret(EXPORTER_LABEL, EXPORTER_CONTEXT, 32),
        member.export_ratchet_tree(),
    )


def implementation(member: Peer) -> str:
    return "mls-rs" if isinstance(member, MlsRsMember) else "veilpost"


@dataclass
class MixedGroup:
    """The members of one group, Veilpost and mls-rs alike, and the relay between them."""

    members: dict[bytes, Peer] = field(default_factory=dict)
    """The current members by identity."""
    former: dict[bytes, Peer] = field(default_factory=dict)
    """Members that were removed, by identity."""
    epochs: list[EpochView] = field(default_factory=list)
    """The agreed view of every epoch checked so far."""
    log: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Every message the relay carried, with its sender's identity, in order."""
    welcomes: list[tuple[bytes, bytes, bytes | None]] = field(default_factory=list)
    """Every Welcome: the committer's identity, the Welcome, the tree sent beside it."""
    _proposed_joiners: list[Peer] = field(default_factory=list)
    _proposed_removals: list[bytes] = field(default_factory=list)

    @classmethod
    def founded_by(cls, creator: Peer, group_id: bytes) -> MixedGroup:
        group = cls()
        assert creator.create_group(group_id) == group_id
        group.members[creator.identity] = creator
        group.check_agreement()
        return group

    def __getitem__(self, identity: bytes) -> Peer:
        return self.members[identity]

    def count(self, kind: str) -> int:
        return sum(implementation(m) == kind for m in self.members.values())

    # -- the relay ------------------------------------------------------------------------------

    def _deliver(self, sender: Peer, message: bytes, expect: str) -> dict[bytes, Received]:
        """Give ``message`` to every current member but ``sender``."""
        self.log.append((sender.identity, message))
        results = {}
        for identity, member in self.members.items():
            if member is sender:
                continue
            received = member.process(message)
            assert received.kind == expect, (identity, received)
            results[identity] = received
        return results

    def _publish_commit(
        self,
        committer: Peer,
        result: CommitResult,
        joiners: Sequence[Peer] = (),
        removed: Iterable[bytes] = (),
    ) -> EpochView:
        """The relay accepted ``committer``'s commit: deliver it, let the joiners join, and
        check that the removed members (only they) learn that they were removed."""
        removed = set(removed)
        outcomes = self._deliver(committer, result.commit, "commit")
        for identity, received in outcomes.items():
            assert received.removed is (identity in removed), (identity, received)
        for identity in removed:
            member = self.members.pop(identity)
            assert member.removed, identity
            self.former[identity] = member
        if joiners:
            assert result.welcome is not None
            self.welcomes.append((committer.identity, result.welcome, result.ratchet_tree))
            for joiner in joiners:
                joiner.join(result.welcome, result.ratchet_tree)
                self.members[joiner.identity] = joiner
        else:
            assert result.welcome is None
        return self.check_agreement()

    def add(self, committer: bytes, joiners: Sequence[Peer]) -> EpochView:
        """``committer`` adds ``joiners`` in one commit; they join from its one Welcome."""
        member = self.members[committer]
        result = member.add_members([j.key_package() for j in joiners])
        return self._publish_commit(member, result, joiners)

    def remove(self, committer: bytes, identities: Sequence[bytes]) -> EpochView:
        member = self.members[committer]
        result = member.remove_members(identities)
        return self._publish_commit(member, result, removed=identities)

    def add_and_remove(
        self, committer: bytes, joiners: Sequence[Peer], identities: Sequence[bytes]
    ) -> EpochView:
        """A Veilpost member adds ``joiners`` and removes ``identities`` in one commit."""
        member = self.members[committer]
        assert isinstance(member, VeilpostMember)
        result = member.add_and_remove([j.key_package() for j in joiners], identities)
        return self._publish_commit(member, result, joiners, identities)

    def self_update(self, committer: bytes) -> EpochView:
        member = self.members[committer]
        tree_before = member.export_ratchet_tree()
        view = self._publish_commit(member, member.self_update())
        assert view.ratchet_tree != tree_before, "a path commit changes the committer's leaf"
        return view

    def propose_add(self, proposer: bytes, joiners: Sequence[Peer]) -> None:
        """``proposer`` proposes adding ``joiners``; the proposals go to all other members."""
        member = self.members[proposer]
        for proposal in member.propose_add([j.key_package() for j in joiners]):
            self._deliver(member, proposal, "proposal")
        self._proposed_joiners += joiners

    def propose_remove(self, proposer: bytes, identities: Sequence[bytes]) -> None:
        member = self.members[proposer]
        for proposal in member.propose_remove(identities):
            self._deliver(member, proposal, "proposal")
        self._proposed_removals += identities

    def commit_proposals(self, committer: bytes) -> EpochView:
        """``committer`` commits every proposal made this epoch, by reference."""
        member = self.members[committer]
        joiners, removals = self._proposed_joiners, self._proposed_removals
        self._proposed_joiners, self._proposed_removals = [], []
        return self._publish_commit(member, member.commit(), joiners, removals)

    def send(self, sender: bytes, plaintext: bytes) -> None:
        """``sender`` encrypts ``plaintext``; every other member must read it."""
        member = self.members[sender]
        for identity, received in self._deliver(
            member, member.encrypt(plaintext), "application"
        ).items():
            assert received.data == plaintext, identity
            if isinstance(received, VeilpostReceived):
                assert received.sender == sender, (identity, received.sender)

    def everyone_sends(self) -> None:
        for identity in list(self.members):
            self.send(identity, b"from " + identity + b" in epoch %d" % self.epochs[-1].epoch)

    def reload(self, identity: bytes) -> None:
        """Save ``identity``'s state and continue from the saved bytes (a restart)."""
        member = self.members[identity]
        state = member.save_state()
        if isinstance(member, MlsRsMember):
            self.members[identity] = MlsRsMember.load_state(state)
        else:
            member.load_state(state)
        assert epoch_view(self.members[identity]) == self.epochs[-1]

    def check_agreement(self) -> EpochView:
        """Every member, whichever implementation, has the same epoch, GroupContext, exported
        secret and ratchet tree; the epoch is one past the last one checked."""
        views = {identity: epoch_view(m) for identity, m in self.members.items()}
        first_identity, first = next(iter(views.items()))
        for identity, view in views.items():
            for name in ("epoch", "group_context", "exported_secret", "ratchet_tree"):
                assert getattr(view, name) == getattr(first, name), (
                    f"{name} differs: {identity!r} ({implementation(self.members[identity])})"
                    f" vs {first_identity!r} ({implementation(self.members[first_identity])})"
                )
        if self.epochs:
            assert first.epoch == self.epochs[-1].epoch + 1
            assert first.exported_secret not in {e.exported_secret for e in self.epochs}
        self.epochs.append(first)
        return first
