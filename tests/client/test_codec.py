"""The TLS presentation language codec (RFC 9420 §2.1) and the working group's
``deserialization.json`` vectors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mls_vectors import run_vector_file
from support import VECTOR_COUNTS, h

from veilpost.codec import (
    MAX_VARINT,
    DecodeError,
    EncodeError,
    Reader,
    Writer,
    decode,
    decode_varint,
    encode,
    encode_varint,
)


def test_deserialization_vectors() -> None:
    assert run_vector_file("deserialization", None) == {None}
    assert VECTOR_COUNTS["mls deserialization.json"]["passed"] >= 14


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        ("25", 37),
        ("7bbd", 15293),
        ("9d7f3e7d", 494878333),
        ("00", 0),
        ("3f", 63),
        ("4040", 64),
        ("7fff", 16383),
        ("80004000", 16384),
        ("bfffffff", MAX_VARINT),
    ],
)
def test_varint_examples_from_rfc(encoded: str, value: int) -> None:
    assert decode_varint(h(encoded)) == value
    assert encode_varint(value).hex() == encoded


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("4025", "non-minimal varint encoding of 37"),  # 37 fits in one byte
        ("403f", "non-minimal varint encoding of 63"),
        ("80003fff", "non-minimal varint encoding of 16383"),  # fits in two bytes
        ("80000001", "non-minimal varint encoding of 1"),
        ("c0", "invalid varint prefix 0b11"),
        ("ffffffffffffffff", "invalid varint prefix 0b11"),
        ("40", "truncated input"),
        ("80ffff", "truncated input"),
        ("", "truncated input"),
        ("2500", "1 trailing bytes"),
    ],
)
def test_varint_rejects_malformed(encoded: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_varint(h(encoded))


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1, 1 << 62])
def test_varint_refuses_unencodable(value: int) -> None:
    with pytest.raises(EncodeError):
        encode_varint(value)


@dataclass(frozen=True)
class Example:
    """struct { uint16 kind; opaque data<V>; optional<uint32> count; uint8 tags<V>; }"""

    kind: int
    data: bytes
    count: int | None
    tags: list[int]

    def encode(self, writer: Writer) -> None:
        writer.uint16(self.kind)
        writer.opaque(self.data)
        writer.optional(self.count, Writer.uint32)
        writer.vector(self.tags, Writer.uint8)

    @classmethod
    def decode(cls, reader: Reader) -> Example:
        return cls(
            kind=reader.uint16(),
            data=reader.opaque(),
            count=reader.optional(Reader.uint32),
            tags=reader.vector(Reader.uint8),
        )


EXAMPLE = Example(kind=0x0102, data=b"abc", count=7, tags=[1, 2, 3])
EXAMPLE_BYTES = h("010203616263010000000703010203")


def test_struct_round_trip() -> None:
    assert encode(EXAMPLE) == EXAMPLE_BYTES
    assert decode(Example, EXAMPLE_BYTES) == EXAMPLE
    empty = Example(kind=0, data=b"", count=None, tags=[])
    assert encode(empty) == h("0000000000")
    assert decode(Example, encode(empty)) == empty


def test_struct_rejects_trailing_bytes() -> None:
    with pytest.raises(DecodeError, match="1 trailing bytes after Example at offset 15"):
        decode(Example, EXAMPLE_BYTES + b"\x00")


@pytest.mark.parametrize("cut", range(len(EXAMPLE_BYTES)))
def test_struct_rejects_every_truncation(cut: int) -> None:
    with pytest.raises(DecodeError, match="truncated input"):
        decode(Example, EXAMPLE_BYTES[:cut])


def test_optional_rejects_presence_octet_other_than_0_or_1() -> None:
    bad = EXAMPLE_BYTES[:6] + b"\x02" + EXAMPLE_BYTES[7:]
    with pytest.raises(DecodeError, match="invalid presence octet 2"):
        decode(Example, bad)


def test_vector_item_may_not_run_past_the_vector() -> None:
    # tags<V> claims 2 bytes, but items are uint16 read from a 3-byte window: the last item
    # would need bytes beyond the vector even though the buffer has them.
    data = Writer()
    data.varint(3)
    data.fixed(b"\x00\x01\x00\x02")
    reader = Reader(data.getvalue())
    with pytest.raises(DecodeError, match="truncated input"):
        reader.vector(Reader.uint16)


def test_vector_length_beyond_input() -> None:
    with pytest.raises(DecodeError, match="length 5 at offset 1, 2 bytes left"):
        Reader(h("050102")).vector(Reader.uint8)
    with pytest.raises(DecodeError, match="need 5 bytes at offset 1, 2 left"):
        Reader(h("050102")).opaque()


def test_writer_refuses_out_of_range_integers() -> None:
    writer = Writer()
    for method, value in [
        (writer.uint8, 256),
        (writer.uint16, -1),
        (writer.uint32, 1 << 32),
        (writer.uint64, 1 << 64),
    ]:
        with pytest.raises(EncodeError):
            method(value)
    with pytest.raises(EncodeError, match="must be 4 bytes"):
        writer.fixed(b"abc", 4)


def test_fixed_width_integers_big_endian() -> None:
    writer = Writer()
    writer.uint8(1)
    writer.uint16(0x0203)
    writer.uint32(0x04050607)
    writer.uint64(0x08090A0B0C0D0E0F)
    data = writer.getvalue()
    assert data == bytes(range(1, 16))
    reader = Reader(data)
    assert [reader.uint8(), reader.uint16(), reader.uint32(), reader.uint64()] == [
        1,
        0x0203,
        0x04050607,
        0x08090A0B0C0D0E0F,
    ]
    reader.finish()


# -- fuzzing: malformed input raises DecodeError and nothing else -----------------------------

examples = st.builds(
    Example,
    kind=st.integers(min_value=0, max_value=0xFFFF),
    data=st.binary(max_size=200),
    count=st.none() | st.integers(min_value=0, max_value=0xFFFFFFFF),
    tags=st.lists(st.integers(min_value=0, max_value=255), max_size=100),
)


@settings(max_examples=300)
@given(examples)
def test_struct_round_trip_property(value: Example) -> None:
    assert decode(Example, encode(value)) == value


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        value = decode(Example, data)
    except DecodeError:
        return
    assert encode(value) == data  # anything accepted re-encodes to the same bytes


@settings(max_examples=500)
@given(examples, st.data())
def test_mutated_encodings_decode_or_raise_decode_error(
    value: Example, data: st.DataObject
) -> None:
    encoded = bytearray(encode(value))
    position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[position] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut]), bytes(encoded) + b"\x00"):
        try:
            decoded = decode(Example, candidate)
        except DecodeError:
            continue
        assert encode(decoded) == candidate


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=MAX_VARINT))
def test_varint_round_trip_is_minimal(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded) == value
    assert len(encoded) == (1 if value < 64 else 2 if value < 16384 else 4)


def test_struct_vector_and_optional_struct() -> None:
    writer = Writer()
    writer.struct_vector([EXAMPLE, EXAMPLE])
    writer.optional_struct(EXAMPLE)
    writer.optional_struct(None)
    reader = Reader(writer.getvalue())
    assert reader.vector(Example.decode) == [EXAMPLE, EXAMPLE]
    assert reader.optional(Example.decode) == EXAMPLE
    assert reader.optional(Example.decode) is None
    reader.finish()
    assert writer.getvalue()[:1] == bytes([2 * len(EXAMPLE_BYTES)])


def test_zero_width_vector_items_are_malformed() -> None:
    # A decoder whose item reads nothing would loop forever on a non-empty vector.
    with pytest.raises(DecodeError, match="item at offset 1 is empty"):
        Reader(h("020000")).vector(lambda reader: None)


def test_reader_window_and_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"window 0\.\.10 outside a 3-byte buffer"):
        Reader(b"abc", 0, 10)
    with pytest.raises(ValueError, match=r"window 2\.\.1 "):
        Reader(b"abc", 2, 1)
    with pytest.raises(ValueError, match="cannot read -1 bytes"):
        Reader(b"abc").fixed(-1)
