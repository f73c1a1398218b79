"""First interop check: mls-rs's wire bytes through Veilpost's wire structs and key schedule.

Every kind of message mls-rs sends (key package, Welcome, commits, proposals, application
messages, ratchet trees) must decode with ``veilpost`` and re-encode to the same bytes. Then
the parts that need no group state machine: Veilpost verifies mls-rs's signatures and
membership tags, opens an mls-rs Welcome addressed to a Veilpost key package (GREASE and all),
and derives the same tree hash, GroupContext and MLS-Exporter output as mls-rs. The facts
asserted here are those written down in ``README.md``.
"""

from __future__ import annotations

import time

import pytest
from mlsrs import CIPHER_SUITE, MlsRsMember, require_mlsrs

from veilpost.codec import decode, encode
from veilpost.crypto import CipherSuite, get_cipher_suite
from veilpost.mls.builders import GREASE_VALUES, new_key_package
from veilpost.mls.commit import Commit
from veilpost.mls.credential import Credential, CredentialType
from veilpost.mls.extensions import ExtensionType, find_extension
from veilpost.mls.framing import (
    ContentType,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    SenderType,
    WireFormat,
)
from veilpost.mls.group_context import GroupContext
from veilpost.mls.group_info import GroupInfo
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import LeafNodeSource
from veilpost.mls.message_protection import unprotect_public_message
from veilpost.mls.proposals import Add, Proposal, ProposalOrRefType, Remove
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.validation import DAY, GroupMembers, validate_key_package
from veilpost.mls.welcome import Welcome
from veilpost.mls.welcome_processing import OpenedWelcome, open_welcome

require_mlsrs()

LABEL = b"veilpost interop"
MLS_RS_KEY_PACKAGE_LIFETIME = 365 * DAY


@pytest.fixture(scope="module")
def suite() -> CipherSuite:
    return get_cipher_suite(CIPHER_SUITE)


def _roundtrip(data: bytes) -> MLSMessage:
    """Decode ``data`` as an MLSMessage and check that it re-encodes to the same bytes."""
    message = decode(MLSMessage, data)
    assert encode(message) == data
    return message


def _public(data: bytes) -> PublicMessage:
    message = _roundtrip(data)
    assert message.wire_format == WireFormat.MLS_PUBLIC_MESSAGE
    assert isinstance(message.body, PublicMessage)
    return message.body


def _commit(data: bytes) -> tuple[PublicMessage, Commit]:
    public = _public(data)
    assert public.content.content_type == ContentType.COMMIT
    body = public.content.body
    assert isinstance(body, Commit)
    return public, body


def _by_value(commit: Commit) -> list[Proposal]:
    proposals = []
    for entry in commit.proposals:
        assert entry.type == ProposalOrRefType.PROPOSAL
        assert isinstance(entry.body, Proposal)
        proposals.append(entry.body)
    return proposals


def test_key_package(suite: CipherSuite) -> None:
    member = MlsRsMember(b"mls-rs key package")
    data = member.key_package()
    message = _roundtrip(data)
    assert message.wire_format == WireFormat.MLS_KEY_PACKAGE
    key_package = message.body
    assert isinstance(key_package, KeyPackage)
    key_package.verify_signature(suite)

    assert key_package.cipher_suite == CIPHER_SUITE
    assert key_package.extensions == []
    leaf = key_package.leaf_node
    assert leaf.credential == Credential.basic(b"mls-rs key package")
    assert leaf.signature_key == member.signature_public_key
    assert leaf.leaf_node_source == LeafNodeSource.KEY_PACKAGE
    assert leaf.extensions == []
    capabilities = leaf.capabilities
    assert capabilities.versions == [1]
    assert CIPHER_SUITE in capabilities.cipher_suites
    assert capabilities.extensions == []
    assert capabilities.proposals == []
    assert capabilities.credentials == [CredentialType.BASIC]
    everything = [*capabilities.cipher_suites, *capabilities.credentials]
    assert not set(everything) & set(GREASE_VALUES), "mls-rs sends no GREASE"

    # A year from the moment it was made: no backdating.
    lifetime = leaf.lifetime
    assert lifetime is not None
    assert lifetime.not_after - lifetime.not_before == MLS_RS_KEY_PACKAGE_LIFETIME
    assert abs(lifetime.not_before - time.time()) < 60

    # It passes every check of §10.1 under Veilpost's default policy (which allows a year).
    validate_key_package(
        key_package,
        suite,
        group_context=None,
        members=GroupMembers(),
        now=int(time.time()),
        credential_validator=None,
    )


def test_group_messages(suite: CipherSuite) -> None:
    creator = MlsRsMember(b"creator")
    creator.create_group(b"wire group")
    joiners = [MlsRsMember(f"joiner-{i}".encode()) for i in range(3)]

    # Add commit: a PublicMessage from leaf 0 at epoch 0, Adds by value, no update path.
    result = creator.add_members([j.key_package() for j in joiners])
    public, commit = _commit(result.commit)
    content = public.content
    assert content.group_id == b"wire group"
    assert content.epoch == 0
    assert content.sender.sender_type == SenderType.MEMBER
    assert content.sender.index == 0
    assert content.authenticated_data == b""
    assert public.membership_tag is not None
    assert public.auth.confirmation_tag is not None
    proposals = _by_value(commit)
    assert [type(p.body) for p in proposals] == [Add] * 3
    assert commit.path is None

    # One Welcome for all new members.
    assert result.welcome is not None
    welcome_message = _roundtrip(result.welcome)
    assert welcome_message.wire_format == WireFormat.MLS_WELCOME
    welcome = welcome_message.body
    assert isinstance(welcome, Welcome)
    assert welcome.cipher_suite == CIPHER_SUITE
    assert len(welcome.secrets) == 3
    for joiner in joiners:
        joiner.join(result.welcome)
    members = [creator, *joiners]

    # Application message: a PrivateMessage with group id and epoch in the clear.
    plaintext = bytes(range(256)) * 4
    data = joiners[0].encrypt(plaintext)
    message = _roundtrip(data)
    assert message.wire_format == WireFormat.MLS_PRIVATE_MESSAGE
    private = message.body
    assert isinstance(private, PrivateMessage)
    assert private.group_id == b"wire group"
    assert private.epoch == 1
    assert private.content_type == ContentType.APPLICATION
    assert private.authenticated_data == b""
    assert len(private.ciphertext) > len(plaintext)  # padded, plus signature and tag
    assert creator.process(data).data == plaintext

    # Self-update commit: no proposals, a path whose leaf node has source commit.
    update = joiners[1].self_update()
    public, commit = _commit(update.commit)
    assert public.content.sender.index == 2
    assert commit.proposals == []
    assert commit.path is not None
    assert commit.path.leaf_node.leaf_node_source == LeafNodeSource.COMMIT
    assert commit.path.leaf_node.credential == Credential.basic(b"joiner-1")
    assert commit.path.leaf_node.extensions == []
    key_package_leaf = decode(MLSMessage, joiners[1].key_package()).body
    assert isinstance(key_package_leaf, KeyPackage)
    assert commit.path.leaf_node.capabilities == key_package_leaf.leaf_node.capabilities
    for member in members:
        if member is not joiners[1]:
            member.process(update.commit)

    # Remove commit: Remove by value, with a path.
    removal = creator.remove_members([b"joiner-2"])
    _, commit = _commit(removal.commit)
    assert [p.body for p in _by_value(commit)] == [Remove(removed=3)]
    assert commit.path is not None

    # Proposals by reference: PublicMessages of content type proposal.
    for data in [
        *creator.propose_add([MlsRsMember(b"new").key_package()]),
        *creator.propose_remove([b"joiner-0"]),
    ]:
        public = _public(data)
        assert public.content.content_type == ContentType.PROPOSAL
        assert public.auth.confirmation_tag is None


@pytest.mark.parametrize("tree_in_welcome", [True, False], ids=["in-welcome", "alongside"])
def test_ratchet_tree(suite: CipherSuite, tree_in_welcome: bool) -> None:
    creator = MlsRsMember(b"creator", ratchet_tree_in_welcome=tree_in_welcome)
    creator.create_group()
    result = creator.add_members([MlsRsMember(f"m{i}".encode()).key_package() for i in range(6)])
    exported = creator.export_ratchet_tree()
    tree = RatchetTree.decode(suite, exported)
    assert tree.encode() == exported
    assert tree.n_leaves == 8  # 7 members, padded to a power of two
    context = decode(GroupContext, creator.group_context().encoded)
    assert tree.tree_hash() == context.tree_hash
    # The tree comes with the commit only when it is not in the Welcome.
    if tree_in_welcome:
        assert result.ratchet_tree is None
    else:
        assert result.ratchet_tree == exported


def _open(
    suite: CipherSuite,
    welcome: bytes,
    key_package: KeyPackage,
    init_private_key: bytes,
    tree_data: bytes | None,
) -> tuple[OpenedWelcome, RatchetTree]:
    """Open ``welcome`` as Veilpost's joiner would, taking the tree from the GroupInfo's
    ``ratchet_tree`` extension or else from ``tree_data``."""
    trees: list[RatchetTree] = []

    def signer_key(group_info: GroupInfo) -> bytes | None:
        extension = find_extension(group_info.extensions, ExtensionType.RATCHET_TREE)
        data = tree_data if extension is None else extension.extension_data
        assert data is not None
        trees.append(RatchetTree.decode(suite, data))
        leaf = trees[0].leaf(group_info.signer)
        return None if leaf is None else leaf.signature_key

    body = _roundtrip(welcome).body
    assert isinstance(body, Welcome)
    opened = open_welcome(
        suite, body, key_package, init_private_key, signer_signature_key=signer_key
    )
    return opened, trees[0]


@pytest.mark.parametrize("tree_in_welcome", [True, False], ids=["in-welcome", "alongside"])
def test_mls_rs_welcome_opens_for_a_veilpost_key_package(
    suite: CipherSuite, tree_in_welcome: bool
) -> None:
    creator = MlsRsMember(b"mls-rs creator", ratchet_tree_in_welcome=tree_in_welcome)
    creator.create_group(b"mixed group")
    other = MlsRsMember(b"mls-rs member")

    # A Veilpost key package, with Veilpost's GREASE values: mls-rs accepts it.
    signature_private_key, signature_public_key = suite.signature_key_pair()
    key_package, init_private_key, _ = new_key_package(
        suite, Credential.basic(b"veilpost member"), signature_private_key, now=int(time.time())
    )
    assert set(key_package.leaf_node.capabilities.extensions) & set(GREASE_VALUES)
    result = creator.add_members([encode(MLSMessage(key_package)), other.key_package()])
    assert result.welcome is not None

    opened, tree = _open(suite, result.welcome, key_package, init_private_key, result.ratchet_tree)
    group_info = opened.group_info
    extension_types = [e.extension_type for e in group_info.extensions]
    assert extension_types == ([ExtensionType.RATCHET_TREE] if tree_in_welcome else [])
    assert group_info.signer == 0
    assert group_info.group_context.extensions == []
    assert opened.group_secrets.path_secret is None  # an Add-only commit has no path
    assert opened.group_secrets.psks == []

    # Veilpost and mls-rs agree on the tree, the GroupContext and the exporter.
    assert tree.encode() == creator.export_ratchet_tree()
    assert tree.tree_hash() == group_info.group_context.tree_hash
    assert encode(group_info.group_context) == creator.group_context().encoded
    assert tree.leaf(1) == key_package.leaf_node
    assert opened.epoch_secrets.export(LABEL, b"context", 32) == creator.export_secret(
        LABEL, b"context", 32
    )

    # The next mls-rs commit passes Veilpost's PublicMessage checks (membership tag and
    # signature) under the secrets from the Welcome.
    other.join(result.welcome, result.ratchet_tree)
    update = other.self_update()
    public, _ = _commit(update.commit)

    def signature_key(leaf_index: int) -> bytes | None:
        leaf = tree.leaf(leaf_index)
        return None if leaf is None else leaf.signature_key

    authenticated = unprotect_public_message(
        suite,
        public,
        group_context=group_info.group_context,
        membership_key=opened.epoch_secrets.membership_key,
        member_signature_key=signature_key,
    )
    assert authenticated.content.sender.index == 2
    assert key_package.leaf_node.signature_key == signature_public_key
