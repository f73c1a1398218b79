"""The MLS working group's ``crypto-basics.json`` for suites 1 and 3 on every backend, and
the behaviour of the cipher suite object around it."""

from __future__ import annotations

from typing import Any

import pytest
from mls_vectors import run_vector_file
from support import MLS_VECTORS, h, load_json

from veilpost.crypto import (
    SUPPORTED_CIPHER_SUITES,
    CipherSuite,
    CryptoBackend,
    CryptoProvider,
    HpkeError,
    SignatureVerificationError,
    UnsupportedError,
)

VECTORS = load_json(MLS_VECTORS / "crypto-basics.json")


def test_crypto_basics_vectors(backend: CryptoBackend) -> None:
    assert run_vector_file("crypto-basics", backend) == {1, 3}


def _suite_vector(suite_id: int) -> dict[str, Any]:
    return next(v for v in VECTORS if v["cipher_suite"] == suite_id)


@pytest.mark.parametrize("suite_id", SUPPORTED_CIPHER_SUITES)
def test_verify_with_label_names_the_label(backend: CryptoBackend, suite_id: int) -> None:
    suite = CipherSuite(suite_id, CryptoProvider(backend))
    s = _suite_vector(suite_id)["sign_with_label"]
    pub, content, sig = h(s["pub"]), h(s["content"]), h(s["signature"])
    with pytest.raises(SignatureVerificationError, match="'OtherLabel'"):
        suite.verify_with_label(pub, "OtherLabel", content, sig)
    with pytest.raises(SignatureVerificationError):
        suite.verify_with_label(pub, s["label"], content + b"x", sig)
    with pytest.raises(SignatureVerificationError):
        suite.verify_with_label(pub, s["label"], content, sig[:-1])


@pytest.mark.parametrize("suite_id", SUPPORTED_CIPHER_SUITES)
def test_decrypt_with_label_binds_label_and_context(backend: CryptoBackend, suite_id: int) -> None:
    suite = CipherSuite(suite_id, CryptoProvider(backend))
    sk, pk = suite.hpke_key_pair()
    kem_output, ct = suite.encrypt_with_label(pk, "UpdatePathNode", b"context", b"path secret")
    with pytest.raises(HpkeError, match="DecryptWithLabel 'Welcome' failed"):
        suite.decrypt_with_label(sk, "Welcome", b"context", kem_output, ct)
    with pytest.raises(HpkeError):
        suite.decrypt_with_label(sk, "UpdatePathNode", b"other", kem_output, ct)


def test_unsupported_suite_is_refused_with_the_list() -> None:
    with pytest.raises(
        UnsupportedError, match=r"0x0002 is not supported; supported: 0x0001, 0x0003"
    ):
        CipherSuite(0x0002)


def test_randomness_comes_from_the_provider(backend: CryptoBackend) -> None:
    seeds = iter([bytes([7]) * 32, bytes([7]) * 32])
    suite_a = CipherSuite(1, CryptoProvider(backend, random=lambda n: next(seeds)))
    assert suite_a.signature_key_pair() == suite_a.signature_key_pair()
    with pytest.raises(ValueError, match="random source returned 3 bytes, 32 requested"):
        CipherSuite(1, CryptoProvider(backend, random=lambda n: b"abc")).hpke_key_pair()
