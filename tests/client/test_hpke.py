"""HPKE (RFC 9180) base mode: Appendix A vectors for DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256 with AES-128-GCM and ChaCha20Poly1305, on every backend, plus failure cases."""

from __future__ import annotations

from typing import Any

import pytest
from support import DATA, VECTOR_COUNTS, h, load_json

from veilpost.crypto import Aead, CryptoBackend, CryptoProvider, Hpke, HpkeError

VECTORS = load_json(DATA / "hpke_rfc9180.json")


def _fixed_random(*chunks: bytes) -> Any:
    """A random source that returns the given chunks in order, then fails loudly."""
    pending = list(chunks)

    def random(size: int) -> bytes:
        assert pending, "test random source exhausted"
        chunk = pending.pop(0)
        assert len(chunk) == size
        return chunk

    return random


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_rfc9180_base_mode(backend: CryptoBackend, vector: dict[str, Any]) -> None:
    provider = CryptoProvider(backend, random=_fixed_random(h(vector["ikmE"])))
    hpke = Hpke(provider, Aead(int(vector["aead_id"])))
    assert int(vector["kem_id"]) == 0x20 and int(vector["kdf_id"]) == 1

    assert hpke.derive_key_pair(h(vector["ikmR"])) == (h(vector["skRm"]), h(vector["pkRm"]))
    assert hpke.derive_key_pair(h(vector["ikmE"])) == (h(vector["skEm"]), h(vector["pkEm"]))

    info = h(vector["info"])
    enc, sender = hpke.setup_base_s(h(vector["pkRm"]), info)
    assert enc == h(vector["enc"])
    assert (sender.key, sender.base_nonce, sender.exporter_secret) == (
        h(vector["key"]),
        h(vector["base_nonce"]),
        h(vector["exporter_secret"]),
    )
    receiver = hpke.setup_base_r(enc, h(vector["skRm"]), info)

    counts = VECTOR_COUNTS[f"rfc9180 {vector['name']} [{backend.name}]"]
    for case in vector["encryptions"]:
        # The vectors skip sequence numbers (0, 1, 2, 4, 255, 256): jump both contexts there.
        sender.sequence = receiver.sequence = int(case["sequence number"])
        ct = sender.seal(h(case["aad"]), h(case["pt"]))
        assert ct == h(case["ct"]), case
        assert receiver.open(h(case["aad"]), ct) == h(case["pt"])
        counts["encryptions"] += 1
    for case in vector["exports"]:
        want = h(case["exported_value"])
        ctx, length = h(case["exporter_context"]), int(case["L"])
        assert sender.export(ctx, length) == want
        assert receiver.export(ctx, length) == want
        counts["exports"] += 1


def test_seal_open_single_shot_and_export(backend: CryptoBackend) -> None:
    for aead in Aead:
        hpke = Hpke(CryptoProvider(backend), aead)
        sk, pk = hpke.generate_key_pair()
        enc, ct = hpke.seal_base(pk, b"info", b"aad", b"secret message")
        assert hpke.open_base(enc, sk, b"info", b"aad", ct) == b"secret message"
        enc, exported = hpke.send_export(pk, b"info", b"ctx", 48)
        assert len(exported) == 48
        assert hpke.receive_export(enc, sk, b"info", b"ctx", 48) == exported


def test_open_rejects_wrong_info_aad_key_and_tampering(backend: CryptoBackend) -> None:
    hpke = Hpke(CryptoProvider(backend), Aead.AES_128_GCM)
    sk, pk = hpke.generate_key_pair()
    other_sk, _ = hpke.generate_key_pair()
    enc, ct = hpke.seal_base(pk, b"info", b"aad", b"pt")
    bad = [
        (enc, sk, b"other info", b"aad", ct),
        (enc, sk, b"info", b"other aad", ct),
        (enc, other_sk, b"info", b"aad", ct),
        (enc, sk, b"info", b"aad", ct[:-1] + bytes([ct[-1] ^ 1])),
        (bytes([enc[0] ^ 1]) + enc[1:], sk, b"info", b"aad", ct),
    ]
    for args in bad:
        with pytest.raises(HpkeError, match="HPKE Open failed"):
            hpke.open_base(*args)


def test_decap_rejects_bad_encapsulated_keys(backend: CryptoBackend) -> None:
    hpke = Hpke(CryptoProvider(backend), Aead.CHACHA20_POLY1305)
    sk, _ = hpke.generate_key_pair()
    with pytest.raises(HpkeError, match="must be 32 bytes, got 31"):
        hpke.decap(bytes(31), sk)
    # A small-order point: every scalar maps it to the all-zero shared secret.
    with pytest.raises(HpkeError, match="all-zero"):
        hpke.decap(bytes(32), sk)
    with pytest.raises(HpkeError, match="all-zero"):
        hpke.encap(bytes(32))


def test_sequence_number_overflow_is_refused(backend: CryptoBackend) -> None:
    hpke = Hpke(CryptoProvider(backend), Aead.AES_128_GCM)
    _, pk = hpke.generate_key_pair()
    _, sender = hpke.setup_base_s(pk, b"")
    sender.sequence = (1 << 96) - 1
    with pytest.raises(HpkeError, match="sequence number would overflow"):
        sender.seal(b"", b"x")
