"""Message framing (RFC 9420 §6): the envelopes that carry proposals, commits and messages.

How the structures relate (§6)::

    Proposal | Commit | application data
        └─> FramedContent ──(signed over FramedContentTBS)──> FramedContentAuthData
                └──────────────┬───────────────────────────────────┘
                      AuthenticatedContent
                  ┌────────────┴─────────────┐
           PublicMessage              PrivateMessage (PrivateMessageContent, encrypted;
           (+ membership_tag)          SenderData, encrypted under SenderDataAAD)
                  └──────┬───────────────────┘
                     MLSMessage  (also: Welcome, GroupInfo, KeyPackage)

Several encodings depend on a field elsewhere: the ``confirmation_tag`` of
:class:`FramedContentAuthData` is present only for commits, the ``membership_tag`` of a
:class:`PublicMessage` only for member senders, the group context in
:class:`FramedContentTBS` only for ``member`` and ``new_member_commit`` senders, and the body
of a :class:`PrivateMessageContent` is selected by the enclosing ``PrivateMessage``'s content
type (with the zero padding running to the end of the plaintext, §6.3.1). So
:class:`FramedContentAuthData` and :class:`PrivateMessageContent` decode with the content type
passed in. Union fields are typed by their Python class, and the wire selector (``content_type``,
``wire_format``) is derived from it, so the selector and the body cannot disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from veilpost.codec import DecodeError, EncodeError, Reader, Writer
from veilpost.mls._wire import read_selector, unknown_selector
from veilpost.mls.commit import Commit
from veilpost.mls.group_context import GroupContext
from veilpost.mls.group_info import GroupInfo
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.leaf_node import ProtocolVersion
from veilpost.mls.proposals import Proposal
from veilpost.mls.welcome import Welcome


class WireFormat(enum.IntEnum):
    """The MLS Wire Formats registry (§17.2)."""

    MLS_PUBLIC_MESSAGE = 0x0001
    MLS_PRIVATE_MESSAGE = 0x0002
    MLS_WELCOME = 0x0003
    MLS_GROUP_INFO = 0x0004
    MLS_KEY_PACKAGE = 0x0005


class ContentType(enum.IntEnum):
    """``enum ContentType``."""

    APPLICATION = 1
    PROPOSAL = 2
    COMMIT = 3


class SenderType(enum.IntEnum):
    """``enum SenderType``."""

    MEMBER = 1
    EXTERNAL = 2
    NEW_MEMBER_PROPOSAL = 3
    NEW_MEMBER_COMMIT = 4


_INDEXED_SENDERS = (SenderType.MEMBER, SenderType.EXTERNAL)
_SENDERS_WITH_CONTEXT = (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)


@dataclass(frozen=True)
class Sender:
    """``struct Sender``.

    ``index`` is the ``leaf_index`` of a ``member``, the ``sender_index`` (into the
    ``external_senders`` extension) of an ``external`` sender, and 0 for new members.
    """

    sender_type: SenderType
    index: int = 0

    @classmethod
    def member(cls, leaf_index: int) -> Sender:
        return cls(SenderType.MEMBER, leaf_index)

    @classmethod
    def external(cls, sender_index: int) -> Sender:
        return cls(SenderType.EXTERNAL, sender_index)

    @classmethod
    def new_member_proposal(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_PROPOSAL)

    @classmethod
    def new_member_commit(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_COMMIT)

    def encode(self, writer: Writer) -> None:
        writer.uint8(self.sender_type)
        if self.sender_type in _INDEXED_SENDERS:
            writer.uint32(self.index)
        elif self.index:
            raise EncodeError(f"a {self.sender_type.name.lower()} Sender has no index")

    @classmethod
    def decode(cls, reader: Reader) -> Sender:
        sender_type = read_selector(reader, SenderType, "Sender.sender_type")
        if sender_type is SenderType.MEMBER:
            return cls(sender_type, reader.uint32("Sender.leaf_index"))
        if sender_type is SenderType.EXTERNAL:
            return cls(sender_type, reader.uint32("Sender.sender_index"))
        return cls(sender_type)


ContentBody = bytes | Proposal | Commit
"""The ``select (content_type)`` of framed content: application data (bytes), a proposal or
a commit."""


def content_type_of(body: ContentBody) -> ContentType:
    """The ``ContentType`` that selects ``body``."""
    if isinstance(body, bytes):
        return ContentType.APPLICATION
    if isinstance(body, Proposal):
        return ContentType.PROPOSAL
    return ContentType.COMMIT


def _write_body(writer: Writer, body: ContentBody) -> None:
    if isinstance(body, bytes):
        writer.opaque(body)
    else:
        body.encode(writer)


def _read_body(reader: Reader, content_type: ContentType, what: str) -> ContentBody:
    if content_type == ContentType.APPLICATION:
        return reader.opaque(f"{what}.application_data")
    if content_type == ContentType.PROPOSAL:
        return Proposal.decode(reader)
    return Commit.decode(reader)


@dataclass(frozen=True)
class FramedContent:
    """``struct FramedContent``; ``content_type`` follows from ``body``."""

    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes
    body: ContentBody

    @property
    def content_type(self) -> ContentType:
        return content_type_of(self.body)

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.uint64(self.epoch)
        self.sender.encode(writer)
        writer.opaque(self.authenticated_data)
        writer.uint8(content_type_of(self.body))
        _write_body(writer, self.body)

    @classmethod
    def decode(cls, reader: Reader) -> FramedContent:
        group_id = reader.opaque("FramedContent.group_id")
        epoch = reader.uint64("FramedContent.epoch")
        sender = Sender.decode(reader)
        authenticated_data = reader.opaque("FramedContent.authenticated_data")
        content_type = read_selector(reader, ContentType, "FramedContent.content_type")
        body = _read_body(reader, content_type, "FramedContent")
        return cls(group_id, epoch, sender, authenticated_data, body)


@dataclass(frozen=True)
class FramedContentAuthData:
    """``struct FramedContentAuthData``: the signature, and for commits the confirmation tag.

    Its encoding depends on the content type of the content it authenticates, so
    :meth:`encode` and :meth:`decode` take it as an argument.
    """

    signature: bytes
    confirmation_tag: bytes | None = None

    def encode(self, writer: Writer, content_type: ContentType) -> None:
        if (self.confirmation_tag is not None) != (content_type == ContentType.COMMIT):
            raise EncodeError(
                f"FramedContentAuthData of {content_type.name.lower()} content: a"
                " confirmation_tag goes with (and only with) commits"
            )
        writer.opaque(self.signature)
        if self.confirmation_tag is not None:
            writer.opaque(self.confirmation_tag)

    @classmethod
    def decode(cls, reader: Reader, content_type: ContentType) -> FramedContentAuthData:
        signature = reader.opaque("FramedContentAuthData.signature")
        if content_type == ContentType.COMMIT:
            return cls(signature, reader.opaque("FramedContentAuthData.confirmation_tag"))
        return cls(signature)


@dataclass(frozen=True)
class FramedContentTBS:
    """``struct FramedContentTBS``: what ``SignWithLabel(., "FramedContentTBS", .)`` covers.

    ``context`` (the current epoch's group context) is present exactly when the sender is a
    ``member`` or a ``new_member_commit`` (§6.1).
    """

    wire_format: WireFormat
    content: FramedContent
    context: GroupContext | None = None
    version: int = ProtocolVersion.MLS10

    def encode(self, writer: Writer) -> None:
        sender_type = self.content.sender.sender_type
        if (self.context is not None) != (sender_type in _SENDERS_WITH_CONTEXT):
            raise EncodeError(
                f"FramedContentTBS with a {sender_type.name.lower()} sender: the group context"
                " goes with (and only with) member and new_member_commit senders"
            )
        writer.uint16(self.version)
        writer.uint16(self.wire_format)
        self.content.encode(writer)
        if self.context is not None:
            self.context.encode(writer)

    @classmethod
    def decode(cls, reader: Reader) -> FramedContentTBS:
        version = _read_version(reader, "FramedContentTBS.version")
        wire_format = read_selector(reader, WireFormat, "FramedContentTBS.wire_format", width=2)
        content = FramedContent.decode(reader)
        context = None
        if content.sender.sender_type in _SENDERS_WITH_CONTEXT:
            context = GroupContext.decode(reader)
        return cls(wire_format, content, context, version)


@dataclass(frozen=True)
class AuthenticatedContent:
    """``struct AuthenticatedContent``: framed content with its authentication data.

    Its encoding is the input of ``MakeProposalRef`` (§5.2) and of the transcript hashes.
    """

    wire_format: WireFormat
    content: FramedContent
    auth: FramedContentAuthData

    def encode(self, writer: Writer) -> None:
        writer.uint16(self.wire_format)
        self.content.encode(writer)
        self.auth.encode(writer, self.content.content_type)

    @classmethod
    def decode(cls, reader: Reader) -> AuthenticatedContent:
        wire_format = read_selector(reader, WireFormat, "AuthenticatedContent.wire_format", width=2)
        content = FramedContent.decode(reader)
        auth = FramedContentAuthData.decode(reader, content.content_type)
        return cls(wire_format, content, auth)

    def to_be_signed(self, context: GroupContext | None) -> bytes:
        """The encoded ``FramedContentTBS`` (``context`` as :class:`FramedContentTBS` needs)."""
        writer = Writer()
        FramedContentTBS(self.wire_format, self.content, context).encode(writer)
        return writer.getvalue()


@dataclass(frozen=True)
class AuthenticatedContentTBM:
    """``struct AuthenticatedContentTBM``: the input of a PublicMessage's membership tag."""

    content_tbs: FramedContentTBS
    auth: FramedContentAuthData

    def encode(self, writer: Writer) -> None:
        self.content_tbs.encode(writer)
        self.auth.encode(writer, self.content_tbs.content.content_type)

    @classmethod
    def decode(cls, reader: Reader) -> AuthenticatedContentTBM:
        content_tbs = FramedContentTBS.decode(reader)
        auth = FramedContentAuthData.decode(reader, content_tbs.content.content_type)
        return cls(content_tbs, auth)


@dataclass(frozen=True)
class PublicMessage:
    """``struct PublicMessage`` (§6.2): signed, not encrypted.

    ``membership_tag`` is present exactly when the sender is a ``member``.
    """

    content: FramedContent
    auth: FramedContentAuthData
    membership_tag: bytes | None = None

    def encode(self, writer: Writer) -> None:
        is_member = self.content.sender.sender_type == SenderType.MEMBER
        if (self.membership_tag is not None) != is_member:
            raise EncodeError(
                f"PublicMessage from a {self.content.sender.sender_type.name.lower()} sender:"
                " a membership_tag goes with (and only with) member senders"
            )
        self.content.encode(writer)
        self.auth.encode(writer, self.content.content_type)
        if self.membership_tag is not None:
            writer.opaque(self.membership_tag)

    @classmethod
    def decode(cls, reader: Reader) -> PublicMessage:
        content = FramedContent.decode(reader)
        auth = FramedContentAuthData.decode(reader, content.content_type)
        membership_tag = None
        if content.sender.sender_type is SenderType.MEMBER:
            membership_tag = reader.opaque("PublicMessage.membership_tag")
        return cls(content, auth, membership_tag)


@dataclass(frozen=True)
class PrivateMessage:
    """``struct PrivateMessage`` (§6.3): encrypted content and encrypted sender data."""

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes
    encrypted_sender_data: bytes
    ciphertext: bytes

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.uint64(self.epoch)
        writer.uint8(self.content_type)
        writer.opaque(self.authenticated_data)
        writer.opaque(self.encrypted_sender_data)
        writer.opaque(self.ciphertext)

    @classmethod
    def decode(cls, reader: Reader) -> PrivateMessage:
        return cls(
            reader.opaque("PrivateMessage.group_id"),
            reader.uint64("PrivateMessage.epoch"),
            read_selector(reader, ContentType, "PrivateMessage.content_type"),
            reader.opaque("PrivateMessage.authenticated_data"),
            reader.opaque("PrivateMessage.encrypted_sender_data"),
            reader.opaque("PrivateMessage.ciphertext"),
        )


@dataclass(frozen=True)
class PrivateMessageContent:
    """``struct PrivateMessageContent`` (§6.3.1): the plaintext of a PrivateMessage.

    ``padding`` is the number of zero bytes after ``auth``. :meth:`decode` reads the body
    selected by the enclosing message's content type, then takes every remaining byte of the
    reader as padding, rejecting any that is not zero.
    """

    body: ContentBody
    auth: FramedContentAuthData
    padding: int = 0

    @property
    def content_type(self) -> ContentType:
        return content_type_of(self.body)

    def encode(self, writer: Writer) -> None:
        _write_body(writer, self.body)
        self.auth.encode(writer, content_type_of(self.body))
        writer.fixed(bytes(self.padding))

    @classmethod
    def decode(cls, reader: Reader, content_type: ContentType) -> PrivateMessageContent:
        body = _read_body(reader, content_type, "PrivateMessageContent")
        auth = FramedContentAuthData.decode(reader, content_type)
        start = reader.offset
        padding = reader.fixed(reader.remaining, "PrivateMessageContent.padding")
        if padding.count(0) != len(padding):
            first = next(i for i, octet in enumerate(padding) if octet)
            raise DecodeError(
                f"non-zero byte {padding[first]:#04x} in PrivateMessageContent.padding at"
                f" offset {start + first}"
            )
        return cls(body, auth, len(padding))


@dataclass(frozen=True)
class SenderData:
    """``struct { uint32 leaf_index; uint32 generation; opaque reuse_guard[4]; } SenderData``."""

    leaf_index: int
    generation: int
    reuse_guard: bytes

    def encode(self, writer: Writer) -> None:
        writer.uint32(self.leaf_index)
        writer.uint32(self.generation)
        writer.fixed(self.reuse_guard, 4)

    @classmethod
    def decode(cls, reader: Reader) -> SenderData:
        return cls(
            reader.uint32("SenderData.leaf_index"),
            reader.uint32("SenderData.generation"),
            reader.fixed(4, "SenderData.reuse_guard"),
        )


@dataclass(frozen=True)
class SenderDataAAD:
    """``struct SenderDataAAD`` (§6.3.2): the AAD of the encrypted sender data."""

    group_id: bytes
    epoch: int
    content_type: ContentType

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.uint64(self.epoch)
        writer.uint8(self.content_type)

    @classmethod
    def decode(cls, reader: Reader) -> SenderDataAAD:
        return cls(
            reader.opaque("SenderDataAAD.group_id"),
            reader.uint64("SenderDataAAD.epoch"),
            read_selector(reader, ContentType, "SenderDataAAD.content_type"),
        )


@dataclass(frozen=True)
class PrivateContentAAD:
    """``struct PrivateContentAAD`` (§6.3.1): the AAD of the encrypted content."""

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes

    def encode(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.uint64(self.epoch)
        writer.uint8(self.content_type)
        writer.opaque(self.authenticated_data)

    @classmethod
    def decode(cls, reader: Reader) -> PrivateContentAAD:
        return cls(
            reader.opaque("PrivateContentAAD.group_id"),
            reader.uint64("PrivateContentAAD.epoch"),
            read_selector(reader, ContentType, "PrivateContentAAD.content_type"),
            reader.opaque("PrivateContentAAD.authenticated_data"),
        )


MLSMessageBody = PublicMessage | PrivateMessage | Welcome | GroupInfo | KeyPackage
"""What an :class:`MLSMessage` carries; the wire format follows from its class."""

_WIRE_FORMAT_OF: dict[type[MLSMessageBody], WireFormat] = {
    PublicMessage: WireFormat.MLS_PUBLIC_MESSAGE,
    PrivateMessage: WireFormat.MLS_PRIVATE_MESSAGE,
    Welcome: WireFormat.MLS_WELCOME,
    GroupInfo: WireFormat.MLS_GROUP_INFO,
    KeyPackage: WireFormat.MLS_KEY_PACKAGE,
}


def _read_version(reader: Reader, what: str) -> int:
    start = reader.offset
    version = reader.uint16(what)
    if version != ProtocolVersion.MLS10:
        raise DecodeError(f"unsupported {what} {version} at offset {start} (only mls10 = 1)")
    return version


@dataclass(frozen=True)
class MLSMessage:
    """``struct MLSMessage``: the top-level message; ``wire_format`` follows from ``body``.

    Only ``mls10`` messages decode: the version fixes the rest of the encoding.
    """

    body: MLSMessageBody
    version: int = ProtocolVersion.MLS10

    @property
    def wire_format(self) -> WireFormat:
        return _WIRE_FORMAT_OF[type(self.body)]

    def encode(self, writer: Writer) -> None:
        writer.uint16(self.version)
        writer.uint16(_WIRE_FORMAT_OF[type(self.body)])
        self.body.encode(writer)

    @classmethod
    def decode(cls, reader: Reader) -> MLSMessage:
        version = _read_version(reader, "MLSMessage.version")
        start = reader.offset
        wire_format = reader.uint16("MLSMessage.wire_format")
        body: MLSMessageBody
        if wire_format == WireFormat.MLS_PUBLIC_MESSAGE:
            body = PublicMessage.decode(reader)
        elif wire_format == WireFormat.MLS_PRIVATE_MESSAGE:
            body = PrivateMessage.decode(reader)
        elif wire_format == WireFormat.MLS_WELCOME:
            body = Welcome.decode(reader)
        elif wire_format == WireFormat.MLS_GROUP_INFO:
            body = GroupInfo.decode(reader)
        elif wire_format == WireFormat.MLS_KEY_PACKAGE:
            body = KeyPackage.decode(reader)
        else:
            raise unknown_selector("MLSMessage.wire_format", wire_format, start)
        return cls(body, version)
