"""Typed errors of the crypto layer: each names the check that failed."""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error raised by :mod:`veilpost.crypto`."""


class UnsupportedError(CryptoError):
    """An algorithm, cipher suite or backend that this build cannot provide."""


class InvalidKeyError(CryptoError):
    """A key has the wrong length or does not decode to a valid value."""


class KeyAgreementError(CryptoError):
    """X25519 produced the all-zero shared secret (RFC 7748 §6.1); the peer key is unusable."""


class AeadAuthenticationError(CryptoError):
    """AEAD decryption failed: the tag does not authenticate the ciphertext and data."""


class SignatureVerificationError(CryptoError):
    """A signature does not verify under the given public key and content."""


class HpkeError(CryptoError):
    """An HPKE operation failed (RFC 9180): bad encapsulation, or a sequence-number overflow."""
