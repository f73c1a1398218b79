"""Checker for ``messages.json``: every MLS wire structure decodes and re-encodes exactly.

Each field of a case is one serialized structure (RFC 9420 §6–§12, test-vector format
"Messages"). The check decodes it with the matching type, requires that every byte was
consumed, re-encodes it and compares; the MLSMessage fields must also carry the wire format
(and, for public messages, the content type) that the field's name promises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from veilpost.codec import DecodeError, Reader, Struct, Writer
from veilpost.crypto import CryptoProvider
from veilpost.mls.commit import Commit
from veilpost.mls.framing import ContentType, MLSMessage, PublicMessage, WireFormat
from veilpost.mls.nodes import read_ratchet_tree, write_ratchet_tree
from veilpost.mls.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    ReInit,
    Remove,
    Update,
)
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h
from veilpost.mls.welcome import GroupSecrets


def _struct_codec(
    cls: type[Struct],
) -> tuple[Callable[[Reader], Any], Callable[[Writer, Any], None]]:
    return cls.decode, Writer.struct


FIELDS: dict[str, tuple[Callable[[Reader], Any], Callable[[Writer, Any], None]]] = {
    "mls_welcome": _struct_codec(MLSMessage),
    "mls_group_info": _struct_codec(MLSMessage),
    "mls_key_package": _struct_codec(MLSMessage),
    "ratchet_tree": (read_ratchet_tree, write_ratchet_tree),
    "group_secrets": _struct_codec(GroupSecrets),
    "add_proposal": _struct_codec(Add),
    "update_proposal": _struct_codec(Update),
    "remove_proposal": _struct_codec(Remove),
    "pre_shared_key_proposal": _struct_codec(PreSharedKey),
    "re_init_proposal": _struct_codec(ReInit),
    "external_init_proposal": _struct_codec(ExternalInit),
    "group_context_extensions_proposal": _struct_codec(GroupContextExtensions),
    "commit": _struct_codec(Commit),
    "public_message_application": _struct_codec(MLSMessage),
    "public_message_proposal": _struct_codec(MLSMessage),
    "public_message_commit": _struct_codec(MLSMessage),
    "private_message": _struct_codec(MLSMessage),
}
"""Field of a ``messages.json`` case → (read one value, write one value)."""

WIRE_FORMATS = {
    "mls_welcome": WireFormat.MLS_WELCOME,
    "mls_group_info": WireFormat.MLS_GROUP_INFO,
    "mls_key_package": WireFormat.MLS_KEY_PACKAGE,
    "public_message_application": WireFormat.MLS_PUBLIC_MESSAGE,
    "public_message_proposal": WireFormat.MLS_PUBLIC_MESSAGE,
    "public_message_commit": WireFormat.MLS_PUBLIC_MESSAGE,
    "private_message": WireFormat.MLS_PRIVATE_MESSAGE,
}

CONTENT_TYPES = {
    "public_message_application": ContentType.APPLICATION,
    "public_message_proposal": ContentType.PROPOSAL,
    "public_message_commit": ContentType.COMMIT,
}


def round_trip(name: str, data: bytes) -> Any:
    """Decode field ``name`` from ``data`` (all of it), check it re-encodes to ``data``."""
    read, write = FIELDS[name]
    reader = Reader(data)
    try:
        value = read(reader)
        reader.finish(name)
    except DecodeError as exc:
        raise VectorMismatch(f"{name} does not decode: {exc}") from exc
    writer = Writer()
    write(writer, value)
    expect(writer.getvalue(), data, f"{name} re-encoded")
    return value


@checker("messages")
def check_messages(case: Case, provider: CryptoProvider) -> None:
    """Round-trip every field of one ``messages.json`` case (no crypto needed)."""
    for name in FIELDS:
        value = round_trip(name, h(case[name]))
        if name in WIRE_FORMATS:
            expect(value.wire_format, WIRE_FORMATS[name], f"{name} wire_format")
        if name in CONTENT_TYPES:
            body = value.body
            assert isinstance(body, PublicMessage)  # the wire format was just checked
            expect(body.content.content_type, CONTENT_TYPES[name], f"{name} content_type")
