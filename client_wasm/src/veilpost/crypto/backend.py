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
import hmac
import os
from typing import Protocol

from veilpost.crypto.errors import InvalidKeyError, KeyAgreementError, UnsupportedError

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

    Inputs are validated by the backend, never by a backend-specific exception: a key of the
    wrong length raises :class:`~veilpost.crypto.errors.InvalidKeyError`, a nonce of the wrong
    length ``ValueError``; a malformed Ed25519 key or signature makes ``ed25519_verify`` return
    ``False``. Both backends accept and reject exactly the same inputs.
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


# -- checks shared by both backends ------------------------------------------------------------

_ZERO32 = bytes(32)


def check_key_length(what: str, value: bytes, size: int) -> None:
    """Raise :class:`InvalidKeyError` unless ``value`` is ``size`` bytes long."""
    if len(value) != size:
        raise InvalidKeyError(f"{what} must be {size} bytes, got {len(value)}")


def check_aead_inputs(aead: Aead, key: bytes, nonce: bytes) -> None:
    """Check the key and nonce lengths of ``aead``."""
    check_key_length(f"{aead.name} key", key, aead.key_size)
    if len(nonce) != aead.nonce_size:
        raise ValueError(f"{aead.name} nonce must be {aead.nonce_size} bytes, got {len(nonce)}")


def reject_zero_shared_secret(shared: bytes) -> bytes:
    """Return ``shared`` unless it is all zero (RFC 7748 §6.1), which raises."""
    if hmac.compare_digest(shared, _ZERO32):
        raise KeyAgreementError("X25519 shared secret is all zero (RFC 7748 §6.1)")
    return shared


def check_hkdf_length(length: int) -> None:
    """HKDF-Expand with SHA-256 produces at most 255 * 32 bytes (RFC 5869 §2.3)."""
    if not 0 <= length <= 255 * 32:
        raise ValueError(f"HKDF-Expand length must be in 0..8160, got {length}")


_P25519 = 2**255 - 19


def ed25519_public_key_is_canonical(public_key: bytes) -> bool:
    """Whether a 32-byte Ed25519 public key is a canonical encoding (RFC 8032 §5.1.3).

    Rejects y >= p and the negative zero x (sign bit set with y = ±1, where x = 0). OpenSSL
    reduces such encodings instead of rejecting them, which would let the native backend accept
    signatures the pure backend rejects (its strict point decoding refuses them), so the native
    backend applies this check first.
    """
    y = int.from_bytes(public_key, "little") & ((1 << 255) - 1)
    if y >= _P25519:
        return False
    return not (public_key[31] & 0x80 and y in (1, _P25519 - 1))


# -- selection ---------------------------------------------------------------------------------

_cache: dict[str, CryptoBackend] = {}
_unavailable: dict[str, UnsupportedError] = {}


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
    if name in _unavailable:  # remember a failed import: retrying it costs ~0.5 ms each time
        raise _unavailable[name]
    if name not in _cache:
        try:
            _cache[name] = _load(name)
        except UnsupportedError as exc:
            _unavailable[name] = exc
            raise
    return _cache[name]
