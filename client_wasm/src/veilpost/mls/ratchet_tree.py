"""The ratchet tree (RFC 9420 §4, §7): the group's public tree of HPKE keys and members.

Theory of operation
-------------------

A :class:`RatchetTree` is the array of §4.1 / Appendix C: ``2 * n_leaves - 1`` slots, leaf
``L`` at index ``2L``, parent nodes at the odd indices, ``None`` for a blank node. It always
has a power-of-two number of leaves (at least one). On the wire (the ``ratchet_tree``
extension, §12.4.3.3) blank nodes after the last non-blank one are left out; a received tree
whose last entry is blank is invalid, and decoding pads the array with the fewest blanks that
give a full tree.

Everything the protocol derives from the tree is here:

- :meth:`RatchetTree.resolution` (§4.1.1), :meth:`RatchetTree.filtered_direct_path` and
  :meth:`RatchetTree.filtered_path` (each filtered direct path node with its copath child and
  that child's resolution, the recipients of an UpdatePath, §7.5);
- tree hashes (§7.8) of any node, cached per node and invalidated along the direct path of
  whatever changes, so re-hashing after a commit costs one path, not the whole tree;
- parent hashes (§7.9), :meth:`RatchetTree.merge_path_keys` (how a committer's new keys and
  their parent-hash chain enter the tree, §7.5) and :meth:`RatchetTree.verify_parent_hashes`
  (every non-blank parent must be parent-hash valid, §7.9.2);
- the join-time checks that belong to the tree itself (§12.4.3.1): unmerged-leaf lists,
  distinct parent keys, leaf signatures. The rest of leaf validation (§7.3: capabilities,
  lifetimes, credentials, uniqueness among members) is :mod:`veilpost.mls.validation`'s.

The tree operations of proposals (§12.1, §7.7) — :meth:`RatchetTree.add_leaf`,
:meth:`RatchetTree.update_leaf`, :meth:`RatchetTree.remove_leaf` — change the tree in place.
To stage a commit, :meth:`RatchetTree.copy` the tree and change the copy; a failed commit
drops it. Private keys never live here: see :class:`veilpost.mls.treekem.TreePrivateKeys`.

Untrusted trees (from a Welcome or the delivery service) are made with :meth:`RatchetTree.decode`
or :meth:`RatchetTree.from_nodes`, which check only the shape; run :meth:`RatchetTree.verify`
(and compare :meth:`RatchetTree.tree_hash` with the GroupInfo's) before trusting one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from itertools import pairwise
from typing import NamedTuple

from veilpost.codec import Writer
from veilpost.crypto import CipherSuite
from veilpost.mls import tree_math
from veilpost.mls.errors import UsageError, ValidationError
from veilpost.mls.leaf_node import LeafNode
from veilpost.mls.nodes import Node, ParentNode, decode_ratchet_tree, encode_ratchet_tree

__all__ = ["FilteredPathNode", "RatchetTree", "TreeNode"]

TreeNode = LeafNode | ParentNode
"""The content of a non-blank node: a leaf at even indices, a parent at odd ones."""

_LEAF = 1  # NodeType.leaf in TreeHashInput
_PARENT = 2  # NodeType.parent


class FilteredPathNode(NamedTuple):
    """One node of a leaf's filtered direct path (§4.1.2) and who an UpdatePath encrypts to.

    ``resolution`` is the resolution of ``copath_child`` (node indices, in order) without the
    leaves added in the same commit: the recipients of this node's path secret (§7.6).
    """

    node: int
    copath_child: int
    resolution: list[int]


def _leaf_span(node: int) -> tuple[int, int]:
    """The leaf indices ``[first, stop)`` under ``node``."""
    k = tree_math.level(node)
    first = (node - ((1 << k) - 1)) >> 1
    return first, first + (1 << k)


class RatchetTree:
    """The public ratchet tree of one group, bound to the group's cipher suite.

    Node indices are array indices (leaf ``L`` is node ``2L``); methods that take a member
    take its leaf index. Blank nodes are ``None``.
    """

    __slots__ = ("_hashes", "_nodes", "suite")

    def __init__(self, suite: CipherSuite, nodes: Sequence[TreeNode | None]) -> None:
        """A tree from a full array (``2**d * 2 - 1`` entries, right node types).

        Use :meth:`create`, :meth:`decode` or :meth:`from_nodes` instead; this constructor
        trusts its input's shape.
        """
        tree_math.root((len(nodes) + 1) // 2)  # a full power-of-two array, or TreeMathError
        if len(nodes) % 2 == 0:
            raise UsageError(f"a ratchet tree array has an odd length, got {len(nodes)}")
        self.suite = suite
        self._nodes: list[TreeNode | None] = list(nodes)
        self._hashes: list[bytes | None] = [None] * len(nodes)

    # -- construction and the wire format (§12.4.3.3) ---------------------------------------------

    @classmethod
    def create(cls, suite: CipherSuite, leaf_node: LeafNode) -> RatchetTree:
        """The one-member tree of a new group (§11): ``leaf_node`` at leaf 0."""
        return cls(suite, [leaf_node])

    @classmethod
    def from_nodes(cls, suite: CipherSuite, nodes: Sequence[Node | None]) -> RatchetTree:
        """A tree from the decoded ``ratchet_tree`` list, checking its shape.

        The last entry must be non-blank (§12.4.3.3), leaves must sit at even indices and
        parent nodes at odd ones; the array is padded with the fewest blank nodes that make a
        full tree. Raises :class:`ValidationError`.
        """
        if not nodes:
            raise ValidationError(
                "ratchet tree is empty: it needs at least one non-blank node",
                check="ratchet_tree.empty",
                section="12.4.3.3",
            )
        if nodes[-1] is None:
            raise ValidationError(
                f"ratchet tree of {len(nodes)} nodes ends with a blank node; senders must"
                " omit trailing blank nodes",
                check="ratchet_tree.trailing_blank",
                section="12.4.3.3",
            )
        n_leaves = 1
        while 2 * n_leaves - 1 < len(nodes):
            n_leaves *= 2
        bodies: list[TreeNode | None] = []
        for index, node in enumerate(nodes):
            if node is None:
                bodies.append(None)
                continue
            if isinstance(node.body, LeafNode) != (index % 2 == 0):
                where = "leaf" if index % 2 == 0 else "parent"
                raise ValidationError(
                    f"ratchet tree node {index} is a {where} position but holds a"
                    f" {node.node_type.name.lower()} node",
                    check="ratchet_tree.node_type",
                    section="12.4.3.3",
                )
            bodies.append(node.body)
        bodies.extend([None] * (2 * n_leaves - 1 - len(bodies)))
        return cls(suite, bodies)

    @classmethod
    def decode(cls, suite: CipherSuite, data: bytes) -> RatchetTree:
        """A tree from a ``ratchet_tree`` extension's data (see :meth:`from_nodes`).

        Malformed bytes raise :class:`~veilpost.codec.DecodeError`, a badly shaped tree
        :class:`ValidationError`.
        """
        return cls.from_nodes(suite, decode_ratchet_tree(data))

    def to_nodes(self) -> list[Node | None]:
        """The ``ratchet_tree`` list: nodes in array order, trailing blank nodes left out."""
        end = len(self._nodes)
        while end and self._nodes[end - 1] is None:
            end -= 1
        return [None if n is None else Node(n) for n in self._nodes[:end]]

    def encode(self) -> bytes:
        """The ``ratchet_tree`` extension's data for this tree."""
        return encode_ratchet_tree(self.to_nodes())

    def copy(self) -> RatchetTree:
        """An independent copy (nodes are immutable and shared; cached hashes are kept)."""
        twin = RatchetTree.__new__(RatchetTree)
        twin.suite = self.suite
        twin._nodes = list(self._nodes)
        twin._hashes = list(self._hashes)
        return twin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RatchetTree):
            return NotImplemented
        return self.suite.id == other.suite.id and self._nodes == other._nodes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"RatchetTree(n_leaves={self.n_leaves}, members={sum(1 for _ in self.leaves())})"

    # -- access -----------------------------------------------------------------------------------

    @property
    def n_leaves(self) -> int:
        """The number of leaves, blank ones included (a power of two)."""
        return (len(self._nodes) + 1) // 2

    @property
    def width(self) -> int:
        """The number of nodes, ``2 * n_leaves - 1``."""
        return len(self._nodes)

    @property
    def root(self) -> int:
        """The node index of the root."""
        return self.n_leaves - 1

    def _check_node_index(self, node: int) -> None:
        if not 0 <= node < len(self._nodes):
            raise UsageError(f"node {node} is outside the tree (nodes 0..{len(self._nodes) - 1})")

    def _check_leaf_index(self, leaf_index: int) -> None:
        if not 0 <= leaf_index < self.n_leaves:
            raise UsageError(
                f"leaf {leaf_index} is outside the tree (leaves 0..{self.n_leaves - 1})"
            )

    def node(self, node: int) -> TreeNode | None:
        """The content of node ``node``, ``None`` if blank."""
        self._check_node_index(node)
        return self._nodes[node]

    def leaf(self, leaf_index: int) -> LeafNode | None:
        """The leaf node of member ``leaf_index``, ``None`` if the leaf is blank."""
        self._check_leaf_index(leaf_index)
        leaf = self._nodes[2 * leaf_index]
        assert leaf is None or isinstance(leaf, LeafNode)
        return leaf

    def parent_node(self, node: int) -> ParentNode | None:
        """The parent node at (odd) index ``node``, ``None`` if blank."""
        self._check_node_index(node)
        if node % 2 == 0:
            raise UsageError(f"node {node} is a leaf, not a parent node")
        parent = self._nodes[node]
        assert parent is None or isinstance(parent, ParentNode)
        return parent

    def encryption_key(self, node: int) -> bytes:
        """The HPKE public key of the non-blank node ``node``."""
        content = self.node(node)
        if content is None:
            raise UsageError(f"node {node} is blank and has no encryption key")
        return content.encryption_key

    def leaves(self) -> Iterator[tuple[int, LeafNode]]:
        """``(leaf_index, leaf_node)`` for every non-blank leaf, left to right."""
        for index in range(0, len(self._nodes), 2):
            leaf = self._nodes[index]
            if leaf is not None:
                assert isinstance(leaf, LeafNode)
                yield index // 2, leaf

    def leaf_index_of(self, leaf_node: LeafNode) -> int | None:
        """The leaf index holding exactly ``leaf_node``, or ``None`` (§12.4.3.1, ``my_leaf``)."""
        for index, leaf in self.leaves():
            if leaf == leaf_node:
                return index
        return None

    def unmerged_leaves(self, node: int) -> list[int]:
        """The unmerged leaves of a non-blank parent node; empty for leaves and blanks."""
        content = self.node(node)
        return list(content.unmerged_leaves) if isinstance(content, ParentNode) else []

    # -- paths (§4.1) -----------------------------------------------------------------------------

    def direct_path(self, leaf_index: int) -> list[int]:
        """The direct path of a leaf: its ancestors, from its parent to the root."""
        self._check_leaf_index(leaf_index)
        return tree_math.direct_path(2 * leaf_index, self.n_leaves)

    def copath(self, leaf_index: int) -> list[int]:
        """The copath of a leaf: the sibling of it and of each direct-path node but the root."""
        self._check_leaf_index(leaf_index)
        return tree_math.copath(2 * leaf_index, self.n_leaves)

    def resolution(self, node: int, exclude_leaves: Collection[int] = ()) -> list[int]:
        """The resolution of ``node`` (§4.1.1): node indices, depth-first, left first.

        A non-blank node resolves to itself and its unmerged leaves; a blank leaf to nothing;
        a blank parent to its children's resolutions. Leaves in ``exclude_leaves`` (new
        members of the commit being made, §7.6) are left out.
        """
        self._check_node_index(node)
        out: list[int] = []
        self._resolve(node, out)
        if exclude_leaves:
            excluded = {2 * leaf for leaf in exclude_leaves}
            out = [x for x in out if x not in excluded]
        return out

    def _resolve(self, node: int, out: list[int]) -> None:
        content = self._nodes[node]
        if content is not None:
            out.append(node)
            if isinstance(content, ParentNode):
                out.extend(2 * leaf for leaf in content.unmerged_leaves)
        elif node % 2:
            k = tree_math.level(node)
            self._resolve(node - (1 << (k - 1)), out)
            self._resolve(node + (1 << (k - 1)), out)

    def filtered_path(
        self, leaf_index: int, exclude_leaves: Collection[int] = ()
    ) -> list[FilteredPathNode]:
        """The filtered direct path of a leaf (§4.1.2) with each node's copath child and the
        resolution an UpdatePath encrypts to.

        A direct-path node is kept when its copath child's resolution is non-empty, counting
        the leaves in ``exclude_leaves``; those leaves are then left out of ``resolution``
        (a node whose only recipients are new members stays in the path and gets no
        ciphertexts).
        """
        self._check_leaf_index(leaf_index)
        leaf_node = 2 * leaf_index
        excluded = {2 * leaf for leaf in exclude_leaves}
        path: list[FilteredPathNode] = []
        for node in tree_math.direct_path(leaf_node, self.n_leaves):
            k = tree_math.level(node)
            child = node + (1 << (k - 1)) if leaf_node < node else node - (1 << (k - 1))
            resolution: list[int] = []
            self._resolve(child, resolution)
            if resolution:
                path.append(
                    FilteredPathNode(node, child, [x for x in resolution if x not in excluded])
                )
        return path

    def filtered_direct_path(self, leaf_index: int) -> list[int]:
        """The filtered direct path of a leaf (§4.1.2), as node indices."""
        return [step.node for step in self.filtered_path(leaf_index)]

    # -- tree hashes (§7.8) -----------------------------------------------------------------------

    def tree_hash(self) -> bytes:
        """The tree hash of the root: the ``tree_hash`` of the GroupContext."""
        return self._hash(self.root)

    def node_tree_hash(self, node: int) -> bytes:
        """The tree hash of the subtree headed by ``node``."""
        self._check_node_index(node)
        return self._hash(node)

    def _hash(self, node: int) -> bytes:
        cached = self._hashes[node]
        if cached is None:
            content = self._nodes[node]
            if node % 2 == 0:
                cached = self._leaf_hash(node, content)
            else:
                assert content is None or isinstance(content, ParentNode)
                k = tree_math.level(node)
                cached = self._parent_tree_hash(
                    content, self._hash(node - (1 << (k - 1))), self._hash(node + (1 << (k - 1)))
                )
            self._hashes[node] = cached
        return cached

    def _leaf_hash(self, node: int, content: TreeNode | None) -> bytes:
        """``Hash(TreeHashInput)`` of a leaf (``LeafNodeHashInput``)."""
        writer = Writer()
        writer.uint8(_LEAF)
        writer.uint32(node // 2)
        writer.optional_struct(content)
        return self.suite.hash(writer.getvalue())

    def _parent_tree_hash(self, content: ParentNode | None, left: bytes, right: bytes) -> bytes:
        """``Hash(TreeHashInput)`` of a parent (``ParentNodeHashInput``)."""
        writer = Writer()
        writer.uint8(_PARENT)
        writer.optional_struct(content)
        writer.opaque(left)
        writer.opaque(right)
        return self.suite.hash(writer.getvalue())

    def _hash_without(self, node: int, excluded: frozenset[int]) -> bytes:
        """The tree hash of ``node`` with the leaves ``excluded`` blanked and dropped from
        every unmerged-leaves list (for ``original_sibling_tree_hash``, §7.9)."""
        first, stop = _leaf_span(node)
        if not any(first <= leaf < stop for leaf in excluded):
            return self._hash(node)
        if node % 2 == 0:
            return self._leaf_hash(node, None)
        content = self._nodes[node]
        assert content is None or isinstance(content, ParentNode)
        if content is not None:
            kept = [leaf for leaf in content.unmerged_leaves if leaf not in excluded]
            content = replace(content, unmerged_leaves=kept)
        k = tree_math.level(node)
        return self._parent_tree_hash(
            content,
            self._hash_without(node - (1 << (k - 1)), excluded),
            self._hash_without(node + (1 << (k - 1)), excluded),
        )

    # -- parent hashes (§7.9) ---------------------------------------------------------------------

    def original_sibling_tree_hash(self, parent: int, sibling: int) -> bytes:
        """The tree hash of ``sibling`` with ``parent``'s unmerged leaves blanked and removed
        from every unmerged-leaves list below it (§7.9)."""
        content = self.parent_node(parent)
        if content is None:
            raise UsageError(f"node {parent} is blank and has no parent hash")
        return self._hash_without(sibling, frozenset(content.unmerged_leaves))

    def parent_hash(self, parent: int, sibling: int) -> bytes:
        """The parent hash of the non-blank ``parent`` with copath child ``sibling``:
        ``Hash(ParentHashInput)`` over its key, its own ``parent_hash`` field and the original
        sibling tree hash (§7.9)."""
        content = self.parent_node(parent)
        if content is None:
            raise UsageError(f"node {parent} is blank and has no parent hash")
        writer = Writer()
        writer.opaque(content.encryption_key)
        writer.opaque(content.parent_hash)
        writer.opaque(self.original_sibling_tree_hash(parent, sibling))
        return self.suite.hash(writer.getvalue())

    def verify_parent_hashes(self) -> None:
        """Check that every non-blank parent node is parent-hash valid (§7.9.2).

        Top down: each non-blank parent P must have exactly one descendant D whose
        ``parent_hash`` is valid with respect to P — D is in the resolution of a child C of P,
        D's ``parent_hash`` is P's parent hash with copath child S (the other child), and P's
        unmerged leaves under C are exactly C's resolution without D. D is then either a
        leaf or itself a non-blank parent, checked in turn, so every chain ends at a leaf.
        Raises :class:`ValidationError` (check ``ratchet_tree.parent_hash``).
        """
        for parent in range(1, len(self._nodes), 2):
            content = self._nodes[parent]
            if content is None:
                continue
            assert isinstance(content, ParentNode)
            k = tree_math.level(parent)
            left, right = parent - (1 << (k - 1)), parent + (1 << (k - 1))
            links: list[int] = []
            for child, sibling in ((left, right), (right, left)):
                resolution = self.resolution(child)
                if not resolution:
                    continue
                expected = self.parent_hash(parent, sibling)
                first, stop = _leaf_span(child)
                unmerged_below = {2 * x for x in content.unmerged_leaves if first <= x < stop}
                for descendant in resolution:
                    if self._stored_parent_hash(descendant) == expected and unmerged_below == set(
                        resolution
                    ) - {descendant}:
                        links.append(descendant)
            if len(links) != 1:
                found = "no descendant" if not links else f"descendants {links}"
                raise ValidationError(
                    f"parent node {parent} is not parent-hash valid: {found} carries its"
                    " parent hash (exactly one must)",
                    check="ratchet_tree.parent_hash",
                    section="7.9.2",
                )

    def _stored_parent_hash(self, node: int) -> bytes | None:
        # An unmerged leaf of a malformed tree may point outside it.
        content = self._nodes[node] if node < len(self._nodes) else None
        return None if content is None else content.parent_hash

    # -- the tree's share of join-time validation (§12.4.3.1) -------------------------------------

    def verify_unmerged_leaves(self) -> None:
        """Check every non-blank parent's ``unmerged_leaves`` (§7.1, §12.4.3.1): sorted
        increasing, each a non-blank leaf below the parent, and listed by every non-blank
        node between that leaf and the parent. Raises :class:`ValidationError`
        (check ``ratchet_tree.unmerged_leaves``)."""
        for parent in range(1, len(self._nodes), 2):
            content = self._nodes[parent]
            if content is None:
                continue
            assert isinstance(content, ParentNode)
            unmerged = content.unmerged_leaves
            if any(a >= b for a, b in pairwise(unmerged)):
                raise _unmerged_error(parent, f"unmerged_leaves {unmerged} is not increasing")
            first, stop = _leaf_span(parent)
            for leaf in unmerged:
                if not first <= leaf < stop:
                    raise _unmerged_error(
                        parent, f"unmerged leaf {leaf} is not below it (leaves {first}..{stop - 1})"
                    )
                if self._nodes[2 * leaf] is None:
                    raise _unmerged_error(parent, f"unmerged leaf {leaf} is blank")
                for between in tree_math.direct_path(2 * leaf, self.n_leaves):
                    if between == parent:
                        break
                    other = self._nodes[between]
                    if isinstance(other, ParentNode) and leaf not in other.unmerged_leaves:
                        raise _unmerged_error(
                            parent,
                            f"unmerged leaf {leaf} is missing from the unmerged leaves of"
                            f" node {between} below it",
                        )

    def verify_distinct_parent_keys(self) -> None:
        """Check that no parent node's encryption key appears in any other node (§12.4.3.1).

        Raises :class:`ValidationError` (check ``ratchet_tree.duplicate_encryption_key``).
        """
        counts = Counter(n.encryption_key for n in self._nodes if n is not None)
        for index in range(1, len(self._nodes), 2):
            content = self._nodes[index]
            if content is not None and counts[content.encryption_key] > 1:
                raise ValidationError(
                    f"the encryption key of parent node {index} appears in another node",
                    check="ratchet_tree.duplicate_encryption_key",
                    section="12.4.3.1",
                )

    def verify_leaf_signatures(self, group_id: bytes) -> None:
        """Check every non-blank leaf's signature, leaves made in the group bound to
        ``group_id`` and their leaf index (§7.3). Raises :class:`ValidationError`
        (check ``leaf_node.signature``) naming the leaf."""
        for index, leaf in self.leaves():
            try:
                leaf.verify_signature(self.suite, group_id, index)
            except ValidationError as exc:
                raise ValidationError(
                    f"leaf {index}: {exc}", check=exc.check, section=exc.section
                ) from exc

    def verify(self, group_id: bytes) -> None:
        """Every check of a received tree that needs only the tree (§12.4.3.1):
        unmerged-leaf lists, distinct parent keys, parent hashes, leaf signatures.

        The caller also compares :meth:`tree_hash` with the GroupInfo's and validates each
        leaf as §7.3 asks (:mod:`veilpost.mls.validation`).
        """
        self.verify_unmerged_leaves()
        self.verify_distinct_parent_keys()
        self.verify_parent_hashes()
        self.verify_leaf_signatures(group_id)

    # -- changes ----------------------------------------------------------------------------------

    def _set(self, node: int, content: TreeNode | None) -> None:
        """Set a node and forget the cached hashes of it and its ancestors."""
        self._nodes[node] = content
        hashes = self._hashes
        root = len(hashes) >> 1
        hashes[node] = None
        k = tree_math.level(node)
        while node != root:
            # The ancestor at the next level up: clear bit k+1, set bit k (Appendix C).
            node = (node & ~(1 << (k + 1))) | (1 << k)
            k += 1
            hashes[node] = None

    def _extend(self) -> None:
        """Double the tree: the old tree becomes the left subtree of a new blank root (§7.7).

        In the array the old nodes keep their indices, so their cached hashes stay valid.
        """
        grow = len(self._nodes) + 1
        self._nodes.extend([None] * grow)
        self._hashes.extend([None] * grow)

    def _truncate(self) -> None:
        """Halve the tree while the root's right subtree is all blank (§7.7): the root and
        the right subtree go, the left child becomes the root."""
        while len(self._nodes) > 1:
            root = len(self._nodes) // 2
            if any(n is not None for n in self._nodes[root + 1 :]):
                return
            del self._nodes[root:]
            del self._hashes[root:]

    def _blank_direct_path(self, leaf_index: int) -> None:
        for node in tree_math.direct_path(2 * leaf_index, self.n_leaves):
            if self._nodes[node] is not None:
                self._set(node, None)

    def add_leaf(self, leaf_node: LeafNode) -> int:
        """Add a member (an Add proposal, §12.1.1) and return its leaf index.

        The new leaf is the leftmost blank leaf; with none, the tree doubles first and the
        new leaf is the leftmost of the new half. The leaf becomes unmerged at every
        non-blank parent on its direct path.
        """
        for leaf_index in range(self.n_leaves):
            if self._nodes[2 * leaf_index] is None:
                break
        else:
            leaf_index = self.n_leaves
            self._extend()
        for node in tree_math.direct_path(2 * leaf_index, self.n_leaves):
            content = self._nodes[node]
            if content is not None:
                assert isinstance(content, ParentNode)
                unmerged = sorted([*content.unmerged_leaves, leaf_index])
                self._set(node, replace(content, unmerged_leaves=unmerged))
        self._set(2 * leaf_index, leaf_node)
        return leaf_index

    def update_leaf(self, leaf_index: int, leaf_node: LeafNode) -> None:
        """Replace a member's leaf and blank its direct path (an Update proposal, §12.1.2)."""
        self._check_leaf_index(leaf_index)
        if self._nodes[2 * leaf_index] is None:
            raise UsageError(f"leaf {leaf_index} is blank: there is no member to update")
        self._set(2 * leaf_index, leaf_node)
        self._blank_direct_path(leaf_index)

    def remove_leaf(self, leaf_index: int) -> None:
        """Remove a member (a Remove proposal, §12.1.3): blank its leaf and direct path, then
        truncate the tree while its right half is blank.

        Raises :class:`ValidationError` (check ``proposal.remove.blank_leaf``) unless
        ``leaf_index`` is a non-blank leaf.
        """
        if not 0 <= leaf_index < self.n_leaves or self._nodes[2 * leaf_index] is None:
            raise ValidationError(
                f"Remove of leaf {leaf_index}, which is not a member"
                f" (the tree has {self.n_leaves} leaves)",
                check="proposal.remove.blank_leaf",
                section="12.1.3",
            )
        self._set(2 * leaf_index, None)
        self._blank_direct_path(leaf_index)
        self._truncate()

    def set_leaf(self, leaf_index: int, leaf_node: LeafNode) -> None:
        """Put ``leaf_node`` at ``leaf_index``, leaving the rest of the tree as it is.

        For TreeKEM (:mod:`veilpost.mls.treekem`), after :meth:`merge_path_keys`; proposals
        use :meth:`add_leaf`, :meth:`update_leaf` and :meth:`remove_leaf`.
        """
        self._check_leaf_index(leaf_index)
        self._set(2 * leaf_index, leaf_node)

    def merge_path_keys(self, leaf_index: int, public_keys: Sequence[bytes]) -> bytes:
        """Merge a committer's new path keys into the tree and return its leaf's parent hash.

        Blanks the direct path of ``leaf_index``, gives the nodes of its filtered direct path
        the ``public_keys`` (in path order) with empty unmerged-leaves lists, and sets their
        ``parent_hash`` fields from the root down (§7.5, §7.9): each is the parent hash of
        the next node of the filtered path, the topmost's is empty. Returns the parent hash
        the committer's new leaf must carry (empty if the filtered path is empty). The leaf
        itself is not touched: set it with :meth:`set_leaf`.
        """
        path = self.filtered_path(leaf_index)
        if len(public_keys) != len(path):
            raise UsageError(
                f"the filtered direct path of leaf {leaf_index} has {len(path)} nodes,"
                f" got {len(public_keys)} public keys"
            )
        self._blank_direct_path(leaf_index)
        parent_hash = b""
        for step, public_key in zip(reversed(path), reversed(public_keys), strict=True):
            self._set(step.node, ParentNode(public_key, parent_hash, []))
            parent_hash = self.parent_hash(step.node, step.copath_child)
        return parent_hash


def _unmerged_error(parent: int, detail: str) -> ValidationError:
    return ValidationError(
        f"parent node {parent}: {detail}", check="ratchet_tree.unmerged_leaves", section="12.4.3.1"
    )
