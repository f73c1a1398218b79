"""Decoding helpers shared by the MLS wire structures (private to :mod:`veilpost.mls`).

MLS ``select`` statements are keyed by closed enumerations (``SenderType``, ``ContentType``,
``NodeType`` …). A value outside the enumeration — the ``reserved(0)`` value included —
leaves the rest of the structure undefined, so it is malformed input: :func:`read_selector`
turns it into a :class:`~veilpost.codec.DecodeError` that names the field and its offset.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from veilpost.codec import DecodeError, Reader, Struct, decode
from veilpost.mls.errors import ProtocolError

E = TypeVar("E", bound=enum.IntEnum)
S = TypeVar("S", bound=Struct)


def unknown_selector(what: str, value: int, offset: int) -> DecodeError:
    """The error for a selector value that no ``case`` of its ``select`` covers."""
    return DecodeError(f"unknown {what} {value} at offset {offset}")


def read_selector(reader: Reader, selector: type[E], what: str, width: int = 1) -> E:
    """Read a ``uint8`` (``width=2``: ``uint16``) value that must be a member of ``selector``."""
    start = reader.offset
    value = reader.uint8(what) if width == 1 else reader.uint16(what)
    try:
        return selector(value)
    except ValueError:
        raise unknown_selector(what, value, start) from None


def read_uint16s(reader: Reader, what: str) -> list[int]:
    """Read ``uint16 field<V>``."""
    return reader.vector(lambda r: r.uint16(what), what)


def read_uint32s(reader: Reader, what: str) -> list[int]:
    """Read ``uint32 field<V>``."""
    return reader.vector(lambda r: r.uint32(what), what)


def decode_decrypted(cls: type[S], plaintext: bytes, what: str, *, check: str, section: str) -> S:
    """Decode a structure that decrypted fine: malformed plaintext is the sender's fault, a
    :class:`~veilpost.mls.errors.ProtocolError` (``what`` begins its message)."""
    try:
        return decode(cls, plaintext)
    except DecodeError as exc:
        raise ProtocolError(f"{what}: {exc}", check=check, section=section) from exc
