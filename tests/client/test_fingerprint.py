"""Safety fingerprints (``veilpost.client.identity.fingerprint``): the documented derivation,
known answers, and that every input that should change it does (and nothing else)."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veilpost.client.identity import AddressBinding, IdentityRecord, fingerprint

INBOX = "0123456789abcdef0123456789abcdef"
KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
SHAPE = re.compile(r"[0-9]{5}( [0-9]{5}){11}")


def record(*keys: bytes, inbox: str = INBOX, version: int = 1) -> IdentityRecord:
    return IdentityRecord(inbox, version, tuple(keys))


def independent(inbox: str, keys: list[bytes]) -> str:
    """The derivation of the docstring, written out byte by byte (without veilpost.codec)."""

    def varint(n: int) -> bytes:  # RFC 9420 §2.1.2 variable-length integers
        if n < 1 << 6:
            return bytes([n])
        if n < 1 << 14:
            return (n | 0x4000).to_bytes(2, "big")
        return (n | 0x80000000).to_bytes(4, "big")

    def opaque(data: bytes) -> bytes:
        return varint(len(data)) + data

    items = b"".join(opaque(k) for k in sorted(keys))
    data = opaque(b"veilpost safety fingerprint v1") + opaque(inbox.encode()) + opaque(items)
    digest = hashlib.sha256(b"\x00" + data).digest() + hashlib.sha256(b"\x01" + data).digest()
    groups = [int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100000 for i in range(12)]
    return " ".join(f"{g:05d}" for g in groups)


def test_known_answers() -> None:
    assert fingerprint(record(KEY_A, KEY_B)) == (
        "50643 20674 54056 08680 60731 55143 24411 52201 87585 19326 90800 11445"
    )
    assert fingerprint(record(KEY_A, KEY_B)) == independent(INBOX, [KEY_A, KEY_B])
    assert fingerprint(record(KEY_A)) == independent(INBOX, [KEY_A])


def test_shape_is_twelve_groups_of_five_digits() -> None:
    text = fingerprint(record(KEY_A))
    assert SHAPE.fullmatch(text), text
    assert len(text.split()) == 12


def test_key_order_does_not_matter() -> None:
    assert fingerprint(record(KEY_A, KEY_B)) == fingerprint(record(KEY_B, KEY_A))


def test_version_and_addresses_do_not_matter() -> None:
    binding = AddressBinding("0x" + "11" * 20, bytes(65), 1_700_000_000)
    base = fingerprint(record(KEY_A))
    assert fingerprint(record(KEY_A, version=7)) == base
    assert fingerprint(IdentityRecord(INBOX, 2, (KEY_A,), (binding,))) == base


@pytest.mark.parametrize(
    "changed",
    [
        record(KEY_A, KEY_B),  # a device added
        record(KEY_B),  # another device
        record(KEY_A[:-1] + b"\x20"),  # one bit of the key
        record(KEY_A, inbox="1123456789abcdef0123456789abcdef"),  # another inbox
    ],
    ids=["device-added", "other-device", "key-bit", "other-inbox"],
)
def test_every_relevant_change_changes_it(changed: IdentityRecord) -> None:
    assert fingerprint(changed) != fingerprint(record(KEY_A))


def test_the_two_digests_are_both_used() -> None:
    # Groups 0-5 come from the first digest (30 bytes), 6-11 from both (bytes 30-59).
    data_groups = fingerprint(record(KEY_A)).split()
    other = fingerprint(record(KEY_B)).split()
    assert data_groups[:6] != other[:6] and data_groups[6:] != other[6:]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=5, unique=True))
def test_matches_the_independent_derivation(keys: list[bytes]) -> None:
    assert fingerprint(record(*keys)) == independent(INBOX, keys)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(min_value=0, max_value=255))
def test_any_single_bit_flip_changes_it(key: bytes, bit: int) -> None:
    flipped = bytearray(key)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert fingerprint(record(key)) != fingerprint(record(bytes(flipped)))
