"""The provider seam: what a crypto backend must offer, and how one is chosen.

Two backends implement :class:`CryptoBackend`:

- ``native`` (:mod:`veilpost.crypto.native`) wraps pyca/cryptography; it is fast and is used on
  CPython whenever ``cryptography`` imports;
- ``pure`` (:mod:`veilpost.crypto.pure`) uses only the standard library (``hashlib``, ``hmac``);
  it is the browser's only backend, because no ``cryptography`` build exists for Pyodide.

Selection order: the ``backend`` argument, then the environment variable
``VEILPOST_CRYPTO_BACKEND`` (``native`` or ``pure``), then ``native`` if importable, else
``pure``. Backends are stateless: randomness is not theirs but the provider's
(:class:`veilpost.crypto.provider.CryptoProvider`), so tests can make it deterministic.
"""

from __future__ import annotations

import enum
import os
from typing import Protocol

from veilpost.crypto.errors import UnsupportedError

ENV_VAR = "VEILPOST_CRYPTO_BACKEND"
BACKEND_NAMES = ("native", "pure")


class Aead(enum.Enum):
    """The AEAD algorithms of the supported cipher suites, with their HPKE identifiers."""

    AES_128_GCM = 0x0001
    CHACHA20_POLY1305 = 0x0003

    @property
    def key_size(self) -> int:
        """``Nk``: the key length in bytes."""
        return 16 if self is Aead.AES_128_GCM else 32

    @property
    def nonce_size(self) -> int:
        """``Nn``: the nonce length in bytes (12 for both)."""
        return 12

    @property
    def tag_size(self) -> int:
        """``Nt``: the tag length in bytes (16 for both)."""
        return 16


class CryptoBackend(Protocol):
    """The primitives that a backend implements; everything else is built on top of them.

    Inputs are validated by the backend: wrong key, nonce or signature lengths raise
    :class:`~veilpost.crypto.errors.InvalidKeyError` (or ``ValueError`` for nonces), never a
    backend-specific exception.
    """

    name: str

    def x25519_public_key(self, private_key: bytes) -> bytes:
        """Return ``X25519(private_key, 9)``, the public key of a 32-byte private key."""
        ...

    def x25519(self, private_key: bytes, public_key: bytes) -> bytes:
        """Return the X25519 shared secret; raise ``KeyAgreementError`` if it is all zero."""
        ...

    def ed25519_public_key(self, private_key: bytes) -> bytes:
        """Return the Ed25519 public key of a 32-byte private key (seed), RFC 8032 §5.1.5."""
        ...

    def ed25519_sign(self, private_key: bytes, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message`` (RFC 8032 §5.1.6)."""
        ...

    def ed25519_verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is valid; malformed keys or signatures give ``False``."""
        ...

    def aead_seal(
        self, aead: Aead, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes
    ) -> bytes:
        """Encrypt and authenticate; return ciphertext followed by the 16-byte tag."""
        ...

    def aead_open(
        self, aead: Aead, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes
    ) -> bytes:
        """Verify and decrypt; raise ``AeadAuthenticationError`` if the tag does not match."""
        ...

    def hmac_sha256(self, key: bytes, data: bytes) -> bytes:
        """Return HMAC-SHA256(key, data) (RFC 2104)."""
        ...

    def hkdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        """HKDF-Extract with SHA-256 (RFC 5869 §2.2); an empty salt means 32 zero bytes."""
        ...

    def hkdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """HKDF-Expand with SHA-256 (RFC 5869 §2.3); ``length`` at most 255 * 32."""
        ...


_cache: dict[str, CryptoBackend] = {}


def _load(name: str) -> CryptoBackend:
    if name == "native":
        try:
            from veilpost.crypto.native import NativeBackend
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise UnsupportedError(
                "crypto backend 'native' needs pyca/cryptography: pip install 'veilpost[native]'"
                f" ({exc})"
            ) from exc
        return NativeBackend()
    if name == "pure":
        from veilpost.crypto.pure import PureBackend

        return PureBackend()
    raise UnsupportedError(
        f"unknown crypto backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}"
    )


def native_available() -> bool:
    """Return whether the native backend can be loaded here."""
    try:
        get_backend("native")
    except UnsupportedError:
        return False
    return True


def get_backend(name: str | None = None) -> CryptoBackend:
    """Return the backend named ``name``, or the one chosen by environment and availability."""
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip().lower() or None
    if name is None:
        try:
            return get_backend("native")
        except UnsupportedError:
            return get_backend("pure")
    if name not in _cache:
        _cache[name] = _load(name)
    return _cache[name]
