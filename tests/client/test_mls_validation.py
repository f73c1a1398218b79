"""Leaf node validation (RFC 9420 §7.3) and key package validation (§10.1).

Valid objects from the builders pass; then each test breaks exactly one rule — change one
field of a valid object, re-sign it unless the rule is the signature — and asserts the
``check`` of the :class:`ValidationError`. GREASE values (§13.5) must pass wherever they are
allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veilpost.codec import Writer, decode
from veilpost.crypto import (
    SUPPORTED_CIPHER_SUITES,
    CipherSuite,
    CryptoBackend,
    CryptoProvider,
    get_cipher_suite,
)
from veilpost.mls.builders import (
    GREASE_VALUES,
    KEY_PACKAGE_LIFETIME,
    default_capabilities,
    default_lifetime,
    new_key_package,
    new_leaf_node,
)
from veilpost.mls.credential import Credential, CredentialType
from veilpost.mls.errors import UsageError, ValidationError
from veilpost.mls.extensions import Extension, ExtensionType, RequiredCapabilities
from veilpost.mls.group_context import GroupContext
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import Capabilities, LeafNode, LeafNodeSource, Lifetime
from veilpost.mls.proposals import ProposalType
from veilpost.mls.validation import (
    DAY,
    DEFAULT_CLOCK_SKEW,
    DEFAULT_MAX_LIFETIME,
    CredentialRejected,
    GroupMembers,
    LifetimePolicy,
    validate_key_package,
    validate_leaf_node,
)

NOW = 1_750_000_000
SUITE = get_cipher_suite(0x0001)
OTHER_SUITE = get_cipher_suite(0x0003)
GROUP_ID = b"veilpost test group"
UNKNOWN_EXTENSION = 0xF0F0  # private use: an extension type no default list contains
UNKNOWN_PROPOSAL = 0xF0F1

# -- building blocks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """A client's signature key and credential."""

    name: str
    signature_private_key: bytes
    credential: Credential

    @classmethod
    def new(
        cls, name: str, suite: CipherSuite = SUITE, credential: Credential | None = None
    ) -> Client:
        private_key, _ = suite.signature_key_pair()
        return cls(name, private_key, credential or Credential.basic(name.encode()))

    def key_package(self, suite: CipherSuite = SUITE, **kwargs: Any) -> KeyPackage:
        return new_key_package(
            suite, self.credential, self.signature_private_key, now=NOW, **kwargs
        )[0]

    def leaf(self, source: LeafNodeSource = LeafNodeSource.KEY_PACKAGE, **kwargs: Any) -> LeafNode:
        """A valid leaf node from this client; ``update``/``commit`` leaves need ``leaf_index``."""
        if source == LeafNodeSource.KEY_PACKAGE:
            kwargs.setdefault("lifetime", default_lifetime(NOW))
        else:
            kwargs.setdefault("group_id", GROUP_ID)
        if source == LeafNodeSource.COMMIT:
            kwargs.setdefault("parent_hash", b"")
        return new_leaf_node(
            SUITE, self.credential, self.signature_private_key, source=source, **kwargs
        )[0]

    def resign(self, leaf: LeafNode, leaf_index: int | None = None, **changes: Any) -> LeafNode:
        """``leaf`` with ``changes`` applied, signed again by this client."""
        group_id = None if leaf.leaf_node_source == LeafNodeSource.KEY_PACKAGE else GROUP_ID
        return replace(leaf, **changes).sign(
            SUITE, self.signature_private_key, group_id, leaf_index
        )

    def resign_key_package(self, key_package: KeyPackage, **changes: Any) -> KeyPackage:
        return replace(key_package, **changes).sign(SUITE, self.signature_private_key)

    def with_leaf_changes(self, key_package: KeyPackage, **changes: Any) -> KeyPackage:
        """The key package with its leaf node changed; both signatures redone."""
        leaf = self.resign(key_package.leaf_node, **changes)
        return self.resign_key_package(key_package, leaf_node=leaf)


def capabilities(leaf: LeafNode, **changes: Any) -> Capabilities:
    return replace(leaf.capabilities, **changes)


def group_context(*extensions: Extension, suite: CipherSuite = SUITE) -> GroupContext:
    return GroupContext(
        cipher_suite=suite.id,
        group_id=GROUP_ID,
        epoch=7,
        tree_hash=bytes(32),
        confirmed_transcript_hash=bytes(32),
        extensions=list(extensions),
    )


def required_capabilities(
    extensions: Iterable[int] = (), proposals: Iterable[int] = (), credentials: Iterable[int] = ()
) -> Extension:
    writer = Writer()
    RequiredCapabilities(list(extensions), list(proposals), list(credentials)).encode(writer)
    return Extension(ExtensionType.REQUIRED_CAPABILITIES, writer.getvalue())


@dataclass
class Group:
    """A group of clients at leaves 0, 1, …, as the validators are given it."""

    clients: list[Client]
    context: GroupContext = field(default_factory=group_context)
    members: GroupMembers = field(init=False)

    def __post_init__(self) -> None:
        self.members = GroupMembers({i: c.leaf() for i, c in enumerate(self.clients)})

    @classmethod
    def of(cls, *names: str, context: GroupContext | None = None) -> Group:
        clients = [Client.new(name) for name in names]
        return cls(clients, context or group_context())

    def leaf(self, index: int) -> LeafNode:
        leaf = self.members.get(index)
        assert leaf is not None
        return leaf

    def check_add(self, key_package: KeyPackage, **kwargs: Any) -> None:
        kwargs.setdefault("now", NOW)
        kwargs.setdefault("credential_validator", None)
        validate_key_package(
            key_package, SUITE, group_context=self.context, members=self.members, **kwargs
        )

    def check_leaf(
        self, leaf: LeafNode, source: LeafNodeSource | None, leaf_index: int | None, **kw: Any
    ) -> None:
        kw.setdefault("now", NOW)
        kw.setdefault("credential_validator", None)
        validate_leaf_node(
            leaf,
            SUITE,
            group_context=self.context,
            expected_source=source,
            members=self.members,
            leaf_index=leaf_index,
            **kw,
        )

    def check_update(self, leaf: LeafNode, leaf_index: int = 1, **kwargs: Any) -> None:
        self.check_leaf(leaf, LeafNodeSource.UPDATE, leaf_index, **kwargs)

    def check_commit(self, leaf: LeafNode, leaf_index: int = 1, **kwargs: Any) -> None:
        self.check_leaf(leaf, LeafNodeSource.COMMIT, leaf_index, **kwargs)


def rejected(check: str, call: Callable[[], object], section: str | None = None) -> str:
    """Run ``call``, assert it fails ``check`` (and ``section``); return the message."""
    with pytest.raises(ValidationError) as caught:
        call()
    assert caught.value.check == check, str(caught.value)
    if section is not None:
        assert caught.value.section == section
    return str(caught.value)


@pytest.fixture
def alice() -> Client:
    return Client.new("alice")


@pytest.fixture
def group() -> Group:
    """Bob at leaf 0 and Carol at leaf 1."""
    return Group.of("bob", "carol")


def standalone(key_package: KeyPackage, **kwargs: Any) -> None:
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("credential_validator", None)
    validate_key_package(key_package, SUITE, group_context=None, members=GroupMembers(), **kwargs)


# -- valid objects pass ------------------------------------------------------------------------


@pytest.mark.parametrize("suite_id", SUPPORTED_CIPHER_SUITES, ids=lambda s: f"0x{s:04x}")
def test_new_key_package_is_valid_on_its_own_and_for_a_group(
    backend: CryptoBackend, suite_id: int
) -> None:
    suite = get_cipher_suite(suite_id, CryptoProvider(backend))
    alice = Client.new("alice", suite)
    key_package = alice.key_package(suite)
    for context in (None, group_context(suite=suite)):
        validate_key_package(
            key_package,
            suite,
            group_context=context,
            members=GroupMembers(),
            now=NOW,
            credential_validator=None,
        )


def test_key_package_valid_after_an_encoding_round_trip(alice: Client, group: Group) -> None:
    writer = Writer()
    alice.key_package().encode(writer)
    group.check_add(decode(KeyPackage, writer.getvalue()))


def test_new_key_package_has_default_lifetime_and_fresh_distinct_keys(alice: Client) -> None:
    key_package, init_private, encryption_private = new_key_package(
        SUITE, alice.credential, alice.signature_private_key, now=NOW
    )
    assert key_package.leaf_node.lifetime == Lifetime(NOW, NOW + KEY_PACKAGE_LIFETIME)
    assert KEY_PACKAGE_LIFETIME == 90 * DAY <= DEFAULT_MAX_LIFETIME
    assert key_package.init_key == SUITE.provider.backend.x25519_public_key(init_private)
    assert key_package.leaf_node.encryption_key == SUITE.provider.backend.x25519_public_key(
        encryption_private
    )
    assert key_package.init_key != key_package.leaf_node.encryption_key


def test_key_package_passes_in_a_group_with_every_group_parameter_set(alice: Client) -> None:
    group = Group.of(
        "bob",
        "carol",
        context=group_context(
            required_capabilities(
                extensions=[ExtensionType.APPLICATION_ID],  # default: implicitly supported
                proposals=[ProposalType.ADD],  # default
                credentials=[CredentialType.BASIC],
            ),
            Extension(ExtensionType.EXTERNAL_SENDERS, b"\x00"),  # default: need not be listed
        ),
    )
    group.check_add(
        alice.key_package(leaf_extensions=[Extension(ExtensionType.APPLICATION_ID, b"a")])
    )


def test_update_and_commit_leaves_pass(group: Group) -> None:
    carol = group.clients[1]
    group.check_update(carol.leaf(LeafNodeSource.UPDATE, leaf_index=1))
    group.check_commit(carol.leaf(LeafNodeSource.COMMIT, leaf_index=1))


def test_every_leaf_of_a_tree_passes_against_the_others() -> None:
    group = Group.of("a", "b", "c", "d")
    group.members.remove(3)
    group.members.add(3, group.clients[3].leaf(LeafNodeSource.COMMIT, leaf_index=3))
    for index in range(4):
        group.check_leaf(group.leaf(index), None, index)


def test_an_update_may_keep_its_signature_key_and_credential(group: Group) -> None:
    carol = group.clients[1]
    update = carol.leaf(LeafNodeSource.UPDATE, leaf_index=1)
    assert update.signature_key == group.leaf(1).signature_key
    group.check_update(update)


# -- §7.3 leaf node rules, one test each --------------------------------------------------------


def test_leaf_in_key_package_must_have_key_package_source(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    update_leaf = alice.leaf(LeafNodeSource.UPDATE, leaf_index=2)
    message = rejected(
        "leaf_node.source",
        lambda: group.check_add(alice.resign_key_package(key_package, leaf_node=update_leaf)),
        "7.3",
    )
    assert "update" in message


def test_leaf_in_update_proposal_must_have_update_source(group: Group) -> None:
    carol = group.clients[1]
    rejected(
        "leaf_node.source",
        lambda: group.check_update(carol.leaf(LeafNodeSource.COMMIT, leaf_index=1)),
    )


def test_leaf_in_update_path_must_have_commit_source(group: Group) -> None:
    carol = group.clients[1]
    rejected(
        "leaf_node.source",
        lambda: group.check_commit(carol.leaf(LeafNodeSource.UPDATE, leaf_index=1)),
    )


def test_leaf_encryption_key_must_be_an_x25519_public_key(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    short_key = key_package.leaf_node.encryption_key[:31]
    rejected(
        "leaf_node.encryption_key",
        lambda: group.check_add(alice.with_leaf_changes(key_package, encryption_key=short_key)),
        "7.2",
    )


def test_leaf_signature_must_verify(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    leaf = key_package.leaf_node
    forged = replace(leaf, signature=bytes([leaf.signature[0] ^ 1]) + leaf.signature[1:])
    rejected(
        "leaf_node.signature",
        lambda: group.check_add(alice.resign_key_package(key_package, leaf_node=forged)),
        "7.3",
    )


def test_update_leaf_signature_binds_the_group_id(group: Group) -> None:
    carol = group.clients[1]
    other_group = carol.leaf(LeafNodeSource.UPDATE, leaf_index=1, group_id=b"another group")
    rejected("leaf_node.signature", lambda: group.check_update(other_group))


def test_commit_leaf_signature_binds_the_leaf_index(group: Group) -> None:
    carol = group.clients[1]
    signed_for_leaf_0 = carol.leaf(LeafNodeSource.COMMIT, leaf_index=0)
    rejected("leaf_node.signature", lambda: group.check_commit(signed_for_leaf_0, leaf_index=1))


def test_leaf_credential_must_satisfy_the_authentication_service(
    alice: Client, group: Group
) -> None:
    seen: list[tuple[Credential, bytes, Credential | None]] = []

    def only_known_people(
        credential: Credential, signature_key: bytes, predecessor: Credential | None
    ) -> None:
        seen.append((credential, signature_key, predecessor))
        if credential.identity not in (b"bob", b"carol"):
            raise CredentialRejected("unknown person")

    key_package = alice.key_package()
    message = rejected(
        "leaf_node.credential",
        lambda: group.check_add(key_package, credential_validator=only_known_people),
        "7.3",
    )
    assert "unknown person" in message and "alice" in message
    assert seen == [(alice.credential, key_package.leaf_node.signature_key, None)]

    # An Update hands the AS the credential it replaces, to judge the succession.
    carol = group.clients[1]
    group.check_update(
        carol.leaf(LeafNodeSource.UPDATE, leaf_index=1), credential_validator=only_known_people
    )
    assert seen[-1][2] == carol.credential


def test_leaf_extensions_must_not_repeat_a_type(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    leaf = key_package.leaf_node
    twice = [
        *leaf.extensions,
        Extension(ExtensionType.APPLICATION_ID, b"1"),
        Extension(ExtensionType.APPLICATION_ID, b"2"),
    ]
    rejected(
        "leaf_node.duplicate_extension",
        lambda: group.check_add(alice.with_leaf_changes(key_package, extensions=twice)),
        "13.4",
    )


def test_leaf_capabilities_must_list_its_own_credential_type(group: Group) -> None:
    # Alice offers x509 only but presents a basic credential; everybody else supports both.
    alice = Client.new("alice")
    key_package = alice.key_package()
    caps = capabilities(key_package.leaf_node, credentials=[CredentialType.X509])
    rejected(
        "leaf_node.capabilities.credential",
        lambda: group.check_add(alice.with_leaf_changes(key_package, capabilities=caps)),
        "7.2",
    )


def test_leaf_non_default_extension_must_be_in_its_capabilities(
    alice: Client, group: Group
) -> None:
    key_package = alice.key_package()
    extensions = [*key_package.leaf_node.extensions, Extension(UNKNOWN_EXTENSION, b"x")]
    message = rejected(
        "leaf_node.capabilities.extensions",
        lambda: group.check_add(alice.with_leaf_changes(key_package, extensions=extensions)),
        "7.3",
    )
    assert "0xf0f0" in message


def test_leaf_default_extension_needs_no_capabilities_entry(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    extensions = [*key_package.leaf_node.extensions, Extension(ExtensionType.APPLICATION_ID, b"")]
    group.check_add(alice.with_leaf_changes(key_package, extensions=extensions))


def test_leaf_capabilities_must_include_the_group_protocol_version(
    alice: Client, group: Group
) -> None:
    key_package = alice.key_package()
    caps = capabilities(key_package.leaf_node, versions=[0x0002])
    rejected(
        "leaf_node.capabilities.version",
        lambda: group.check_add(alice.with_leaf_changes(key_package, capabilities=caps)),
        "11.1",
    )


def test_leaf_capabilities_must_include_the_group_cipher_suite(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    caps = capabilities(key_package.leaf_node, cipher_suites=[OTHER_SUITE.id])
    rejected(
        "leaf_node.capabilities.cipher_suite",
        lambda: group.check_add(alice.with_leaf_changes(key_package, capabilities=caps)),
        "11.1",
    )


@pytest.mark.parametrize(
    ("required", "check"),
    [
        ({"extensions": [UNKNOWN_EXTENSION]}, "leaf_node.capabilities.required_extensions"),
        ({"proposals": [UNKNOWN_PROPOSAL]}, "leaf_node.capabilities.required_proposals"),
        ({"credentials": [CredentialType.X509]}, "leaf_node.capabilities.required_credentials"),
    ],
    ids=["extension", "proposal", "credential"],
)
def test_leaf_must_support_the_group_required_capabilities(
    alice: Client, required: dict[str, list[int]], check: str
) -> None:
    group = Group.of("bob", context=group_context(required_capabilities(**required)))
    key_package = alice.key_package()
    rejected(check, lambda: group.check_add(key_package), "7.3")
    # Listing the required value is all it takes.
    field_name = next(iter(required))
    caps = capabilities(
        key_package.leaf_node,
        **{
            field_name: [
                *getattr(key_package.leaf_node.capabilities, field_name),
                *required[field_name],
            ]
        },
    )
    group.check_add(alice.with_leaf_changes(key_package, capabilities=caps))


def test_leaf_must_support_every_group_context_extension(alice: Client) -> None:
    group = Group.of("bob", context=group_context(Extension(UNKNOWN_EXTENSION, b"")))
    rejected(
        "leaf_node.capabilities.group_context_extensions",
        lambda: group.check_add(alice.key_package()),
        "13.4",
    )


def test_leaf_credential_type_must_be_supported_by_every_member() -> None:
    # Bob and Carol support basic only; Dave's x509 leaf supports both.
    group = Group.of("bob", "carol")
    dave = Client.new("dave", credential=Credential.x509([b"certificate"]))
    caps = replace(default_capabilities(), credentials=[CredentialType.BASIC, CredentialType.X509])
    message = rejected(
        "leaf_node.credential_type_unsupported_by_member",
        lambda: group.check_add(dave.key_package(capabilities=caps)),
        "7.3",
    )
    assert "leaf 0, 1" in message


def test_leaf_must_support_every_credential_type_in_use() -> None:
    # Erin uses x509 and supports basic too; Alice's basic leaf does not support x509.
    both = replace(default_capabilities(), credentials=[CredentialType.BASIC, CredentialType.X509])
    erin = Client.new("erin", credential=Credential.x509([b"certificate"]))
    group = Group.of("bob")
    group.members.add(1, erin.leaf(capabilities=both))
    group.check_add(Client.new("frank").key_package(capabilities=both))
    rejected(
        "leaf_node.capabilities.credentials_in_use",
        lambda: group.check_add(Client.new("alice").key_package()),
        "7.3",
    )


def lifetime_key_package(alice: Client, not_before: int, not_after: int) -> KeyPackage:
    return alice.key_package(lifetime=Lifetime(not_before, not_after))


def test_leaf_lifetime_expired(alice: Client, group: Group) -> None:
    key_package = lifetime_key_package(alice, NOW - 30 * DAY, NOW - DAY)
    message = rejected("leaf_node.lifetime", lambda: group.check_add(key_package), "7.3")
    assert "expired" in message


def test_leaf_lifetime_not_yet_valid(alice: Client, group: Group) -> None:
    key_package = lifetime_key_package(alice, NOW + DAY, NOW + 30 * DAY)
    message = rejected("leaf_node.lifetime", lambda: group.check_add(key_package))
    assert "not valid yet" in message


def test_leaf_lifetime_must_not_be_empty(alice: Client, group: Group) -> None:
    key_package = lifetime_key_package(alice, NOW + 10, NOW - 10)
    rejected("leaf_node.lifetime", lambda: group.check_add(key_package))
    rejected("leaf_node.lifetime", lambda: group.check_add(key_package, now=None))


def test_leaf_lifetime_must_not_exceed_the_maximum(alice: Client, group: Group) -> None:
    key_package = lifetime_key_package(alice, NOW, NOW + DEFAULT_MAX_LIFETIME + 1)
    rejected("leaf_node.lifetime_too_long", lambda: group.check_add(key_package), "7.2")
    group.check_add(key_package, lifetime_policy=LifetimePolicy(max_lifetime=None))


def test_leaf_lifetime_time_range_is_skipped_without_a_clock(alice: Client, group: Group) -> None:
    # §7.3 only recommends the check for received leaves, which may have expired in transit.
    group.check_add(lifetime_key_package(alice, NOW - 30 * DAY, NOW - DAY), now=None)


def _lifetime_case() -> tuple[Group, KeyPackage]:
    alice = Client.new("alice")
    return Group.of("bob"), lifetime_key_package(alice, NOW, NOW + DAY)


LIFETIME_CASE = _lifetime_case()


@settings(max_examples=60, deadline=None)
@given(offset=st.integers(-3 * DEFAULT_CLOCK_SKEW, 3 * DEFAULT_CLOCK_SKEW), at_end=st.booleans())
def test_leaf_lifetime_tolerates_the_clock_skew_and_no_more(offset: int, at_end: bool) -> None:
    group, key_package = LIFETIME_CASE
    now = (NOW + DAY if at_end else NOW) + offset
    outside = offset < -DEFAULT_CLOCK_SKEW if not at_end else offset > DEFAULT_CLOCK_SKEW
    if outside:
        rejected("leaf_node.lifetime", lambda: group.check_add(key_package, now=now))
    else:
        group.check_add(key_package, now=now)


def test_update_must_change_the_encryption_key(group: Group) -> None:
    carol = group.clients[1]
    update = carol.leaf(LeafNodeSource.UPDATE, leaf_index=1)
    same_key = carol.resign(update, 1, encryption_key=group.leaf(1).encryption_key)
    rejected("leaf_node.encryption_key_unchanged", lambda: group.check_update(same_key), "7.3")


def test_commit_must_change_the_encryption_key(group: Group) -> None:
    carol = group.clients[1]
    commit = carol.leaf(LeafNodeSource.COMMIT, leaf_index=1)
    same_key = carol.resign(commit, 1, encryption_key=group.leaf(1).encryption_key)
    rejected("leaf_node.encryption_key_unchanged", lambda: group.check_commit(same_key), "12.4.2")


def test_leaf_signature_key_must_be_unique_in_the_group(group: Group) -> None:
    # Mallory presents Carol's signature key (she would need Carol's private key to sign).
    carol = group.clients[1]
    mallory = Client("mallory", carol.signature_private_key, Credential.basic(b"mallory"))
    message = rejected(
        "leaf_node.duplicate_signature_key",
        lambda: group.check_add(mallory.key_package()),
        "7.3",
    )
    assert "leaf 1" in message


def test_leaf_encryption_key_must_be_unique_in_the_group(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    bobs_key = group.leaf(0).encryption_key
    message = rejected(
        "leaf_node.duplicate_encryption_key",
        lambda: group.check_add(alice.with_leaf_changes(key_package, encryption_key=bobs_key)),
        "7.3",
    )
    assert "leaf 0" in message


def test_two_adds_in_one_commit_cannot_share_a_signature_key(alice: Client, group: Group) -> None:
    first, second = alice.key_package(), alice.key_package()
    group.check_add(first)
    group.check_add(second)  # each alone is fine
    group.members.add(2, first.leaf_node)
    rejected("leaf_node.duplicate_signature_key", lambda: group.check_add(second))


def test_a_removed_member_frees_its_keys(group: Group) -> None:
    carol = group.clients[1]
    returning = carol.key_package()
    rejected("leaf_node.duplicate_signature_key", lambda: group.check_add(returning))
    group.members.remove(1)
    group.check_add(returning)


# -- §10.1 key package rules, one test each ----------------------------------------------------


def test_key_package_version_must_match_the_group(alice: Client, group: Group) -> None:
    key_package = alice.resign_key_package(alice.key_package(), version=0x0002)
    rejected("key_package.version", lambda: group.check_add(key_package), "10.1")
    rejected("key_package.version", lambda: standalone(key_package))


def test_key_package_cipher_suite_must_match_the_group(alice: Client, group: Group) -> None:
    key_package = alice.resign_key_package(alice.key_package(), cipher_suite=OTHER_SUITE.id)
    message = rejected("key_package.cipher_suite", lambda: group.check_add(key_package), "10.1")
    assert "0x0003" in message


def test_key_package_init_key_must_be_an_x25519_public_key(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    long_key = alice.resign_key_package(key_package, init_key=key_package.init_key + b"\x00")
    rejected("key_package.init_key", lambda: group.check_add(long_key), "10")


def test_key_package_signature_must_verify(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    tampered = replace(key_package, init_key=SUITE.hpke_key_pair()[1])  # not re-signed
    rejected("key_package.signature", lambda: group.check_add(tampered), "10.1")


def test_key_package_must_be_signed_by_its_leaf_signature_key(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    eve = Client.new("eve")
    signed_by_eve = key_package.sign(SUITE, eve.signature_private_key)
    rejected("key_package.signature", lambda: group.check_add(signed_by_eve))


def test_key_package_leaf_node_is_validated(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    leaf = key_package.leaf_node
    caps = capabilities(leaf, versions=[])
    broken = alice.with_leaf_changes(key_package, capabilities=caps)
    rejected("leaf_node.capabilities.version", lambda: group.check_add(broken))


def test_key_package_init_key_must_differ_from_the_encryption_key(
    alice: Client, group: Group
) -> None:
    key_package = alice.key_package()
    same = alice.resign_key_package(key_package, init_key=key_package.leaf_node.encryption_key)
    rejected("key_package.init_key_equals_encryption_key", lambda: group.check_add(same), "10.1")


def test_key_package_extensions_must_not_repeat_a_type(alice: Client, group: Group) -> None:
    key_package = alice.key_package()
    twice = [*key_package.extensions, Extension(0xF000, b""), Extension(0xF000, b"")]
    repeated = alice.resign_key_package(key_package, extensions=twice)
    rejected("key_package.duplicate_extension", lambda: group.check_add(repeated), "13.4")


# -- GREASE (§13.5) ----------------------------------------------------------------------------


def test_builders_publish_grease_but_keep_their_own_capabilities_clean(alice: Client) -> None:
    key_package = alice.key_package()
    published = key_package.leaf_node.capabilities
    for values in (
        published.cipher_suites,
        published.extensions,
        published.proposals,
        published.credentials,
    ):
        assert any(v in GREASE_VALUES for v in values)
    assert any(e.extension_type in GREASE_VALUES for e in key_package.extensions)
    assert any(e.extension_type in GREASE_VALUES for e in key_package.leaf_node.extensions)
    own = default_capabilities()
    for values in (own.cipher_suites, own.extensions, own.proposals, own.credentials):
        assert not set(values) & set(GREASE_VALUES)
    plain = alice.key_package(grease=False)
    assert plain.extensions == [] and plain.leaf_node.extensions == []


GREASE_CASE = (Client.new("alice"), Group.of("bob", "carol"))


@settings(max_examples=15, deadline=None)
@given(
    suites=st.sets(st.sampled_from(GREASE_VALUES)),
    extensions=st.sets(st.sampled_from(GREASE_VALUES)),
    proposals=st.sets(st.sampled_from(GREASE_VALUES)),
    credentials=st.sets(st.sampled_from(GREASE_VALUES)),
)
def test_grease_values_in_capabilities_are_ignored(
    suites: set[int], extensions: set[int], proposals: set[int], credentials: set[int]
) -> None:
    alice, group = GREASE_CASE
    caps = Capabilities(
        versions=[1],
        cipher_suites=[*sorted(suites), *SUPPORTED_CIPHER_SUITES],
        extensions=sorted(extensions),
        proposals=sorted(proposals),
        credentials=[*sorted(credentials), CredentialType.BASIC],
    )
    group.check_add(alice.key_package(capabilities=caps, grease=False))


def test_grease_extension_in_a_leaf_must_be_listed_in_its_capabilities(
    alice: Client, group: Group
) -> None:
    key_package = alice.key_package(grease=False)
    listed = capabilities(key_package.leaf_node, extensions=[0x3A3A])
    grease_extension = [Extension(0x3A3A, b"anything")]
    group.check_add(
        alice.with_leaf_changes(key_package, capabilities=listed, extensions=grease_extension)
    )
    rejected(
        "leaf_node.capabilities.extensions",
        lambda: group.check_add(alice.with_leaf_changes(key_package, extensions=grease_extension)),
    )


def test_unknown_key_package_extensions_are_ignored(alice: Client, group: Group) -> None:
    # §13.4: unknown extensions in KeyPackage.extensions MUST be ignored, listed or not.
    key_package = alice.key_package(grease=False)
    unknown = [Extension(0x5A5A, b"\x01\x02"), Extension(UNKNOWN_EXTENSION, b"")]
    group.check_add(alice.resign_key_package(key_package, extensions=unknown))


def test_grease_credential_types_in_members_capabilities_are_ignored(alice: Client) -> None:
    group = Group.of("bob")
    bob_leaf = group.leaf(0)
    assert any(v in GREASE_VALUES for v in bob_leaf.capabilities.credentials)
    group.check_add(alice.key_package())


# -- builders and API misuse -------------------------------------------------------------------


def test_builders_refuse_to_make_a_leaf_that_lists_too_little(alice: Client) -> None:
    with pytest.raises(UsageError, match="0xf0f0"):
        alice.key_package(leaf_extensions=[Extension(UNKNOWN_EXTENSION, b"")])
    with pytest.raises(UsageError, match="0xf0f0"):
        alice.key_package(extensions=[Extension(UNKNOWN_EXTENSION, b"")])
    x509_only = replace(default_capabilities(), credentials=[CredentialType.X509])
    with pytest.raises(UsageError, match="basic"):
        alice.key_package(capabilities=x509_only)
    with pytest.raises(UsageError, match="lifetime"):
        new_leaf_node(SUITE, alice.credential, alice.signature_private_key)


def test_builders_accept_listed_extensions(alice: Client, group: Group) -> None:
    caps = replace(default_capabilities(), extensions=[UNKNOWN_EXTENSION])
    key_package = alice.key_package(
        capabilities=caps,
        extensions=[Extension(UNKNOWN_EXTENSION, b"kp")],
        leaf_extensions=[Extension(UNKNOWN_EXTENSION, b"leaf")],
    )
    group.check_add(key_package)


def test_update_leaf_without_group_context_is_a_usage_error(group: Group) -> None:
    update = group.clients[1].leaf(LeafNodeSource.UPDATE, leaf_index=1)
    with pytest.raises(UsageError, match="group context"):
        validate_leaf_node(
            update,
            SUITE,
            group_context=None,
            expected_source=LeafNodeSource.UPDATE,
            members=group.members,
            now=NOW,
            credential_validator=None,
            leaf_index=1,
        )
    with pytest.raises(UsageError, match="leaf index"):
        group.check_leaf(update, LeafNodeSource.UPDATE, None)


def test_update_of_a_blank_leaf_is_a_usage_error(group: Group) -> None:
    update = group.clients[1].leaf(LeafNodeSource.UPDATE, leaf_index=5)
    with pytest.raises(UsageError, match="blank"):
        group.check_update(update, leaf_index=5)


def test_suite_other_than_the_group_suite_is_a_usage_error(alice: Client) -> None:
    with pytest.raises(UsageError, match="cipher suite"):
        validate_key_package(
            alice.key_package(),
            SUITE,
            group_context=group_context(suite=OTHER_SUITE),
            members=GroupMembers(),
            now=NOW,
            credential_validator=None,
        )


# -- GroupMembers bookkeeping ------------------------------------------------------------------


def fake_leaf(
    signature_key: int, encryption_key: int, credential: int, supports: set[int]
) -> LeafNode:
    """A leaf node with just the fields GroupMembers reads (not signed: never validated)."""
    return LeafNode(
        encryption_key=bytes([encryption_key]) * 32,
        signature_key=bytes([signature_key]) * 32,
        credential=(
            Credential.basic(b"x") if credential == 1 else Credential.x509([b"certificate"])
        ),
        capabilities=Capabilities(credentials=sorted(supports)),
        leaf_node_source=LeafNodeSource.UPDATE,
    )


leaf_maps = st.dictionaries(
    st.integers(0, 7),
    st.builds(
        fake_leaf,
        st.integers(0, 3),
        st.integers(0, 3),
        st.sampled_from([1, 2]),
        st.sets(st.sampled_from([1, 2, 0x0A0A])),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    leaves=leaf_maps, removed=st.sets(st.integers(0, 7)), excluding=st.none() | st.integers(0, 7)
)
def test_group_members_answers_like_a_scan_of_the_leaves(
    leaves: dict[int, LeafNode], removed: set[int], excluding: int | None
) -> None:
    members = GroupMembers(leaves)
    for index in removed & set(leaves):
        members.remove(index)
    current = {i: leaf for i, leaf in leaves.items() if i not in removed}
    others = {i: leaf for i, leaf in current.items() if i != excluding}
    assert len(members) == len(current)
    for key in {bytes([k]) * 32 for k in range(4)}:
        signers = {i for i, leaf in others.items() if leaf.signature_key == key}
        encrypters = {i for i, leaf in others.items() if leaf.encryption_key == key}
        assert members.signature_key_holder(key, excluding) == min(signers, default=None)
        assert members.encryption_key_holder(key, excluding) == min(encrypters, default=None)
    in_use = {leaf.credential.credential_type for leaf in others.values()}
    assert members.credential_types_in_use(excluding) == in_use
    for credential_type in (1, 2, 0x0A0A):
        lacking = sorted(
            i for i, leaf in others.items() if credential_type not in leaf.capabilities.credentials
        )
        assert members.members_not_supporting(credential_type, excluding) == lacking


def test_group_members_refuses_to_overwrite_or_blank_twice(group: Group) -> None:
    with pytest.raises(UsageError):
        group.members.add(0, group.leaf(1))
    group.members.remove(0)
    with pytest.raises(UsageError):
        group.members.remove(0)
