"""Extensions (RFC 9420 §13, §17.3): the generic ``Extension`` struct and the registry.

Typed views of the payloads (the ``extension_data``) of the default extensions:
:class:`RequiredCapabilities` (§11.1), :class:`ExternalPub` (§12.4.3.2) and the
``external_senders`` list of :class:`ExternalSender` (§12.1.8.1) are here; the
``ratchet_tree`` payload is in :mod:`veilpost.mls.nodes`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from veilpost.codec import Reader, Writer
from veilpost.mls._wire import read_uint16s
from veilpost.mls.credential import Credential


class ExtensionType(enum.IntEnum):
    """The MLS Extension Types registry (§17.3)."""

    APPLICATION_ID = 0x0001
    RATCHET_TREE = 0x0002
    REQUIRED_CAPABILITIES = 0x0003
    EXTERNAL_PUB = 0x0004
    EXTERNAL_SENDERS = 0x0005


DEFAULT_EXTENSION_TYPES = frozenset(ExtensionType)
"""Extensions every implementation supports; they need not be listed in capabilities (§7.2)."""


@dataclass(frozen=True)
class Extension:
    """``struct { ExtensionType extension_type; opaque extension_data<V>; } Extension``.

    ``extension_type`` is a plain ``int`` so that unknown (e.g. GREASE) types round-trip.
    """

    extension_type: int
    extension_data: bytes

    def encode(self, writer: Writer) -> None:
        writer.uint16(self.extension_type)
        writer.opaque(self.extension_data)

    @classmethod
    def decode(cls, reader: Reader) -> Extension:
        return cls(reader.uint16("extension_type"), reader.opaque("extension_data"))


def find_extension(extensions: list[Extension], extension_type: int) -> Extension | None:
    """Return the extension of the given type, or ``None``."""
    for extension in extensions:
        if extension.extension_type == extension_type:
            return extension
    return None


@dataclass(frozen=True)
class RequiredCapabilities:
    """``struct RequiredCapabilities`` (§11.1): what every member of the group must support.

    Types are plain ``int``: a group may require extensions and credentials we do not know.
    """

    extension_types: list[int] = field(default_factory=list)
    proposal_types: list[int] = field(default_factory=list)
    credential_types: list[int] = field(default_factory=list)

    def encode(self, writer: Writer) -> None:
        writer.vector(self.extension_types, Writer.uint16)
        writer.vector(self.proposal_types, Writer.uint16)
        writer.vector(self.credential_types, Writer.uint16)

    @classmethod
    def decode(cls, reader: Reader) -> RequiredCapabilities:
        return cls(
            read_uint16s(reader, "RequiredCapabilities.extension_types"),
            read_uint16s(reader, "RequiredCapabilities.proposal_types"),
            read_uint16s(reader, "RequiredCapabilities.credential_types"),
        )


@dataclass(frozen=True)
class ExternalPub:
    """``struct { HPKEPublicKey external_pub; } ExternalPub`` (§12.4.3.2)."""

    external_pub: bytes

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.external_pub)

    @classmethod
    def decode(cls, reader: Reader) -> ExternalPub:
        return cls(reader.opaque("ExternalPub.external_pub"))


@dataclass(frozen=True)
class ExternalSender:
    """``struct ExternalSender`` (§12.1.8.1): a party allowed to send external proposals."""

    signature_key: bytes
    credential: Credential

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.signature_key)
        self.credential.encode(writer)

    @classmethod
    def decode(cls, reader: Reader) -> ExternalSender:
        return cls(reader.opaque("ExternalSender.signature_key"), Credential.decode(reader))


def decode_external_senders(data: bytes) -> list[ExternalSender]:
    """Decode an ``external_senders`` extension's data: ``ExternalSender external_senders<V>``."""
    reader = Reader(data)
    senders = reader.vector(ExternalSender.decode, "external_senders")
    reader.finish("external_senders")
    return senders


def encode_external_senders(senders: list[ExternalSender]) -> bytes:
    """Encode ``ExternalSender external_senders<V>`` as an extension's data."""
    writer = Writer()
    writer.struct_vector(senders)
    return writer.getvalue()
