"""Checker for ``tree-operations.json``: Add, Update and Remove applied to a ratchet tree
(RFC 9420 §12.1.1–§12.1.3, §7.7, §7.8)."""

from __future__ import annotations

from veilpost.codec import decode
from veilpost.crypto import CryptoProvider
from veilpost.mls.proposals import Add, Proposal, Remove, Update
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h, suite_for


@checker("tree-operations")
def check_tree_operations(case: Case, provider: CryptoProvider) -> None:
    """Check the tree hash of ``tree_before``, apply ``proposal`` from ``proposal_sender``
    and compare the result's encoding and tree hash with ``tree_after``."""
    suite = suite_for(case, provider)
    tree = RatchetTree.decode(suite, h(case["tree_before"]))
    expect(tree.tree_hash(), h(case["tree_hash_before"]), "tree_hash_before")
    proposal = decode(Proposal, h(case["proposal"])).body
    if isinstance(proposal, Add):
        tree.add_leaf(proposal.key_package.leaf_node)
    elif isinstance(proposal, Update):
        tree.update_leaf(int(case["proposal_sender"]), proposal.leaf_node)
    elif isinstance(proposal, Remove):
        tree.remove_leaf(proposal.removed)
    else:
        raise VectorMismatch(f"unexpected {proposal.PROPOSAL_TYPE.name} proposal")
    expect(tree.encode(), h(case["tree_after"]), "tree_after")
    expect(tree.tree_hash(), h(case["tree_hash_after"]), "tree_hash_after")
