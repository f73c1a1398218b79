"""Leaf nodes (RFC 9420 §7.2): a member's keys, credential and capabilities, signed by it.

A :class:`LeafNode` appears in key packages, in Update proposals, in a Commit's update path
and in the ratchet tree. Its signature covers ``LeafNodeTBS`` (:meth:`LeafNode.to_be_signed`):
the fields above the signature and, for leaves made inside a group (``update`` and ``commit``
sources), the group id and the leaf's index. Validation of everything else (§7.3) is done
where the leaf is used, not on decoding.

Values from open registries (cipher suites, extension, proposal and credential types in
:class:`Capabilities`, and protocol versions) are plain ``int`` so that unknown and GREASE
values (§13.5) round-trip.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from veilpost.codec import EncodeError, Reader, Writer
from veilpost.crypto.errors import SignatureVerificationError
from veilpost.mls._wire import read_selector, read_uint16s
from veilpost.mls.credential import Credential
from veilpost.mls.errors import UsageError, ValidationError
from veilpost.mls.extensions import Extension

if TYPE_CHECKING:
    from veilpost.crypto import CipherSuite

LEAF_NODE_SIGNATURE_LABEL = "LeafNodeTBS"


class ProtocolVersion(enum.IntEnum):
    """``enum ProtocolVersion`` (§6): only ``mls10`` is defined."""

    MLS10 = 1


class LeafNodeSource(enum.IntEnum):
    """``enum LeafNodeSource``: how the leaf node came to be in the tree."""

    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


@dataclass(frozen=True)
class Capabilities:
    """``struct Capabilities``: what the client supports, GREASE values included."""

    versions: list[int] = field(default_factory=lambda: [int(ProtocolVersion.MLS10)])
    cipher_suites: list[int] = field(default_factory=list)
    extensions: list[int] = field(default_factory=list)
    proposals: list[int] = field(default_factory=list)
    credentials: list[int] = field(default_factory=list)

    def encode(self, writer: Writer) -> None:
        writer.vector(self.versions, Writer.uint16)
        writer.vector(self.cipher_suites, Writer.uint16)
        writer.vector(self.extensions, Writer.uint16)
        writer.vector(self.proposals, Writer.uint16)
        writer.vector(self.credentials, Writer.uint16)

    @classmethod
    def decode(cls, reader: Reader) -> Capabilities:
        return cls(
            versions=read_uint16s(reader, "Capabilities.versions"),
            cipher_suites=read_uint16s(reader, "Capabilities.cipher_suites"),
            extensions=read_uint16s(reader, "Capabilities.extensions"),
            proposals=read_uint16s(reader, "Capabilities.proposals"),
            credentials=read_uint16s(reader, "Capabilities.credentials"),
        )


@dataclass(frozen=True)
class Lifetime:
    """``struct { uint64 not_before; uint64 not_after; } Lifetime``, in Unix seconds."""

    not_before: int
    not_after: int

    def encode(self, writer: Writer) -> None:
        writer.uint64(self.not_before)
        writer.uint64(self.not_after)

    @classmethod
    def decode(cls, reader: Reader) -> Lifetime:
        return cls(reader.uint64("Lifetime.not_before"), reader.uint64("Lifetime.not_after"))


@dataclass(frozen=True)
class LeafNode:
    """``struct LeafNode``.

    ``lifetime`` is set exactly when ``leaf_node_source`` is ``KEY_PACKAGE`` and
    ``parent_hash`` exactly when it is ``COMMIT``. Build the node with an empty signature and
    call :meth:`sign` to get the signed copy.
    """

    encryption_key: bytes
    signature_key: bytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: LeafNodeSource
    lifetime: Lifetime | None = None
    parent_hash: bytes | None = None
    extensions: list[Extension] = field(default_factory=list)
    signature: bytes = b""

    def _encode_content(self, writer: Writer) -> None:
        """Write the fields shared by ``LeafNode`` and ``LeafNodeTBS``."""
        writer.opaque(self.encryption_key)
        writer.opaque(self.signature_key)
        self.credential.encode(writer)
        self.capabilities.encode(writer)
        source = self.leaf_node_source
        writer.uint8(source)
        if (self.lifetime is not None) != (source == LeafNodeSource.KEY_PACKAGE):
            raise EncodeError(
                f"LeafNode with source {source.name.lower()}: a lifetime goes with (and only"
                " with) source key_package"
            )
        if (self.parent_hash is not None) != (source == LeafNodeSource.COMMIT):
            raise EncodeError(
                f"LeafNode with source {source.name.lower()}: a parent_hash goes with (and only"
                " with) source commit"
            )
        if self.lifetime is not None:
            self.lifetime.encode(writer)
        elif self.parent_hash is not None:
            writer.opaque(self.parent_hash)
        writer.struct_vector(self.extensions)

    def encode(self, writer: Writer) -> None:
        # A leaf node never changes once built (a new signature makes a new object), and trees
        # re-encode every leaf for tree hashes, GroupInfos and saved state: remember the bytes.
        encoded: bytes | None = self.__dict__.get("_encoding")
        if encoded is None:
            inner = Writer()
            self._encode_content(inner)
            inner.opaque(self.signature)
            encoded = inner.getvalue()
            object.__setattr__(self, "_encoding", encoded)
        writer.fixed(encoded)

    @classmethod
    def decode(cls, reader: Reader) -> LeafNode:
        start = reader.offset
        leaf = cls._decode_fields(reader)
        object.__setattr__(leaf, "_encoding", reader.bytes_since(start))
        return leaf

    @classmethod
    def _decode_fields(cls, reader: Reader) -> LeafNode:
        encryption_key = reader.opaque("LeafNode.encryption_key")
        signature_key = reader.opaque("LeafNode.signature_key")
        credential = Credential.decode(reader)
        capabilities = Capabilities.decode(reader)
        source = read_selector(reader, LeafNodeSource, "LeafNode.leaf_node_source")
        lifetime = parent_hash = None
        if source is LeafNodeSource.KEY_PACKAGE:
            lifetime = Lifetime.decode(reader)
        elif source is LeafNodeSource.COMMIT:
            parent_hash = reader.opaque("LeafNode.parent_hash")
        return cls(
            encryption_key,
            signature_key,
            credential,
            capabilities,
            source,
            lifetime=lifetime,
            parent_hash=parent_hash,
            extensions=reader.vector(Extension.decode, "LeafNode.extensions"),
            signature=reader.opaque("LeafNode.signature"),
        )

    def to_be_signed(self, group_id: bytes | None = None, leaf_index: int | None = None) -> bytes:
        """The encoded ``LeafNodeTBS``.

        ``group_id`` and ``leaf_index`` are required for the ``update`` and ``commit`` sources
        and ignored for ``key_package`` (whose signature binds to no group).
        """
        writer = Writer()
        self._encode_content(writer)
        if self.leaf_node_source != LeafNodeSource.KEY_PACKAGE:
            if group_id is None or leaf_index is None:
                raise UsageError(
                    f"LeafNodeTBS of a {self.leaf_node_source.name.lower()} leaf node needs"
                    " the group id and the leaf index"
                )
            writer.opaque(group_id)
            writer.uint32(leaf_index)
        return writer.getvalue()

    def sign(
        self,
        suite: CipherSuite,
        signature_private_key: bytes,
        group_id: bytes | None = None,
        leaf_index: int | None = None,
    ) -> LeafNode:
        """Return a copy signed with ``SignWithLabel(., "LeafNodeTBS", LeafNodeTBS)``."""
        tbs = self.to_be_signed(group_id, leaf_index)
        signature = suite.sign_with_label(signature_private_key, LEAF_NODE_SIGNATURE_LABEL, tbs)
        return replace(self, signature=signature)

    def verify_signature(
        self, suite: CipherSuite, group_id: bytes | None = None, leaf_index: int | None = None
    ) -> None:
        """Check the signature under the leaf's own ``signature_key``.

        Raises :class:`~veilpost.mls.errors.ValidationError` (check ``leaf_node.signature``).
        """
        tbs = self.to_be_signed(group_id, leaf_index)
        try:
            suite.verify_with_label(
                self.signature_key, LEAF_NODE_SIGNATURE_LABEL, tbs, self.signature
            )
        except SignatureVerificationError as exc:
            raise ValidationError(
                f"LeafNode signature does not verify under its signature key: {exc}",
                check="leaf_node.signature",
                section="7.3",
            ) from exc
