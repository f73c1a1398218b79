"""The ratchet tree (RFC 9420 §4, §7, §12.1): the working group's ``tree-validation.json``
and ``tree-operations.json`` on every backend, the RFC's own example trees, and one test per
rule: truncated encoding, node types, parent hashes, unmerged leaves, distinct parent keys,
leaf signatures, and how Add, Update and Remove reshape the tree."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
from mls_vectors import run_vector_file
from support import BACKENDS
from tree_builders import GROUP_ID, TreeGroup, build_group, suite_on

from veilpost.codec import DecodeError
from veilpost.crypto import CipherSuite, CryptoBackend
from veilpost.mls.credential import Credential
from veilpost.mls.errors import UsageError, ValidationError
from veilpost.mls.leaf_node import Capabilities, LeafNode, LeafNodeSource, Lifetime
from veilpost.mls.nodes import Node, ParentNode, encode_ratchet_tree
from veilpost.mls.ratchet_tree import RatchetTree, TreeNode
from veilpost.mls.tree_math import level
from veilpost.mls.vectors import CHECKERS
from veilpost.mls.vectors.tree_operations import check_tree_operations
from veilpost.mls.vectors.tree_validation import check_tree_validation

SUITE = suite_on(BACKENDS[0])


def test_tree_validation_vectors(backend: CryptoBackend) -> None:
    assert CHECKERS["tree-validation"] is check_tree_validation
    assert {1, 3} <= run_vector_file("tree-validation", backend)


def test_tree_operations_vectors(backend: CryptoBackend) -> None:
    assert CHECKERS["tree-operations"] is check_tree_operations
    assert {1} <= run_vector_file("tree-operations", backend)


# -- trees drawn in the RFC, with placeholder keys --------------------------------------------


def leaf(n: int) -> LeafNode:
    """An unsigned leaf whose keys are the byte ``n`` repeated (no crypto needed)."""
    return LeafNode(
        encryption_key=bytes([n]) * 32,
        signature_key=bytes([n]) * 32,
        credential=Credential.basic(b"leaf %d" % n),
        capabilities=Capabilities(cipher_suites=[1]),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(0, 1),
    )


def parent(n: int, unmerged: list[int] | None = None) -> ParentNode:
    return ParentNode(bytes([0x80 + n]) * 32, b"", unmerged or [])


def tree_of(nodes: list[TreeNode | None]) -> RatchetTree:
    return RatchetTree(SUITE, nodes)


def test_resolution_of_the_rfc_example() -> None:
    # §4.1.1 Figure 9: X[B] at node 3, Y at node 9, leaves A B _ D E F _ H.
    _ = None
    left: list[TreeNode | None] = [leaf(0), _, leaf(1), parent(3, [1]), _, _, leaf(3)]
    tree = tree_of([*left, _, leaf(4), parent(9), leaf(5), _, _, _, leaf(7)])
    assert tree.resolution(3) == [3, 2]  # X, B
    assert tree.resolution(4) == [] and tree.resolution(12) == []  # blank leaves 2 and 6
    assert tree.resolution(7) == [3, 2, 9, 14]  # X, B, Y, H
    assert tree.resolution(7, exclude_leaves=[1, 7]) == [3, 9]


def test_filtered_direct_paths_of_the_rfc_example() -> None:
    # §4.1.2 Figure 10: W=7, U=3 (blank), Y=11, T=1, V=5 (blank), X=9, Z=13 (blank).
    _ = None
    left: list[TreeNode | None] = [leaf(0), parent(1), leaf(1), _, _, _, _]
    tree = tree_of([*left, parent(7), leaf(4), parent(9), leaf(5), parent(11), leaf(6), _, _])
    assert tree.direct_path(0) == [1, 3, 7] and tree.copath(0) == [2, 5, 11]
    assert tree.filtered_direct_path(0) == [1, 7]  # A: T, W
    assert tree.filtered_direct_path(1) == [1, 7]  # B: T, W
    assert tree.filtered_direct_path(4) == [9, 11, 7]  # E: X, Y, W
    assert tree.filtered_direct_path(5) == [9, 11, 7]  # F: X, Y, W
    assert tree.filtered_direct_path(6) == [11, 7]  # G: Y, W
    path = tree.filtered_path(6, exclude_leaves=[4])
    assert [(p.node, p.copath_child, p.resolution) for p in path] == [
        (11, 9, [9]),
        (7, 3, [1]),  # U is blank: its resolution is T
    ]


def test_original_sibling_tree_hash_blanks_the_parents_unmerged_leaves() -> None:
    # §7.9 Figure 13: W[F] at the root, Y[F] at node 11; with P = W and S = Y the sibling
    # hash is that of Y's subtree with F blanked and removed from Y's unmerged leaves.
    _ = None
    left: list[TreeNode | None] = [leaf(0), parent(1), leaf(1), parent(3), leaf(2), _, leaf(3)]
    tree = tree_of([*left, parent(7, [5]), leaf(4), _, leaf(5), parent(11, [5]), leaf(6), _, _])
    original = tree_of([*left, parent(7), leaf(4), _, _, parent(11), leaf(6), _, _])
    assert tree.original_sibling_tree_hash(7, 11) == original.node_tree_hash(11)
    assert tree.original_sibling_tree_hash(7, 11) != tree.node_tree_hash(11)
    # No unmerged leaf of P under S: the plain tree hash.
    assert tree.original_sibling_tree_hash(7, 3) == tree.node_tree_hash(3)


# -- the wire format (§12.4.3.3) --------------------------------------------------------------


def test_encoding_drops_trailing_blanks_and_decoding_restores_the_width() -> None:
    tree = tree_of([leaf(0), parent(1), leaf(1), None, leaf(2), None, None])
    nodes = tree.to_nodes()
    assert len(nodes) == 5 and nodes[-1] == Node(leaf(2))
    decoded = RatchetTree.decode(SUITE, tree.encode())
    assert decoded == tree and decoded.width == 7 and decoded.n_leaves == 4
    assert decoded.tree_hash() == tree.tree_hash()
    # 9 nodes on the wire need the next full width: 15 nodes, 8 leaves.
    wide = RatchetTree.from_nodes(SUITE, [*nodes, None, None, None, Node(leaf(4))])
    assert (wide.width, wide.n_leaves) == (15, 8)


def test_a_tree_ending_in_a_blank_node_is_rejected() -> None:
    data = encode_ratchet_tree([Node(leaf(0)), Node(parent(1)), Node(leaf(1)), None])
    with pytest.raises(ValidationError, match="ends with a blank node") as raised:
        RatchetTree.decode(SUITE, data)
    assert raised.value.check == "ratchet_tree.trailing_blank"
    assert raised.value.section == "12.4.3.3"


def test_an_empty_tree_is_rejected() -> None:
    with pytest.raises(ValidationError) as raised:
        RatchetTree.decode(SUITE, encode_ratchet_tree([]))
    assert raised.value.check == "ratchet_tree.empty"
    with pytest.raises(ValidationError, match="ends with a blank"):
        RatchetTree.decode(SUITE, encode_ratchet_tree([None]))


def test_nodes_must_sit_at_positions_of_their_type() -> None:
    with pytest.raises(ValidationError, match="node 1 is a parent position") as raised:
        RatchetTree.from_nodes(SUITE, [Node(leaf(0)), Node(leaf(1)), Node(leaf(2))])
    assert raised.value.check == "ratchet_tree.node_type"
    with pytest.raises(ValidationError, match="node 0 is a leaf position"):
        RatchetTree.from_nodes(SUITE, [Node(parent(0))])


def test_malformed_bytes_are_a_decode_error() -> None:
    data = encode_ratchet_tree([Node(leaf(0))])
    with pytest.raises(DecodeError):
        RatchetTree.decode(SUITE, data + b"\x00")
    with pytest.raises(DecodeError):
        RatchetTree.decode(SUITE, data[:-1])


# -- validation of received trees (§7.9.2, §12.4.3.1) ------------------------------------------


@cache
def signed_group_tree(backend_name: str) -> bytes:
    """The encoded tree of a signed 10-member group: parent-hash chains, unmerged leaves."""
    return build_group(suite_on(backend_name), 10).tree.encode()


@pytest.fixture
def suite(backend: CryptoBackend) -> CipherSuite:
    return suite_on(backend)


@pytest.fixture
def group_tree(suite: CipherSuite, backend: CryptoBackend) -> RatchetTree:
    tree = RatchetTree.decode(suite, signed_group_tree(backend.name))
    tree.verify(GROUP_ID)  # the untouched tree is valid: each test breaks one thing
    return tree


def _with_node(tree: RatchetTree, index: int, content: TreeNode | None) -> RatchetTree:
    nodes = tree.to_nodes()
    nodes += [None] * (tree.width - len(nodes))
    nodes[index] = None if content is None else Node(content)
    while nodes[-1] is None:
        nodes.pop()
    return RatchetTree.from_nodes(tree.suite, nodes)


def _non_blank_parents(tree: RatchetTree) -> list[int]:
    return [i for i in range(1, tree.width, 2) if tree.node(i) is not None]


def test_a_tampered_parent_hash_is_rejected(group_tree: RatchetTree) -> None:
    for index in _non_blank_parents(group_tree):
        node = group_tree.parent_node(index)
        assert node is not None
        flipped = (
            bytes([node.parent_hash[0] ^ 1]) + node.parent_hash[1:] if node.parent_hash else b"x"
        )
        tampered = _with_node(group_tree, index, replace(node, parent_hash=flipped))
        with pytest.raises(ValidationError, match="is not parent-hash valid") as raised:
            tampered.verify_parent_hashes()
        assert raised.value.check == "ratchet_tree.parent_hash"
        assert raised.value.section == "7.9.2"


def test_a_replaced_parent_key_breaks_the_parent_hash_chain(group_tree: RatchetTree) -> None:
    top = max(_non_blank_parents(group_tree), key=level)
    node = group_tree.parent_node(top)
    assert node is not None
    tampered = _with_node(group_tree, top, replace(node, encryption_key=b"\x01" * 32))
    with pytest.raises(ValidationError, match=f"parent node {top} is not parent-hash valid"):
        tampered.verify_parent_hashes()


def test_a_parent_node_nobody_set_is_rejected(group_tree: RatchetTree) -> None:
    blank = next(i for i in range(1, group_tree.width, 2) if group_tree.node(i) is None)
    tampered = _with_node(group_tree, blank, parent(99))
    tampered.verify_unmerged_leaves()
    with pytest.raises(ValidationError, match="is not parent-hash valid") as raised:
        tampered.verify_parent_hashes()
    assert raised.value.check == "ratchet_tree.parent_hash"


def test_a_leaf_with_a_bad_signature_is_rejected(suite: CipherSuite) -> None:
    # No commits yet, so no parent hash covers the leaves: only the signature check can fail.
    group = TreeGroup(suite)
    for n in range(1, 3):
        group.add(b"member %d" % n)
    group.tree.verify(GROUP_ID)
    member = group.tree.leaf(1)
    assert member is not None
    bad = replace(member, signature=bytes([member.signature[0] ^ 1]) + member.signature[1:])
    tampered = _with_node(group.tree, 2, bad)
    with pytest.raises(ValidationError, match="leaf 1: LeafNode signature") as raised:
        tampered.verify(GROUP_ID)
    assert raised.value.check == "leaf_node.signature"


def test_leaf_signatures_are_bound_to_the_group(group_tree: RatchetTree) -> None:
    with pytest.raises(ValidationError, match="LeafNode signature does not verify") as raised:
        group_tree.verify_leaf_signatures(b"another group")
    assert raised.value.check == "leaf_node.signature"


def _group_with_unmerged(group_tree: RatchetTree) -> tuple[int, ParentNode]:
    for index in _non_blank_parents(group_tree):
        node = group_tree.parent_node(index)
        if node is not None and len(node.unmerged_leaves) >= 2:
            return index, node
    raise AssertionError("the test group has no parent with two unmerged leaves")


def test_unmerged_leaves_must_be_sorted(group_tree: RatchetTree) -> None:
    index, node = _group_with_unmerged(group_tree)
    shuffled = replace(node, unmerged_leaves=list(reversed(node.unmerged_leaves)))
    with pytest.raises(ValidationError, match="is not increasing") as raised:
        _with_node(group_tree, index, shuffled).verify_unmerged_leaves()
    assert raised.value.check == "ratchet_tree.unmerged_leaves"


def test_an_unmerged_leaf_must_be_a_member_below_the_parent() -> None:
    _ = None
    tree = tree_of([leaf(0), parent(1, [1]), _, _, _, _, _])
    with pytest.raises(ValidationError, match="unmerged leaf 1 is blank"):
        tree.verify_unmerged_leaves()
    tree = tree_of([leaf(0), parent(1, [2]), leaf(1), _, leaf(2), _, _])
    with pytest.raises(ValidationError, match=r"unmerged leaf 2 is not below it \(leaves 0..1\)"):
        tree.verify_unmerged_leaves()


def test_an_unmerged_leaf_must_be_listed_at_every_non_blank_node_between() -> None:
    _ = None
    tree = tree_of([leaf(0), parent(1), leaf(1), parent(3, [1]), leaf(2), _, _])
    with pytest.raises(ValidationError, match="missing from the unmerged leaves of node 1"):
        tree.verify_unmerged_leaves()
    tree_of(
        [leaf(0), parent(1, [1]), leaf(1), parent(3, [1]), leaf(2), _, _]
    ).verify_unmerged_leaves()


def test_parent_keys_must_be_unique() -> None:
    _ = None
    tree = tree_of([leaf(0), parent(1), leaf(1), parent(1), leaf(2), _, _])
    with pytest.raises(ValidationError, match="parent node 1 appears in another") as raised:
        tree.verify_distinct_parent_keys()
    assert raised.value.check == "ratchet_tree.duplicate_encryption_key"
    clash = replace(leaf(2), encryption_key=parent(3).encryption_key)
    with pytest.raises(ValidationError, match="parent node 3"):
        tree_of([leaf(0), parent(1), leaf(1), parent(3), clash, _, _]).verify_distinct_parent_keys()


# -- tree operations (§12.1, §7.7) ----------------------------------------------------------------


def test_add_fills_the_leftmost_blank_leaf_and_marks_it_unmerged() -> None:
    _ = None
    tree = tree_of([leaf(0), parent(1), _, parent(3, [3]), _, _, leaf(3)])
    assert tree.add_leaf(leaf(1)) == 1
    assert tree.parent_node(1) == parent(1, [1])
    assert tree.parent_node(3) == parent(3, [1, 3])  # kept sorted
    assert tree.add_leaf(leaf(2)) == 2
    assert tree.parent_node(5) is None  # blank parents stay blank
    assert tree.parent_node(3) == parent(3, [1, 2, 3])
    assert tree.n_leaves == 4


def test_add_to_a_full_tree_doubles_it() -> None:
    tree = RatchetTree.create(SUITE, leaf(0))
    widths = []
    for n in range(1, 9):
        assert tree.add_leaf(leaf(n)) == n
        widths.append(tree.n_leaves)
    assert widths == [2, 4, 4, 8, 8, 8, 8, 16]
    assert [i for i, _ in tree.leaves()] == list(range(9))


def test_update_replaces_the_leaf_and_blanks_its_direct_path() -> None:
    tree = tree_of([leaf(0), parent(1), leaf(1), parent(3), leaf(2), parent(5), leaf(3)])
    tree.update_leaf(2, leaf(9))
    assert tree.leaf(2) == leaf(9)
    assert [tree.node(i) is None for i in (1, 3, 5)] == [False, True, True]
    with pytest.raises(UsageError, match="leaf 7 is outside"):
        tree.update_leaf(7, leaf(9))


def test_remove_blanks_the_path_and_truncates_only_a_blank_right_half() -> None:
    tree = RatchetTree.create(SUITE, leaf(0))
    for n in range(1, 5):
        tree.add_leaf(leaf(n))
    assert tree.n_leaves == 8
    tree.remove_leaf(2)  # in the middle: a hole, no truncation
    assert tree.n_leaves == 8 and tree.leaf(2) is None
    assert tree.add_leaf(leaf(7)) == 2  # the hole is refilled first
    tree.remove_leaf(4)  # the only leaf of the right half: back to 4 leaves
    assert tree.n_leaves == 4 and tree.width == 7
    tree.remove_leaf(3)
    tree.remove_leaf(2)
    assert tree.n_leaves == 2
    tree.remove_leaf(1)
    assert tree.n_leaves == 1 and tree.leaf(0) == leaf(0)


def test_removing_the_last_leaf_keeps_a_tree_with_a_hole_below_it() -> None:
    _ = None
    tree = tree_of([leaf(0), _, _, _, leaf(2), _, leaf(3)])
    tree.remove_leaf(3)  # leaf 2 keeps the right half alive
    assert tree.n_leaves == 4
    tree.remove_leaf(2)  # now the right half is blank, and so is leaf 1: one leaf left
    assert tree.n_leaves == 1


def test_remove_of_a_blank_or_missing_leaf_is_invalid() -> None:
    tree = tree_of([leaf(0), None, None])
    for index in (1, 2, 100):
        with pytest.raises(ValidationError, match=f"Remove of leaf {index}") as raised:
            tree.remove_leaf(index)
        assert raised.value.check == "proposal.remove.blank_leaf"


def test_cached_hashes_follow_every_change() -> None:
    tree = RatchetTree.create(SUITE, leaf(0))
    before = tree.tree_hash()
    copy = tree.copy()
    tree.add_leaf(leaf(1))
    assert copy.tree_hash() == before  # a copy is independent
    for change in (
        lambda: tree.add_leaf(leaf(2)),
        lambda: tree.update_leaf(0, leaf(5)),
        lambda: tree.remove_leaf(2),
        lambda: tree.set_leaf(1, leaf(6)),
    ):
        change()
        assert tree.tree_hash() == RatchetTree.decode(SUITE, tree.encode()).tree_hash()


def test_merge_path_keys_sets_a_parent_hash_chain() -> None:
    group = TreeGroup(SUITE, sign=False)
    for n in range(1, 7):
        group.add(b"m%d" % n)
    group.remove(5)
    tree = group.tree
    path = tree.filtered_direct_path(4)
    assert path == [11, 7]  # leaf 4 (node 8): node 9's other child (leaf 5) is blank
    keys = [b"\x51" * 32, b"\x52" * 32]
    leaf_parent_hash = tree.merge_path_keys(4, keys)
    assert tree.parent_node(9) is None
    assert [tree.encryption_key(n) for n in path] == keys
    top = tree.parent_node(7)
    below = tree.parent_node(11)
    assert top is not None and below is not None
    assert top.parent_hash == b"" and top.unmerged_leaves == []
    assert below.parent_hash == tree.parent_hash(7, 3)
    assert leaf_parent_hash == tree.parent_hash(11, 13)
    with pytest.raises(UsageError, match="has 2 nodes, got 1 public keys"):
        tree.merge_path_keys(4, keys[:1])


def test_lookups_refuse_what_is_not_there() -> None:
    tree = tree_of([leaf(0), None, None])
    assert tree.leaf(1) is None and tree.parent_node(1) is None
    assert tree.leaf_index_of(leaf(0)) == 0 and tree.leaf_index_of(leaf(1)) is None
    with pytest.raises(UsageError, match="node 3 is outside"):
        tree.node(3)
    with pytest.raises(UsageError, match="node 2 is a leaf"):
        tree.parent_node(2)
    with pytest.raises(UsageError, match="node 1 is blank"):
        tree.encryption_key(1)
    with pytest.raises(UsageError):
        RatchetTree(SUITE, [leaf(0), None])
    assert repr(tree) == "RatchetTree(n_leaves=2, members=1)"
