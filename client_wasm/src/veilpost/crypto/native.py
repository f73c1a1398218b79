"""The ``native`` backend: pyca/cryptography (OpenSSL), for speed on CPython.

Importing this module raises ``ImportError`` when ``cryptography`` is not installed; the
backend selector (:func:`veilpost.crypto.backend.get_backend`) turns that into a clear
:class:`~veilpost.crypto.errors.UnsupportedError`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veilpost.crypto.backend import (
    Aead,
    check_aead_inputs,
    check_hkdf_length,
    check_key_length,
    ed25519_public_key_is_canonical,
    reject_zero_shared_secret,
)
from veilpost.crypto.errors import AeadAuthenticationError, KeyAgreementError

_RAW = (Encoding.Raw, PublicFormat.Raw)


class NativeBackend:
    """pyca/cryptography implementation of :class:`veilpost.crypto.backend.CryptoBackend`."""

    name = "native"

    def x25519_public_key(self, private_key: bytes) -> bytes:
        check_key_length("X25519 private key", private_key, 32)
        return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes(*_RAW)

    def x25519(self, private_key: bytes, public_key: bytes) -> bytes:
        check_key_length("X25519 private key", private_key, 32)
        check_key_length("X25519 public key", public_key, 32)
        sk = X25519PrivateKey.from_private_bytes(private_key)
        try:
            shared = sk.exchange(X25519PublicKey.from_public_bytes(public_key))
        except ValueError as exc:  # OpenSSL refuses the all-zero result itself
            raise KeyAgreementError("X25519 shared secret is all zero (RFC 7748 §6.1)") from exc
        return reject_zero_shared_secret(shared)

    def ed25519_public_key(self, private_key: bytes) -> bytes:
        check_key_length("Ed25519 private key", private_key, 32)
        return Ed25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes(*_RAW)

    def ed25519_sign(self, private_key: bytes, message: bytes) -> bytes:
        check_key_length("Ed25519 private key", private_key, 32)
        return Ed25519PrivateKey.from_private_bytes(private_key).sign(message)

    def ed25519_verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        if not ed25519_public_key_is_canonical(public_key):
            return False
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def aead_seal(
        self, aead: Aead, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes
    ) -> bytes:
        return _cipher(aead, key, nonce).encrypt(nonce, plaintext, aad)

    def aead_open(
        self, aead: Aead, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes
    ) -> bytes:
        cipher = _cipher(aead, key, nonce)
        if len(ciphertext) < aead.tag_size:
            raise AeadAuthenticationError(
                f"{aead.name} ciphertext is {len(ciphertext)} bytes, shorter than the tag"
            )
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise AeadAuthenticationError(f"{aead.name} authentication tag mismatch") from exc

    def hmac_sha256(self, key: bytes, data: bytes) -> bytes:
        mac = crypto_hmac.HMAC(key, hashes.SHA256())
        mac.update(data)
        return mac.finalize()

    def hkdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        # An absent salt means HashLen zero bytes (RFC 5869 §2.2); HMAC zero-pads its key, so
        # the empty salt gives the same result.
        return self.hmac_sha256(salt, ikm)

    def hkdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        check_hkdf_length(length)
        if length == 0:
            return b""
        return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def _cipher(aead: Aead, key: bytes, nonce: bytes) -> AESGCM | ChaCha20Poly1305:
    check_aead_inputs(aead, key, nonce)
    return AESGCM(key) if aead is Aead.AES_128_GCM else ChaCha20Poly1305(key)
