"""Array-based tree math (RFC 9420 §4.1, Appendix C): the working group's ``tree-math.json``,
the RFC's own example, properties that must hold in every tree, and the refusals."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mls_vectors import run_vector_file

from veilpost.mls.errors import UsageError
from veilpost.mls.tree_math import (
    TreeMathError,
    common_ancestor,
    copath,
    direct_path,
    is_leaf,
    leaf_to_node,
    left,
    level,
    node_to_leaf,
    node_width,
    parent,
    right,
    root,
    sibling,
)
from veilpost.mls.vectors import CHECKERS
from veilpost.mls.vectors.tree_math import check_tree_math


def test_tree_math_vectors() -> None:
    # Pure integer math: no cipher suite and no backend is involved.
    assert CHECKERS["tree-math"] is check_tree_math
    assert run_vector_file("tree-math", None) == {None}


def test_paths_of_the_rfc_example_tree() -> None:
    # §4.1.2, the tree with leaves A B _ _ E F G _ (8 leaves): node indices of the labels.
    A, B, E, F, G = 0, 2, 8, 10, 12
    T, U, V, W, X, Y, Z = 1, 3, 5, 7, 9, 11, 13
    H = 14
    assert direct_path(A, 8) == [T, U, W]
    assert copath(A, 8) == [B, V, Y]
    assert copath(B, 8) == [A, V, Y]
    assert direct_path(E, 8) == [X, Y, W]
    assert copath(F, 8) == [E, Z, U]
    assert direct_path(G, 8) == [Z, Y, W]
    assert copath(G, 8) == [H, X, U]


def test_sizes_and_roots() -> None:
    assert [node_width(n) for n in (0, 1, 2, 4, 8)] == [0, 1, 3, 7, 15]
    assert [root(n) for n in (1, 2, 4, 8, 16)] == [0, 1, 3, 7, 15]
    assert direct_path(0, 1) == [] and copath(0, 1) == []
    assert [level(x) for x in range(8)] == [0, 1, 0, 2, 0, 1, 0, 3]


# Trees of 1 to 2**12 leaves, and a node of each.
trees = st.integers(min_value=0, max_value=12).map(lambda d: 1 << d)


@st.composite
def tree_and_node(draw: st.DrawFn, min_leaves: int = 1) -> tuple[int, int]:
    n = draw(trees.filter(lambda n: n >= min_leaves))
    return n, draw(st.integers(min_value=0, max_value=node_width(n) - 1))


@st.composite
def tree_and_non_root(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(trees.filter(lambda n: n >= 2))
    x = draw(st.integers(min_value=0, max_value=node_width(n) - 1).filter(lambda y: y != root(n)))
    return n, x


examples = settings(max_examples=200, deadline=None)


@examples
@given(tree_and_non_root())
def test_sibling_is_an_involution_with_the_same_parent(tree: tuple[int, int]) -> None:
    n, x = tree
    s = sibling(x, n)
    assert s != x
    assert sibling(s, n) == x
    assert parent(s, n) == parent(x, n)
    assert level(s) == level(x)


@examples
@given(tree_and_node(min_leaves=2))
def test_children_of_a_parent_lead_back_to_it(tree: tuple[int, int]) -> None:
    n, x = tree
    if is_leaf(x):
        return
    assert left(x) < x < right(x)
    assert parent(left(x), n) == x == parent(right(x), n)
    assert level(left(x)) == level(right(x)) == level(x) - 1


@examples
@given(tree_and_node())
def test_direct_path_climbs_to_the_root_and_copath_matches_it(tree: tuple[int, int]) -> None:
    n, x = tree
    path = direct_path(x, n)
    co = copath(x, n)
    assert len(co) == len(path) == level(root(n)) - level(x)
    if x == root(n):
        assert path == []
        return
    assert path[-1] == root(n)
    for child, ancestor in zip([x, *path], path, strict=False):
        assert parent(child, n) == ancestor
    for child, other in zip([x, *path], co, strict=False):
        assert sibling(child, n) == other


@examples
@given(tree_and_node(), st.data())
def test_common_ancestor_is_the_lowest_shared_node(
    tree: tuple[int, int], data: st.DataObject
) -> None:
    n, x = tree
    y = data.draw(st.integers(min_value=0, max_value=node_width(n) - 1))
    ancestor = common_ancestor(x, y, n)
    on_x = [x, *direct_path(x, n)]
    on_y = [y, *direct_path(y, n)]
    shared = set(on_x) & set(on_y)
    assert ancestor in shared
    assert all(level(ancestor) <= level(z) for z in shared)
    assert common_ancestor(y, x, n) == ancestor


@examples
@given(st.integers(min_value=0, max_value=1 << 20))
def test_leaf_and_node_indices_convert_both_ways(leaf: int) -> None:
    node = leaf_to_node(leaf)
    assert is_leaf(node) and level(node) == 0
    assert node_to_leaf(node) == leaf


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: left(4), "leaf node 4 has no children"),
        (lambda: right(0), "leaf node 0 has no children"),
        (lambda: parent(3, 4), "root node 3 has no parent"),
        (lambda: sibling(7, 8), "root node 7 has no sibling"),
        (lambda: parent(7, 4), r"node 7 is outside a tree of 4 leaves \(nodes 0..6\)"),
        (lambda: direct_path(-1, 4), r"node -1 is outside a tree of 4 leaves"),
        (lambda: root(3), "power-of-two number of leaves .*, got 3"),
        (lambda: root(0), "power-of-two number of leaves .*, got 0"),
        (lambda: node_width(6), "got 6"),
        (lambda: copath(0, 5), "got 5"),
        (lambda: common_ancestor(0, 9, 4), "node 9 is outside"),
        (lambda: node_to_leaf(5), "node 5 is a parent node, not a leaf"),
        (lambda: leaf_to_node(-2), "leaf index must not be negative, got -2"),
        (lambda: level(-1), "node index must not be negative, got -1"),
    ],
)
def test_refusals_name_the_problem(call: Callable[[], object], message: str) -> None:
    with pytest.raises(TreeMathError, match=message):
        call()


def test_tree_math_error_is_both_a_value_error_and_a_usage_error() -> None:
    with pytest.raises(ValueError):
        left(2)
    with pytest.raises(UsageError):
        left(2)
