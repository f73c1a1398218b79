"""Property test: the ``native`` and ``pure`` backends give identical results on random
inputs (CPython only: inside Pyodide there is just one backend)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import BACKENDS

from veilpost.crypto import Aead, CryptoError, get_backend

pytestmark = pytest.mark.skipif(
    BACKENDS != ["native", "pure"], reason="needs both backends (CPython with veilpost[native])"
)

native = get_backend("native") if "native" in BACKENDS else None
pure = get_backend("pure")
key32 = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=1500)
examples = settings(max_examples=60, deadline=None)


def _outcome(fn: Callable[..., object], *args: object) -> object:
    """The result of a call, or the error's type: both backends must agree on either."""
    try:
        return fn(*args)
    except CryptoError as exc:
        return type(exc)


@examples
@given(private=key32, public=key32)
def test_x25519(private: bytes, public: bytes) -> None:
    assert native is not None
    assert _outcome(pure.x25519, private, public) == _outcome(native.x25519, private, public)
    assert pure.x25519_public_key(private) == native.x25519_public_key(private)


@examples
@given(seed=key32, message=messages, flip=st.integers(min_value=0, max_value=511))
def test_ed25519(seed: bytes, message: bytes, flip: int) -> None:
    assert native is not None
    public = native.ed25519_public_key(seed)
    assert pure.ed25519_public_key(seed) == public
    signature = native.ed25519_sign(seed, message)
    assert pure.ed25519_sign(seed, message) == signature
    assert pure.ed25519_verify(public, message, signature)
    forged = bytearray(signature)
    forged[flip // 8] ^= 1 << (flip % 8)
    assert pure.ed25519_verify(public, message, bytes(forged)) == native.ed25519_verify(
        public, message, bytes(forged)
    )


@examples
@given(
    aead=st.sampled_from(list(Aead)),
    key=key32,
    nonce=st.binary(min_size=12, max_size=12),
    aad=st.binary(max_size=100),
    plaintext=st.binary(max_size=3000),
)
def test_aead(aead: Aead, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> None:
    assert native is not None
    key = key[: aead.key_size]
    sealed = native.aead_seal(aead, key, nonce, aad, plaintext)
    assert pure.aead_seal(aead, key, nonce, aad, plaintext) == sealed
    assert pure.aead_open(aead, key, nonce, aad, sealed) == plaintext


@examples
@given(
    salt=st.binary(max_size=80),
    ikm=st.binary(max_size=80),
    info=st.binary(max_size=80),
    length=st.integers(min_value=0, max_value=255 * 32),
)
def test_hmac_and_hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> None:
    assert native is not None
    assert pure.hmac_sha256(salt, ikm) == native.hmac_sha256(salt, ikm)
    prk = native.hkdf_extract(salt, ikm)
    assert pure.hkdf_extract(salt, ikm) == prk
    assert pure.hkdf_expand(prk, info, length) == native.hkdf_expand(prk, info, length)
