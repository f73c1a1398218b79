"""Reading the cleartext header of an MLS message (RFC 9420 §6), the only part the relay reads.

MLS exposes, by design, the wire format of every message and, for handshake and application
messages, the group id, epoch and content type (a ``PublicMessage``'s ``FramedContent``, or
the first fields of a ``PrivateMessage``). The relay reads them to route and order envelopes;
it never decrypts. Decoding uses ``veilpost``'s strict codec: a truncated message, an
over-long length or trailing bytes are all refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from veilpost.codec import DecodeError, decode
from veilpost.mls.framing import (
    ContentType,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    WireFormat,
)
from veilpost.mls.key_package import KeyPackage

from .errors import InvalidInput

# Epochs are stored in a signed 64-bit column; MLS allows uint64, honest groups never get near.
MAX_EPOCH = 2**63 - 1

WIRE_FORMAT_NAMES: dict[int, str] = {
    WireFormat.MLS_PUBLIC_MESSAGE: "mls_public_message",
    WireFormat.MLS_PRIVATE_MESSAGE: "mls_private_message",
    WireFormat.MLS_WELCOME: "mls_welcome",
    WireFormat.MLS_GROUP_INFO: "mls_group_info",
    WireFormat.MLS_KEY_PACKAGE: "mls_key_package",
}
CONTENT_TYPE_NAMES: dict[int, str] = {
    ContentType.APPLICATION: "application",
    ContentType.PROPOSAL: "proposal",
    ContentType.COMMIT: "commit",
}


@dataclass(frozen=True)
class MessageHeader:
    """The cleartext routing fields of an MLS message; ``group_id``, ``epoch`` and
    ``content_type`` are ``None`` for a Welcome."""

    wire_format: WireFormat
    group_id: bytes | None = None
    epoch: int | None = None
    content_type: ContentType | None = None

    @property
    def is_commit(self) -> bool:
        return self.content_type == ContentType.COMMIT


def _decode_message(payload: bytes, code: str) -> MLSMessage:
    try:
        return decode(MLSMessage, payload)
    except DecodeError as exc:
        raise InvalidInput(code, f"not an MLS message: {exc}") from None
    except RecursionError:  # no honest message nests deep enough to get here
        raise InvalidInput(code, "not an MLS message: it nests too deeply") from None


def read_header(payload: bytes) -> MessageHeader:
    """Decode ``payload`` as an ``MLSMessage`` and return its cleartext header."""
    message = _decode_message(payload, "invalid_envelope")
    body = message.body
    if isinstance(body, PrivateMessage):
        group_id, epoch, content_type = body.group_id, body.epoch, body.content_type
    elif isinstance(body, PublicMessage):
        content = body.content
        group_id, epoch, content_type = content.group_id, content.epoch, content.content_type
    else:
        return MessageHeader(message.wire_format)
    if epoch > MAX_EPOCH:
        raise InvalidInput("invalid_envelope", f"epoch {epoch} is beyond {MAX_EPOCH}")
    return MessageHeader(message.wire_format, group_id, epoch, content_type)


def read_key_package(payload: bytes) -> KeyPackage:
    """Decode ``payload`` as an ``MLSMessage`` carrying a ``KeyPackage``."""
    message = _decode_message(payload, "invalid_key_package")
    if not isinstance(message.body, KeyPackage):
        raise InvalidInput(
            "invalid_key_package",
            f"expected an mls_key_package message, got {WIRE_FORMAT_NAMES[message.wire_format]}",
        )
    return message.body
