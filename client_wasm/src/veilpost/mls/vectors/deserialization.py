"""Checker for ``deserialization.json``: the variable-length integer of RFC 9420 §2.1.2."""

from __future__ import annotations

from veilpost.codec import DecodeError, decode_varint, encode_varint
from veilpost.crypto import CryptoProvider
from veilpost.mls.vectors import Case, VectorMismatch, checker, expect, h


@checker("deserialization")
def check_deserialization(case: Case, provider: CryptoProvider) -> None:
    """The header decodes to ``length``, and ``length`` encodes to the header."""
    header = h(case["vlbytes_header"])
    try:
        length = decode_varint(header)
    except DecodeError as exc:
        raise VectorMismatch(f"vlbytes_header {header.hex()}: {exc}") from exc
    expect(length, case["length"], f"decoded length of {header.hex()}")
    expect(encode_varint(case["length"]), header, f"encoding of {case['length']}")
