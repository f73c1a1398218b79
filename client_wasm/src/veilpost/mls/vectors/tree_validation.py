"""Checker for ``tree-validation.json``: resolutions, tree hashes, parent hashes and leaf
signatures of received trees (RFC 9420 §4.1.1, §7.8, §7.9.2, §7.3)."""

from __future__ import annotations

from veilpost.crypto import CryptoProvider
from veilpost.mls.errors import ValidationError
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h, suite_for


@checker("tree-validation")
def check_tree_validation(case: Case, provider: CryptoProvider) -> None:
    """Decode ``tree``; check every node's resolution and tree hash; then verify the tree as
    a joiner does (unmerged leaves, distinct parent keys, parent hashes, leaf signatures
    bound to ``group_id``)."""
    suite = suite_for(case, provider)
    tree = RatchetTree.decode(suite, h(case["tree"]))
    expect(tree.width, len(case["resolutions"]), "number of nodes (resolutions)")
    expect(tree.width, len(case["tree_hashes"]), "number of nodes (tree_hashes)")
    for node, resolution in enumerate(case["resolutions"]):
        expect(tree.resolution(node), resolution, f"resolution of node {node}")
    for node, tree_hash in enumerate(case["tree_hashes"]):
        expect(tree.node_tree_hash(node), h(tree_hash), f"tree hash of node {node}")
    try:
        tree.verify(h(case["group_id"]))
    except ValidationError as exc:
        raise VectorMismatch(f"valid tree rejected: {exc}") from exc
