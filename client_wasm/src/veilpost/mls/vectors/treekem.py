"""Checker for ``treekem.json``: update paths applied by every member with private state,
and update paths we make ourselves applied by the same members (RFC 9420 §7.4–§7.9)."""

from __future__ import annotations

from typing import Any

from veilpost.codec import decode
from veilpost.crypto import CipherSuite, CryptoProvider
from veilpost.mls.errors import MlsError
from veilpost.mls.group_context import GroupContext
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.treekem import (
    HpkeKeyPair,
    TreePrivateKeys,
    apply_update_path,
    create_update_path,
    derive_node_key_pair,
)
from veilpost.mls.update_path import UpdatePath
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h, suite_for


def _private_state(
    suite: CipherSuite, tree: RatchetTree, entry: dict[str, Any]
) -> tuple[TreePrivateKeys, bytes]:
    """A member's keys from ``leaves_private``, checked against the tree; and its signature
    private key."""
    index = int(entry["index"])
    leaf = tree.leaf(index)
    if leaf is None:
        raise VectorMismatch(f"leaves_private lists leaf {index}, which is blank")
    keys = TreePrivateKeys.for_leaf(
        index, HpkeKeyPair(h(entry["encryption_priv"]), leaf.encryption_key)
    )
    for item in entry["path_secrets"]:
        keys.set(int(item["node"]), derive_node_key_pair(suite, h(item["path_secret"])))
    try:
        keys.verify(suite, tree)
    except MlsError as exc:
        raise VectorMismatch(f"private state of leaf {index}: {exc}") from exc
    return keys, h(entry["signature_priv"])


@checker("treekem")
def check_treekem(case: Case, provider: CryptoProvider) -> None:
    """For each update path: every other member with private state applies it and gets the
    listed path secret, the commit secret and the tree hash after. Then the same sender makes
    a fresh path over the same tree, and every other member applies that one too and gets
    our commit secret, our tree and the path secret meant for it."""
    suite = suite_for(case, provider)
    tree = RatchetTree.decode(suite, h(case["ratchet_tree"]))
    context = GroupContext(
        cipher_suite=int(case["cipher_suite"]),
        group_id=h(case["group_id"]),
        epoch=int(case["epoch"]),
        tree_hash=tree.tree_hash(),
        confirmed_transcript_hash=h(case["confirmed_transcript_hash"]),
    )
    members = {
        int(entry["index"]): _private_state(suite, tree, entry) for entry in case["leaves_private"]
    }
    for number, entry in enumerate(case["update_paths"]):
        sender = int(entry["sender"])
        where = f"update_paths[{number}] from leaf {sender}"
        update_path = decode(UpdatePath, h(entry["update_path"]))
        for receiver, (keys, _) in members.items():
            if receiver == sender:
                continue
            staged = tree.copy()
            try:
                applied = apply_update_path(suite, staged, keys, sender, update_path, context)
            except MlsError as exc:
                raise VectorMismatch(f"{where}, leaf {receiver}: rejected: {exc}") from exc
            expect(
                applied.path_secret,
                h(entry["path_secrets"][receiver]),
                f"{where}: path secret of leaf {receiver}",
            )
            expect(applied.commit_secret, h(entry["commit_secret"]), f"{where}: commit_secret")
            expect(staged.tree_hash(), h(entry["tree_hash_after"]), f"{where}: tree_hash_after")
            expect(applied.group_context.tree_hash, staged.tree_hash(), f"{where}: context")

        if sender not in members:
            continue
        sender_keys, signature_private_key = members[sender]
        ours = tree.copy()
        leaf = tree.leaf(sender)
        assert leaf is not None
        created = create_update_path(suite, ours, sender_keys, leaf, signature_private_key, context)
        try:
            ours.verify_parent_hashes()
            created.update_path.leaf_node.verify_signature(suite, context.group_id, sender)
        except MlsError as exc:
            raise VectorMismatch(f"{where}: our own path: {exc}") from exc
        for receiver, (keys, _) in members.items():
            if receiver == sender:
                continue
            staged = tree.copy()
            try:
                applied = apply_update_path(
                    suite, staged, keys, sender, created.update_path, context
                )
            except MlsError as exc:
                raise VectorMismatch(f"{where}, leaf {receiver}: our path rejected: {exc}") from exc
            expect(applied.commit_secret, created.commit_secret, f"{where}: our commit secret")
            expect(staged.encode(), ours.encode(), f"{where}: tree after our path")
            expect(
                applied.path_secret,
                created.path_secret_for(receiver),
                f"{where}: our path secret for leaf {receiver}",
            )
