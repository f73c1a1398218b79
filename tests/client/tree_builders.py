"""Ratchet trees and TreeKEM groups for the tests, built with the library's own operations.

Standard library and ``veilpost`` only: these helpers also run inside Pyodide. A
:class:`TreeGroup` keeps one public tree and every member's private keys, and plays each
commit through all members: the committer creates the path, every other member applies it,
and all must agree on the commit secret and the tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from veilpost.crypto import CipherSuite, CryptoBackend, CryptoProvider
from veilpost.mls.credential import Credential
from veilpost.mls.group_context import GroupContext
from veilpost.mls.leaf_node import Capabilities, LeafNode, LeafNodeSource, Lifetime
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.tree_math import common_ancestor
from veilpost.mls.treekem import (
    CreatedUpdatePath,
    HpkeKeyPair,
    TreePrivateKeys,
    apply_update_path,
    create_update_path,
)

GROUP_ID = b"tree tests"


def seeded_random(seed: bytes) -> Callable[[int], bytes]:
    """A deterministic random source (SHAKE-256 of the seed and a counter)."""
    counter = 0

    def random(size: int) -> bytes:
        nonlocal counter
        counter += 1
        return hashlib.shake_256(seed + counter.to_bytes(8, "big")).digest(size)

    return random


def suite_on(backend: CryptoBackend | str, seed: bytes = b"seed", suite_id: int = 1) -> CipherSuite:
    """Cipher suite ``suite_id`` on ``backend`` with deterministic randomness."""
    return CipherSuite(suite_id, CryptoProvider(backend, random=seeded_random(seed)))


@dataclass
class Identity:
    """A client's signature key pair and the HPKE key pair of its leaf."""

    name: bytes
    signature_private_key: bytes
    signature_key: bytes
    leaf_key_pair: HpkeKeyPair


def new_identity(suite: CipherSuite, name: bytes) -> Identity:
    signature_private_key, signature_key = suite.signature_key_pair()
    private_key, public_key = suite.hpke_key_pair()
    return Identity(
        name, signature_private_key, signature_key, HpkeKeyPair(private_key, public_key)
    )


def key_package_leaf(suite: CipherSuite, identity: Identity, *, sign: bool = True) -> LeafNode:
    """The LeafNode of a key package for ``identity`` (source ``key_package``)."""
    leaf = LeafNode(
        encryption_key=identity.leaf_key_pair.public_key,
        signature_key=identity.signature_key,
        credential=Credential.basic(identity.name),
        capabilities=Capabilities(cipher_suites=[int(suite.id)], credentials=[1]),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(0, 2**64 - 1),
    )
    return leaf.sign(suite, identity.signature_private_key) if sign else leaf


def update_leaf(
    suite: CipherSuite,
    identity: Identity,
    template: LeafNode,
    leaf_index: int,
    *,
    sign: bool = True,
) -> LeafNode:
    """A LeafNode for an Update proposal from ``leaf_index``, with ``identity``'s (new) key."""
    leaf = replace(
        template,
        encryption_key=identity.leaf_key_pair.public_key,
        leaf_node_source=LeafNodeSource.UPDATE,
        lifetime=None,
        parent_hash=None,
        signature=b"",
    )
    return leaf.sign(suite, identity.signature_private_key, GROUP_ID, leaf_index) if sign else leaf


class TreeGroup:
    """A public tree plus every member's identity and private keys."""

    def __init__(self, suite: CipherSuite, creator: bytes = b"member 0", *, sign: bool = True):
        self.suite = suite
        self.sign = sign
        self.epoch = 0
        self.identities: dict[int, Identity] = {}
        self.keys: dict[int, TreePrivateKeys] = {}
        identity = new_identity(suite, creator)
        self.tree = RatchetTree.create(suite, key_package_leaf(suite, identity, sign=sign))
        self.identities[0] = identity
        self.keys[0] = TreePrivateKeys.for_leaf(0, identity.leaf_key_pair)

    def context(self) -> GroupContext:
        return GroupContext(int(self.suite.id), GROUP_ID, self.epoch, self.tree.tree_hash(), b"")

    def add(self, name: bytes) -> int:
        """Add a member (the proposal only); return its leaf index."""
        identity = new_identity(self.suite, name)
        index = self.tree.add_leaf(key_package_leaf(self.suite, identity, sign=self.sign))
        self.identities[index] = identity
        self.keys[index] = TreePrivateKeys.for_leaf(index, identity.leaf_key_pair)
        return index

    def remove(self, leaf_index: int) -> None:
        self.tree.remove_leaf(leaf_index)
        del self.identities[leaf_index]
        del self.keys[leaf_index]
        for keys in self.keys.values():
            keys.prune(self.tree)

    def update(self, leaf_index: int) -> None:
        """An Update proposal from ``leaf_index`` with a fresh leaf key."""
        old = self.identities[leaf_index]
        private_key, public_key = self.suite.hpke_key_pair()
        identity = replace(old, leaf_key_pair=HpkeKeyPair(private_key, public_key))
        template = self.tree.leaf(leaf_index)
        assert template is not None
        self.tree.update_leaf(
            leaf_index, update_leaf(self.suite, identity, template, leaf_index, sign=self.sign)
        )
        self.identities[leaf_index] = identity
        self.keys[leaf_index] = TreePrivateKeys.for_leaf(leaf_index, identity.leaf_key_pair)
        for keys in self.keys.values():
            keys.prune(self.tree)

    def commit(self, sender: int, new_leaves: Iterable[int] = ()) -> CreatedUpdatePath:
        """A commit with a path from ``sender``: everyone else applies it; new members take
        their path secret from the "Welcome". Checks that all agree, then moves on an epoch."""
        joiners = list(new_leaves)
        context = replace(self.context(), epoch=self.epoch + 1)
        staged = self.tree.copy()
        template = staged.leaf(sender)
        assert template is not None
        created = create_update_path(
            self.suite,
            staged,
            self.keys[sender],
            template,
            self.identities[sender].signature_private_key,
            context,
            new_leaves=joiners,
        )
        new_keys = {sender: created.private_keys}
        for receiver, keys in self.keys.items():
            if receiver == sender:
                continue
            if receiver in joiners:
                ancestor = common_ancestor(2 * sender, 2 * receiver, staged.n_leaves)
                new_keys[receiver] = keys.with_path_secret(
                    self.suite, staged, ancestor, created.path_secret_for(receiver)
                )
                continue
            theirs = self.tree.copy()
            applied = apply_update_path(
                self.suite, theirs, keys, sender, created.update_path, context, new_leaves=joiners
            )
            assert applied.commit_secret == created.commit_secret
            assert applied.group_context == created.group_context
            assert theirs == staged
            new_keys[receiver] = applied.private_keys
        self.tree = staged
        self.keys = new_keys
        self.epoch += 1
        leaf_key_pair = created.private_keys.key_pair(2 * sender)
        assert leaf_key_pair is not None
        self.identities[sender] = replace(self.identities[sender], leaf_key_pair=leaf_key_pair)
        return created

    def check_private_keys(self) -> None:
        """Every member's private keys match the tree's public keys."""
        for keys in self.keys.values():
            keys.verify(self.suite, self.tree)


def build_group(suite: CipherSuite, n_members: int, *, sign: bool = True) -> TreeGroup:
    """A group of ``n_members`` whose tree has a bit of everything: member 0 adds the first
    half in one commit, every fourth of those commits in turn, then the second half is added
    by a commit without a path, so those leaves are unmerged wherever their path is set."""
    group = TreeGroup(suite, sign=sign)
    first = max(2, n_members // 2)
    joiners = [group.add(b"member %d" % i) for i in range(1, first)]
    group.commit(0, new_leaves=joiners)
    for sender in range(4, first, 4):
        group.commit(sender)
    for i in range(first, n_members):
        group.add(b"member %d" % i)
    return group
