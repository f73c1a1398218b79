"""The group context (RFC 9420 §8.1): what every member agrees on in an epoch."""

from __future__ import annotations

from dataclasses import dataclass, field

from veilpost.codec import DecodeError, Reader, Writer
from veilpost.mls.extensions import Extension

MLS10 = 1
"""``ProtocolVersion`` ``mls10``."""


@dataclass(frozen=True)
class GroupContext:
    """``struct GroupContext`` (§8.1)."""

    cipher_suite: int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: list[Extension] = field(default_factory=list)
    version: int = MLS10

    def encode(self, writer: Writer) -> None:
        writer.uint16(self.version)
        writer.uint16(self.cipher_suite)
        writer.opaque(self.group_id)
        writer.uint64(self.epoch)
        writer.opaque(self.tree_hash)
        writer.opaque(self.confirmed_transcript_hash)
        writer.struct_vector(self.extensions)

    @classmethod
    def decode(cls, reader: Reader) -> GroupContext:
        start = reader.offset
        version = reader.uint16("GroupContext.version")
        if version != MLS10:
            raise DecodeError(f"GroupContext at offset {start}: unknown protocol version {version}")
        return cls(
            version=version,
            cipher_suite=reader.uint16("GroupContext.cipher_suite"),
            group_id=reader.opaque("GroupContext.group_id"),
            epoch=reader.uint64("GroupContext.epoch"),
            tree_hash=reader.opaque("GroupContext.tree_hash"),
            confirmed_transcript_hash=reader.opaque("GroupContext.confirmed_transcript_hash"),
            extensions=reader.vector(Extension.decode, "GroupContext.extensions"),
        )
