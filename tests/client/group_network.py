"""An in-memory delivery service for :class:`veilpost.mls.group.Group` tests.

Standard library and ``veilpost`` only: these helpers also run inside Pyodide. A
:class:`Network` holds the members of one group by name and plays the relay's part: it
delivers every handshake and application message to every other member, accepts at most one
Commit per epoch (the first one published), hands Welcomes to the new members, and can check
that every member agrees on the epoch, its authenticator and an exported secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tree_builders import seeded_random

from veilpost.crypto import CipherSuite, CryptoBackend, CryptoProvider
from veilpost.mls.events import (
    ApplicationMessage,
    CommitOutput,
    Event,
    OwnMessage,
    ProposalReceived,
    StagedCommit,
)
from veilpost.mls.group import Group
from veilpost.mls.group_config import GroupConfig
from veilpost.mls.signing_identity import KeyPackageBundle, SigningIdentity, make_key_package

NOW = 1_750_000_000
"""The tests' clock: key packages are made and checked at this Unix time."""


def provider_for(backend: CryptoBackend | str, seed: bytes) -> CryptoProvider:
    """A provider on ``backend`` with deterministic randomness from ``seed``."""
    return CryptoProvider(backend, random=seeded_random(seed))


def member_config(**changes: object) -> GroupConfig:
    """The tests' member policy: Veilpost's defaults with a fixed clock."""
    settings: dict[str, object] = {"clock": lambda: NOW}
    settings.update(changes)
    return GroupConfig(**settings)  # type: ignore[arg-type]


@dataclass
class Network:
    """The members of one group and the relay between them."""

    suite: CipherSuite
    config: GroupConfig = field(default_factory=member_config)
    members: dict[str, Group] = field(default_factory=dict)
    identities: dict[str, SigningIdentity] = field(default_factory=dict)
    log: list[tuple[str, bytes]] = field(default_factory=list)
    """Every message published, with its sender's name, in order."""

    @classmethod
    def on(
        cls,
        backend: CryptoBackend | str,
        seed: bytes = b"network",
        suite_id: int = 1,
        **config: object,
    ) -> Network:
        suite = CipherSuite(suite_id, provider_for(backend, seed))
        return cls(suite, member_config(**config))

    @property
    def provider(self) -> CryptoProvider:
        return self.suite.provider

    def identity(self, name: str) -> SigningIdentity:
        if name not in self.identities:
            self.identities[name] = SigningIdentity.generate(self.suite, name.encode())
        return self.identities[name]

    def key_package(self, name: str) -> KeyPackageBundle:
        return make_key_package(self.suite, self.identity(name), now=NOW)

    def create(self, name: str, **kwargs: object) -> Group:
        group = Group.create(
            self.suite,
            self.identity(name),
            config=self.config,
            now=NOW,
            **kwargs,  # type: ignore[arg-type]
        )
        self.members[name] = group
        return group

    def names(self, *, excluding: str | None = None) -> list[str]:
        return [n for n in self.members if n != excluding]

    # -- the relay ------------------------------------------------------------------------------

    def deliver(self, sender: str, message: bytes, *, merge: bool = True) -> dict[str, Event]:
        """Give ``message`` to every member but ``sender``; merge staged commits."""
        self.log.append((sender, message))
        events: dict[str, Event] = {}
        for name in self.names(excluding=sender):
            group = self.members[name]
            if group.removed:
                continue
            event = group.process(message)
            if merge and isinstance(event, StagedCommit) and not event.own:
                group.merge_staged_commit(event)
            events[name] = event
        return events

    def commit(self, name: str, **kwargs: object) -> CommitOutput:
        """``name`` commits; the relay accepts it, everyone merges, new members join."""
        group = self.members[name]
        output = group.commit(**kwargs)  # type: ignore[arg-type]
        self.publish_commit(name, output)
        return output

    def publish_commit(
        self, name: str, output: CommitOutput, joiners: Iterable[tuple[str, KeyPackageBundle]] = ()
    ) -> dict[str, Event]:
        """The relay accepts ``name``'s pending commit: deliver it, echo it to the committer."""
        events = self.deliver(name, output.commit)
        echo = self.members[name].process(output.commit)
        assert isinstance(echo, StagedCommit) and echo.own
        for joiner, bundle in joiners:
            assert output.welcome is not None
            self.members[joiner] = Group.join_from_welcome(
                output.welcome, bundle, provider=self.provider, config=self.config
            )
        return events

    def add(self, committer: str, names: Iterable[str], **kwargs: object) -> CommitOutput:
        """``committer`` adds ``names`` in one commit; they join from the Welcome."""
        bundles = [(name, self.key_package(name)) for name in names]
        output = self.members[committer].commit(add=[b.key_package for _, b in bundles], **kwargs)  # type: ignore[arg-type]
        self.publish_commit(committer, output, bundles)
        return output

    def send(self, sender: str, data: bytes) -> None:
        """``sender`` encrypts ``data``; every other member must read it, from ``sender``."""
        message = self.members[sender].encrypt(data)
        events = self.deliver(sender, message)
        sender_leaf = self.members[sender].own_leaf_index
        for name, event in events.items():
            assert isinstance(event, ApplicationMessage), (name, event)
            assert event.data == data and event.sender == sender_leaf, (name, event)
        assert isinstance(self.members[sender].process(message), OwnMessage)

    def propose(self, name: str, message: bytes) -> list[bytes]:
        """Deliver a proposal of ``name``; return the refs the others cached (all equal)."""
        events = self.deliver(name, message)
        refs = []
        for event in events.values():
            assert isinstance(event, ProposalReceived)
            refs.append(event.ref)
        assert len(set(refs)) <= 1
        return refs

    def check_agreement(self) -> bytes:
        """Every active member is in the same epoch with the same secrets; returns the
        epoch authenticator."""
        active = [g for g in self.members.values() if not g.removed]
        first = active[0]
        for group in active[1:]:
            assert group.epoch == first.epoch
            assert group.group_id == first.group_id
            assert group.epoch_authenticator == first.epoch_authenticator
            assert group.export_secret("test", b"ctx", 32) == first.export_secret(
                "test", b"ctx", 32
            )
            assert group.members == first.members
        leaves = {g.own_leaf_index for g in active}
        assert leaves == set(first.members), (leaves, set(first.members))
        return first.epoch_authenticator
