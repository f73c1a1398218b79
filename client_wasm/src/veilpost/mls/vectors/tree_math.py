"""Checker for ``tree-math.json``: array-based tree math (RFC 9420 Appendix C)."""

from __future__ import annotations

from collections.abc import Callable

from veilpost.crypto import CryptoProvider
from veilpost.mls import tree_math
from veilpost.mls.vectors import Case, checker, expect


def _or_none(relation: Callable[[int], int], node: int) -> int | None:
    """``relation(node)``, or ``None`` where the node has no such relative."""
    try:
        return relation(node)
    except tree_math.TreeMathError:
        return None


@checker("tree-math")
def check_tree_math(case: Case, provider: CryptoProvider) -> None:
    """Check ``n_nodes``, ``root`` and every node's ``left``, ``right``, ``parent`` and
    ``sibling`` for a tree of ``n_leaves`` leaves (no cipher suite involved)."""
    n_leaves = int(case["n_leaves"])
    expect(tree_math.node_width(n_leaves), case["n_nodes"], "n_nodes")
    expect(tree_math.root(n_leaves), case["root"], "root")
    relations: dict[str, Callable[[int], int]] = {
        "left": tree_math.left,
        "right": tree_math.right,
        "parent": lambda x: tree_math.parent(x, n_leaves),
        "sibling": lambda x: tree_math.sibling(x, n_leaves),
    }
    for name, relation in relations.items():
        expected = case[name]
        expect(len(expected), case["n_nodes"], f"length of {name}")
        for node, value in enumerate(expected):
            expect(_or_none(relation, node), value, f"{name}[{node}] with {n_leaves} leaves")
