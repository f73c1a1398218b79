"""Ratchet tree nodes (RFC 9420 §7.1, §7.8) and the ``ratchet_tree`` extension (§12.4.3.3).

A tree node is a :class:`~veilpost.mls.leaf_node.LeafNode` or a :class:`ParentNode`; on the
wire the two are told apart by a :class:`NodeType` (the :class:`Node` union). The
``ratchet_tree`` extension carries the whole tree as ``optional<Node> ratchet_tree<V>``,
``None`` standing for a blank node, in array order (leaf ``L`` at index ``2L``). Decoding
checks only the syntax; the tree's shape and contents are validated when a joiner builds its
tree from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from veilpost.codec import Reader, Writer
from veilpost.mls._wire import read_uint32s, unknown_selector
from veilpost.mls.leaf_node import LeafNode


class NodeType(enum.IntEnum):
    """``enum NodeType``."""

    LEAF = 1
    PARENT = 2


@dataclass(frozen=True)
class ParentNode:
    """``struct ParentNode``: a subtree's HPKE key, parent hash and unmerged leaves (§7.1)."""

    encryption_key: bytes
    parent_hash: bytes = b""
    unmerged_leaves: list[int] = field(default_factory=list)

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.encryption_key)
        writer.opaque(self.parent_hash)
        writer.vector(self.unmerged_leaves, Writer.uint32)

    @classmethod
    def decode(cls, reader: Reader) -> ParentNode:
        return cls(
            reader.opaque("ParentNode.encryption_key"),
            reader.opaque("ParentNode.parent_hash"),
            read_uint32s(reader, "ParentNode.unmerged_leaves"),
        )


@dataclass(frozen=True)
class Node:
    """``struct Node``: ``body`` is the leaf or parent node; ``node_type`` follows from it."""

    body: LeafNode | ParentNode

    @property
    def node_type(self) -> NodeType:
        return NodeType.LEAF if isinstance(self.body, LeafNode) else NodeType.PARENT

    def encode(self, writer: Writer) -> None:
        writer.uint8(self.node_type)
        self.body.encode(writer)

    @classmethod
    def decode(cls, reader: Reader) -> Node:
        start = reader.offset
        node_type = reader.uint8("Node.node_type")
        if node_type == NodeType.LEAF:
            return cls(LeafNode.decode(reader))
        if node_type == NodeType.PARENT:
            return cls(ParentNode.decode(reader))
        raise unknown_selector("Node.node_type", node_type, start)


def _read_optional_node(reader: Reader) -> Node | None:
    return reader.optional(Node.decode, "ratchet_tree entry")


def _write_optional_node(writer: Writer, node: Node | None) -> None:
    writer.optional_struct(node)


def read_ratchet_tree(reader: Reader) -> list[Node | None]:
    """Read ``optional<Node> ratchet_tree<V>`` (``None`` for a blank node)."""
    return reader.vector(_read_optional_node, "ratchet_tree")


def write_ratchet_tree(writer: Writer, nodes: list[Node | None]) -> None:
    """Write ``optional<Node> ratchet_tree<V>``."""
    writer.vector(nodes, _write_optional_node)


def decode_ratchet_tree(data: bytes) -> list[Node | None]:
    """Decode a ``ratchet_tree`` extension's ``extension_data``, all of it."""
    reader = Reader(data)
    nodes = read_ratchet_tree(reader)
    reader.finish("ratchet_tree")
    return nodes


def encode_ratchet_tree(nodes: list[Node | None]) -> bytes:
    """Encode a tree as a ``ratchet_tree`` extension's ``extension_data``."""
    writer = Writer()
    write_ratchet_tree(writer, nodes)
    return writer.getvalue()
