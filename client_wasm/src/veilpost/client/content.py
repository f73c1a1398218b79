"""Content types: what an application message carries, and how it is encoded and padded.

An MLS application message (RFC 9420 §6.3.1) carries opaque bytes. Veilpost puts one
:class:`EncodedContent` in them: a content type id naming how to read the payload, a few
string parameters, an optional human-readable fallback, and the payload itself. A client
that knows the type decodes the payload with the matching :class:`ContentCodec`; a client
that does not shows the fallback instead (a reaction reads "Reacted “👍” to an earlier
message"), so new types can be introduced without breaking older clients. A
:class:`CodecRegistry` maps type ids to codecs; :func:`default_registry` knows the standard
types of the ``veilpost.org`` authority.

Wire format, in the TLS presentation language of RFC 9420 §2.1 (:mod:`veilpost.codec`)::

    struct {
        opaque authority_id<V>;         // "veilpost.org": lowercase DNS-style labels
        opaque type_id<V>;              // "text": letters, digits, "_" and "-"
        uint16 version_major;           // a new major version is a different type
        uint16 version_minor;           // minor versions only add, and decode alike
    } ContentTypeId;

    struct {
        opaque name<V>;                 // UTF-8, 1..64 bytes
        opaque value<V>;                // UTF-8, at most 1024 bytes
    } Parameter;

    struct {
        ContentTypeId type;
        Parameter parameters<V>;        // names strictly ascending: unique and canonical
        optional<opaque fallback<V>>;   // UTF-8, at most 4096 bytes
        opaque content<V>;              // at most MAX_CONTENT_BYTES
    } EncodedContent;

Decoding is strict: truncated input, trailing bytes, invalid UTF-8, duplicate or unsorted
parameter names and fields over their limits raise :class:`ContentDecodeError`; every
value therefore has exactly one encoding. The standard payloads are described on their
codecs. Before MLS encryption the encoded content is padded (:func:`pad`) so that the relay,
which sees the ciphertext's length, learns only a size bucket (:func:`padded_size`)::

    uint32 length; opaque data[length]; zero bytes up to padded_size(length)

MCP (the Model Context Protocol) travels as :class:`McpMessage` content: one JSON-RPC 2.0
message of one MCP session per Veilpost message (see :class:`McpCodec`; the transports are in
``veilpost.mcp``, which needs the ``mcp`` SDK; this codec needs nothing beyond the standard
library).

Attachments above :data:`MAX_INLINE_ATTACHMENT_BYTES` travel out of band:
:func:`encrypt_attachment` seals the file under a fresh key, the ciphertext is uploaded as a
blob, and a :class:`RemoteAttachment` message carries the blob's location, digest and key.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, TypeVar

from veilpost.codec import DecodeError, Reader, Writer
from veilpost.crypto import (
    Aead,
    AeadAuthenticationError,
    CryptoBackend,
    CryptoProvider,
    get_provider,
)

__all__ = [
    "ATTACHMENT_SCHEMES",
    "ATTACHMENT_SCHEME_AES_128_GCM",
    "ATTACHMENT_SCHEME_CHACHA20_POLY1305",
    "CONTENT_TYPE_ATTACHMENT",
    "CONTENT_TYPE_GROUP_UPDATED",
    "CONTENT_TYPE_MARKDOWN",
    "CONTENT_TYPE_MCP",
    "CONTENT_TYPE_PROFILE",
    "CONTENT_TYPE_REACTION",
    "CONTENT_TYPE_READ_RECEIPT",
    "CONTENT_TYPE_REMOTE_ATTACHMENT",
    "CONTENT_TYPE_REPLY",
    "CONTENT_TYPE_TEXT",
    "MAX_AUTHORITY_ID_BYTES",
    "MAX_CONTENT_BYTES",
    "MAX_DISPLAY_NAME_BYTES",
    "MAX_FALLBACK_BYTES",
    "MAX_FILENAME_BYTES",
    "MAX_INBOX_ID_BYTES",
    "MAX_INLINE_ATTACHMENT_BYTES",
    "MAX_MCP_JSON_DEPTH",
    "MAX_MCP_MESSAGE_BYTES",
    "MAX_MCP_REQUEST_ID_BYTES",
    "MAX_MCP_SESSION_BYTES",
    "MAX_METADATA_FIELD_BYTES",
    "MAX_METADATA_VALUE_BYTES",
    "MAX_MIME_TYPE_BYTES",
    "MAX_PADDABLE_BYTES",
    "MAX_PARAMETERS",
    "MAX_PARAMETER_NAME_BYTES",
    "MAX_PARAMETER_VALUE_BYTES",
    "MAX_REACTION_BYTES",
    "MAX_REFERENCE_BYTES",
    "MAX_REMOTE_ATTACHMENT_BYTES",
    "MAX_TYPE_ID_BYTES",
    "MAX_URL_BYTES",
    "PAD_LINEAR_STEP",
    "PAD_MIN_SIZE",
    "STANDARD_AUTHORITY",
    "Attachment",
    "AttachmentCodec",
    "AttachmentError",
    "CodecRegistry",
    "ContentCodec",
    "ContentDecodeError",
    "ContentError",
    "ContentTypeId",
    "DecodedContent",
    "EncodedContent",
    "EncryptedAttachmentKeys",
    "GroupUpdated",
    "GroupUpdatedCodec",
    "InvalidContent",
    "Markdown",
    "MarkdownCodec",
    "McpCodec",
    "McpMessage",
    "McpMessageKind",
    "MetadataChange",
    "Profile",
    "ProfileCodec",
    "Reaction",
    "ReactionAction",
    "ReactionCodec",
    "ReactionSchema",
    "ReadReceipt",
    "ReadReceiptCodec",
    "RemoteAttachment",
    "RemoteAttachmentCodec",
    "Reply",
    "ReplyCodec",
    "TextCodec",
    "UnknownContentType",
    "decrypt_attachment",
    "default_registry",
    "encrypt_attachment",
    "pad",
    "padded_size",
    "unpad",
]

# -- limits -------------------------------------------------------------------------------------

MAX_AUTHORITY_ID_BYTES: Final = 128
"""Longest authority id of a :class:`ContentTypeId`."""
MAX_TYPE_ID_BYTES: Final = 64
"""Longest type id of a :class:`ContentTypeId`."""
MAX_PARAMETERS: Final = 16
"""Most parameters one :class:`EncodedContent` may carry."""
MAX_PARAMETER_NAME_BYTES: Final = 64
"""Longest parameter name (names are at least one byte)."""
MAX_PARAMETER_VALUE_BYTES: Final = 1024
"""Longest parameter value."""
MAX_FALLBACK_BYTES: Final = 4096
"""Longest fallback text."""
MAX_INLINE_ATTACHMENT_BYTES: Final = 1 << 20
"""Largest file an :class:`Attachment` message carries inline; larger files go remote."""
MAX_CONTENT_BYTES: Final = MAX_INLINE_ATTACHMENT_BYTES + (64 << 10)
"""Largest payload of one :class:`EncodedContent`: an inline attachment, its names, and the
reply that may quote it."""
MAX_REMOTE_ATTACHMENT_BYTES: Final = 64 << 20
"""Largest file :func:`encrypt_attachment` seals (the pure backend seals about 4 MB/s)."""
MAX_REFERENCE_BYTES: Final = 256
"""Longest message id a :class:`Reply` or :class:`Reaction` refers to."""
MAX_INBOX_ID_BYTES: Final = 256
"""Longest inbox id in a reply or a group update."""
MAX_REACTION_BYTES: Final = 256
"""Longest reaction content (an emoji, a shortcode or a custom reference)."""
MAX_FILENAME_BYTES: Final = 255
"""Longest attachment file name (the common file-system limit)."""
MAX_MIME_TYPE_BYTES: Final = 255
"""Longest attachment media type (``type/subtype``, RFC 6838 §4.2)."""
MAX_URL_BYTES: Final = 2048
"""Longest remote attachment location (a blob id or a URL)."""
MAX_METADATA_FIELD_BYTES: Final = 64
"""Longest group metadata field name in a :class:`MetadataChange`."""
MAX_METADATA_VALUE_BYTES: Final = 4096
"""Longest old or new group metadata value in a :class:`MetadataChange`."""
MAX_DISPLAY_NAME_BYTES: Final = 256
"""Longest display name of a :class:`Profile`."""
MAX_MCP_MESSAGE_BYTES: Final = 1 << 20
"""Largest JSON text of one :class:`McpMessage` (a tool result beyond it does not travel)."""
MAX_MCP_SESSION_BYTES: Final = 64
"""Longest MCP session id."""
MAX_MCP_REQUEST_ID_BYTES: Final = 256
"""Longest string id of an MCP (JSON-RPC) request."""
MAX_MCP_JSON_DEPTH: Final = 64
"""Deepest nesting of arrays and objects in an :class:`McpMessage`."""

PAD_MIN_SIZE: Final = 256
"""The smallest padded size: every padded message is at least this long."""
PAD_LINEAR_STEP: Final = 64 << 10
"""Padded sizes are powers of two up to this size, then multiples of it."""
_PAD_PREFIX_BYTES = 4
MAX_PADDABLE_BYTES: Final = (1 << 32) - 1
"""Longest data :func:`pad` accepts (its length prefix is a ``uint32``)."""

_FALLBACK_QUOTE_CHARS = 80  # how much of a quoted text a fallback repeats

# -- errors -------------------------------------------------------------------------------------


class ContentError(ValueError):
    """Base class of every error raised by :mod:`veilpost.client.content`."""


class ContentDecodeError(ContentError):
    """Malformed content bytes: the message names the rule that failed and the value."""


class InvalidContent(ContentError):
    """A content value breaks a rule (a malformed type id, a field over its limit)."""


class UnknownContentType(ContentError):
    """No codec is registered for a content type (or for a value's Python type)."""


class AttachmentError(ContentError):
    """An attachment too large to send inline, or one that fails to decrypt or verify."""


_T = TypeVar("_T")
_V = TypeVar("_V")


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Report every failure inside the block as a :class:`ContentDecodeError` about ``what``.

    Decoders construct values, whose constructors check the rules; a broken rule found while
    decoding is a property of the bytes, so it is reported as a decode error.
    """
    try:
        yield
    except ContentDecodeError:
        raise
    except (DecodeError, ContentError) as exc:
        raise ContentDecodeError(f"malformed {what}: {exc}") from exc


# -- small checks shared by the values ----------------------------------------------------------


def _utf8(value: object, what: str, max_bytes: int, *, min_bytes: int = 0) -> bytes:
    """Return ``value`` as UTF-8 after checking its type and its length (``min_bytes`` is
    0, or 1 for a field that must not be empty)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidContent(f"{what} has a lone surrogate at index {exc.start}") from None
    if len(raw) > max_bytes:
        raise InvalidContent(f"{what} is {len(raw)} bytes, at most {max_bytes} allowed")
    if len(raw) < min_bytes:
        raise InvalidContent(f"{what} is empty")
    return raw


def _optional_utf8(value: object, what: str, max_bytes: int) -> None:
    if value is not None:
        _utf8(value, what, max_bytes)


def _check_bytes(value: object, what: str, *, size: int | None = None) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise InvalidContent(f"{what} must be {size} bytes, got {len(value)}")


def _check_str_tuple(values: object, what: str, max_bytes: int) -> None:
    if not isinstance(values, tuple):
        raise TypeError(f"{what} must be a tuple, got {type(values).__name__}")
    for index, item in enumerate(values):
        _utf8(item, f"{what}[{index}]", max_bytes, min_bytes=1)


def _read_str(reader: Reader, what: str) -> str:
    raw = reader.opaque(what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContentDecodeError(f"{what} is not valid UTF-8 (byte {exc.start})") from None


def _read_optional_str(reader: Reader, what: str) -> str | None:
    return reader.optional(lambda inner: _read_str(inner, what), what)


def _write_str(writer: Writer, value: str) -> None:
    writer.opaque(value.encode("utf-8"))


def _write_optional_str(writer: Writer, value: str | None) -> None:
    writer.optional(value, _write_str)


def _parse_struct(data: bytes, what: str, read: Callable[[Reader], _T]) -> _T:
    """Decode exactly one ``what`` from ``data`` with ``read``, strictly."""
    with _decoding(what):
        reader = Reader(data)
        value = read(reader)
        reader.finish(what)
        return value


def _clip(text: str, limit: int = _FALLBACK_QUOTE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, marking a cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- content type ids ---------------------------------------------------------------------------

_AUTHORITY_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_TYPE_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
_VERSION = r"(0|[1-9][0-9]{0,4})"
_CONTENT_TYPE_RE = re.compile(rf"([^/]+)/([^:]+):{_VERSION}\.{_VERSION}")


@dataclass(frozen=True)
class ContentTypeId:
    """Names a content type: who defines it, which type, and which version.

    ``authority_id`` is lowercase DNS-style labels (``veilpost.org``), ``type_id`` letters,
    digits, ``_`` and ``-``; versions are ``uint16``. Its text form is
    ``authority/type:major.minor``. Two ids with the same authority, type and major version
    are compatible: a codec for one decodes the other (minor versions only add).
    """

    authority_id: str
    type_id: str
    version_major: int
    version_minor: int = 0

    def __post_init__(self) -> None:
        _utf8(self.authority_id, "authority id", MAX_AUTHORITY_ID_BYTES)
        if not _AUTHORITY_RE.fullmatch(self.authority_id):
            raise InvalidContent(
                f"authority id {self.authority_id!r} is not lowercase DNS-style labels"
            )
        _utf8(self.type_id, "type id", MAX_TYPE_ID_BYTES)
        if not _TYPE_ID_RE.fullmatch(self.type_id):
            raise InvalidContent(f"type id {self.type_id!r} is not letters, digits, '_' and '-'")
        for what, version in (("major", self.version_major), ("minor", self.version_minor)):
            if not isinstance(version, int) or isinstance(version, bool):
                raise TypeError(f"{what} version must be an int, got {type(version).__name__}")
            if not 0 <= version <= 0xFFFF:
                raise InvalidContent(f"{what} version {version} is not a uint16")

    def __str__(self) -> str:
        return f"{self.authority_id}/{self.type_id}:{self.version_major}.{self.version_minor}"

    @classmethod
    def parse(cls, text: str) -> ContentTypeId:
        """Parse the text form ``authority/type:major.minor`` (e.g. ``veilpost.org/text:1.0``)."""
        match = _CONTENT_TYPE_RE.fullmatch(text)
        if match is None:
            raise InvalidContent(f"{text!r} is not of the form authority/type:major.minor")
        authority, type_id, major, minor = match.groups()
        return cls(authority, type_id, int(major), int(minor))

    def is_compatible_with(self, other: ContentTypeId) -> bool:
        """Whether ``other`` has the same authority, type and major version."""
        return (self.authority_id, self.type_id, self.version_major) == (
            other.authority_id,
            other.type_id,
            other.version_major,
        )

    def encode(self, writer: Writer) -> None:
        """Write this id's wire encoding (see the module docstring)."""
        _write_str(writer, self.authority_id)
        _write_str(writer, self.type_id)
        writer.uint16(self.version_major)
        writer.uint16(self.version_minor)

    @classmethod
    def decode(cls, reader: Reader) -> ContentTypeId:
        """Read one id; raises :class:`ContentDecodeError` if malformed."""
        with _decoding("content type id"):
            authority = _read_str(reader, "authority id")
            type_id = _read_str(reader, "type id")
            major = reader.uint16("major version")
            minor = reader.uint16("minor version")
            return cls(authority, type_id, major, minor)


STANDARD_AUTHORITY: Final = "veilpost.org"
"""The authority of the standard content types."""
CONTENT_TYPE_TEXT: Final = ContentTypeId(STANDARD_AUTHORITY, "text", 1, 0)
"""Plain text (a ``str``)."""
CONTENT_TYPE_MARKDOWN: Final = ContentTypeId(STANDARD_AUTHORITY, "markdown", 1, 0)
"""Markdown source text (:class:`Markdown`)."""
CONTENT_TYPE_REPLY: Final = ContentTypeId(STANDARD_AUTHORITY, "reply", 1, 0)
"""A reply to an earlier message (:class:`Reply`)."""
CONTENT_TYPE_REACTION: Final = ContentTypeId(STANDARD_AUTHORITY, "reaction", 1, 0)
"""A reaction added to or removed from an earlier message (:class:`Reaction`)."""
CONTENT_TYPE_READ_RECEIPT: Final = ContentTypeId(STANDARD_AUTHORITY, "read_receipt", 1, 0)
"""A read receipt (:class:`ReadReceipt`)."""
CONTENT_TYPE_ATTACHMENT: Final = ContentTypeId(STANDARD_AUTHORITY, "attachment", 1, 0)
"""A file carried inline (:class:`Attachment`)."""
CONTENT_TYPE_REMOTE_ATTACHMENT: Final = ContentTypeId(STANDARD_AUTHORITY, "remote_attachment", 1, 0)
"""An encrypted file stored as a blob (:class:`RemoteAttachment`)."""
CONTENT_TYPE_GROUP_UPDATED: Final = ContentTypeId(STANDARD_AUTHORITY, "group_updated", 1, 0)
"""A change of members or metadata, told to the group (:class:`GroupUpdated`)."""
CONTENT_TYPE_PROFILE: Final = ContentTypeId(STANDARD_AUTHORITY, "profile", 1, 0)
"""The sender's display name, told to a conversation (:class:`Profile`)."""
CONTENT_TYPE_MCP: Final = ContentTypeId(STANDARD_AUTHORITY, "mcp", 1, 0)
"""One Model Context Protocol (JSON-RPC 2.0) message of one MCP session (:class:`McpMessage`)."""

# -- encoded content ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EncodedContent:
    """One typed payload with its parameters and fallback text, as carried by a message.

    ``parameters`` are ``(name, value)`` pairs with unique names; they are kept sorted by
    name, so equal contents compare equal whatever order the pairs were given in.
    ``fallback`` is what a client that does not know ``type`` shows (``None``: nothing).
    """

    type: ContentTypeId
    parameters: tuple[tuple[str, str], ...] = ()
    fallback: str | None = None
    content: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.type, ContentTypeId):
            raise TypeError(f"type must be a ContentTypeId, got {type(self.type).__name__}")
        if not isinstance(self.parameters, tuple):
            raise TypeError(f"parameters must be a tuple, got {type(self.parameters).__name__}")
        if len(self.parameters) > MAX_PARAMETERS:
            raise InvalidContent(
                f"{len(self.parameters)} parameters, at most {MAX_PARAMETERS} allowed"
            )
        names = set()
        for pair in self.parameters:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise TypeError(f"parameter {pair!r} is not a (name, value) pair")
            name, value = pair
            _utf8(name, "parameter name", MAX_PARAMETER_NAME_BYTES, min_bytes=1)
            _utf8(value, f"parameter {name!r}", MAX_PARAMETER_VALUE_BYTES)
            if name in names:
                raise InvalidContent(f"duplicate parameter name {name!r}")
            names.add(name)
        # Code point order is UTF-8 byte order, the order the wire format requires.
        object.__setattr__(self, "parameters", tuple(sorted(self.parameters)))
        _optional_utf8(self.fallback, "fallback", MAX_FALLBACK_BYTES)
        _check_bytes(self.content, "content")
        if len(self.content) > MAX_CONTENT_BYTES:
            raise InvalidContent(
                f"content is {len(self.content)} bytes, at most {MAX_CONTENT_BYTES} allowed"
            )

    def parameter(self, name: str) -> str | None:
        """The value of parameter ``name``, or ``None`` if it is absent."""
        for key, value in self.parameters:
            if key == name:
                return value
        return None

    def encode(self, writer: Writer) -> None:
        """Write the wire encoding (see the module docstring)."""
        self.type.encode(writer)

        def write_parameter(inner: Writer, pair: tuple[str, str]) -> None:
            _write_str(inner, pair[0])
            _write_str(inner, pair[1])

        writer.vector(self.parameters, write_parameter)
        _write_optional_str(writer, self.fallback)
        writer.opaque(self.content)

    @classmethod
    def decode(cls, reader: Reader) -> EncodedContent:
        """Read one encoded content; raises :class:`ContentDecodeError` if malformed."""
        with _decoding("EncodedContent"):
            content_type = ContentTypeId.decode(reader)

            def read_parameter(inner: Reader) -> tuple[str, str]:
                return _read_str(inner, "parameter name"), _read_str(inner, "parameter value")

            parameters = reader.vector(read_parameter, "parameters")
            for before, after in itertools.pairwise(parameters):  # duplicates: see cls()
                if before[0] > after[0]:
                    raise ContentDecodeError(
                        f"parameter {after[0]!r} follows {before[0]!r}: names must ascend"
                    )
            fallback = _read_optional_str(reader, "fallback")
            content = reader.opaque("content")
            return cls(
                type=content_type,
                parameters=tuple(parameters),
                fallback=fallback,
                content=content,
            )

    def to_bytes(self) -> bytes:
        """The wire encoding of this content."""
        writer = Writer()
        self.encode(writer)
        return writer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> EncodedContent:
        """Decode exactly one encoded content; anything malformed is a ContentDecodeError."""
        return _parse_struct(data, "EncodedContent", cls.decode)


# -- codecs and the registry --------------------------------------------------------------------


class ContentCodec(Protocol[_V]):
    """Turns values of one Python type into :class:`EncodedContent` of one type, and back.

    ``encode`` sets the fallback (from :meth:`fallback`); ``decode`` raises
    :class:`ContentDecodeError` on a malformed payload and never another exception.
    """

    @property
    def content_type(self) -> ContentTypeId:
        """The content type this codec writes and reads (any compatible minor version)."""
        ...

    @property
    def value_type(self) -> type[_V]:
        """The Python type of the values, by which :meth:`CodecRegistry.encode` picks."""
        ...

    def encode(self, value: _V) -> EncodedContent:
        """Encode ``value``, fallback included."""
        ...

    def decode(self, encoded: EncodedContent) -> _V:
        """Decode a payload of this codec's type."""
        ...

    def fallback(self, value: _V) -> str | None:
        """The text a client that does not know this type shows, or ``None`` for nothing."""
        ...


@dataclass(frozen=True)
class DecodedContent:
    """The result of :meth:`CodecRegistry.decode`.

    ``known`` is whether a codec decoded the payload into ``value``; when it is false,
    ``value`` is ``None`` and a client shows :attr:`fallback`, if any.
    """

    encoded: EncodedContent
    value: object
    known: bool

    @property
    def type(self) -> ContentTypeId:
        """The content type id."""
        return self.encoded.type

    @property
    def fallback(self) -> str | None:
        """The sender's fallback text."""
        return self.encoded.fallback

    @property
    def display_text(self) -> str | None:
        """What a text-only client shows: the text of a text or markdown, else the fallback."""
        if isinstance(self.value, str):
            return self.value
        if isinstance(self.value, Markdown):
            return self.value.text
        return self.encoded.fallback


class CodecRegistry:
    """The codecs a client knows, by content type and by value type.

    A codec is registered under its type's authority, type id and major version. For a value
    without an explicit type, :meth:`encode` uses the first codec registered for the value's
    Python type (or its nearest base class).
    """

    __slots__ = ("_by_type", "_by_value_type")

    def __init__(self, codecs: Iterable[ContentCodec[Any]] = ()) -> None:
        self._by_type: dict[tuple[str, str, int], ContentCodec[Any]] = {}
        self._by_value_type: dict[type[Any], ContentCodec[Any]] = {}
        for codec in codecs:
            self.register(codec)

    @staticmethod
    def _key(content_type: ContentTypeId) -> tuple[str, str, int]:
        return (content_type.authority_id, content_type.type_id, content_type.version_major)

    def register(self, codec: ContentCodec[Any], *, replace: bool = False) -> None:
        """Add ``codec``; registering a second codec for a type needs ``replace=True``."""
        key = self._key(codec.content_type)
        if key in self._by_type and not replace:
            raise ContentError(f"a codec for {codec.content_type} is already registered")
        old = self._by_type.get(key)
        if old is not None and self._by_value_type.get(old.value_type) is old:
            del self._by_value_type[old.value_type]
        self._by_type[key] = codec
        self._by_value_type.setdefault(codec.value_type, codec)

    def __contains__(self, content_type: object) -> bool:
        if not isinstance(content_type, ContentTypeId):
            return False
        return self._key(content_type) in self._by_type

    def codec_for(self, content_type: ContentTypeId) -> ContentCodec[Any]:
        """The codec for ``content_type``; raises :class:`UnknownContentType` if none."""
        codec = self._by_type.get(self._key(content_type))
        if codec is None:
            raise UnknownContentType(f"no codec registered for {content_type}")
        return codec

    def codec_for_value(self, value: object) -> ContentCodec[Any]:
        """The codec that encodes ``value`` by its Python type."""
        for klass in type(value).__mro__:
            codec = self._by_value_type.get(klass)
            if codec is not None:
                return codec
        raise UnknownContentType(f"no codec registered for values of type {type(value).__name__}")

    def encode(self, value: object, content_type: ContentTypeId | None = None) -> EncodedContent:
        """Encode ``value`` with the codec of ``content_type``, or the one for its type."""
        if content_type is None:
            codec = self.codec_for_value(value)
        else:
            codec = self.codec_for(content_type)
            if not isinstance(value, codec.value_type):
                raise TypeError(
                    f"{content_type} encodes {codec.value_type.__name__} values,"
                    f" got {type(value).__name__}"
                )
        encoded = codec.encode(value)
        if encoded.fallback is None:
            fallback = codec.fallback(value)
            if fallback is not None:
                encoded = replace(encoded, fallback=fallback)
        return encoded

    def decode(self, encoded: EncodedContent) -> DecodedContent:
        """Decode ``encoded``: its value if its type is known, else only its fallback.

        A known type with a malformed payload raises :class:`ContentDecodeError`.
        """
        codec = self._by_type.get(self._key(encoded.type))
        if codec is None:
            return DecodedContent(encoded, None, known=False)
        with _decoding(str(encoded.type)):
            value = codec.decode(encoded)
        return DecodedContent(encoded, value, known=True)

    def decode_bytes(self, data: bytes) -> DecodedContent:
        """Decode the wire bytes of an :class:`EncodedContent`, then its payload."""
        return self.decode(EncodedContent.from_bytes(data))


def _expect_type(encoded: EncodedContent, content_type: ContentTypeId) -> None:
    if not encoded.type.is_compatible_with(content_type):
        raise ContentDecodeError(f"expected {content_type} content, got {encoded.type}")


# -- text and markdown --------------------------------------------------------------------------

_ENCODING_PARAMETER = ("encoding", "UTF-8")


def _encode_utf8_text(content_type: ContentTypeId, text: str) -> EncodedContent:
    return EncodedContent(
        type=content_type,
        parameters=(_ENCODING_PARAMETER,),
        content=_utf8(text, "text", MAX_CONTENT_BYTES),
    )


def _decode_utf8_text(encoded: EncodedContent, content_type: ContentTypeId) -> str:
    _expect_type(encoded, content_type)
    encoding = encoded.parameter("encoding")
    if encoding is None or encoding.upper() != "UTF-8":
        raise ContentDecodeError(f"{content_type} needs encoding UTF-8, got {encoding!r}")
    try:
        return encoded.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContentDecodeError(f"text is not valid UTF-8 (byte {exc.start})") from None


class TextCodec:
    """Plain text: a ``str``, its UTF-8 bytes as the payload, parameter ``encoding=UTF-8``.

    Every client knows text, so it has no fallback.
    """

    content_type = CONTENT_TYPE_TEXT
    value_type = str

    def encode(self, value: str) -> EncodedContent:
        """Encode a text."""
        return _encode_utf8_text(self.content_type, value)

    def decode(self, encoded: EncodedContent) -> str:
        """Decode a text."""
        return _decode_utf8_text(encoded, self.content_type)

    def fallback(self, value: str) -> str | None:
        """None: text needs no fallback."""
        return None


@dataclass(frozen=True)
class Markdown:
    """Markdown source text, rendered by clients that can (as text, never as HTML)."""

    text: str

    def __post_init__(self) -> None:
        _utf8(self.text, "markdown text", MAX_CONTENT_BYTES)


class MarkdownCodec:
    """:class:`Markdown`: the source's UTF-8 bytes, ``encoding=UTF-8``; falls back to the
    source itself, which reads well enough as plain text."""

    content_type = CONTENT_TYPE_MARKDOWN
    value_type = Markdown

    def encode(self, value: Markdown) -> EncodedContent:
        """Encode a markdown text, with its source as the fallback when it fits."""
        encoded = _encode_utf8_text(self.content_type, value.text)
        return replace(encoded, fallback=self.fallback(value))

    def decode(self, encoded: EncodedContent) -> Markdown:
        """Decode a markdown text."""
        return Markdown(_decode_utf8_text(encoded, self.content_type))

    def fallback(self, value: Markdown) -> str | None:
        """The markdown source, clipped to fit :data:`MAX_FALLBACK_BYTES`."""
        text = value.text
        if len(text.encode("utf-8")) <= MAX_FALLBACK_BYTES:
            return text
        return _clip(text, MAX_FALLBACK_BYTES // 4)


# -- replies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A message answering an earlier one.

    ``reference`` is the id of the message replied to, ``reference_inbox_id`` optionally the
    inbox that sent it. ``content`` is the reply itself: any value the registry can encode,
    or an :class:`EncodedContent` (what a decoded reply holds when its inner type is
    unknown). A reply cannot contain a reply.
    """

    reference: str
    content: object
    reference_inbox_id: str | None = None

    def __post_init__(self) -> None:
        _utf8(self.reference, "reply reference", MAX_REFERENCE_BYTES, min_bytes=1)
        _optional_utf8(self.reference_inbox_id, "reply reference inbox id", MAX_INBOX_ID_BYTES)
        if isinstance(self.content, Reply) or (
            isinstance(self.content, EncodedContent)
            and self.content.type.is_compatible_with(CONTENT_TYPE_REPLY)
        ):
            raise InvalidContent("a reply cannot contain a reply")


class ReplyCodec:
    """:class:`Reply`. Payload::

        struct {
            opaque reference<V>;
            optional<opaque reference_inbox_id<V>>;
            opaque content<V>;          // the inner EncodedContent
        } ReplyContent;

    The inner content is encoded and decoded with ``registry``.
    """

    content_type = CONTENT_TYPE_REPLY
    value_type = Reply

    def __init__(self, registry: CodecRegistry) -> None:
        self._registry = registry

    def _inner(self, value: Reply) -> EncodedContent:
        if isinstance(value.content, EncodedContent):
            return value.content
        return self._registry.encode(value.content)

    def encode(self, value: Reply) -> EncodedContent:
        """Encode a reply and its inner content."""
        writer = Writer()
        _write_str(writer, value.reference)
        _write_optional_str(writer, value.reference_inbox_id)
        writer.opaque(self._inner(value).to_bytes())
        return EncodedContent(
            type=self.content_type, fallback=self.fallback(value), content=writer.getvalue()
        )

    def decode(self, encoded: EncodedContent) -> Reply:
        """Decode a reply; its content is a value if its type is known, else EncodedContent."""
        _expect_type(encoded, self.content_type)

        def read(reader: Reader) -> tuple[str, str | None, EncodedContent]:
            reference = _read_str(reader, "reference")
            inbox_id = _read_optional_str(reader, "reference inbox id")
            inner = EncodedContent.from_bytes(reader.opaque("inner content"))
            return reference, inbox_id, inner

        reference, inbox_id, inner = _parse_struct(encoded.content, "reply", read)
        with _decoding("reply"):
            if inner.type.is_compatible_with(CONTENT_TYPE_REPLY):
                # Checked before decoding the inner content: nesting is also a recursion bomb.
                raise InvalidContent("a reply cannot contain a reply")
            decoded = self._registry.decode(inner)
            content = decoded.value if decoded.known else inner
            return Reply(reference, content, inbox_id)

    def fallback(self, value: Reply) -> str | None:
        """``Replied with “…” to an earlier message`` quoting a text reply, else
        ``Replied to an earlier message``."""
        inner = value.content
        quoted = inner.text if isinstance(inner, Markdown) else inner
        if isinstance(quoted, str) and quoted:
            return f"Replied with “{_clip(quoted)}” to an earlier message"
        return "Replied to an earlier message"


# -- reactions ----------------------------------------------------------------------------------

ReactionAction = Literal["added", "removed"]
"""Whether a reaction is added or removed."""
ReactionSchema = Literal["unicode", "shortcode", "custom"]
"""How a reaction's content reads: an emoji, a ``:shortcode:``, or an app-defined id."""

_REACTION_ACTIONS: tuple[ReactionAction, ...] = ("added", "removed")
_REACTION_SCHEMAS: tuple[ReactionSchema, ...] = ("unicode", "shortcode", "custom")


@dataclass(frozen=True)
class Reaction:
    """A reaction to the message ``reference``: an emoji (or shortcode or custom id) added
    or removed."""

    reference: str
    action: ReactionAction
    content: str
    schema: ReactionSchema = "unicode"

    def __post_init__(self) -> None:
        _utf8(self.reference, "reaction reference", MAX_REFERENCE_BYTES, min_bytes=1)
        if self.action not in _REACTION_ACTIONS:
            raise InvalidContent(f"reaction action {self.action!r} is not added or removed")
        _utf8(self.content, "reaction content", MAX_REACTION_BYTES, min_bytes=1)
        if self.schema not in _REACTION_SCHEMAS:
            raise InvalidContent(
                f"reaction schema {self.schema!r} is not unicode, shortcode or custom"
            )


class ReactionCodec:
    """:class:`Reaction`. Payload::

    struct {
        opaque reference<V>;
        uint8 action;               // 1 added, 2 removed
        uint8 schema;               // 1 unicode, 2 shortcode, 3 custom
        opaque content<V>;
    } ReactionContent;
    """

    content_type = CONTENT_TYPE_REACTION
    value_type = Reaction

    def encode(self, value: Reaction) -> EncodedContent:
        """Encode a reaction."""
        writer = Writer()
        _write_str(writer, value.reference)
        writer.uint8(_REACTION_ACTIONS.index(value.action) + 1)
        writer.uint8(_REACTION_SCHEMAS.index(value.schema) + 1)
        _write_str(writer, value.content)
        return EncodedContent(
            type=self.content_type, fallback=self.fallback(value), content=writer.getvalue()
        )

    def decode(self, encoded: EncodedContent) -> Reaction:
        """Decode a reaction."""
        _expect_type(encoded, self.content_type)

        def read(reader: Reader) -> Reaction:
            reference = _read_str(reader, "reference")
            action = reader.uint8("action")
            schema = reader.uint8("schema")
            if not 1 <= action <= len(_REACTION_ACTIONS):
                raise ContentDecodeError(f"unknown reaction action code {action}")
            if not 1 <= schema <= len(_REACTION_SCHEMAS):
                raise ContentDecodeError(f"unknown reaction schema code {schema}")
            content = _read_str(reader, "content")
            return Reaction(
                reference, _REACTION_ACTIONS[action - 1], content, _REACTION_SCHEMAS[schema - 1]
            )

        return _parse_struct(encoded.content, "reaction", read)

    def fallback(self, value: Reaction) -> str | None:
        """``Reacted “👍” to an earlier message`` (or ``Removed “👍” from …``)."""
        shown = _clip(value.content)
        if value.action == "added":
            return f"Reacted “{shown}” to an earlier message"
        return f"Removed “{shown}” from an earlier message"


# -- read receipts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadReceipt:
    """The sender has read the conversation up to this message. Never shown."""


class ReadReceiptCodec:
    """:class:`ReadReceipt`: an empty payload and no fallback (receipts are not shown)."""

    content_type = CONTENT_TYPE_READ_RECEIPT
    value_type = ReadReceipt

    def encode(self, value: ReadReceipt) -> EncodedContent:
        """Encode a read receipt."""
        return EncodedContent(type=self.content_type, content=b"")

    def decode(self, encoded: EncodedContent) -> ReadReceipt:
        """Decode a read receipt; its payload must be empty."""
        _expect_type(encoded, self.content_type)
        if encoded.content:
            raise ContentDecodeError(
                f"read receipt payload must be empty, got {len(encoded.content)} bytes"
            )
        return ReadReceipt()

    def fallback(self, value: ReadReceipt) -> str | None:
        """None: receipts are not shown."""
        return None


# -- attachments --------------------------------------------------------------------------------

_MIME_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MIME_TYPE_RE = re.compile(f"{_MIME_NAME}/{_MIME_NAME}")
_FILENAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\]")


def _check_filename(filename: str, what: str) -> None:
    _utf8(filename, what, MAX_FILENAME_BYTES, min_bytes=1)
    if _FILENAME_FORBIDDEN.search(filename) or filename in (".", ".."):
        raise AttachmentError(
            f"{what} {filename!r} is not a plain file name (no path separators or controls)"
        )


def _check_mime_type(mime_type: str, what: str) -> None:
    _utf8(mime_type, what, MAX_MIME_TYPE_BYTES, min_bytes=1)
    if not _MIME_TYPE_RE.fullmatch(mime_type):
        raise AttachmentError(f"{what} {mime_type!r} is not type/subtype (RFC 6838)")


@dataclass(frozen=True)
class Attachment:
    """A file: its name (no directories), its media type (``type/subtype``) and its bytes.

    Inline attachments hold at most :data:`MAX_INLINE_ATTACHMENT_BYTES` of data; larger
    files are sent with :func:`encrypt_attachment` and a :class:`RemoteAttachment`.
    """

    filename: str
    mime_type: str
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_filename(self.filename, "attachment file name")
        _check_mime_type(self.mime_type, "attachment media type")
        _check_bytes(self.data, "attachment data")

    def encode(self, writer: Writer) -> None:
        """Write ``struct { opaque filename<V>; opaque mime_type<V>; opaque data<V>; }``."""
        _write_str(writer, self.filename)
        _write_str(writer, self.mime_type)
        writer.opaque(self.data)

    @classmethod
    def decode(cls, reader: Reader) -> Attachment:
        """Read one attachment struct."""
        filename = _read_str(reader, "file name")
        mime_type = _read_str(reader, "media type")
        return cls(filename, mime_type, reader.opaque("data"))


def _attachment_fallback(filename: str | None) -> str:
    if filename is None:
        return "Sent an attachment"
    return f"Sent an attachment: {_clip(filename)}"


class AttachmentCodec:
    """:class:`Attachment` inline: its struct (file name, media type, data) as the payload."""

    content_type = CONTENT_TYPE_ATTACHMENT
    value_type = Attachment

    def encode(self, value: Attachment) -> EncodedContent:
        """Encode a file of at most :data:`MAX_INLINE_ATTACHMENT_BYTES`."""
        if len(value.data) > MAX_INLINE_ATTACHMENT_BYTES:
            raise AttachmentError(
                f"attachment {value.filename!r} is {len(value.data)} bytes, more than the"
                f" {MAX_INLINE_ATTACHMENT_BYTES} an inline attachment carries: upload it with"
                " encrypt_attachment() and send a RemoteAttachment"
            )
        writer = Writer()
        value.encode(writer)
        return EncodedContent(
            type=self.content_type, fallback=self.fallback(value), content=writer.getvalue()
        )

    def decode(self, encoded: EncodedContent) -> Attachment:
        """Decode an inline attachment."""
        _expect_type(encoded, self.content_type)
        attachment = _parse_struct(encoded.content, "attachment", Attachment.decode)
        if len(attachment.data) > MAX_INLINE_ATTACHMENT_BYTES:
            raise ContentDecodeError(
                f"inline attachment data is {len(attachment.data)} bytes,"
                f" at most {MAX_INLINE_ATTACHMENT_BYTES} allowed"
            )
        return attachment

    def fallback(self, value: Attachment) -> str | None:
        """``Sent an attachment: name``."""
        return _attachment_fallback(value.filename)


ATTACHMENT_SCHEME_AES_128_GCM: Final = "hkdf-sha256/aes-128-gcm"
"""Remote attachment scheme: HKDF-SHA256 key derivation, AES-128-GCM (the default)."""
ATTACHMENT_SCHEME_CHACHA20_POLY1305: Final = "hkdf-sha256/chacha20-poly1305"
"""Remote attachment scheme: HKDF-SHA256 key derivation, ChaCha20-Poly1305."""
ATTACHMENT_SCHEMES: Final[Mapping[str, Aead]] = MappingProxyType(
    {
        ATTACHMENT_SCHEME_AES_128_GCM: Aead.AES_128_GCM,
        ATTACHMENT_SCHEME_CHACHA20_POLY1305: Aead.CHACHA20_POLY1305,
    }
)
"""The remote attachment schemes this library seals and opens, with their AEADs."""

_ATTACHMENT_KEY_LABEL = b"veilpost attachment key "
_ATTACHMENT_AAD = b"veilpost attachment v1"
_MAX_SCHEME_BYTES = 64
_HEX_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class RemoteAttachment:
    """An encrypted file stored as a blob, and everything needed to fetch and open it.

    ``url`` locates the ciphertext (a blob id or a URL); ``content_digest`` is the lowercase
    hex SHA-256 of the ciphertext and ``content_length`` its size; ``secret``, ``salt`` and
    ``nonce`` open it under ``scheme`` (see :func:`decrypt_attachment`). ``filename`` and
    ``mime_type`` describe the file for display before it is fetched; the decrypted
    :class:`Attachment` is authoritative.
    """

    url: str
    content_digest: str
    secret: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    scheme: str
    content_length: int
    filename: str | None = None
    mime_type: str | None = None

    def __post_init__(self) -> None:
        _utf8(self.url, "remote attachment url", MAX_URL_BYTES, min_bytes=1)
        if _URL_FORBIDDEN.search(self.url):
            raise InvalidContent(f"remote attachment url {self.url!r} has spaces or controls")
        _utf8(self.content_digest, "content digest", 64)
        if not _HEX_DIGEST_RE.fullmatch(self.content_digest):
            raise InvalidContent(
                f"content digest {self.content_digest!r} is not 64 lowercase hex digits"
            )
        _check_bytes(self.secret, "attachment secret", size=32)
        _check_bytes(self.salt, "attachment salt", size=32)
        _check_bytes(self.nonce, "attachment nonce", size=12)
        _utf8(self.scheme, "attachment scheme", _MAX_SCHEME_BYTES, min_bytes=1)
        if not isinstance(self.content_length, int) or isinstance(self.content_length, bool):
            raise TypeError("content length must be an int")
        if not 0 <= self.content_length < 1 << 64:
            raise InvalidContent(f"content length {self.content_length} is not a uint64")
        if self.filename is not None:
            _check_filename(self.filename, "remote attachment file name")
        if self.mime_type is not None:
            _check_mime_type(self.mime_type, "remote attachment media type")


class RemoteAttachmentCodec:
    """:class:`RemoteAttachment`. Payload::

    struct {
        opaque url<V>;
        opaque content_digest[32];  // SHA-256 of the ciphertext
        opaque secret[32];
        opaque salt[32];
        opaque nonce[12];
        opaque scheme<V>;
        uint64 content_length;
        optional<opaque filename<V>>;
        optional<opaque mime_type<V>>;
    } RemoteAttachmentContent;
    """

    content_type = CONTENT_TYPE_REMOTE_ATTACHMENT
    value_type = RemoteAttachment

    def encode(self, value: RemoteAttachment) -> EncodedContent:
        """Encode a remote attachment reference (it carries the file's key)."""
        writer = Writer()
        _write_str(writer, value.url)
        writer.fixed(bytes.fromhex(value.content_digest), 32)
        writer.fixed(value.secret, 32)
        writer.fixed(value.salt, 32)
        writer.fixed(value.nonce, 12)
        _write_str(writer, value.scheme)
        writer.uint64(value.content_length)
        _write_optional_str(writer, value.filename)
        _write_optional_str(writer, value.mime_type)
        return EncodedContent(
            type=self.content_type, fallback=self.fallback(value), content=writer.getvalue()
        )

    def decode(self, encoded: EncodedContent) -> RemoteAttachment:
        """Decode a remote attachment reference."""
        _expect_type(encoded, self.content_type)

        def read(reader: Reader) -> RemoteAttachment:
            return RemoteAttachment(
                url=_read_str(reader, "url"),
                content_digest=reader.fixed(32, "content digest").hex(),
                secret=reader.fixed(32, "secret"),
                salt=reader.fixed(32, "salt"),
                nonce=reader.fixed(12, "nonce"),
                scheme=_read_str(reader, "scheme"),
                content_length=reader.uint64("content length"),
                filename=_read_optional_str(reader, "file name"),
                mime_type=_read_optional_str(reader, "media type"),
            )

        return _parse_struct(encoded.content, "remote attachment", read)

    def fallback(self, value: RemoteAttachment) -> str | None:
        """``Sent an attachment: name`` (or just ``Sent an attachment``)."""
        return _attachment_fallback(value.filename)


@dataclass(frozen=True)
class EncryptedAttachmentKeys:
    """What :func:`encrypt_attachment` returns besides the ciphertext: the key material and
    the ciphertext's digest and length, to be sent in a :class:`RemoteAttachment`."""

    secret: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    scheme: str
    content_digest: str
    content_length: int

    def remote_attachment(
        self, url: str, *, filename: str | None = None, mime_type: str | None = None
    ) -> RemoteAttachment:
        """The :class:`RemoteAttachment` for the ciphertext once uploaded at ``url``."""
        return RemoteAttachment(
            url=url,
            content_digest=self.content_digest,
            secret=self.secret,
            salt=self.salt,
            nonce=self.nonce,
            scheme=self.scheme,
            content_length=self.content_length,
            filename=filename,
            mime_type=mime_type,
        )


def _attachment_aead(scheme: str) -> Aead:
    aead = ATTACHMENT_SCHEMES.get(scheme)
    if aead is None:
        raise AttachmentError(
            f"unsupported attachment scheme {scheme!r}; supported: {', '.join(ATTACHMENT_SCHEMES)}"
        )
    return aead


def _attachment_key(
    backend: CryptoBackend, aead: Aead, scheme: str, secret: bytes, salt: bytes
) -> bytes:
    # The scheme is part of the info, so one secret never yields the same key for two AEADs.
    prk = backend.hkdf_extract(salt, secret)
    return backend.hkdf_expand(prk, _ATTACHMENT_KEY_LABEL + scheme.encode(), aead.key_size)


def encrypt_attachment(
    attachment: Attachment,
    provider: CryptoProvider | None = None,
    *,
    scheme: str = ATTACHMENT_SCHEME_AES_128_GCM,
) -> tuple[bytes, EncryptedAttachmentKeys]:
    """Seal ``attachment`` for upload; return the ciphertext and its keys.

    The plaintext is the padded attachment struct (file name, media type, data). A fresh
    32-byte secret, 32-byte salt and 12-byte nonce come from ``provider``; the AEAD key is
    ``HKDF-Expand(HKDF-Extract(salt, secret), "veilpost attachment key " + scheme, Nk)``.
    """
    if len(attachment.data) > MAX_REMOTE_ATTACHMENT_BYTES:
        raise AttachmentError(
            f"attachment {attachment.filename!r} is {len(attachment.data)} bytes,"
            f" at most {MAX_REMOTE_ATTACHMENT_BYTES} allowed"
        )
    aead = _attachment_aead(scheme)
    provider = provider or get_provider()
    writer = Writer()
    attachment.encode(writer)
    secret = provider.random_bytes(32)
    salt = provider.random_bytes(32)
    nonce = provider.random_bytes(aead.nonce_size)
    key = _attachment_key(provider.backend, aead, scheme, secret, salt)
    ciphertext = provider.backend.aead_seal(
        aead, key, nonce, _ATTACHMENT_AAD, pad(writer.getvalue())
    )
    keys = EncryptedAttachmentKeys(
        secret=secret,
        salt=salt,
        nonce=nonce,
        scheme=scheme,
        content_digest=hashlib.sha256(ciphertext).hexdigest(),
        content_length=len(ciphertext),
    )
    return ciphertext, keys


def decrypt_attachment(
    ciphertext: bytes, remote: RemoteAttachment, provider: CryptoProvider | None = None
) -> Attachment:
    """Verify and open a downloaded blob; every failure is an :class:`AttachmentError`.

    Checks, in order: the SHA-256 digest, the length, the scheme, the AEAD tag, and finally
    the padding and struct of the plaintext.
    """
    digest = hashlib.sha256(ciphertext).hexdigest()
    if not hmac.compare_digest(digest, remote.content_digest):
        raise AttachmentError(
            f"digest mismatch: the blob hashes to {digest}, the message names"
            f" {remote.content_digest}"
        )
    if len(ciphertext) != remote.content_length:
        raise AttachmentError(
            f"length mismatch: the blob is {len(ciphertext)} bytes, the message says"
            f" {remote.content_length}"
        )
    aead = _attachment_aead(remote.scheme)
    provider = provider or get_provider()
    key = _attachment_key(provider.backend, aead, remote.scheme, remote.secret, remote.salt)
    try:
        plaintext = provider.backend.aead_open(aead, key, remote.nonce, _ATTACHMENT_AAD, ciphertext)
    except AeadAuthenticationError as exc:
        raise AttachmentError(
            "attachment does not authenticate: wrong key, or the ciphertext was altered"
        ) from exc
    try:
        return _parse_struct(unpad(plaintext), "attachment", Attachment.decode)
    except ContentError as exc:
        raise AttachmentError(f"decrypted attachment is malformed: {exc}") from exc


# -- group updates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetadataChange:
    """One group metadata field (``group_name``, ``description``, …) changed from ``old`` to
    ``new``; ``None`` means unset."""

    field: str
    old: str | None
    new: str | None

    def __post_init__(self) -> None:
        _utf8(self.field, "metadata field", MAX_METADATA_FIELD_BYTES, min_bytes=1)
        _optional_utf8(self.old, f"old {self.field}", MAX_METADATA_VALUE_BYTES)
        _optional_utf8(self.new, f"new {self.field}", MAX_METADATA_VALUE_BYTES)

    def encode(self, writer: Writer) -> None:
        """Write ``struct { opaque field<V>; optional<opaque old<V>>; optional<opaque new<V>>; }``
        (the old and new values)."""
        _write_str(writer, self.field)
        _write_optional_str(writer, self.old)
        _write_optional_str(writer, self.new)

    @classmethod
    def decode(cls, reader: Reader) -> MetadataChange:
        """Read one metadata change."""
        name = _read_str(reader, "metadata field")
        old = _read_optional_str(reader, "old value")
        new = _read_optional_str(reader, "new value")
        return cls(name, old, new)


@dataclass(frozen=True)
class GroupUpdated:
    """Who changed the group, and how: inboxes added and removed, metadata changed.

    ``initiated_by_inbox_id`` is empty when the committer's inbox is not known.
    """

    initiated_by_inbox_id: str
    added_inboxes: tuple[str, ...] = ()
    removed_inboxes: tuple[str, ...] = ()
    metadata_changes: tuple[MetadataChange, ...] = ()

    def __post_init__(self) -> None:
        _utf8(self.initiated_by_inbox_id, "initiator inbox id", MAX_INBOX_ID_BYTES)
        _check_str_tuple(self.added_inboxes, "added inboxes", MAX_INBOX_ID_BYTES)
        _check_str_tuple(self.removed_inboxes, "removed inboxes", MAX_INBOX_ID_BYTES)
        if not isinstance(self.metadata_changes, tuple) or not all(
            isinstance(change, MetadataChange) for change in self.metadata_changes
        ):
            raise TypeError("metadata changes must be a tuple of MetadataChange")


def _short_inbox(inbox_id: str) -> str:
    if not inbox_id:
        return "Someone"
    return inbox_id if len(inbox_id) <= 12 else inbox_id[:8] + "…"


def _members(count: int) -> str:
    return f"{count} member" if count == 1 else f"{count} members"


class GroupUpdatedCodec:
    """:class:`GroupUpdated`. Payload::

    struct {
        opaque initiated_by_inbox_id<V>;
        opaque added_inboxes<V><V>;
        opaque removed_inboxes<V><V>;
        MetadataChange metadata_changes<V>;
    } GroupUpdatedContent;
    """

    content_type = CONTENT_TYPE_GROUP_UPDATED
    value_type = GroupUpdated

    def encode(self, value: GroupUpdated) -> EncodedContent:
        """Encode a group update."""
        writer = Writer()
        _write_str(writer, value.initiated_by_inbox_id)
        writer.vector(value.added_inboxes, _write_str)
        writer.vector(value.removed_inboxes, _write_str)
        writer.vector(value.metadata_changes, lambda inner, change: change.encode(inner))
        return EncodedContent(
            type=self.content_type, fallback=self.fallback(value), content=writer.getvalue()
        )

    def decode(self, encoded: EncodedContent) -> GroupUpdated:
        """Decode a group update."""
        _expect_type(encoded, self.content_type)

        def read(reader: Reader) -> GroupUpdated:
            initiator = _read_str(reader, "initiator inbox id")
            added = reader.vector(lambda r: _read_str(r, "added inbox"), "added inboxes")
            removed = reader.vector(lambda r: _read_str(r, "removed inbox"), "removed inboxes")
            changes = reader.vector(MetadataChange.decode, "metadata changes")
            return GroupUpdated(initiator, tuple(added), tuple(removed), tuple(changes))

        return _parse_struct(encoded.content, "group update", read)

    def fallback(self, value: GroupUpdated) -> str | None:
        """E.g. ``3f2a9c1e… added 2 members, changed group_name to “Team”``."""
        parts = []
        if value.added_inboxes:
            parts.append(f"added {_members(len(value.added_inboxes))}")
        if value.removed_inboxes:
            parts.append(f"removed {_members(len(value.removed_inboxes))}")
        for change in value.metadata_changes:
            if change.new is None:
                parts.append(f"cleared {_clip(change.field, 32)}")
            else:
                parts.append(f"changed {_clip(change.field, 32)} to “{_clip(change.new)}”")
        summary = ", ".join(parts) if parts else "updated the group"
        return _clip(f"{_short_inbox(value.initiated_by_inbox_id)} {summary}", 512)


# -- profiles -----------------------------------------------------------------------------------

_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Profile:
    """How the sender wants to be called: its display name (one line of at most
    :data:`MAX_DISPLAY_NAME_BYTES`, no control characters; empty clears the name).

    A member sends its profile to a conversation when it joins, when members are added and
    when the name changes; the newest one of an inbox wins. Never shown as a message.
    """

    display_name: str

    def __post_init__(self) -> None:
        _utf8(self.display_name, "display name", MAX_DISPLAY_NAME_BYTES)
        match = _NAME_FORBIDDEN.search(self.display_name)
        if match is not None:
            raise InvalidContent(f"display name has a control character at index {match.start()}")


class ProfileCodec:
    """:class:`Profile`. Payload::

        struct {
            opaque display_name<V>;     // UTF-8, at most MAX_DISPLAY_NAME_BYTES
        } ProfileContent;

    No fallback: a client that does not know profiles shows nothing for them.
    """

    content_type = CONTENT_TYPE_PROFILE
    value_type = Profile

    def encode(self, value: Profile) -> EncodedContent:
        """Encode a profile."""
        writer = Writer()
        _write_str(writer, value.display_name)
        return EncodedContent(type=self.content_type, content=writer.getvalue())

    def decode(self, encoded: EncodedContent) -> Profile:
        """Decode a profile."""
        _expect_type(encoded, self.content_type)
        return _parse_struct(
            encoded.content, "profile", lambda reader: Profile(_read_str(reader, "display name"))
        )

    def fallback(self, value: Profile) -> str | None:
        """None: profiles are not shown."""
        return None


# -- MCP (Model Context Protocol) messages ----------------------------------------------------

McpMessageKind = Literal["request", "notification", "response", "error"]
"""What a JSON-RPC 2.0 message is: a request (``method`` and ``id``), a notification
(``method``, no ``id``), a response (``id`` and ``result``) or an error (``id`` and
``error``)."""

_MCP_SESSION_RE = re.compile(r"[A-Za-z0-9_-]+")
_JSONRPC_MEMBERS = frozenset({"jsonrpc", "id", "method", "params", "result", "error"})
_MCP_SESSION_PARAMETER = "session"


def _reject_constant(name: str) -> Any:
    raise InvalidContent(f"MCP message uses {name}, which JSON does not have")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise InvalidContent(f"MCP message has a duplicate member name {_clip(name, 64)!r}")
        result[name] = value
    return result


# A JSON string, escapes taken whole; possessive (no backtracking), and one never closed runs
# to the end of the text, so that cutting strings out is one linear pass whatever the input
# (a pattern that must find a closing quote restarts at every quote of an unclosed string).
_JSON_STRING_RE = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKET_DELTA = [0] * 256
_BRACKET_DELTA[ord("[")] = _BRACKET_DELTA[ord("{")] = 1
_BRACKET_DELTA[ord("]")] = _BRACKET_DELTA[ord("}")] = -1
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _json_nesting(data: bytes) -> int:
    """How deep arrays and objects nest in the JSON text ``data``, without parsing it.

    Checked before parsing: the standard library's parser recurses, and deep enough input
    exhausts the stack of Pyodide's WebAssembly interpreter, which is fatal there (in
    CPython it is a RecursionError). Strings are cut out first (in time linear in the size,
    whatever the input), so brackets in them do not count.
    """
    brackets = _JSON_STRING_RE.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_BRACKET_DELTA.__getitem__, brackets)), default=0)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _check_request_id(value: object, *, nullable: bool) -> None:
    if value is None and nullable:
        return
    if isinstance(value, str):
        _utf8(value, "MCP request id", MAX_MCP_REQUEST_ID_BYTES)
        return
    if isinstance(value, int) and not isinstance(value, bool):
        return
    allowed = "a string, an integer or null" if nullable else "a string or an integer"
    raise InvalidContent(f"MCP request id must be {allowed}, got {_json_type(value)}")


def _parse_jsonrpc(data: bytes) -> tuple[dict[str, Any], McpMessageKind]:
    """Parse and check one JSON-RPC 2.0 message as MCP uses it; every broken rule is an
    :class:`InvalidContent` that names it."""
    if len(data) > MAX_MCP_MESSAGE_BYTES:
        raise InvalidContent(
            f"MCP message is {len(data)} bytes, at most {MAX_MCP_MESSAGE_BYTES} allowed"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidContent(f"MCP message is not valid UTF-8 (byte {exc.start})") from None
    if _json_nesting(data) > MAX_MCP_JSON_DEPTH:
        raise InvalidContent(f"MCP message nests deeper than {MAX_MCP_JSON_DEPTH} levels")
    try:
        message = json.loads(
            text, object_pairs_hook=_unique_members, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise InvalidContent(
            f"MCP message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidContent(f"MCP message nests deeper than {MAX_MCP_JSON_DEPTH} levels") from None
    try:  # what parses but is no JSON value: a lone surrogate escape, a number out of range
        json.dumps(message, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidContent("MCP message has a lone surrogate (an unpaired \\u escape)") from None
    except ValueError:
        raise InvalidContent("MCP message has a number out of range") from None
    if not isinstance(message, dict):
        raise InvalidContent(
            f"MCP message must be one JSON-RPC object, got {_json_type(message)}"
            + (" (MCP sends no batches)" if isinstance(message, list) else "")
        )
    unknown = sorted(set(message) - _JSONRPC_MEMBERS)
    if unknown:
        raise InvalidContent(f"MCP message has unknown member {_clip(unknown[0], 64)!r}")
    if message.get("jsonrpc") != "2.0":
        raise InvalidContent(
            f"MCP message has jsonrpc {_clip(repr(message.get('jsonrpc')), 64)}, expected '2.0'"
        )
    kind: McpMessageKind
    if "method" in message:
        if "result" in message or "error" in message:
            raise InvalidContent("MCP message has a method and a result or error")
        method = message["method"]
        if not isinstance(method, str) or not method:
            raise InvalidContent(f"MCP method must be a non-empty string, got {_json_type(method)}")
        if "params" in message and not isinstance(message["params"], dict):
            raise InvalidContent(
                f"MCP params must be an object, got {_json_type(message['params'])}"
            )
        if "id" in message:
            _check_request_id(message["id"], nullable=False)
            kind = "request"
        else:
            kind = "notification"
    elif "result" in message or "error" in message:
        if "result" in message and "error" in message:
            raise InvalidContent("MCP response has both a result and an error")
        if "id" not in message:
            raise InvalidContent("MCP response has no id")
        if "params" in message:
            raise InvalidContent("MCP response has params")
        if "result" in message:
            _check_request_id(message["id"], nullable=False)
            if not isinstance(message["result"], dict):
                raise InvalidContent(
                    f"MCP result must be an object, got {_json_type(message['result'])}"
                )
            kind = "response"
        else:
            _check_request_id(message["id"], nullable=True)
            error = message["error"]
            code = error.get("code") if isinstance(error, dict) else None
            if (
                not isinstance(error, dict)
                or not isinstance(code, int)
                or isinstance(code, bool)
                or not isinstance(error.get("message"), str)
                or not set(error) <= {"code", "message", "data"}
            ):
                raise InvalidContent(
                    "MCP error must be an object with an integer code, a string message and"
                    " optional data"
                )
            kind = "error"
    else:
        raise InvalidContent(
            "MCP message is neither a request, a notification nor a response"
            " (no method, result or error)"
        )
    return message, kind


@dataclass(frozen=True)
class McpMessage:
    """One MCP message: the JSON text ``data`` of exactly one JSON-RPC 2.0 message, in the
    MCP session ``session`` (1..:data:`MAX_MCP_SESSION_BYTES` letters, digits, ``_`` and
    ``-``; the client that opens a session picks its id, and both sides answer in it).

    Checked when made: at most :data:`MAX_MCP_MESSAGE_BYTES`, UTF-8, JSON without
    duplicate member names or NaN, nesting at most :data:`MAX_MCP_JSON_DEPTH`, one object
    (MCP sends no batches) with ``jsonrpc: "2.0"`` that is a request, a notification, a
    response or an error (params and results are objects, ids strings or integers). What
    the methods mean is MCP's business, checked by the ``mcp`` SDK on the other side.
    """

    session: str
    data: bytes = field(repr=False)
    _parsed: dict[str, Any] = field(init=False, repr=False, compare=False)
    _kind: McpMessageKind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _utf8(self.session, "MCP session id", MAX_MCP_SESSION_BYTES, min_bytes=1)
        if not _MCP_SESSION_RE.fullmatch(self.session):
            raise InvalidContent(
                f"MCP session id {_clip(self.session, 64)!r} is not letters, digits, '_' and '-'"
            )
        _check_bytes(self.data, "MCP message")
        parsed, kind = _parse_jsonrpc(self.data)
        object.__setattr__(self, "_parsed", parsed)
        object.__setattr__(self, "_kind", kind)

    @classmethod
    def from_json(cls, session: str, message: Mapping[str, Any]) -> McpMessage:
        """The message for a JSON-RPC object (serialized compactly, UTF-8, no NaN)."""
        try:
            text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            data = text.encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError: a lone surrogate
            raise InvalidContent(f"MCP message is not JSON-serializable: {exc}") from None
        return cls(session, data)

    @property
    def json(self) -> dict[str, Any]:
        """The parsed message (a fresh copy: changing it changes nothing here)."""
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed

    @property
    def kind(self) -> McpMessageKind:
        """Request, notification, response or error."""
        return self._kind

    @property
    def method(self) -> str | None:
        """The method of a request or notification."""
        method = self._parsed.get("method")
        return method if isinstance(method, str) else None

    @property
    def request_id(self) -> str | int | None:
        """The id of a request, or of the request a response or error answers."""
        value = self._parsed.get("id")
        return value if isinstance(value, str | int) else None


class McpCodec:
    """:class:`McpMessage`. The payload is the message's JSON text (UTF-8) as is; the
    session id is the parameter ``session``. No fallback: MCP traffic is between programs,
    and a client that does not know the type shows nothing for it.
    """

    content_type = CONTENT_TYPE_MCP
    value_type = McpMessage

    def encode(self, value: McpMessage) -> EncodedContent:
        """Encode an MCP message."""
        return EncodedContent(
            type=self.content_type,
            parameters=((_MCP_SESSION_PARAMETER, value.session),),
            content=value.data,
        )

    def decode(self, encoded: EncodedContent) -> McpMessage:
        """Decode an MCP message; anything malformed is a :class:`ContentDecodeError`."""
        _expect_type(encoded, self.content_type)
        session = encoded.parameter(_MCP_SESSION_PARAMETER)
        if session is None:
            raise ContentDecodeError("MCP content has no session parameter")
        with _decoding("MCP message"):
            return McpMessage(session, encoded.content)

    def fallback(self, value: McpMessage) -> str | None:
        """None: MCP messages are not shown."""
        return None


def default_registry() -> CodecRegistry:
    """A registry with every standard codec (text, markdown, reply, reaction, read receipt,
    attachment, remote attachment, group updated, profile, MCP)."""
    registry = CodecRegistry(
        [
            TextCodec(),
            MarkdownCodec(),
            ReactionCodec(),
            ReadReceiptCodec(),
            AttachmentCodec(),
            RemoteAttachmentCodec(),
            GroupUpdatedCodec(),
            ProfileCodec(),
            McpCodec(),
        ]
    )
    registry.register(ReplyCodec(registry))
    return registry


# -- padding ------------------------------------------------------------------------------------


def padded_size(length: int) -> int:
    """The size :func:`pad` gives ``length`` bytes of data (its 4-byte prefix included).

    The smallest power of two that holds them, at least :data:`PAD_MIN_SIZE`, up to
    :data:`PAD_LINEAR_STEP`; beyond it the next multiple of :data:`PAD_LINEAR_STEP`.
    """
    if not 0 <= length <= MAX_PADDABLE_BYTES:
        raise ContentError(
            f"cannot pad {length} bytes: the length must be in 0..{MAX_PADDABLE_BYTES}"
        )
    needed = length + _PAD_PREFIX_BYTES
    if needed <= PAD_MIN_SIZE:
        return PAD_MIN_SIZE
    if needed <= PAD_LINEAR_STEP:
        return 1 << (needed - 1).bit_length()
    return -(-needed // PAD_LINEAR_STEP) * PAD_LINEAR_STEP


def pad(data: bytes) -> bytes:
    """``data`` behind a ``uint32`` length and followed by zeros up to its padded size."""
    total = padded_size(len(data))
    return (
        len(data).to_bytes(_PAD_PREFIX_BYTES, "big")
        + data
        + bytes(total - _PAD_PREFIX_BYTES - len(data))
    )


def unpad(padded: bytes) -> bytes:
    """The data :func:`pad` padded; a wrong size or a non-zero padding byte is malformed."""
    if len(padded) < _PAD_PREFIX_BYTES:
        raise ContentDecodeError(
            f"padded content is {len(padded)} bytes, shorter than its length prefix"
        )
    length = int.from_bytes(padded[:_PAD_PREFIX_BYTES], "big")
    expected = padded_size(length)
    if len(padded) != expected:
        raise ContentDecodeError(
            f"padded content is {len(padded)} bytes, but {length} bytes of data pad to {expected}"
        )
    end = _PAD_PREFIX_BYTES + length
    padding = padded[end:]
    if padding.count(0) != len(padding):
        offset = end + next(i for i, byte in enumerate(padding) if byte)
        raise ContentDecodeError(f"non-zero padding byte at offset {offset}")
    return bytes(padded[_PAD_PREFIX_BYTES:end])
