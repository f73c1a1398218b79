"""The ``pure`` backend: standard library only, for Pyodide (and CPython without extras).

SHA-256, SHA-512 and HMAC come from ``hashlib``/``hmac``, which are native code in Pyodide
too. X25519, Ed25519, ChaCha20-Poly1305 and AES-128-GCM are implemented here in Python, tuned
for CPython's big integers (see each module's docstring for the technique). Python integers
give no constant-time guarantee; see ``docs/security.md`` for what that means for a browser.
"""

from __future__ import annotations

import hashlib
import hmac

from veilpost.crypto.backend import (
    Aead,
    check_aead_inputs,
    check_hkdf_length,
    check_key_length,
    reject_zero_shared_secret,
)
from veilpost.crypto.pure import aes_gcm, chacha20poly1305, ed25519, x25519


class PureBackend:
    """Standard-library implementation of :class:`veilpost.crypto.backend.CryptoBackend`."""

    name = "pure"

    def x25519_public_key(self, private_key: bytes) -> bytes:
        check_key_length("X25519 private key", private_key, 32)
        return x25519.x25519_base(private_key)

    def x25519(self, private_key: bytes, public_key: bytes) -> bytes:
        check_key_length("X25519 private key", private_key, 32)
        check_key_length("X25519 public key", public_key, 32)
        return reject_zero_shared_secret(x25519.x25519(private_key, public_key))

    def ed25519_public_key(self, private_key: bytes) -> bytes:
        check_key_length("Ed25519 private key", private_key, 32)
        return ed25519.public_key(private_key)

    def ed25519_sign(self, private_key: bytes, message: bytes) -> bytes:
        check_key_length("Ed25519 private key", private_key, 32)
        return ed25519.sign(private_key, message)

    def ed25519_verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        # ed25519.verify checks the lengths and decodes the key strictly itself (a
        # non-canonical key never decodes), so it needs no extra checks here.
        return ed25519.verify(public_key, message, signature)

    def aead_seal(
        self, aead: Aead, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes
    ) -> bytes:
        check_aead_inputs(aead, key, nonce)
        if aead is Aead.AES_128_GCM:
            return aes_gcm.seal(key, nonce, aad, plaintext)
        return chacha20poly1305.seal(key, nonce, aad, plaintext)

    def aead_open(
        self, aead: Aead, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes
    ) -> bytes:
        check_aead_inputs(aead, key, nonce)
        if aead is Aead.AES_128_GCM:
            return aes_gcm.open(key, nonce, aad, ciphertext)
        return chacha20poly1305.open(key, nonce, aad, ciphertext)

    def hmac_sha256(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, "sha256")

    def hkdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        # An absent salt means HashLen zero bytes (RFC 5869 §2.2); HMAC zero-pads its key, so
        # the empty salt gives the same result.
        return hmac.digest(salt, ikm, "sha256")

    def hkdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        check_hkdf_length(length)
        mac = hmac.new(prk, digestmod=hashlib.sha256)
        out = bytearray()
        block = b""
        counter = 1
        while len(out) < length:
            h = mac.copy()
            h.update(block + info + bytes((counter,)))
            block = h.digest()
            out += block
            counter += 1
        return bytes(out[:length])
