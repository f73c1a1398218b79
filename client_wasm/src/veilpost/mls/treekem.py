"""TreeKEM (RFC 9420 §7.4–§7.6): update paths, made by a committer and applied by the others.

::

    committer at leaf L                                   member at leaf R
    ───────────────────                                   ────────────────
    fresh leaf key pair                                   check the path's shape against the
    path_secret[0] = random                                 filtered direct path of L
    path_secret[n] = DeriveSecret(path_secret[n-1],       merge the public keys, recompute the
                                  "path")                   parent hashes, compare with the
    node key pair[n] = DeriveKeyPair(                       leaf's parent_hash (§7.9.2)
        DeriveSecret(path_secret[n], "node"))             provisional GroupContext (new tree hash)
    merge keys, parent hashes, sign the leaf   ──path──►  decrypt path_secret[i] at the common
    provisional GroupContext (new tree hash)                ancestor of L and R, derive the rest,
    EncryptWithLabel(pk, "UpdatePathNode",                  check every derived public key
        GroupContext, path_secret[n]) for every
        node of the copath child's resolution
    commit_secret = DeriveSecret(path_secret[last], "path")   (both sides)

Both sides change the tree they are given in place: pass the staged copy of the new epoch's
tree (:meth:`RatchetTree.copy` of the current one, with the commit's proposals applied). On an
error that tree is half-merged and must be dropped. Private keys live apart from the public
tree, in :class:`TreePrivateKeys`; the functions here return new key sets and never change the
one they are given, so a commit that fails later leaves the member's keys as they were.

The caller passes the provisional GroupContext with everything but the tree hash, which is
filled in from the merged tree (§12.4.1, §12.4.2); the completed context is returned.
Validating the committer's new LeafNode (§7.3, source ``commit``, signature) is the caller's
job, as for any leaf node (:mod:`veilpost.mls.validation`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace

from veilpost.codec import Reader, Writer, encode
from veilpost.crypto import CipherSuite, HpkeError
from veilpost.mls import tree_math
from veilpost.mls.errors import ProtocolError, UsageError, ValidationError
from veilpost.mls.group_context import GroupContext
from veilpost.mls.leaf_node import LeafNode, LeafNodeSource
from veilpost.mls.ratchet_tree import FilteredPathNode, RatchetTree
from veilpost.mls.update_path import HPKECiphertext, UpdatePath, UpdatePathNode

__all__ = [
    "UPDATE_PATH_NODE_LABEL",
    "AppliedUpdatePath",
    "CreatedUpdatePath",
    "HpkeKeyPair",
    "TreePrivateKeys",
    "apply_update_path",
    "create_update_path",
    "derive_node_key_pair",
    "merge_update_path",
    "next_path_secret",
]

UPDATE_PATH_NODE_LABEL = "UpdatePathNode"
"""The ``EncryptWithLabel`` label of path secrets (§7.6)."""


@dataclass(frozen=True)
class HpkeKeyPair:
    """An HPKE key pair; ``repr()`` shows only the public key."""

    private_key: bytes = field(repr=False)
    public_key: bytes


def next_path_secret(suite: CipherSuite, path_secret: bytes) -> bytes:
    """``path_secret[n+1] = DeriveSecret(path_secret[n], "path")`` (§7.4)."""
    return suite.derive_secret(path_secret, "path")


def derive_node_key_pair(suite: CipherSuite, path_secret: bytes) -> HpkeKeyPair:
    """The node key pair of a path secret: ``DeriveKeyPair(DeriveSecret(., "node"))`` (§7.4)."""
    private_key, public_key = suite.derive_hpke_key_pair(suite.derive_secret(path_secret, "node"))
    return HpkeKeyPair(private_key, public_key)


class TreePrivateKeys:
    """The HPKE private keys one member holds: its leaf's and those of the parent nodes it
    knows (ancestors of its leaf, §4.2), by node index, each kept with its public key.

    A key is only useful while the tree's node still has that public key; :meth:`prune`
    forgets the others (nodes blanked or re-keyed by a commit).
    """

    __slots__ = ("_keys", "leaf_index")

    def __init__(self, leaf_index: int, keys: dict[int, HpkeKeyPair] | None = None) -> None:
        if leaf_index < 0:
            raise UsageError(f"leaf index must not be negative, got {leaf_index}")
        self.leaf_index = leaf_index
        self._keys: dict[int, HpkeKeyPair] = dict(keys or {})

    @classmethod
    def for_leaf(cls, leaf_index: int, leaf_key_pair: HpkeKeyPair) -> TreePrivateKeys:
        """The keys of a member that knows only its own leaf's key (a new joiner)."""
        return cls(leaf_index, {2 * leaf_index: leaf_key_pair})

    def copy(self) -> TreePrivateKeys:
        """An independent copy."""
        return TreePrivateKeys(self.leaf_index, self._keys)

    def key_pair(self, node: int) -> HpkeKeyPair | None:
        """The key pair held for ``node``, or ``None``."""
        return self._keys.get(node)

    def nodes(self) -> list[int]:
        """The node indices with a private key, in increasing order."""
        return sorted(self._keys)

    def __contains__(self, node: object) -> bool:
        return node in self._keys

    def __iter__(self) -> Iterator[tuple[int, HpkeKeyPair]]:
        return iter(sorted(self._keys.items()))

    def set(self, node: int, key_pair: HpkeKeyPair) -> None:
        """Hold ``key_pair`` for ``node`` (replacing any earlier one)."""
        if node < 0:
            raise UsageError(f"node index must not be negative, got {node}")
        self._keys[node] = key_pair

    def discard(self, node: int) -> None:
        """Forget the key of ``node``, if any."""
        self._keys.pop(node, None)

    def prune(self, tree: RatchetTree) -> None:
        """Forget every key whose node is outside ``tree``, blank, or has another public key
        (§7.5: outdated key pairs must be deleted)."""
        for node, pair in list(self._keys.items()):
            content = tree.node(node) if node < tree.width else None
            if content is None or content.encryption_key != pair.public_key:
                del self._keys[node]

    def verify(self, suite: CipherSuite, tree: RatchetTree) -> None:
        """Check that every private key matches its public key and that the tree's node is
        non-blank with that public key. Raises :class:`ValidationError`
        (check ``tree_private_keys.public_key``)."""
        backend = suite.provider.backend  # both suites use X25519 for HPKE
        for node, pair in self:
            if backend.x25519_public_key(pair.private_key) != pair.public_key:
                raise ValidationError(
                    f"the private key held for node {node} does not match its public key",
                    check="tree_private_keys.public_key",
                )
            content = tree.node(node) if node < tree.width else None
            if content is None or content.encryption_key != pair.public_key:
                state = "is blank" if content is None else "holds another public key"
                raise ValidationError(
                    f"a private key is held for node {node}, but that node {state}",
                    check="tree_private_keys.public_key",
                )

    def with_path_secret(
        self, suite: CipherSuite, tree: RatchetTree, node: int, path_secret: bytes
    ) -> TreePrivateKeys:
        """A copy that also holds the keys derived from ``path_secret`` at ``node`` and, one
        path-secret step each, at its non-blank ancestors up to the root.

        For a new member whose Welcome carries a ``path_secret`` (§12.4.3.1): ``node`` is the
        lowest common ancestor of its leaf and the committer's. The nodes above that the
        commit left blank were not on the committer's filtered direct path and take no step.
        Each derived public key must be the tree's; raises :class:`ValidationError`
        (check ``path_secret.public_key``).
        """
        keys = self.copy()
        ancestors = tree_math.direct_path(node, tree.n_leaves)
        for step_node in [node, *ancestors]:
            content = tree.node(step_node)
            if content is None:
                if step_node == node:
                    raise ValidationError(
                        f"the path secret is for node {node}, which is blank",
                        check="path_secret.public_key",
                        section="12.4.3.1",
                    )
                continue
            pair = derive_node_key_pair(suite, path_secret)
            if pair.public_key != content.encryption_key:
                raise ValidationError(
                    f"the key derived from the path secret for node {step_node} is not the"
                    " node's public key",
                    check="path_secret.public_key",
                    section="12.4.3.1",
                )
            keys.set(step_node, pair)
            path_secret = next_path_secret(suite, path_secret)
        return keys

    def encode(self, writer: Writer) -> None:
        """Serialize (for group state): the leaf index, then ``(node, private, public)``."""
        writer.uint32(self.leaf_index)
        writer.uint32(len(self._keys))
        for node, pair in self:
            writer.uint32(node)
            writer.opaque(pair.private_key)
            writer.opaque(pair.public_key)

    @classmethod
    def decode(cls, reader: Reader) -> TreePrivateKeys:
        """Read what :meth:`encode` wrote."""
        leaf_index = reader.uint32("TreePrivateKeys.leaf_index")
        keys: dict[int, HpkeKeyPair] = {}
        for _ in range(reader.uint32("TreePrivateKeys.count")):
            node = reader.uint32("TreePrivateKeys.node")
            keys[node] = HpkeKeyPair(
                reader.opaque("TreePrivateKeys.private_key"),
                reader.opaque("TreePrivateKeys.public_key"),
            )
        return cls(leaf_index, keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TreePrivateKeys):
            return NotImplemented
        return self.leaf_index == other.leaf_index and self._keys == other._keys

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"TreePrivateKeys(leaf_index={self.leaf_index}, nodes={self.nodes()})"


@dataclass(frozen=True)
class CreatedUpdatePath:
    """What :func:`create_update_path` made.

    ``update_path`` goes in the Commit; ``commit_secret`` into the key schedule;
    ``group_context`` is the provisional GroupContext (new tree hash) the path secrets were
    encrypted under; ``private_keys`` are the committer's keys for the new epoch;
    ``path_secrets`` maps each node of the filtered direct path to its path secret, for the
    Welcome (:meth:`path_secret_for`).
    """

    update_path: UpdatePath
    commit_secret: bytes = field(repr=False)
    group_context: GroupContext
    private_keys: TreePrivateKeys
    path_secrets: dict[int, bytes] = field(repr=False)
    sender: int
    n_leaves: int

    def path_secret_for(self, new_leaf: int) -> bytes:
        """The path secret a new member at ``new_leaf`` gets in its Welcome: the one of the
        lowest common ancestor of its leaf and the committer's (§12.4.3.1)."""
        node = tree_math.common_ancestor(2 * self.sender, 2 * new_leaf, self.n_leaves)
        try:
            return self.path_secrets[node]
        except KeyError:
            raise UsageError(
                f"node {node} (common ancestor of leaves {self.sender} and {new_leaf}) is not"
                " on the committer's filtered direct path"
            ) from None


@dataclass(frozen=True)
class AppliedUpdatePath:
    """What :func:`apply_update_path` derived.

    ``path_secret`` is the secret decrypted at ``path_secret_node`` (the lowest common
    ancestor of the committer's leaf and ours); ``private_keys`` are our keys for the new
    epoch; ``group_context`` the provisional GroupContext with the merged tree's hash.
    """

    commit_secret: bytes = field(repr=False)
    group_context: GroupContext
    private_keys: TreePrivateKeys
    path_secret: bytes = field(repr=False)
    path_secret_node: int


def create_update_path(
    suite: CipherSuite,
    tree: RatchetTree,
    private_keys: TreePrivateKeys,
    leaf_node: LeafNode,
    signature_private_key: bytes,
    group_context: GroupContext,
    *,
    new_leaves: Collection[int] = (),
) -> CreatedUpdatePath:
    """Re-key the committer's direct path in ``tree`` and make the UpdatePath (§7.4–§7.6).

    ``private_keys.leaf_index`` is the committer's leaf; ``leaf_node`` is the template of its
    new leaf (credential, capabilities, extensions, signature key — usually its current leaf):
    the encryption key, source (``commit``), parent hash and signature are set here, signing
    with ``signature_private_key``. ``new_leaves`` are the leaves added by this commit: they
    get their path secret from the Welcome, not from the path. ``tree`` is changed in place.
    """
    sender = private_keys.leaf_index
    path = tree.filtered_path(sender, exclude_leaves=new_leaves)
    leaf_private, leaf_public = suite.hpke_key_pair()
    path_secret = suite.random_bytes(suite.kdf_size)
    secrets: list[bytes] = []
    node_pairs: list[HpkeKeyPair] = []
    for _ in path:
        secrets.append(path_secret)
        node_pairs.append(derive_node_key_pair(suite, path_secret))
        path_secret = next_path_secret(suite, path_secret)
    # path_secret[n+1] (§12.4.1). With an empty filtered path there is nobody to send it to
    # and the RFC defines no value: the fresh random secret itself is used.
    commit_secret = path_secret

    leaf_parent_hash = tree.merge_path_keys(sender, [pair.public_key for pair in node_pairs])
    unsigned = replace(
        leaf_node,
        encryption_key=leaf_public,
        leaf_node_source=LeafNodeSource.COMMIT,
        lifetime=None,
        parent_hash=leaf_parent_hash,
        signature=b"",
    )
    new_leaf = unsigned.sign(suite, signature_private_key, group_context.group_id, sender)
    tree.set_leaf(sender, new_leaf)

    context = replace(group_context, tree_hash=tree.tree_hash())
    context_bytes = encode(context)
    nodes = [
        UpdatePathNode(
            pair.public_key, _encrypt_path_secret(suite, tree, step, secret, context_bytes)
        )
        for step, pair, secret in zip(path, node_pairs, secrets, strict=True)
    ]

    keys = private_keys.copy()
    keys.set(2 * sender, HpkeKeyPair(leaf_private, leaf_public))
    for step, pair in zip(path, node_pairs, strict=True):
        keys.set(step.node, pair)
    keys.prune(tree)
    return CreatedUpdatePath(
        update_path=UpdatePath(new_leaf, nodes),
        commit_secret=commit_secret,
        group_context=context,
        private_keys=keys,
        path_secrets={step.node: secret for step, secret in zip(path, secrets, strict=True)},
        sender=sender,
        n_leaves=tree.n_leaves,
    )


def _encrypt_path_secret(
    suite: CipherSuite,
    tree: RatchetTree,
    step: FilteredPathNode,
    path_secret: bytes,
    context: bytes,
) -> list[HPKECiphertext]:
    """``EncryptWithLabel(pk, "UpdatePathNode", GroupContext, path_secret)`` to each node of
    the copath child's resolution, in order."""
    ciphertexts = []
    for recipient in step.resolution:
        kem_output, ciphertext = suite.encrypt_with_label(
            tree.encryption_key(recipient), UPDATE_PATH_NODE_LABEL, context, path_secret
        )
        ciphertexts.append(HPKECiphertext(kem_output, ciphertext))
    return ciphertexts


def apply_update_path(
    suite: CipherSuite,
    tree: RatchetTree,
    private_keys: TreePrivateKeys,
    sender: int,
    update_path: UpdatePath,
    group_context: GroupContext,
    *,
    new_leaves: Collection[int] = (),
) -> AppliedUpdatePath:
    """Merge a received UpdatePath from leaf ``sender`` into ``tree`` and decrypt it (§7.5).

    Checks, each a :class:`ValidationError` unless noted: one path node per node of the
    sender's filtered direct path (``update_path.node_count``); one ciphertext per recipient
    (``update_path.ciphertext_count``); a new leaf encryption key
    (``update_path.leaf_encryption_key``) and no path key already in the tree or twice in the
    path (``update_path.duplicate_public_key``, §12.4.2); the leaf's parent hash
    (``update_path.parent_hash``, §7.9.2); a decryptable path secret (:class:`ProtocolError`
    ``update_path.decryption``); derived public keys equal to the path's
    (``update_path.public_key``). ``private_keys`` are ours (we are not the sender);
    ``new_leaves`` the leaves this commit added. ``tree`` is changed in place.
    """
    receiver = private_keys.leaf_index
    if receiver == sender:
        raise UsageError("a committer does not apply its own UpdatePath: use what it created")
    if receiver in new_leaves:
        raise UsageError(f"leaf {receiver} was added by this commit: it joins by the Welcome")
    path = merge_update_path(tree, sender, update_path, new_leaves=new_leaves)
    context = replace(group_context, tree_hash=tree.tree_hash())

    keys = private_keys.copy()
    keys.prune(tree)
    if not 0 <= receiver < tree.n_leaves or tree.leaf(receiver) is None:
        raise UsageError(f"leaf {receiver} (ours) is not in the tree")
    ancestor = tree_math.common_ancestor(2 * sender, 2 * receiver, tree.n_leaves)
    position = next((i for i, step in enumerate(path) if step.node == ancestor), None)
    if position is None:  # cannot happen: our leaf is in the copath subtree of the ancestor
        raise UsageError(f"node {ancestor} is not on the filtered direct path of leaf {sender}")
    path_secret = _decrypt_path_secret(
        suite, keys, path[position], update_path.nodes[position], encode(context)
    )

    secret = path_secret
    for step, node in zip(path[position:], update_path.nodes[position:], strict=True):
        pair = derive_node_key_pair(suite, secret)
        if pair.public_key != node.encryption_key:
            raise ValidationError(
                f"the public key derived for node {step.node} is not the one in the UpdatePath",
                check="update_path.public_key",
                section="7.5",
            )
        keys.set(step.node, pair)
        secret = next_path_secret(suite, secret)
    return AppliedUpdatePath(
        commit_secret=secret,
        group_context=context,
        private_keys=keys,
        path_secret=path_secret,
        path_secret_node=ancestor,
    )


def merge_update_path(
    tree: RatchetTree,
    sender: int,
    update_path: UpdatePath,
    *,
    new_leaves: Collection[int] = (),
) -> list[FilteredPathNode]:
    """The public half of :func:`apply_update_path`: check the path's shape and keys, merge
    it into ``tree`` in place, check the leaf's parent hash (§7.5 "merges UpdatePath into the
    tree", §7.9.2). Returns the sender's filtered direct path with the recipients of each
    node. Raises the :class:`ValidationError` of :func:`apply_update_path`.
    """
    if not 0 <= sender < tree.n_leaves:
        raise ValidationError(
            f"UpdatePath sender {sender} is outside the tree of {tree.n_leaves} leaves",
            check="update_path.sender",
            section="12.4.2",
        )
    path = tree.filtered_path(sender, exclude_leaves=new_leaves)
    _check_shape(path, update_path, sender)
    _check_fresh_keys(tree, sender, update_path)
    expected = tree.merge_path_keys(sender, [n.encryption_key for n in update_path.nodes])
    if update_path.leaf_node.parent_hash != expected:
        got = update_path.leaf_node.parent_hash
        raise ValidationError(
            f"the committer's leaf carries parent hash {'none' if got is None else got.hex()},"
            f" but its path gives {expected.hex()}",
            check="update_path.parent_hash",
            section="7.9.2",
        )
    tree.set_leaf(sender, update_path.leaf_node)
    return path


def _check_shape(path: list[FilteredPathNode], update_path: UpdatePath, sender: int) -> None:
    if len(update_path.nodes) != len(path):
        raise ValidationError(
            f"UpdatePath from leaf {sender} has {len(update_path.nodes)} nodes, but the"
            f" filtered direct path has {len(path)} ({[step.node for step in path]})",
            check="update_path.node_count",
            section="7.6",
        )
    for step, node in zip(path, update_path.nodes, strict=True):
        if len(node.encrypted_path_secret) != len(step.resolution):
            raise ValidationError(
                f"UpdatePath node for node {step.node} has {len(node.encrypted_path_secret)}"
                f" encrypted path secrets, but the copath resolution has"
                f" {len(step.resolution)} nodes ({step.resolution})",
                check="update_path.ciphertext_count",
                section="7.6",
            )


def _check_fresh_keys(tree: RatchetTree, sender: int, update_path: UpdatePath) -> None:
    """§12.4.2: the leaf key changes, and every key of the path (the new leaf's and the
    nodes') is new: not already in the tree, and not repeated within the path (§16.8)."""
    old_leaf = tree.leaf(sender)
    new_key = update_path.leaf_node.encryption_key
    if old_leaf is not None and old_leaf.encryption_key == new_key:
        raise ValidationError(
            f"the committer's new leaf keeps its encryption key {new_key.hex()}",
            check="update_path.leaf_encryption_key",
            section="12.4.2",
        )
    in_tree = {content.encryption_key for n in range(tree.width) if (content := tree.node(n))}
    in_path: set[bytes] = set()
    for key in [new_key, *(n.encryption_key for n in update_path.nodes)]:
        if key in in_tree or key in in_path:
            where = "the tree" if key in in_tree else "the UpdatePath itself"
            raise ValidationError(
                f"UpdatePath public key {key.hex()} already appears in {where}",
                check="update_path.duplicate_public_key",
                section="12.4.2",
            )
        in_path.add(key)


def _decrypt_path_secret(
    suite: CipherSuite,
    keys: TreePrivateKeys,
    step: FilteredPathNode,
    node: UpdatePathNode,
    context: bytes,
) -> bytes:
    """Decrypt the path secret of ``step`` with the first recipient we hold a key for."""
    for recipient, ciphertext in zip(step.resolution, node.encrypted_path_secret, strict=True):
        pair = keys.key_pair(recipient)
        if pair is None:
            continue
        try:
            path_secret = suite.decrypt_with_label(
                pair.private_key,
                UPDATE_PATH_NODE_LABEL,
                context,
                ciphertext.kem_output,
                ciphertext.ciphertext,
            )
        except HpkeError as exc:
            raise ProtocolError(
                f"cannot decrypt the path secret for node {step.node} with the key of node"
                f" {recipient}: {exc}",
                check="update_path.decryption",
                section="7.6",
            ) from exc
        if len(path_secret) != suite.kdf_size:
            raise ValidationError(
                f"decrypted path secret for node {step.node} is {len(path_secret)} bytes,"
                f" not {suite.kdf_size}",
                check="update_path.path_secret_length",
                section="7.4",
            )
        return path_secret
    raise ProtocolError(
        f"no private key for any recipient of node {step.node} ({step.resolution});"
        f" we hold keys for nodes {keys.nodes()}",
        check="update_path.decryption",
        section="7.5",
    )
