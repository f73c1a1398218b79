"""Proposals (RFC 9420 §12.1) and the by-value-or-by-reference wrapper of Commits (§12.4).

Each proposal kind is its own struct (:class:`Add`, :class:`Update`, …) carrying its
``PROPOSAL_TYPE``; :class:`Proposal` is the tagged union that goes on the wire. The RFC
defines the content of its seven proposal types only, so any other ``proposal_type`` (GREASE
included, which §13.5 forbids here) cannot be decoded and is a
:class:`~veilpost.codec.DecodeError`. Proposal types in ``Capabilities`` and
``RequiredCapabilities`` stay plain ``int``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from veilpost.codec import Reader, Writer
from veilpost.mls._wire import unknown_selector
from veilpost.mls.extensions import Extension
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import LeafNode
from veilpost.mls.psk import PreSharedKeyID


class ProposalType(enum.IntEnum):
    """The proposal types of RFC 9420 (§17.4)."""

    ADD = 0x0001
    UPDATE = 0x0002
    REMOVE = 0x0003
    PSK = 0x0004
    REINIT = 0x0005
    EXTERNAL_INIT = 0x0006
    GROUP_CONTEXT_EXTENSIONS = 0x0007


@dataclass(frozen=True)
class Add:
    """``struct { KeyPackage key_package; } Add`` (§12.1.1)."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.ADD
    key_package: KeyPackage

    def encode(self, writer: Writer) -> None:
        self.key_package.encode(writer)

    @classmethod
    def decode(cls, reader: Reader) -> Add:
        return cls(KeyPackage.decode(reader))


@dataclass(frozen=True)
class Update:
    """``struct { LeafNode leaf_node; } Update`` (§12.1.2)."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.UPDATE
    leaf_node: LeafNode

    def encode(self, writer: Writer) -> None:
        self.leaf_node.encode(writer)

    @classmethod
    def decode(cls, reader: Reader) -> Update:
        return cls(LeafNode.decode(reader))


@dataclass(frozen=True)
class Remove:
    """``struct { uint32 removed; } Remove`` (§12.1.3): the leaf index to remove."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.REMOVE
    removed: int

    def encode(self, writer: Writer) -> None:
        writer.uint32(self.removed)

    @classmethod
    def decode(cls, reader: Reader) -> Remove:
        return cls(reader.uint32("Remove.removed"))


@dataclass(frozen=True)
class PreSharedKey:
    """``struct { PreSharedKeyID psk; } PreSharedKey`` (§12.1.4)."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.PSK
    psk: PreSharedKeyID

    def encode(self, writer: Writer) -> None:
        self.psk.encode(writer)

    @classmethod
    def decode(cls, reader: Reader) -> PreSharedKey:
        return cls(PreSharedKeyID.decode(reader))


@dataclass(frozen=True)
class ReInit:
    """``struct ReInit`` (§12.1.5): the parameters of the group that replaces this one.

    ``version`` is a plain ``int``: a ReInit may move the group to a newer protocol version.
    """

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.REINIT
    group_id: bytes
    version: int
    cipher_suite: int
    extensions: list[Extension] = field(default_factory=list)

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.uint16(self.version)
        writer.uint16(self.cipher_suite)
        writer.struct_vector(self.extensions)

    @classmethod
    def decode(cls, reader: Reader) -> ReInit:
        return cls(
            reader.opaque("ReInit.group_id"),
            reader.uint16("ReInit.version"),
            reader.uint16("ReInit.cipher_suite"),
            reader.vector(Extension.decode, "ReInit.extensions"),
        )


@dataclass(frozen=True)
class ExternalInit:
    """``struct { opaque kem_output<V>; } ExternalInit`` (§12.1.6)."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.EXTERNAL_INIT
    kem_output: bytes

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.kem_output)

    @classmethod
    def decode(cls, reader: Reader) -> ExternalInit:
        return cls(reader.opaque("ExternalInit.kem_output"))


@dataclass(frozen=True)
class GroupContextExtensions:
    """``struct { Extension extensions<V>; } GroupContextExtensions`` (§12.1.7)."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.GROUP_CONTEXT_EXTENSIONS
    extensions: list[Extension] = field(default_factory=list)

    def encode(self, writer: Writer) -> None:
        writer.struct_vector(self.extensions)

    @classmethod
    def decode(cls, reader: Reader) -> GroupContextExtensions:
        return cls(reader.vector(Extension.decode, "GroupContextExtensions.extensions"))


ProposalBody = Add | Update | Remove | PreSharedKey | ReInit | ExternalInit | GroupContextExtensions
"""The content of a :class:`Proposal`, one struct per proposal type."""

_PROPOSAL_DECODERS: dict[int, Callable[[Reader], ProposalBody]] = {
    ProposalType.ADD: Add.decode,
    ProposalType.UPDATE: Update.decode,
    ProposalType.REMOVE: Remove.decode,
    ProposalType.PSK: PreSharedKey.decode,
    ProposalType.REINIT: ReInit.decode,
    ProposalType.EXTERNAL_INIT: ExternalInit.decode,
    ProposalType.GROUP_CONTEXT_EXTENSIONS: GroupContextExtensions.decode,
}


@dataclass(frozen=True)
class Proposal:
    """``struct Proposal``: the tagged union; ``proposal_type`` follows from ``body``."""

    body: ProposalBody

    @property
    def proposal_type(self) -> ProposalType:
        return self.body.PROPOSAL_TYPE

    def encode(self, writer: Writer) -> None:
        writer.uint16(self.body.PROPOSAL_TYPE)
        self.body.encode(writer)

    @classmethod
    def decode(cls, reader: Reader) -> Proposal:
        start = reader.offset
        proposal_type = reader.uint16("Proposal.proposal_type")
        decode_body = _PROPOSAL_DECODERS.get(proposal_type)
        if decode_body is None:
            raise unknown_selector("Proposal.proposal_type", proposal_type, start)
        return cls(decode_body(reader))


class ProposalOrRefType(enum.IntEnum):
    """``enum ProposalOrRefType`` (§12.4)."""

    PROPOSAL = 1
    REFERENCE = 2


@dataclass(frozen=True)
class ProposalOrRef:
    """``struct ProposalOrRef``: a proposal by value, or a ``ProposalRef`` (bytes, §5.2)."""

    body: Proposal | bytes

    @property
    def type(self) -> ProposalOrRefType:
        if isinstance(self.body, Proposal):
            return ProposalOrRefType.PROPOSAL
        return ProposalOrRefType.REFERENCE

    def encode(self, writer: Writer) -> None:
        if isinstance(self.body, Proposal):
            writer.uint8(ProposalOrRefType.PROPOSAL)
            self.body.encode(writer)
        else:
            writer.uint8(ProposalOrRefType.REFERENCE)
            writer.opaque(self.body)

    @classmethod
    def decode(cls, reader: Reader) -> ProposalOrRef:
        start = reader.offset
        kind = reader.uint8("ProposalOrRef.type")
        if kind == ProposalOrRefType.PROPOSAL:
            return cls(Proposal.decode(reader))
        if kind == ProposalOrRefType.REFERENCE:
            return cls(reader.opaque("ProposalOrRef.reference"))
        raise unknown_selector("ProposalOrRef.type", kind, start)
