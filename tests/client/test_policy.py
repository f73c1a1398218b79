"""Group metadata and the permission policy (``veilpost.client.policy``).

The metadata GroupContext extension round-trips and decodes strictly (every malformed field
is a :class:`~veilpost.codec.DecodeError`; fuzzed with hypothesis). :func:`check_commit` runs on
real MLS Commits made with :mod:`veilpost.mls` by members whose credentials name their inbox
(``credential_for``) and whose capabilities list :data:`METADATA_EXTENSION`, as the client builds
them. Every Commit is checked twice, as its committer checks it before sending
(``CommitOutput.staged``) and as another member checks it on receipt (``Group.process``), and
both must agree. Each rule has a test that breaks exactly that rule and checks the
:class:`PermissionDenied`'s ``check``.

The cast: in the group, alice (super admin; devices a1, a2), bob (admin; b1), carol (member;
c1, c2) and dave (member; d1); erin (e1) is not a member; c3 and d2 are new devices. In the DM,
alice (a1, a2) and bob (b1, b2); b3 is bob's new device.

Standard library, pytest, hypothesis and ``veilpost`` only: this file also runs inside Pyodide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import pytest
from group_network import NOW, member_config, provider_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import BACKENDS

from veilpost.client.errors import IdentityError, PermissionDenied
from veilpost.client.identity import InstallationKey, credential_for
from veilpost.client.policy import (
    MAX_DESCRIPTION_BYTES,
    MAX_NAME_BYTES,
    METADATA_EXTENSION,
    ConversationKind,
    GroupMetadata,
    Permission,
    PermissionPolicy,
    Role,
    check_commit,
    metadata_of,
)
from veilpost.codec import DecodeError, Writer
from veilpost.crypto import CipherSuite
from veilpost.mls import (
    Extension,
    ExtensionType,
    Group,
    KeyPackageBundle,
    ProposalReceived,
    SigningIdentity,
    StagedCommit,
    make_key_package,
)
from veilpost.mls.builders import default_capabilities
from veilpost.mls.credential import Credential

FAST = BACKENDS[0]

# -- the metadata extension ----------------------------------------------------------------------

INBOX_A = "a" * 32
INBOX_B = "b" * 32
INBOX_C = "c" * 32


def raw_metadata(
    *,
    fmt: int = 1,
    kind: int = 2,
    name: bytes = b"",
    description: bytes = b"",
    super_admins: Sequence[bytes] = (INBOX_A.encode(),),
    admins: Sequence[bytes] = (),
    permissions: Sequence[int] = (0, 1, 0),
    dm: Sequence[bytes] = (),
    tail: bytes = b"",
) -> Extension:
    """The metadata extension written field by field, to break one field at a time."""
    writer = Writer()
    writer.uint8(fmt)
    writer.uint8(kind)
    writer.opaque(name)
    writer.opaque(description)
    writer.vector(list(super_admins), Writer.opaque)
    writer.vector(list(admins), Writer.opaque)
    for value in permissions:
        writer.uint8(value)
    writer.vector(list(dm), Writer.opaque)
    return Extension(METADATA_EXTENSION, writer.getvalue() + tail)


def decode_error(extension: Extension) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        GroupMetadata.from_extension(extension)
    return info.value


def test_the_hand_written_extension_matches() -> None:
    assert raw_metadata() == GroupMetadata.group(INBOX_A).to_extension()
    dm = raw_metadata(kind=1, super_admins=(), dm=(INBOX_A.encode(), INBOX_B.encode()))
    assert dm == GroupMetadata.dm(INBOX_B, INBOX_A).to_extension()


@pytest.mark.parametrize(
    "metadata",
    [
        GroupMetadata.group(INBOX_A),
        GroupMetadata.group(INBOX_A, name="Équipe ☕", description="x" * MAX_DESCRIPTION_BYTES),
        GroupMetadata(
            ConversationKind.GROUP,
            "n" * MAX_NAME_BYTES,
            "",
            (INBOX_A, INBOX_C),
            (INBOX_B,),
            PermissionPolicy(Permission.SUPER_ADMIN, Permission.EVERYONE, Permission.ADMIN),
        ),
        GroupMetadata.dm(INBOX_B, INBOX_A),
        replace(GroupMetadata.dm(INBOX_A, INBOX_B), name="our chat"),
    ],
    ids=["group", "unicode", "roles-and-policy", "dm", "named-dm"],
)
def test_metadata_round_trip(metadata: GroupMetadata) -> None:
    extension = metadata.to_extension()
    assert extension.extension_type == METADATA_EXTENSION
    assert GroupMetadata.from_extension(extension) == metadata
    assert metadata_of([Extension(0xF000, b"other"), extension]) == metadata


def test_dm_inboxes_are_sorted_and_roles_are_read() -> None:
    dm = GroupMetadata.dm(INBOX_C, INBOX_A)
    assert dm.dm_inboxes == (INBOX_A, INBOX_C) and dm.kind == ConversationKind.DM
    group = GroupMetadata.group(INBOX_A).with_role(INBOX_B, Role.ADMIN)
    assert [group.role_of(i) for i in (INBOX_A, INBOX_B, INBOX_C)] == [
        Role.SUPER_ADMIN,
        Role.ADMIN,
        Role.MEMBER,
    ]
    demoted = group.with_role(INBOX_A, Role.MEMBER).with_role(INBOX_B, Role.SUPER_ADMIN)
    assert (demoted.super_admins, demoted.admins) == ((INBOX_B,), ())


def test_metadata_of_without_the_extension() -> None:
    assert metadata_of([]) is None
    assert metadata_of([Extension(0xF000, b"\x01\x02")]) is None


@pytest.mark.parametrize("fmt", [0, 2, 255])
def test_bad_format_byte(fmt: int) -> None:
    assert "format" in str(decode_error(raw_metadata(fmt=fmt)))


@pytest.mark.parametrize("kind", [0, 3, 255])
def test_unknown_kind(kind: int) -> None:
    assert "invalid group metadata" in str(decode_error(raw_metadata(kind=kind)))


@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("value", [3, 4, 255])
def test_unknown_permission_value(position: int, value: int) -> None:
    permissions = [0, 1, 0]
    permissions[position] = value
    assert "invalid group metadata" in str(decode_error(raw_metadata(permissions=permissions)))


@pytest.mark.parametrize("count", [0, 1, 3])
def test_dm_with_other_than_two_inboxes(count: int) -> None:
    inboxes = [INBOX_A.encode(), INBOX_B.encode(), INBOX_C.encode()][:count]
    error = decode_error(raw_metadata(kind=1, super_admins=(), dm=inboxes))
    assert "exactly two inboxes" in str(error)


def test_group_naming_dm_inboxes() -> None:
    error = decode_error(raw_metadata(kind=2, dm=(INBOX_A.encode(), INBOX_B.encode())))
    assert "exactly two inboxes" in str(error)


def test_over_long_name_and_description() -> None:
    assert GroupMetadata.from_extension(raw_metadata(name=b"n" * MAX_NAME_BYTES)).name
    assert "too long" in str(decode_error(raw_metadata(name=b"n" * (MAX_NAME_BYTES + 1))))
    # The limit is in UTF-8 bytes, not characters: 129 two-byte characters are 258 bytes.
    assert "too long" in str(decode_error(raw_metadata(name="é".encode() * 129)))
    too_long = b"d" * (MAX_DESCRIPTION_BYTES + 1)
    assert "too long" in str(decode_error(raw_metadata(description=too_long)))


@pytest.mark.parametrize("tail", [b"\x00", b"\x01\x02\x03"])
def test_trailing_bytes(tail: bytes) -> None:
    decode_error(raw_metadata(tail=tail))


def test_truncated() -> None:
    data = GroupMetadata.group(INBOX_A, name="n").to_extension().extension_data
    for cut in range(len(data)):
        decode_error(Extension(METADATA_EXTENSION, data[:cut]))


@pytest.mark.parametrize(
    "changes",
    [
        {"name": b"\xff"},
        {"name": b"\xc3"},  # a truncated two-byte sequence
        {"name": b"\xed\xa0\x80"},  # a UTF-16 surrogate, not valid UTF-8
        {"name": b"\xc0\xaf"},  # an over-long encoding of "/"
        {"description": b"ok \x80"},
        {"super_admins": ("é".encode(),)},  # inbox ids are ASCII
        {"admins": (b"\x80" * 32,)},
        {"kind": 1, "super_admins": (), "dm": (INBOX_A.encode(), b"\xff" * 32)},
    ],
    ids=["ff", "truncated", "surrogate", "overlong", "description", "super", "admin", "dm"],
)
def test_bad_text(changes: dict[str, object]) -> None:
    assert "invalid group metadata" in str(decode_error(raw_metadata(**changes)))  # type: ignore[arg-type]


VALID = GroupMetadata(
    ConversationKind.GROUP,
    "name",
    "desc",
    (INBOX_A,),
    (INBOX_B,),
    PermissionPolicy(Permission.ADMIN, Permission.ADMIN, Permission.EVERYONE),
).to_extension()


def _decode_or_decode_error(data: bytes) -> None:
    extension = Extension(METADATA_EXTENSION, data)
    try:
        metadata = GroupMetadata.from_extension(extension)
    except DecodeError:
        return
    assert metadata.to_extension() == extension  # whatever decodes is canonical


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_decode_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_decode_error(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID.extension_data) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, len(VALID.extension_data)),
    st.binary(max_size=4),
)
def test_decode_fuzz_mutations(edits: list[tuple[int, int]], cut: int, tail: bytes) -> None:
    data = bytearray(VALID.extension_data)
    for offset, value in edits:
        data[offset] = value
    _decode_or_decode_error(bytes(data[:cut]) + tail)


def test_permission_policy_allows() -> None:
    policy = PermissionPolicy()
    assert (policy.add_member, policy.remove_member, policy.update_metadata) == (
        Permission.EVERYONE,
        Permission.ADMIN,
        Permission.EVERYONE,
    )
    for permission in Permission:
        for role in Role:
            assert policy.allows(permission, role) == (role >= permission)


# -- real groups ---------------------------------------------------------------------------------


@dataclass
class World:
    """A group (or DM) of installations, saved after set-up so that each test restores fresh
    copies of the members it needs."""

    suite: CipherSuite
    devices: dict[str, str]  # device name -> inbox name
    inboxes: dict[str, str] = field(default_factory=dict)  # inbox name -> inbox id
    identities: dict[str, SigningIdentity] = field(default_factory=dict)
    saved: dict[str, bytes] = field(default_factory=dict)

    def key(self, device: str) -> InstallationKey:
        seed = hashlib.sha256(b"policy test device " + device.encode()).digest()
        return InstallationKey(seed, provider=self.suite.provider)

    def inbox(self, name: str) -> str:
        """The id of inbox ``name``: the installation id of its first device."""
        if name not in self.inboxes:
            first = next(d for d, i in self.devices.items() if i == name)
            self.inboxes[name] = self.key(first).installation_id
        return self.inboxes[name]

    def identity(self, device: str) -> SigningIdentity:
        if device not in self.identities:
            caps = default_capabilities()
            caps.extensions.append(METADATA_EXTENSION)
            self.identities[device] = SigningIdentity.from_private_key(
                self.suite,
                credential_for(self.inbox(self.devices[device])),
                self.key(device).private_key,
                capabilities=caps,
            )
        return self.identities[device]

    def key_package(self, device: str) -> KeyPackageBundle:
        return make_key_package(self.suite, self.identity(device), now=NOW)

    def group(self, device: str, **config: object) -> Group:
        return Group.from_bytes(
            self.saved[device], provider=self.suite.provider, config=member_config(**config)
        )

    def leaf(self, device: str) -> int:
        key = self.identity(device).signature_key
        members = self.group(next(iter(self.saved))).members
        return next(i for i, m in members.items() if m.signature_key == key)

    def metadata(self) -> GroupMetadata:
        metadata = metadata_of(self.group(next(iter(self.saved))).extensions)
        assert metadata is not None
        return metadata


def build_world(
    seed: bytes,
    devices: dict[str, str],
    members: Iterable[str],
    metadata: Callable[[World], GroupMetadata],
) -> World:
    """The first device of ``members`` creates the group with ``metadata`` and adds the
    others in one Commit; they join from the Welcome."""
    world = World(CipherSuite(1, provider_for(FAST, seed)), devices)
    creator, *others = members
    config = member_config()
    group = Group.create(
        world.suite,
        world.identity(creator),
        extensions=[metadata(world).to_extension()],
        config=config,
        now=NOW,
    )
    bundles = [world.key_package(d) for d in others]
    output = group.commit(add=[b.key_package for b in bundles])
    group.merge_pending_commit()
    assert output.welcome is not None
    world.saved[creator] = group.to_bytes()
    for device, bundle in zip(others, bundles, strict=True):
        joined = Group.join_from_welcome(
            output.welcome, bundle, provider=world.suite.provider, config=config
        )
        assert joined.epoch_authenticator == group.epoch_authenticator
        world.saved[device] = joined.to_bytes()
    return world


GROUP_DEVICES = {
    "a1": "alice",
    "a2": "alice",
    "b1": "bob",
    "c1": "carol",
    "c2": "carol",
    "d1": "dave",
    "e1": "erin",
    "c3": "carol",
    "d2": "dave",
}
GROUP_MEMBERS = ["a1", "a2", "b1", "c1", "c2", "d1"]


def group_world(policy: PermissionPolicy) -> World:
    def metadata(world: World) -> GroupMetadata:
        base = GroupMetadata.group(world.inbox("alice"), name="team")
        return replace(base.with_role(world.inbox("bob"), Role.ADMIN), policy=policy)

    return build_world(b"policy " + repr(policy).encode(), GROUP_DEVICES, GROUP_MEMBERS, metadata)


@pytest.fixture(scope="module")
def world() -> World:
    """The group with the default policy (everyone adds and renames, admins remove)."""
    return group_world(PermissionPolicy())


@pytest.fixture(scope="module")
def strict() -> World:
    """The group where only admins add members and rename."""
    return group_world(
        PermissionPolicy(add_member=Permission.ADMIN, update_metadata=Permission.ADMIN)
    )


@pytest.fixture(scope="module")
def dm() -> World:
    devices = {"a1": "alice", "a2": "alice", "b1": "bob", "b2": "bob", "b3": "bob", "e1": "erin"}
    return build_world(
        b"policy dm",
        devices,
        ["a1", "a2", "b1", "b2"],
        lambda w: GroupMetadata.dm(w.inbox("alice"), w.inbox("bob")),
    )


class Listed:
    """An ``is_listed`` that says no for the given keys and records its calls."""

    def __init__(self, *revoked: bytes) -> None:
        self.revoked = set(revoked)
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, inbox: str, key: bytes) -> bool:
        self.calls.append((inbox, key))
        return key not in self.revoked


def run(
    world: World,
    committer: str,
    *,
    metadata: GroupMetadata | None = None,
    leaving: Iterable[str] = (),
    is_listed: Callable[[str, bytes], bool] | None = None,
    proposals: Iterable[tuple[str, Callable[[Group], bytes]]] = (),
    remove: Sequence[str] = (),
    add: Sequence[str] = (),
    extensions: list[Extension] | None = None,
    new_metadata: GroupMetadata | None = None,
) -> GroupMetadata:
    """``committer`` commits (removing and adding devices by name, setting the extensions or
    the metadata); check_commit runs on the committer's staged Commit and on another member's;
    both must agree. ``proposals`` are (device, make proposal) sent first to both."""
    proposals = list(proposals)
    proposers = {name for name, _ in proposals}
    removed_leaves = [world.leaf(d) for d in remove]
    observer_name = next(
        d for d in world.saved if d != committer and d not in remove and d not in proposers
    )
    group, observer = world.group(committer), world.group(observer_name)
    for proposer_name, make in proposals:
        message = make(world.group(proposer_name))
        for member in (group, observer):
            assert isinstance(member.process(message), ProposalReceived)
    before, observer_before = dict(group.members), dict(observer.members)
    assert before == observer_before
    metadata = metadata or world.metadata()
    if new_metadata is not None:
        others = [e for e in group.extensions if e.extension_type != METADATA_EXTENSION]
        extensions = [*others, new_metadata.to_extension()]
    output = group.commit(
        add=[world.key_package(d).key_package for d in add],
        remove=removed_leaves,
        extensions=extensions,
    )
    received = observer.process(output.commit)
    assert isinstance(received, StagedCommit) and not received.own
    outcomes: list[GroupMetadata | PermissionDenied] = []
    for staged, members in ((output.staged, before), (received, observer_before)):
        if not proposals:
            assert sorted(m.leaf_index for m in staged.removed) == sorted(removed_leaves)
        try:
            outcomes.append(
                check_commit(
                    staged,
                    members=members,
                    metadata=metadata,
                    leaving=leaving,
                    is_listed=is_listed or (lambda inbox, key: True),
                )
            )
        except PermissionDenied as exc:
            outcomes.append(exc)
    own, seen = outcomes
    if isinstance(own, PermissionDenied):
        assert isinstance(seen, PermissionDenied), seen
        assert getattr(seen, "check", None) == getattr(own, "check", None)
        raise own
    assert own == seen
    return own


def denied(name: str, world: World, committer: str, **kwargs: object) -> PermissionDenied:
    with pytest.raises(PermissionDenied) as info:
        run(world, committer, **kwargs)  # type: ignore[arg-type]
    error = info.value
    assert getattr(error, "check", None) == name, (getattr(error, "check", None), str(error))
    assert f"[{name}]" in str(error)
    return error


def test_the_worlds_are_as_described(world: World, strict: World, dm: World) -> None:
    metadata = world.metadata()
    assert metadata.super_admins == (world.inbox("alice"),)
    assert metadata.admins == (world.inbox("bob"),)
    assert metadata.policy == PermissionPolicy()
    assert strict.metadata().policy.add_member == Permission.ADMIN
    assert len(world.group("c1").members) == len(GROUP_MEMBERS)
    assert dm.metadata().dm_inboxes == tuple(sorted((dm.inbox("alice"), dm.inbox("bob"))))
    assert world.inbox("alice") == world.key("a1").installation_id


# -- adding --------------------------------------------------------------------------------------


def test_member_adds_a_new_inbox_by_default(world: World) -> None:
    assert run(world, "c1", add=["e1"]) == world.metadata()
    assert run(world, "d1", add=["e1", "c3"]) == world.metadata()


def test_member_may_not_add_when_the_policy_says_admins(strict: World) -> None:
    error = denied("policy.add_member", strict, "c1", add=["e1"])
    assert strict.inbox("carol") in str(error) and "member" in str(error)


def test_admins_add_when_the_policy_says_admins(strict: World) -> None:
    run(strict, "b1", add=["e1"])
    run(strict, "a2", add=["e1"])


def test_only_super_admins_add_when_the_policy_says_so(world: World) -> None:
    # The policy check reads the metadata it is given: here a super-admin-only variant.
    metadata = replace(world.metadata(), policy=PermissionPolicy(add_member=Permission.SUPER_ADMIN))
    denied("policy.add_member", world, "b1", add=["e1"], metadata=metadata)
    run(world, "a1", add=["e1"], metadata=metadata)
    run(world, "b1", add=["d2"], metadata=metadata)  # a new device is still fine


def test_a_new_device_of_a_member_inbox_is_always_allowed(strict: World) -> None:
    run(strict, "c1", add=["d2"])
    run(strict, "d1", add=["c3"])
    run(strict, "c2", add=["c3", "d2"])


def test_a_new_device_does_not_smuggle_in_a_new_inbox(strict: World) -> None:
    denied("policy.add_member", strict, "c1", add=["d2", "e1"])


def test_an_added_member_must_name_an_inbox(world: World) -> None:
    # MLS accepts any basic credential; check_commit refuses to judge one that names no inbox.
    group = world.group("c1")
    caps = default_capabilities()
    caps.extensions.append(METADATA_EXTENSION)
    stranger = SigningIdentity.from_private_key(
        world.suite, Credential.basic(b"mallory"), bytes(32), capabilities=caps
    )
    output = group.commit(add=[make_key_package(world.suite, stranger, now=NOW).key_package])
    with pytest.raises(IdentityError) as info:
        check_commit(output.staged, members=group.members, metadata=world.metadata())
    assert getattr(info.value, "check", None) == "credential.inbox"


# -- removing ------------------------------------------------------------------------------------


def test_member_may_not_remove_another_inbox(world: World) -> None:
    error = denied("policy.remove_member", world, "c1", remove=["d1"])
    assert world.inbox("carol") in str(error) and world.inbox("dave") in str(error)
    denied("policy.remove_member", world, "d1", remove=["c1", "c2"])
    denied("policy.remove_member", world, "d1", remove=["b1"])  # nor an admin


def test_admin_removes_members(world: World) -> None:
    assert run(world, "b1", remove=["d1"]) == world.metadata()
    run(world, "b1", remove=["c1", "c2", "d1"])


def test_admin_may_not_remove_a_super_admin(world: World) -> None:
    error = denied("policy.remove_member", world, "b1", remove=["a2"])
    assert world.inbox("alice") in str(error)
    denied("policy.remove_member", world, "b1", remove=["a1", "a2"])
    denied("policy.remove_member", world, "b1", remove=["d1", "a1"])  # mixed with an allowed one


def test_super_admin_removes_admins_and_members(world: World) -> None:
    run(world, "a1", remove=["b1"])
    run(world, "a2", remove=["b1", "c1", "c2", "d1"])


def test_removing_ones_own_other_installation(world: World) -> None:
    run(world, "c1", remove=["c2"])
    run(world, "c2", remove=["c1"])
    run(world, "a2", remove=["a1"])


def test_removing_ones_own_device_does_not_cover_another_inbox(world: World) -> None:
    denied("policy.remove_member", world, "c1", remove=["c2", "d1"])


def test_removing_an_inbox_that_asked_to_leave(world: World) -> None:
    dave = world.inbox("dave")
    leaf = world.leaf("d1")

    def leave(group: Group) -> bytes:
        return group.propose_remove(leaf)

    # dave proposes his own removal; carol (a member) commits it by reference.
    assert run(world, "c1", proposals=[("d1", leave)], leaving=[dave]) == world.metadata()
    # By value too: the inbox asked to leave, whoever writes the Remove.
    run(world, "c1", remove=["d1"], leaving=[dave])
    # Without dave in ``leaving`` the same Commit is an ordinary removal.
    denied("policy.remove_member", world, "c1", proposals=[("d1", leave)])
    # ``leaving`` covers only the inboxes it names.
    denied("policy.remove_member", world, "c1", remove=["d1", "b1"], leaving=[dave])


def test_a_leaving_super_admin_may_be_removed_by_anyone(world: World) -> None:
    run(world, "d1", remove=["a1", "a2"], leaving=[world.inbox("alice")])


def test_removing_a_revoked_device(world: World) -> None:
    d1 = world.identity("d1").signature_key
    listed = Listed(d1)
    run(world, "c1", remove=["d1"], is_listed=listed)
    assert (world.inbox("dave"), d1) in listed.calls
    # The default is_listed lists everyone: then it is an ordinary removal.
    denied("policy.remove_member", world, "c1", remove=["d1"])
    # A super admin's revoked device may go too.
    run(world, "c1", remove=["a2"], is_listed=Listed(world.identity("a2").signature_key))


def test_a_revoked_device_does_not_cover_a_listed_one(world: World) -> None:
    listed = Listed(world.identity("d1").signature_key)
    error = denied("policy.remove_member", world, "c1", remove=["d1", "b1"], is_listed=listed)
    assert world.inbox("bob") in str(error)
    # a2 is revoked, a1 is not: alice keeps her listed device.
    revoked_a2 = Listed(world.identity("a2").signature_key)
    denied("policy.remove_member", world, "b1", remove=["a1", "a2"], is_listed=revoked_a2)


def test_the_committer_answers_for_proposals_by_reference(world: World) -> None:
    """check_commit judges the committer: a StagedCommit does not say who proposed what.

    So a member's proposal that a super admin's Commit covers is the super admin's act, and a
    super admin's proposal committed by a member is the member's. A client that commits every
    cached proposal (``Group.commit``'s default) therefore makes members' proposals its own.
    """
    d1_leaf = world.leaf("d1")
    carol = world.inbox("carol")
    promoted = world.metadata().with_role(carol, Role.SUPER_ADMIN)

    def remove_dave(group: Group) -> bytes:
        return group.propose_remove(d1_leaf)

    def promote_carol(group: Group) -> bytes:
        return group.propose_group_context_extensions([promoted.to_extension()])

    run(world, "b1", proposals=[("c1", remove_dave)])  # carol proposes, admin bob commits
    denied("policy.remove_member", world, "c2", proposals=[("b1", remove_dave)])
    assert run(world, "a1", proposals=[("c1", promote_carol)], add=["e1"]) == promoted
    denied("policy.roles", world, "c2", proposals=[("a1", promote_carol)])


def test_a_cached_proposal_nobody_may_commit_fails_every_commit(world: World) -> None:
    """A member's proposal that no one is allowed to commit (here: dropping the metadata)
    makes every Commit that covers it fail the check, the super admin's included: a client
    that covers every cached proposal cannot commit anything else in that epoch."""

    def drop_metadata(group: Group) -> bytes:
        return group.propose_group_context_extensions([])

    for committer in ("a1", "b1", "d1"):
        denied(
            "policy.metadata_removed",
            world,
            committer,
            proposals=[("c1", drop_metadata)],
            add=["e1"],
        )


# -- the DM --------------------------------------------------------------------------------------


def test_dm_never_gains_an_inbox(dm: World) -> None:
    denied("policy.dm_members", dm, "a1", add=["e1"])
    denied("policy.dm_members", dm, "b1", add=["b3", "e1"])


def test_dm_gains_devices_of_its_inboxes(dm: World) -> None:
    assert run(dm, "a1", add=["b3"]) == dm.metadata()
    run(dm, "b2", add=["b3"])


def test_dm_never_loses_the_other_inbox(dm: World) -> None:
    denied("policy.dm_members", dm, "a1", remove=["b1"])
    denied("policy.dm_members", dm, "a2", remove=["b1", "b2"])
    denied("policy.dm_members", dm, "b1", remove=["a1"])


def test_dm_member_removes_own_and_revoked_devices(dm: World) -> None:
    run(dm, "a1", remove=["a2"])
    run(dm, "a1", remove=["b2"], is_listed=Listed(dm.identity("b2").signature_key))
    revoked = Listed(dm.identity("b2").signature_key)
    denied("policy.dm_members", dm, "a1", remove=["b1", "b2"], is_listed=revoked)


def test_dm_never_loses_the_other_inbox_even_if_it_asked_to_leave(dm: World) -> None:
    denied("policy.dm_members", dm, "a1", remove=["b1", "b2"], leaving=[dm.inbox("bob")])


def test_dm_rename_and_kind(dm: World) -> None:
    metadata = dm.metadata()
    assert run(dm, "b1", new_metadata=replace(metadata, name="us")).name == "us"
    group = replace(metadata, kind=ConversationKind.GROUP, dm_inboxes=())
    denied(
        "policy.kind", dm, "a1", new_metadata=group.with_role(dm.inbox("alice"), Role.SUPER_ADMIN)
    )
    other_pair = GroupMetadata.dm(dm.inbox("alice"), dm.inbox("erin"))
    denied("policy.kind", dm, "a1", new_metadata=other_pair)
    denied("policy.metadata_removed", dm, "b1", extensions=[])


# -- metadata ------------------------------------------------------------------------------------


def test_member_renames_by_default(world: World) -> None:
    metadata = world.metadata()
    new = run(world, "d1", new_metadata=replace(metadata, name="renamed", description="about"))
    assert (new.name, new.description) == ("renamed", "about")
    assert replace(new, name=metadata.name, description=metadata.description) == metadata
    assert run(world, "d1", new_metadata=metadata) == metadata  # re-stating it changes nothing


def test_member_may_not_rename_when_the_policy_says_admins(strict: World) -> None:
    metadata = strict.metadata()
    error = denied("policy.update_metadata", strict, "c1", new_metadata=replace(metadata, name="x"))
    assert strict.inbox("carol") in str(error)
    denied("policy.update_metadata", strict, "c1", new_metadata=replace(metadata, description="x"))
    assert run(strict, "b1", new_metadata=replace(metadata, name="x")).name == "x"


def test_only_a_super_admin_changes_roles(world: World) -> None:
    metadata = world.metadata()
    carol, bob = world.inbox("carol"), world.inbox("bob")
    denied("policy.roles", world, "b1", new_metadata=metadata.with_role(carol, Role.ADMIN))
    denied("policy.roles", world, "b1", new_metadata=metadata.with_role(bob, Role.SUPER_ADMIN))
    denied("policy.roles", world, "c1", new_metadata=metadata.with_role(carol, Role.SUPER_ADMIN))
    denied("policy.roles", world, "b1", new_metadata=metadata.with_role(bob, Role.MEMBER))
    stricter = replace(metadata, policy=PermissionPolicy(add_member=Permission.ADMIN))
    denied("policy.roles", world, "b1", new_metadata=stricter)
    denied("policy.roles", world, "c1", new_metadata=replace(stricter, name="also renamed"))
    assert run(world, "a2", new_metadata=metadata.with_role(carol, Role.ADMIN)).admins == (
        bob,
        carol,
    )
    assert run(world, "a1", new_metadata=stricter).policy == stricter.policy


def test_removing_the_last_super_admin(world: World) -> None:
    metadata = world.metadata()
    alice, bob = world.inbox("alice"), world.inbox("bob")
    error = denied("policy.roles", world, "a1", new_metadata=metadata.with_role(alice, Role.ADMIN))
    assert "at least one super admin" in str(error)
    denied("policy.roles", world, "a1", new_metadata=replace(metadata, super_admins=()))
    # Handing over first is fine.
    handed_over = metadata.with_role(bob, Role.SUPER_ADMIN).with_role(alice, Role.MEMBER)
    assert run(world, "a1", new_metadata=handed_over).super_admins == (bob,)
    # An admin may not remove the super admin's membership either.
    denied("policy.remove_member", world, "b1", remove=["a1", "a2"])


def test_dropping_the_metadata(world: World) -> None:
    denied("policy.metadata_removed", world, "d1", extensions=[])
    denied("policy.metadata_removed", world, "a1", extensions=[])  # not even a super admin


def test_changing_the_kind(world: World) -> None:
    metadata = world.metadata()
    as_dm = replace(
        metadata,
        kind=ConversationKind.DM,
        dm_inboxes=tuple(sorted((world.inbox("alice"), world.inbox("bob")))),
    )
    denied("policy.kind", world, "a1", new_metadata=as_dm)
    denied("policy.kind", world, "d1", new_metadata=as_dm)


def test_malformed_metadata_in_a_commit_is_refused(world: World) -> None:
    denied("policy.metadata_invalid", world, "d1", extensions=[raw_metadata(kind=9)])


def test_external_commits_are_refused(world: World) -> None:
    observer = world.group("c1", accept_external_commits=True)
    before = dict(observer.members)
    _joiner, commit = Group.join_by_external_commit(
        world.group("a1").group_info(external_pub=True),
        world.identity("e1"),
        provider=world.suite.provider,
        config=member_config(),
    )
    staged = observer.process(commit)
    assert isinstance(staged, StagedCommit) and staged.external
    with pytest.raises(PermissionDenied) as info:
        check_commit(staged, members=before, metadata=world.metadata())
    assert getattr(info.value, "check", None) == "policy.external"


def test_a_committer_that_is_not_a_member(world: World) -> None:
    # Not reachable with a real member Commit; the staged Commit is altered to reach it.
    group = world.group("c1")
    staged = group.commit(update=True).staged
    alien = replace(staged, committer_leaf=max(group.members) + 1)
    with pytest.raises(PermissionDenied) as info:
        check_commit(alien, members=group.members, metadata=world.metadata())
    assert getattr(info.value, "check", None) == "policy.committer"
    assert check_commit(staged, members=group.members, metadata=world.metadata()) == (
        world.metadata()
    )


def test_reinit_and_psk_commits_are_refused(world: World) -> None:
    from veilpost.mls.proposals import ReInit
    from veilpost.mls.psk import PreSharedKeyID, PSKType

    group = world.group("d1")  # a plain member
    staged = group.commit(update=True).staged
    reinit = replace(
        staged, reinit=ReInit(group_id=b"new", version=1, cipher_suite=1, extensions=[])
    )
    psk = replace(staged, psks=(PreSharedKeyID(PSKType.EXTERNAL, bytes(32), psk_id=b"k"),))
    for altered, check in ((reinit, "policy.reinit"), (psk, "policy.psk")):
        with pytest.raises(PermissionDenied) as info:
            check_commit(altered, members=group.members, metadata=world.metadata())
        assert getattr(info.value, "check", None) == check
    assert check_commit(staged, members=group.members, metadata=world.metadata())


def test_other_extensions_change_only_by_a_super_admin(world: World) -> None:
    group = world.group("d1")
    before = list(group.extensions)
    senders = Extension(ExtensionType.EXTERNAL_SENDERS, b"\x00")  # an empty list
    output = group.commit(extensions=[*before, senders])
    group.discard_pending_commit()
    with pytest.raises(PermissionDenied) as info:
        check_commit(
            output.staged, members=group.members, metadata=world.metadata(), extensions=before
        )
    assert getattr(info.value, "check", None) == "policy.extensions"
    admin = world.group("a1")  # alice: the super admin
    output = admin.commit(extensions=[*before, senders])
    admin.discard_pending_commit()
    check_commit(output.staged, members=admin.members, metadata=world.metadata(), extensions=before)
