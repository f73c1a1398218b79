"""Tree math on node indices (RFC 9420 §4.1, Appendix C "Array-Based Trees").

Every tree in MLS is a perfect binary tree (§4.1): ``2**d`` leaves, all at depth ``d``. Laid
out as an array, leaf ``i`` sits at node ``2*i`` and parent nodes take the odd indices, so that
a node's *level* (leaves are level 0) is the number of trailing one bits of its index::

    node index          3               level 2
                      /   \\
                    1       5           level 1
                   / \\     / \\
                  0   2   4   6         level 0
    leaf index    0   1   2   3

A node ``x`` at level ``k`` heads the subtree of node indices ``x - (2**k - 1)`` to
``x + (2**k - 1)``; its children are ``x ∓ 2**(k-1)``; its ancestor at level ``j`` keeps the
bits of ``x`` above bit ``j``, clears bit ``j`` and sets the ``j`` bits below. Everything here
follows from that.

Functions that depend on the size of the tree take ``n_leaves``, the number of leaves (a power
of two). Node and leaf indices are plain ``int``. Out-of-range input raises
:class:`TreeMathError`, which is both a :class:`ValueError` and a
:class:`~veilpost.mls.errors.UsageError`: an index that came off the wire must be checked
against the tree before it reaches these functions.
"""

from __future__ import annotations

from veilpost.mls.errors import UsageError

__all__ = [
    "TreeMathError",
    "common_ancestor",
    "copath",
    "direct_path",
    "is_leaf",
    "leaf_to_node",
    "left",
    "level",
    "node_to_leaf",
    "node_width",
    "parent",
    "right",
    "root",
    "sibling",
]


class TreeMathError(UsageError, ValueError):
    """A node index, leaf index or tree size that the requested operation cannot take."""


def _check_size(n_leaves: int) -> None:
    if n_leaves < 1 or n_leaves & (n_leaves - 1):
        raise TreeMathError(
            f"a ratchet tree has a power-of-two number of leaves (§4.1), got {n_leaves}"
        )


def _check_node(node: int, n_leaves: int) -> None:
    _check_size(n_leaves)
    if not 0 <= node < 2 * n_leaves - 1:
        raise TreeMathError(
            f"node {node} is outside a tree of {n_leaves} leaves (nodes 0..{2 * n_leaves - 2})"
        )


def _check_index(node: int) -> None:
    if node < 0:
        raise TreeMathError(f"node index must not be negative, got {node}")


def level(node: int) -> int:
    """The level of ``node``: 0 for leaves, one more than its children's for parents."""
    _check_index(node)
    # Trailing one bits: x ^ (x + 1) sets exactly those bits and the zero above them.
    return (node ^ (node + 1)).bit_length() - 1


def is_leaf(node: int) -> bool:
    """Whether ``node`` is a leaf (an even index)."""
    _check_index(node)
    return node % 2 == 0


def leaf_to_node(leaf: int) -> int:
    """The node index of leaf ``leaf``."""
    if leaf < 0:
        raise TreeMathError(f"leaf index must not be negative, got {leaf}")
    return 2 * leaf


def node_to_leaf(node: int) -> int:
    """The leaf index of ``node``, which must be a leaf."""
    _check_index(node)
    if node % 2:
        raise TreeMathError(f"node {node} is a parent node, not a leaf")
    return node // 2


def node_width(n_leaves: int) -> int:
    """The number of nodes in a tree of ``n_leaves`` leaves (0 for the empty tree)."""
    if n_leaves == 0:
        return 0
    _check_size(n_leaves)
    return 2 * n_leaves - 1


def root(n_leaves: int) -> int:
    """The index of the root node of a tree of ``n_leaves`` leaves."""
    _check_size(n_leaves)
    return n_leaves - 1


def left(node: int) -> int:
    """The left child of the parent node ``node``."""
    k = level(node)
    if k == 0:
        raise TreeMathError(f"leaf node {node} has no children")
    return node - (1 << (k - 1))


def right(node: int) -> int:
    """The right child of the parent node ``node``."""
    k = level(node)
    if k == 0:
        raise TreeMathError(f"leaf node {node} has no children")
    return node + (1 << (k - 1))


def parent(node: int, n_leaves: int) -> int:
    """The parent of ``node`` in a tree of ``n_leaves`` leaves."""
    _check_node(node, n_leaves)
    if node == root(n_leaves):
        raise TreeMathError(f"root node {node} has no parent")
    return _ancestor_at(node, level(node) + 1)


def sibling(node: int, n_leaves: int) -> int:
    """The other child of ``node``'s parent."""
    _check_node(node, n_leaves)
    if node == root(n_leaves):
        raise TreeMathError(f"root node {node} has no sibling")
    p = parent(node, n_leaves)
    return right(p) if node < p else left(p)


def direct_path(node: int, n_leaves: int) -> list[int]:
    """The direct path of ``node``: its ancestors from its parent up to the root (§4.1.2).

    Empty for the root.
    """
    _check_node(node, n_leaves)
    top = level(root(n_leaves))
    return [_ancestor_at(node, k) for k in range(level(node) + 1, top + 1)]


def copath(node: int, n_leaves: int) -> list[int]:
    """The copath of ``node``: the sibling of ``node`` and of each node on its direct path
    except the root, from the bottom up (§4.1.2). As long as the direct path."""
    path = direct_path(node, n_leaves)
    if not path:
        return []
    return [sibling(x, n_leaves) for x in [node, *path[:-1]]]


def common_ancestor(x: int, y: int, n_leaves: int) -> int:
    """The lowest node that is ``x`` or one of its ancestors, and ``y`` or one of its.

    If one node is an ancestor of the other, that is the ancestor.
    """
    _check_node(x, n_leaves)
    _check_node(y, n_leaves)
    k = max(level(x), level(y))
    # Two nodes lie in the same level-k subtree when they agree above bit k.
    while x >> (k + 1) != y >> (k + 1):
        k += 1
    return _ancestor_at(x, k)


def _ancestor_at(node: int, k: int) -> int:
    """The node at level ``k`` whose subtree holds ``node`` (``k >= level(node)``)."""
    return ((node >> (k + 1)) << (k + 1)) | ((1 << k) - 1)
