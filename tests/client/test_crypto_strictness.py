"""Inputs on which backends could silently disagree, pinned down on every backend."""

from __future__ import annotations

import pytest

from veilpost.crypto import (
    Aead,
    CipherSuite,
    CryptoBackend,
    CryptoProvider,
    Hpke,
    HpkeError,
)

P = 2**255 - 19
IDENTITY = (1).to_bytes(32, "little")  # the neutral point (x = 0, y = 1)
FORGERY = IDENTITY + bytes(32)  # R = identity, S = 0: valid under any small-order key


def _encode_y(y: int, sign: int = 0) -> bytes:
    return (y | (sign << 255)).to_bytes(32, "little")


NON_CANONICAL_KEYS = {
    "y = p": _encode_y(P),
    "y = p + 1": _encode_y(P + 1),
    "y = p, sign set": _encode_y(P, 1),
    "y = p + 1, sign set": _encode_y(P + 1, 1),
    "x = -0 with y = 1": _encode_y(1, 1),
    "x = -0 with y = p - 1": _encode_y(P - 1, 1),
}


@pytest.mark.parametrize("name", sorted(NON_CANONICAL_KEYS))
def test_non_canonical_ed25519_public_keys_are_rejected(backend: CryptoBackend, name: str) -> None:
    # OpenSSL reduces these encodings mod p; accepting them would let a member forge
    # signatures that only CPython clients accept.
    for message in (b"", b"any message"):
        assert not backend.ed25519_verify(NON_CANONICAL_KEYS[name], message, FORGERY)


def test_hpke_contexts_only_do_their_own_side(backend: CryptoBackend) -> None:
    hpke = Hpke(CryptoProvider(backend), Aead.AES_128_GCM)
    sk, pk = hpke.generate_key_pair()
    enc, sender = hpke.setup_base_s(pk, b"info")
    receiver = hpke.setup_base_r(enc, sk, b"info")
    with pytest.raises(HpkeError, match="Seal on a receiver context"):
        receiver.seal(b"", b"would reuse the sender's nonce")
    sealed = sender.seal(b"", b"x")
    with pytest.raises(HpkeError, match="Open on a sender context"):
        sender.open(b"", sealed)
    assert receiver.open(b"", sealed) == b"x"


def test_cipher_suite_argument_errors(backend: CryptoBackend) -> None:
    with pytest.raises(TypeError, match="must be an int code point, got 'x'"):
        CipherSuite("x")  # type: ignore[arg-type]
    suite = CipherSuite(1, CryptoProvider(backend))
    with pytest.raises(ValueError, match="generation 4294967296 is not a uint32"):
        suite.derive_tree_secret(bytes(32), "key", 1 << 32, 16)
    with pytest.raises(ValueError, match="generation -1 is not a uint32"):
        suite.derive_tree_secret(bytes(32), "key", -1, 16)
