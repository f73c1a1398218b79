"""TreeKEM (RFC 9420 §7.4–§7.6, §7.9): the working group's ``treekem.json`` on every backend,
whole groups committing through :class:`tree_builders.TreeGroup`, one test per rule an
UpdatePath must follow, and a property test over random Add/Remove/Update/commit sequences.

``treekem.json`` takes about 5 s on the pure backend under CPython, so every case runs on
every backend (the pure backend is the only one inside Pyodide).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mls_vectors import run_vector_file
from support import BACKENDS
from tree_builders import GROUP_ID, TreeGroup, build_group, suite_on

from veilpost.codec import Reader, Writer, encode
from veilpost.crypto import CryptoBackend
from veilpost.mls.errors import ProtocolError, UsageError, ValidationError
from veilpost.mls.group_context import GroupContext
from veilpost.mls.leaf_node import LeafNodeSource
from veilpost.mls.ratchet_tree import RatchetTree
from veilpost.mls.tree_math import common_ancestor
from veilpost.mls.treekem import (
    UPDATE_PATH_NODE_LABEL,
    AppliedUpdatePath,
    CreatedUpdatePath,
    HpkeKeyPair,
    TreePrivateKeys,
    apply_update_path,
    create_update_path,
)
from veilpost.mls.update_path import HPKECiphertext, UpdatePath
from veilpost.mls.vectors import CHECKERS
from veilpost.mls.vectors.treekem import check_treekem


def test_treekem_vectors(backend: CryptoBackend) -> None:
    assert CHECKERS["treekem"] is check_treekem
    assert {1, 3} <= run_vector_file("treekem", backend)


# -- a small group, and paths made but not yet delivered ------------------------------------


@pytest.fixture
def group(backend: CryptoBackend) -> TreeGroup:
    """Six members: 0, 1, 2 merged by a commit from 0; 3, 4, 5 added since (unmerged)."""
    return build_group(suite_on(backend), 6)


def make_path(
    group: TreeGroup, sender: int, new_leaves: list[int] | None = None
) -> tuple[CreatedUpdatePath, GroupContext]:
    """A path from ``sender`` over the group's tree, not delivered to anyone."""
    context = replace(group.context(), epoch=group.epoch + 1)
    staged = group.tree.copy()
    template = staged.leaf(sender)
    assert template is not None
    created = create_update_path(
        group.suite,
        staged,
        group.keys[sender],
        template,
        group.identities[sender].signature_private_key,
        context,
        new_leaves=new_leaves or [],
    )
    return created, context


def apply_at(
    group: TreeGroup,
    receiver: int,
    sender: int,
    path: UpdatePath,
    context: GroupContext,
    keys: TreePrivateKeys | None = None,
) -> AppliedUpdatePath:
    return apply_update_path(
        group.suite, group.tree.copy(), keys or group.keys[receiver], sender, path, context
    )


def _ciphertext_index(group: TreeGroup, sender: int, receiver: int) -> tuple[int, int]:
    """Which path node and which of its ciphertexts ``receiver`` decrypts."""
    ancestor = common_ancestor(2 * sender, 2 * receiver, group.tree.n_leaves)
    path = group.tree.filtered_path(sender)
    position = next(i for i, step in enumerate(path) if step.node == ancestor)
    held = [n for n in path[position].resolution if n in group.keys[receiver]]
    return position, path[position].resolution.index(held[0])


def _replace_ciphertext(
    path: UpdatePath, position: int, index: int, ciphertext: HPKECiphertext
) -> UpdatePath:
    nodes = list(path.nodes)
    secrets = list(nodes[position].encrypted_path_secret)
    secrets[index] = ciphertext
    nodes[position] = replace(nodes[position], encrypted_path_secret=secrets)
    return replace(path, nodes=nodes)


# -- whole groups --------------------------------------------------------------------------------


def test_every_member_derives_the_committers_secret_and_tree(group: TreeGroup) -> None:
    for sender in (5, 1, 3):  # TreeGroup.commit asserts agreement at every member
        created = group.commit(sender)
        group.check_private_keys()
        group.tree.verify(GROUP_ID)
        assert created.group_context.tree_hash == group.tree.tree_hash()
        assert group.tree.leaf(sender) == created.update_path.leaf_node
    root_key = group.tree.encryption_key(group.tree.root)
    for keys in group.keys.values():
        pair = keys.key_pair(group.tree.root)
        assert pair is not None and pair.public_key == root_key


def test_the_committer_keeps_only_its_new_leaf_and_path_keys(group: TreeGroup) -> None:
    old_leaf = group.keys[1].key_pair(2)
    created = group.commit(1)
    assert created.private_keys.nodes() == sorted([2, *created.path_secrets])
    assert list(created.path_secrets) == group.tree.filtered_direct_path(1)
    assert created.private_keys.key_pair(2) != old_leaf
    leaf = created.update_path.leaf_node
    assert leaf.leaf_node_source is LeafNodeSource.COMMIT and leaf.lifetime is None
    leaf.verify_signature(group.suite, GROUP_ID, 1)


def test_new_members_get_no_ciphertext_and_join_from_their_path_secret(group: TreeGroup) -> None:
    joiners = [group.add(b"joiner a"), group.add(b"joiner b")]
    assert joiners == [6, 7]
    created, _ = make_path(group, 0, new_leaves=joiners)
    path = group.tree.filtered_path(0)
    # The joiners (nodes 12 and 14) count when filtering the direct path, but are never
    # among the recipients of a path secret.
    recipients = group.tree.filtered_path(0, exclude_leaves=joiners)
    assert [s.node for s in recipients] == [s.node for s in path]
    counts = [len(n.encrypted_path_secret) for n in created.update_path.nodes]
    assert counts == [len(s.resolution) for s in recipients]
    assert all(12 not in s.resolution and 14 not in s.resolution for s in recipients)
    group.commit(0, new_leaves=joiners)  # joiners derive their keys from path_secret_for
    group.check_private_keys()
    assert group.keys[6].key_pair(group.tree.root) is not None


def test_a_node_whose_only_recipients_are_joiners_gets_an_empty_ciphertext_list() -> None:
    group = TreeGroup(suite_on(BACKENDS[0]))
    joiner = group.add(b"the only other member")
    created = group.commit(0, new_leaves=[joiner])
    assert [len(n.encrypted_path_secret) for n in created.update_path.nodes] == [0]
    group.check_private_keys()


# -- rules an UpdatePath must follow, one at a time -------------------------------------------


def test_an_update_path_with_too_few_or_too_many_nodes_is_rejected(group: TreeGroup) -> None:
    created, context = make_path(group, 1)
    path = created.update_path
    for nodes in (path.nodes[:-1], [*path.nodes, path.nodes[-1]]):
        with pytest.raises(ValidationError, match=f"has {len(nodes)} nodes") as raised:
            apply_at(group, 0, 1, replace(path, nodes=nodes), context)
        assert raised.value.check == "update_path.node_count"
        assert raised.value.section == "7.6"


def test_a_missing_ciphertext_is_rejected(group: TreeGroup) -> None:
    created, context = make_path(group, 1)
    path = created.update_path
    nodes = list(path.nodes)
    nodes[-1] = replace(nodes[-1], encrypted_path_secret=nodes[-1].encrypted_path_secret[1:])
    with pytest.raises(ValidationError, match="encrypted path secrets") as raised:
        apply_at(group, 0, 1, replace(path, nodes=nodes), context)
    assert raised.value.check == "update_path.ciphertext_count"


def test_a_leaf_parent_hash_that_does_not_match_the_path_is_rejected(group: TreeGroup) -> None:
    created, context = make_path(group, 1)
    leaf = created.update_path.leaf_node
    assert leaf.parent_hash
    bad = replace(leaf, parent_hash=bytes([leaf.parent_hash[0] ^ 1]) + leaf.parent_hash[1:])
    with pytest.raises(ValidationError, match="carries parent hash") as raised:
        apply_at(group, 0, 1, replace(created.update_path, leaf_node=bad), context)
    assert raised.value.check == "update_path.parent_hash"
    assert raised.value.section == "7.9.2"


def test_a_path_key_not_derived_from_the_path_secret_is_rejected(group: TreeGroup) -> None:
    # A committer that publishes keys (parent hashes and signature all correct) but sends
    # member 0 a path secret that does not derive them.
    sender, receiver = 4, 0
    created, context = make_path(group, sender)
    position, index = _ciphertext_index(group, sender, receiver)
    recipient = group.tree.filtered_path(sender)[position].resolution[index]
    forged = HPKECiphertext(
        *group.suite.encrypt_with_label(
            group.tree.encryption_key(recipient),
            UPDATE_PATH_NODE_LABEL,
            encode(created.group_context),
            bytes(32),
        )
    )
    path = _replace_ciphertext(created.update_path, position, index, forged)
    with pytest.raises(ValidationError, match="public key derived for node") as raised:
        apply_at(group, receiver, sender, path, context)
    assert raised.value.check == "update_path.public_key"
    assert raised.value.section == "7.5"


def test_decrypting_with_the_wrong_private_key_fails_with_a_typed_error(group: TreeGroup) -> None:
    sender, receiver = 1, 3
    created, context = make_path(group, sender)
    own_leaf = group.keys[receiver].key_pair(2 * receiver)
    assert own_leaf is not None
    wrong_private, _ = group.suite.hpke_key_pair()
    keys = TreePrivateKeys.for_leaf(receiver, HpkeKeyPair(wrong_private, own_leaf.public_key))
    with pytest.raises(ProtocolError, match="cannot decrypt the path secret") as raised:
        apply_at(group, receiver, sender, created.update_path, context, keys)
    assert raised.value.check == "update_path.decryption"
    assert not isinstance(raised.value, ValidationError)


def test_a_path_encrypted_under_another_group_context_does_not_decrypt(group: TreeGroup) -> None:
    created, context = make_path(group, 1)
    with pytest.raises(ProtocolError) as raised:
        apply_at(group, 0, 1, created.update_path, replace(context, epoch=context.epoch + 1))
    assert raised.value.check == "update_path.decryption"


def test_a_member_without_a_usable_key_is_told_so(group: TreeGroup) -> None:
    created, context = make_path(group, 1)
    with pytest.raises(ProtocolError, match="no private key for any recipient") as raised:
        apply_at(group, 0, 1, created.update_path, context, TreePrivateKeys(0))
    assert raised.value.check == "update_path.decryption"


def test_a_path_that_keeps_the_leaf_key_or_reuses_a_tree_key_is_rejected(
    group: TreeGroup,
) -> None:
    created, context = make_path(group, 1)
    old_leaf = group.tree.leaf(1)
    assert old_leaf is not None
    kept = replace(created.update_path.leaf_node, encryption_key=old_leaf.encryption_key)
    with pytest.raises(ValidationError, match="keeps its encryption key") as raised:
        apply_at(group, 0, 1, replace(created.update_path, leaf_node=kept), context)
    assert raised.value.check == "update_path.leaf_encryption_key"
    nodes = list(created.update_path.nodes)
    nodes[0] = replace(nodes[0], encryption_key=group.tree.encryption_key(2 * 4))
    with pytest.raises(ValidationError, match="already appears in the tree") as raised:
        apply_at(group, 0, 1, replace(created.update_path, nodes=nodes), context)
    assert raised.value.check == "update_path.duplicate_public_key"


def test_applying_a_path_leaves_the_callers_keys_untouched(group: TreeGroup) -> None:
    created, context = make_path(group, 1)
    before = group.keys[0].copy()
    applied = apply_at(group, 0, 1, created.update_path, context)
    assert group.keys[0] == before
    assert applied.private_keys != before
    assert applied.commit_secret == created.commit_secret


def test_a_committer_cannot_apply_its_own_path(group: TreeGroup) -> None:
    created, context = make_path(group, 1)
    with pytest.raises(UsageError, match="does not apply its own UpdatePath"):
        apply_at(group, 1, 1, created.update_path, context)


def test_a_path_secret_that_does_not_match_the_tree_is_rejected(group: TreeGroup) -> None:
    created = group.commit(2)
    node = common_ancestor(4, 0, group.tree.n_leaves)
    keys = TreePrivateKeys(0)
    keys.with_path_secret(group.suite, group.tree, node, created.path_secret_for(0))
    with pytest.raises(ValidationError, match="is not the node's public key") as raised:
        keys.with_path_secret(group.suite, group.tree, node, bytes(32))
    assert raised.value.check == "path_secret.public_key"


# -- private key state -------------------------------------------------------------------------


def test_private_keys_round_trip_and_hide_their_secrets(group: TreeGroup) -> None:
    keys = group.commit(1).private_keys
    writer = Writer()
    keys.encode(writer)
    reader = Reader(writer.getvalue())
    assert TreePrivateKeys.decode(reader) == keys
    reader.finish()
    for _, pair in keys:
        assert pair.private_key.hex() not in repr(keys) + repr(pair)


def test_verify_catches_keys_that_do_not_match_the_tree(group: TreeGroup) -> None:
    keys = group.keys[0].copy()
    private_key, public_key = group.suite.hpke_key_pair()
    keys.set(2 * 0, HpkeKeyPair(private_key, public_key))
    with pytest.raises(ValidationError, match="node 0, but that node holds another") as raised:
        keys.verify(group.suite, group.tree)
    assert raised.value.check == "tree_private_keys.public_key"
    keys.set(2 * 0, HpkeKeyPair(bytes(32), public_key))
    with pytest.raises(ValidationError, match="does not match its public key"):
        keys.verify(group.suite, group.tree)
    keys.prune(group.tree)
    assert 0 not in keys


# -- property: random proposals and commits ------------------------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(("add", "add", "remove", "update", "commit", "commit")), st.integers(0, 255)
    ),
    min_size=4,
    max_size=16,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS, seed=st.binary(max_size=4))
def test_random_changes_keep_tree_hashes_parent_hashes_and_keys_consistent(
    operations: list[tuple[str, int]], seed: bytes
) -> None:
    """After any sequence of Adds, Removes, Updates and commits with a path, the cached tree
    hash equals one computed from scratch, every parent node is parent-hash valid, every
    member's private keys match the tree and, after a commit, everyone knows the root key."""
    suite = suite_on(BACKENDS[0], seed=seed)
    group = TreeGroup(suite, sign=False)
    pending: list[int] = []  # added since the last commit: that commit's new members
    for operation, pick in operations:
        members = sorted(group.keys)
        merged = [m for m in members if m not in pending]
        if operation == "add":
            pending.append(group.add(b"member %d" % pick))
        elif operation == "remove" and len(members) > 1:
            target = members[pick % len(members)]
            group.remove(target)
            pending = [m for m in pending if m != target]
        elif operation == "update" and merged:
            group.update(merged[pick % len(merged)])
        elif operation == "commit" and merged:
            group.commit(merged[pick % len(merged)], new_leaves=pending)
            pending = []
            root = group.tree.root
            if group.tree.node(root) is not None:
                assert all(root in keys for keys in group.keys.values())
        tree = group.tree
        assert tree.tree_hash() == RatchetTree.decode(suite, tree.encode()).tree_hash()
        tree.verify_unmerged_leaves()
        tree.verify_parent_hashes()
        group.check_private_keys()
    event(f"{group.epoch} commits")
    event(f"{len(group.keys)} members at the end")
