"""Checker for ``secret-tree.json``: the secret tree, the sender ratchets and the sender-data
key (RFC 9420 §9, §6.3.2)."""

from __future__ import annotations

from veilpost.crypto import CryptoProvider
from veilpost.mls.secret_tree import (
    RatchetType,
    RatchetWindow,
    SecretTree,
    sender_data_key_and_nonce,
)
from veilpost.mls.vectors import Case, checker, expect, h, suite_for


@checker("secret-tree")
def check_secret_tree(case: Case, provider: CryptoProvider) -> None:
    """Check the sender-data key and nonce, then, in a tree of ``len(leaves)`` leaves, the
    handshake and application key and nonce of every listed generation of every leaf."""
    suite = suite_for(case, provider)
    sender_data = case["sender_data"]
    key, nonce = sender_data_key_and_nonce(
        suite, h(sender_data["sender_data_secret"]), h(sender_data["ciphertext"])
    )
    expect(key, h(sender_data["key"]), "sender_data.key")
    expect(nonce, h(sender_data["nonce"]), "sender_data.nonce")

    leaves = case["leaves"]
    # A window wide enough for every listed generation, in whatever order they come.
    reach = 1 + max((int(e["generation"]) for gens in leaves for e in gens), default=0)
    window = RatchetWindow(out_of_order_tolerance=reach, maximum_forward_distance=reach)
    tree = SecretTree(suite, h(case["encryption_secret"]), len(leaves), window=window)
    for leaf, generations in enumerate(leaves):
        for entry in generations:
            generation = int(entry["generation"])
            for ratchet_type in RatchetType:
                name = ratchet_type.value
                with tree.decryption_key(leaf, ratchet_type, generation) as ratchet_key:
                    where = f"leaf {leaf} generation {generation}"
                    expect(ratchet_key.key, h(entry[f"{name}_key"]), f"{where}: {name}_key")
                    expect(ratchet_key.nonce, h(entry[f"{name}_nonce"]), f"{where}: {name}_nonce")
