"""The MLS working group's ``crypto-basics.json`` for suites 1 and 3 on every backend, and
the behaviour of the cipher suite object around it."""

from __future__ import annotations

from typing import Any

import pytest
from support import MLS_VECTORS, VECTOR_COUNTS, h, load_json

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


def check_vector(suite: CipherSuite, v: dict[str, Any]) -> None:
    """Check one crypto-basics entry: every helper of RFC 9420 §5 and §8."""
    r = v["ref_hash"]
    assert suite.ref_hash(r["label"], h(r["value"])) == h(r["out"])

    e = v["expand_with_label"]
    out = suite.expand_with_label(h(e["secret"]), e["label"], h(e["context"]), e["length"])
    assert out == h(e["out"])

    d = v["derive_secret"]
    assert suite.derive_secret(h(d["secret"]), d["label"]) == h(d["out"])

    t = v["derive_tree_secret"]
    out = suite.derive_tree_secret(h(t["secret"]), t["label"], t["generation"], t["length"])
    assert out == h(t["out"])

    s = v["sign_with_label"]
    priv, pub, content, sig = h(s["priv"]), h(s["pub"]), h(s["content"]), h(s["signature"])
    assert suite.signature_public_key(priv) == pub
    suite.verify_with_label(pub, s["label"], content, sig)
    # Ed25519 is deterministic, so our own signature must equal the vector's.
    assert suite.sign_with_label(priv, s["label"], content) == sig

    c = v["encrypt_with_label"]
    plaintext = suite.decrypt_with_label(
        h(c["priv"]), c["label"], h(c["context"]), h(c["kem_output"]), h(c["ciphertext"])
    )
    assert plaintext == h(c["plaintext"])
    kem_output, ciphertext = suite.encrypt_with_label(
        h(c["pub"]), c["label"], h(c["context"]), h(c["plaintext"])
    )
    assert suite.decrypt_with_label(
        h(c["priv"]), c["label"], h(c["context"]), kem_output, ciphertext
    ) == h(c["plaintext"])


def test_crypto_basics_vectors(backend: CryptoBackend) -> None:
    counts = VECTOR_COUNTS[f"mls crypto-basics.json [{backend.name}]"]
    provider = CryptoProvider(backend)
    for vector in VECTORS:
        if vector["cipher_suite"] not in SUPPORTED_CIPHER_SUITES:
            counts["skipped (suite not implemented)"] += 1
            continue
        check_vector(CipherSuite(vector["cipher_suite"], provider), vector)
        counts["passed"] += 1
    assert counts["passed"] == 2  # suites 1 and 3 are both in the file


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
