"""Pre-shared keys (RFC 9420 §8.4): the working group's ``psk_secret.json`` on every backend,
and the rules the computation must keep (order, count, nonce, the empty case)."""

from __future__ import annotations

import pytest
from mls_vectors import run_vector_file
from support import h

from veilpost.codec import decode, encode
from veilpost.crypto import CipherSuite, CryptoBackend, CryptoProvider
from veilpost.mls.errors import ProtocolError
from veilpost.mls.psk import (
    MAX_PSKS,
    PreSharedKeyID,
    PSKLabel,
    PSKType,
    ResumptionPSKUsage,
    external_psk_id,
    psk_secret,
    resumption_psk_id,
)
from veilpost.mls.vectors import CHECKERS
from veilpost.mls.vectors.psk_secret import check_psk_secret


def test_psk_secret_vectors(backend: CryptoBackend) -> None:
    assert CHECKERS["psk_secret"] is check_psk_secret
    assert {1, 3} <= run_vector_file("psk_secret", backend)


@pytest.fixture
def suite(backend: CryptoBackend) -> CipherSuite:
    return CipherSuite(1, CryptoProvider(backend))


def _external(psk_id: bytes, nonce: bytes = b"\x00" * 32) -> PreSharedKeyID:
    return PreSharedKeyID(PSKType.EXTERNAL, psk_nonce=nonce, psk_id=psk_id)


def test_no_psks_give_the_all_zero_secret(suite: CipherSuite) -> None:
    assert psk_secret(suite, []) == bytes(32)


def test_the_order_of_psks_matters(suite: CipherSuite) -> None:
    first, second = (_external(b"a"), b"\x01" * 32), (_external(b"b"), b"\x02" * 32)
    assert psk_secret(suite, [first, second]) != psk_secret(suite, [second, first])


def test_the_count_is_bound_into_each_psk(suite: CipherSuite) -> None:
    # The same PSK at index 0 contributes differently when a second one follows: the chain
    # of two is not the chain of one extended.
    only = psk_secret(suite, [(_external(b"a"), b"\x01" * 32)])
    pair = psk_secret(suite, [(_external(b"a"), b"\x01" * 32), (_external(b"b"), b"\x02" * 32)])
    label = encode(PSKLabel(_external(b"b"), 1, 2))
    extracted = suite.kdf_extract(bytes(32), b"\x02" * 32)
    psk_input = suite.expand_with_label(extracted, "derived psk", label, 32)
    assert pair != suite.kdf_extract(psk_input, only)


def test_the_nonce_and_the_value_matter(suite: CipherSuite) -> None:
    base = psk_secret(suite, [(_external(b"a"), b"\x01" * 32)])
    assert psk_secret(suite, [(_external(b"a", b"\x01" * 32), b"\x01" * 32)]) != base
    assert psk_secret(suite, [(_external(b"a"), b"\x02" * 32)]) != base


def test_more_psks_than_a_label_can_count_are_refused(suite: CipherSuite) -> None:
    one = (_external(b"a"), b"\x01" * 32)
    with pytest.raises(ProtocolError, match="65536 PSKs, more than a PSKLabel can count") as raised:
        psk_secret(suite, [one] * (MAX_PSKS + 1))
    assert raised.value.check == "psk.count"


def test_psk_label_round_trips() -> None:
    label = PSKLabel(_external(b"id", b"\x05" * 32), index=3, count=7)
    encoded = encode(label)
    assert encoded.endswith(bytes.fromhex("00030007"))
    assert decode(PSKLabel, encoded) == label


def test_fresh_psk_ids_take_a_nonce_of_kdf_nh_bytes_from_the_provider(
    backend: CryptoBackend,
) -> None:
    suite = CipherSuite(1, CryptoProvider(backend, random=lambda n: b"\x2a" * n))
    external = external_psk_id(suite, b"psk")
    assert external == _external(b"psk", b"\x2a" * 32)
    resumption = resumption_psk_id(suite, ResumptionPSKUsage.BRANCH, b"group", 9)
    assert resumption.psk_nonce == b"\x2a" * 32
    assert decode(PreSharedKeyID, encode(resumption)) == resumption
    assert encode(resumption) == h("0203" + "0567726f7570" + "0000000000000009" + "20" + "2a" * 32)
