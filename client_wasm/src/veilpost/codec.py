"""The TLS presentation language as MLS uses it (RFC 9420 §2.1).

Encoding is done with a :class:`Writer`, decoding with a :class:`Reader`; both work on the
wire types of the RFC:

- fixed-width big-endian integers ``uint8`` … ``uint64``;
- variable-length vectors ``T field<V>``, prefixed by the MLS variable-length integer of
  §2.1.2: one, two or four bytes, the two top bits of the first byte giving the size; a
  non-minimal encoding and the prefix ``0b11`` are malformed;
- ``optional<T>``: a presence octet of 0 or 1 (§2.1.1; any other value is malformed);
- structs: classes that follow the :class:`Struct` protocol (an ``encode(writer)`` method and
  a ``decode(reader)`` class method), used through :func:`encode` and :func:`decode`.

Decoding is strict: truncated input, trailing bytes, invalid length prefixes and lengths that
run past the enclosing vector all raise :class:`DecodeError`, the only exception a decoder
raises on malformed bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

__all__ = [
    "MAX_VARINT",
    "DecodeError",
    "EncodeError",
    "Reader",
    "Struct",
    "Writer",
    "decode",
    "decode_varint",
    "encode",
    "encode_varint",
]

MAX_VARINT = (1 << 30) - 1
"""The largest vector length the MLS varint can carry (2^30 - 1 bytes)."""

T = TypeVar("T")
S = TypeVar("S", bound="Struct")


class DecodeError(ValueError):
    """Malformed bytes: the message says what was being read and at which offset."""


class EncodeError(ValueError):
    """A value that cannot be encoded (an integer out of range, a vector too long)."""


class Struct(Protocol):
    """A structure with a wire encoding: ``encode`` writes it, ``decode`` reads one."""

    def encode(self, writer: Writer) -> None:
        """Append this value's encoding to ``writer``."""
        ...

    @classmethod
    def decode(cls: type[S], reader: Reader) -> S:
        """Read one value from ``reader`` (raising :class:`DecodeError` if malformed)."""
        ...


def encode_varint(value: int) -> bytes:
    """Return the minimal MLS varint encoding of ``value`` (RFC 9420 §2.1.2)."""
    if value < 0 or value > MAX_VARINT:
        raise EncodeError(f"varint value {value} outside 0..{MAX_VARINT}")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    return (value | 0x8000_0000).to_bytes(4, "big")


def decode_varint(data: bytes) -> int:
    """Decode ``data`` as exactly one MLS varint, rejecting anything else."""
    reader = Reader(data)
    value = reader.varint()
    reader.finish("varint")
    return value


class Reader:
    """Reads wire types from a bytes buffer, front to back, refusing malformed input."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(
        self, data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
    ) -> None:
        self._data = bytes(data) if not isinstance(data, bytes) else data
        self._end = len(self._data) if end is None else end
        if not 0 <= start <= self._end <= len(self._data):
            raise ValueError(f"window {start}..{end} outside a {len(self._data)}-byte buffer")
        self._pos = start

    @property
    def offset(self) -> int:
        """Position of the next byte to read, from the start of the buffer."""
        return self._pos

    @property
    def remaining(self) -> int:
        """Number of bytes left to read in this reader's window."""
        return self._end - self._pos

    def _take(self, size: int, what: str) -> bytes:
        if size < 0:
            raise ValueError(f"cannot read {size} bytes")
        start = self._pos
        stop = start + size
        if stop > self._end:
            raise DecodeError(
                f"truncated input reading {what}: need {size} bytes at offset {start},"
                f" {self._end - start} left"
            )
        self._pos = stop
        return self._data[start:stop]

    def bytes_since(self, start: int) -> bytes:
        """The bytes read from offset ``start`` up to the current position."""
        if not 0 <= start <= self._pos:
            raise ValueError(f"offset {start} is not behind the current position {self._pos}")
        return self._data[start : self._pos]

    def fixed(self, size: int, what: str = "fixed-size field") -> bytes:
        """Read ``size`` raw bytes (an ``opaque x[size]`` field)."""
        return self._take(size, what)

    def uint8(self, what: str = "uint8") -> int:
        """Read an 8-bit unsigned integer."""
        if self._pos >= self._end:
            raise DecodeError(f"truncated input reading {what}: no byte left at offset {self._pos}")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def uint16(self, what: str = "uint16") -> int:
        """Read a 16-bit big-endian unsigned integer."""
        return int.from_bytes(self._take(2, what), "big")

    def uint32(self, what: str = "uint32") -> int:
        """Read a 32-bit big-endian unsigned integer."""
        return int.from_bytes(self._take(4, what), "big")

    def uint64(self, what: str = "uint64") -> int:
        """Read a 64-bit big-endian unsigned integer."""
        return int.from_bytes(self._take(8, what), "big")

    def varint(self, what: str = "varint") -> int:
        """Read an MLS variable-length integer (RFC 9420 §2.1.2), minimal encodings only."""
        start = self._pos
        first = self.uint8(what)
        prefix = first >> 6
        if prefix == 3:
            raise DecodeError(f"invalid varint prefix 0b11 in {what} at offset {start}")
        size = 1 << prefix
        value = first & 0x3F
        if size > 1:
            value = (value << (8 * (size - 1))) | int.from_bytes(self._take(size - 1, what), "big")
            if value < (1 << (8 * (size // 2) - 2)):
                raise DecodeError(
                    f"non-minimal varint encoding of {value} in {what} at offset {start}"
                )
        return value

    def opaque(self, what: str = "opaque<V>") -> bytes:
        """Read a variable-length byte vector ``opaque field<V>``."""
        length = self.varint(f"length of {what}")
        return self._take(length, what)

    def vector(self, read_item: Callable[[Reader], T], what: str = "vector<V>") -> list[T]:
        """Read ``T field<V>``: a length, then items until exactly that many bytes are used.

        An item that runs past the vector's end is malformed, even if bytes follow it.
        """
        length = self.varint(f"length of {what}")
        start = self._pos
        stop = start + length
        if stop > self._end:
            raise DecodeError(
                f"truncated input reading {what}: length {length} at offset {start},"
                f" {self._end - start} bytes left"
            )
        inner = Reader(self._data, start, stop)
        items = []
        while inner._pos < stop:
            before = inner._pos
            items.append(read_item(inner))
            if inner._pos == before:  # a zero-width item would repeat forever
                raise DecodeError(f"{what} item at offset {before} is empty")
        self._pos = stop
        return items

    def optional(self, read_item: Callable[[Reader], T], what: str = "optional<T>") -> T | None:
        """Read ``optional<T>``: a presence octet (0 or 1), then the value if present."""
        start = self._pos
        present = self.uint8(f"presence octet of {what}")
        if present == 0:
            return None
        if present != 1:
            raise DecodeError(f"invalid presence octet {present} in {what} at offset {start}")
        return read_item(self)

    def struct(self, cls: type[S]) -> S:
        """Read one ``cls`` struct."""
        return cls.decode(self)

    def finish(self, what: str = "message") -> None:
        """Require that everything was read: trailing bytes are malformed."""
        if self._pos != self._end:
            raise DecodeError(
                f"{self._end - self._pos} trailing bytes after {what} at offset {self._pos}"
            )


class Writer:
    """Appends wire types to a growing buffer; :meth:`getvalue` returns the bytes."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        """Return everything written so far."""
        return bytes(self._buf)

    def fixed(self, data: bytes, size: int | None = None) -> None:
        """Write raw bytes (checking their size when ``size`` is given)."""
        if size is not None and len(data) != size:
            raise EncodeError(f"fixed-size field must be {size} bytes, got {len(data)}")
        self._buf += data

    def _uint(self, value: int, size: int) -> None:
        if not 0 <= value < 1 << (8 * size):
            raise EncodeError(f"value {value} does not fit in uint{8 * size}")
        self._buf += value.to_bytes(size, "big")

    def uint8(self, value: int) -> None:
        """Write an 8-bit unsigned integer."""
        self._uint(value, 1)

    def uint16(self, value: int) -> None:
        """Write a 16-bit big-endian unsigned integer."""
        self._uint(value, 2)

    def uint32(self, value: int) -> None:
        """Write a 32-bit big-endian unsigned integer."""
        self._uint(value, 4)

    def uint64(self, value: int) -> None:
        """Write a 64-bit big-endian unsigned integer."""
        self._uint(value, 8)

    def varint(self, value: int) -> None:
        """Write an MLS variable-length integer in its minimal encoding."""
        self._buf += encode_varint(value)

    def opaque(self, data: bytes) -> None:
        """Write ``opaque field<V>``: the varint length, then the bytes."""
        self._buf += encode_varint(len(data))
        self._buf += data

    def vector(self, items: Iterable[T], write_item: Callable[[Writer, T], None]) -> None:
        """Write ``T field<V>``: the items' total encoded length, then the items."""
        inner = Writer()
        for item in items:
            write_item(inner, item)
        self._buf += encode_varint(len(inner._buf))
        self._buf += inner._buf

    def struct_vector(self, items: Iterable[Struct]) -> None:
        """Write ``T field<V>`` for a vector of structs (each written by its ``encode``)."""
        self.vector(items, Writer.struct)

    def optional(self, value: T | None, write_item: Callable[[Writer, T], None]) -> None:
        """Write ``optional<T>``: a presence octet, then the value when present."""
        if value is None:
            self._buf.append(0)
        else:
            self._buf.append(1)
            write_item(self, value)

    def struct(self, value: Struct) -> None:
        """Write a struct."""
        value.encode(self)

    def optional_struct(self, value: Struct | None) -> None:
        """Write ``optional<T>`` for a struct."""
        self.optional(value, Writer.struct)


def encode(value: Struct) -> bytes:
    """Return the wire encoding of a struct."""
    writer = Writer()
    value.encode(writer)
    return writer.getvalue()


def decode(cls: type[S], data: bytes) -> S:
    """Decode exactly one ``cls`` from ``data``; trailing bytes are a :class:`DecodeError`."""
    reader = Reader(data)
    value = cls.decode(reader)
    reader.finish(cls.__name__)
    return value
