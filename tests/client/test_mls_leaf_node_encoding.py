"""LeafNode remembers its encoding (trees re-encode every leaf often); it must never go stale."""

from __future__ import annotations

from dataclasses import replace

from veilpost.codec import Reader, decode, encode
from veilpost.crypto import CipherSuite, CryptoProvider
from veilpost.mls import SigningIdentity, make_key_package
from veilpost.mls.leaf_node import LeafNode


def _leaf() -> LeafNode:
    suite = CipherSuite(1, CryptoProvider())
    bundle = make_key_package(suite, SigningIdentity.generate(suite, b"leaf"), now=1_750_000_000)
    return bundle.key_package.leaf_node


def test_encoding_is_remembered_and_equal_to_a_fresh_encoding() -> None:
    leaf = _leaf()
    first = encode(leaf)
    assert encode(leaf) == first
    rebuilt = replace(leaf)  # a new object: encodes from its fields
    assert "_encoding" not in rebuilt.__dict__
    assert encode(rebuilt) == first


def test_a_changed_copy_does_not_inherit_the_old_encoding() -> None:
    leaf = _leaf()
    old = encode(leaf)
    changed = replace(leaf, signature=bytes(64))
    assert encode(changed) != old
    assert encode(changed).endswith(b"\x40" + bytes(64))


def test_decoding_keeps_exactly_the_bytes_read() -> None:
    data = encode(_leaf())
    reader = Reader(data + b"trailer")
    leaf = LeafNode.decode(reader)
    assert leaf.__dict__["_encoding"] == data
    assert encode(leaf) == data
    assert decode(LeafNode, data) == leaf
