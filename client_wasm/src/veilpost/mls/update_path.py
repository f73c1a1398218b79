"""Update paths (RFC 9420 §7.6): the committer's new leaf and its re-keyed direct path.

Each :class:`UpdatePathNode` holds the new public key of one node of the committer's filtered
direct path and that node's path secret encrypted (``EncryptWithLabel``, label
``"UpdatePathNode"``) to every node of the matching copath node's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from veilpost.codec import Reader, Writer
from veilpost.mls.leaf_node import LeafNode


@dataclass(frozen=True)
class HPKECiphertext:
    """``struct { opaque kem_output<V>; opaque ciphertext<V>; } HPKECiphertext``."""

    kem_output: bytes
    ciphertext: bytes

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.kem_output)
        writer.opaque(self.ciphertext)

    @classmethod
    def decode(cls, reader: Reader) -> HPKECiphertext:
        return cls(
            reader.opaque("HPKECiphertext.kem_output"),
            reader.opaque("HPKECiphertext.ciphertext"),
        )


@dataclass(frozen=True)
class UpdatePathNode:
    """``struct UpdatePathNode``: a new public key and its path secret, once per recipient."""

    encryption_key: bytes
    encrypted_path_secret: list[HPKECiphertext] = field(default_factory=list)

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.encryption_key)
        writer.struct_vector(self.encrypted_path_secret)

    @classmethod
    def decode(cls, reader: Reader) -> UpdatePathNode:
        return cls(
            reader.opaque("UpdatePathNode.encryption_key"),
            reader.vector(HPKECiphertext.decode, "UpdatePathNode.encrypted_path_secret"),
        )


@dataclass(frozen=True)
class UpdatePath:
    """``struct { LeafNode leaf_node; UpdatePathNode nodes<V>; } UpdatePath``."""

    leaf_node: LeafNode
    nodes: list[UpdatePathNode] = field(default_factory=list)

    def encode(self, writer: Writer) -> None:
        self.leaf_node.encode(writer)
        writer.struct_vector(self.nodes)

    @classmethod
    def decode(cls, reader: Reader) -> UpdatePath:
        return cls(
            LeafNode.decode(reader), reader.vector(UpdatePathNode.decode, "UpdatePath.nodes")
        )
