"""MLS cipher suites and the labelled helpers of RFC 9420 §5.

A :class:`CipherSuite` binds one of the supported suites (§17.1) to a crypto provider and
offers what the protocol layer needs:

- ``Hash``, ``MAC``, ``KDF.Extract``/``KDF.Expand``, the AEAD, HPKE and signatures;
- ``ExpandWithLabel``, ``DeriveSecret`` (§8) and ``DeriveTreeSecret`` (§9);
- ``RefHash``, ``MakeKeyPackageRef`` and ``MakeProposalRef`` (§5.2);
- ``SignWithLabel``/``VerifyWithLabel`` (§5.1.2) and
  ``EncryptWithLabel``/``DecryptWithLabel`` (§5.1.3).

Suites: 0x0001 MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 (mandatory to implement) and
0x0003 MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519.
"""

from __future__ import annotations

import enum
import hashlib

from veilpost.codec import Writer
from veilpost.crypto.backend import Aead, CryptoBackend
from veilpost.crypto.errors import HpkeError, SignatureVerificationError, UnsupportedError
from veilpost.crypto.hpke import Hpke
from veilpost.crypto.provider import CryptoProvider, get_provider

_MLS_LABEL_PREFIX = b"MLS 1.0 "


class CipherSuiteId(enum.IntEnum):
    """The cipher suites Veilpost implements, with their IANA code points (§17.1)."""

    MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 = 0x0001
    MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 = 0x0003


SUPPORTED_CIPHER_SUITES: tuple[int, ...] = tuple(int(s) for s in CipherSuiteId)

_AEAD_OF = {
    CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519: Aead.AES_128_GCM,
    CipherSuiteId.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519: Aead.CHACHA20_POLY1305,
}


def _label(label: str | bytes) -> bytes:
    return label.encode() if isinstance(label, str) else label


def _two_opaques(first: bytes, second: bytes) -> bytes:
    writer = Writer()
    writer.opaque(first)
    writer.opaque(second)
    return writer.getvalue()


class CipherSuite:
    """One MLS cipher suite bound to a :class:`CryptoProvider`.

    Labels are given without the ``"MLS 1.0 "`` prefix, as in the RFC's pseudocode, either as
    ``str`` or ``bytes``.
    """

    __slots__ = ("_backend", "aead", "hpke", "id", "provider")

    hash_size = 32  # Nh for SHA-256
    kdf_size = 32  # KDF.Nh for HKDF-SHA256

    def __init__(self, suite_id: int, provider: CryptoProvider | None = None) -> None:
        if not isinstance(suite_id, int):
            raise TypeError(f"cipher suite must be an int code point, got {suite_id!r}")
        try:
            self.id = CipherSuiteId(suite_id)
        except ValueError:
            raise UnsupportedError(
                f"cipher suite 0x{suite_id:04x} is not supported; supported: "
                + ", ".join(f"0x{s:04x}" for s in SUPPORTED_CIPHER_SUITES)
            ) from None
        self.provider = provider or get_provider()
        self._backend: CryptoBackend = self.provider.backend
        self.aead = _AEAD_OF[self.id]
        self.hpke = Hpke(self.provider, self.aead)

    def __repr__(self) -> str:
        return f"CipherSuite(0x{self.id:04x} {self.id.name}, backend={self._backend.name!r})"

    # -- primitives -----------------------------------------------------------------------------

    def hash(self, data: bytes) -> bytes:
        """``Hash``: SHA-256."""
        return hashlib.sha256(data).digest()

    def mac(self, key: bytes, data: bytes) -> bytes:
        """``MAC``: HMAC-SHA256."""
        return self._backend.hmac_sha256(key, data)

    def kdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        """``KDF.Extract``: HKDF-Extract with SHA-256."""
        return self._backend.hkdf_extract(salt, ikm)

    def kdf_expand(self, secret: bytes, info: bytes, length: int) -> bytes:
        """``KDF.Expand``: HKDF-Expand with SHA-256."""
        return self._backend.hkdf_expand(secret, info, length)

    def aead_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """``AEAD.Seal`` of the suite's AEAD: ciphertext followed by the tag."""
        return self._backend.aead_seal(self.aead, key, nonce, aad, plaintext)

    def aead_open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """``AEAD.Open``; raises :class:`~veilpost.crypto.errors.AeadAuthenticationError`."""
        return self._backend.aead_open(self.aead, key, nonce, aad, ciphertext)

    @property
    def aead_key_size(self) -> int:
        """``AEAD.Nk``."""
        return self.aead.key_size

    @property
    def aead_nonce_size(self) -> int:
        """``AEAD.Nn``."""
        return self.aead.nonce_size

    def random_bytes(self, size: int) -> bytes:
        """``size`` bytes from the provider's random source."""
        return self.provider.random_bytes(size)

    # -- key derivation (§8, §9) ----------------------------------------------------------------

    def expand_with_label(
        self, secret: bytes, label: str | bytes, context: bytes, length: int
    ) -> bytes:
        """``ExpandWithLabel(Secret, Label, Context, Length)`` (§8)."""
        writer = Writer()
        writer.uint16(length)
        writer.opaque(_MLS_LABEL_PREFIX + _label(label))
        writer.opaque(context)
        return self._backend.hkdf_expand(secret, writer.getvalue(), length)

    def derive_secret(self, secret: bytes, label: str | bytes) -> bytes:
        """``DeriveSecret(Secret, Label)`` = ``ExpandWithLabel(Secret, Label, "", KDF.Nh)``."""
        return self.expand_with_label(secret, label, b"", self.kdf_size)

    def derive_tree_secret(
        self, secret: bytes, label: str | bytes, generation: int, length: int
    ) -> bytes:
        """``DeriveTreeSecret(Secret, Label, Generation, Length)`` (§9)."""
        if not 0 <= generation < 1 << 32:
            raise ValueError(f"generation {generation} is not a uint32")
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    # -- hash-based identifiers (§5.2) ----------------------------------------------------------

    def ref_hash(self, label: str | bytes, value: bytes) -> bytes:
        """``RefHash(label, value)``: the label is used as given (no prefix is added)."""
        return self.hash(_two_opaques(_label(label), value))

    def make_key_package_ref(self, key_package: bytes) -> bytes:
        """``MakeKeyPackageRef``: the reference of an encoded KeyPackage."""
        return self.ref_hash(b"MLS 1.0 KeyPackage Reference", key_package)

    def make_proposal_ref(self, authenticated_content: bytes) -> bytes:
        """``MakeProposalRef``: the reference of an encoded AuthenticatedContent."""
        return self.ref_hash(b"MLS 1.0 Proposal Reference", authenticated_content)

    # -- signatures (§5.1.2) --------------------------------------------------------------------

    def signature_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh Ed25519 key pair ``(private_key, public_key)`` from the provider."""
        private_key = self.random_bytes(32)
        return private_key, self._backend.ed25519_public_key(private_key)

    def signature_public_key(self, private_key: bytes) -> bytes:
        """The Ed25519 public key of a private key."""
        return self._backend.ed25519_public_key(private_key)

    def sign_with_label(self, private_key: bytes, label: str | bytes, content: bytes) -> bytes:
        """``SignWithLabel(SignatureKey, Label, Content)``."""
        sign_content = _two_opaques(_MLS_LABEL_PREFIX + _label(label), content)
        return self._backend.ed25519_sign(private_key, sign_content)

    def verify_with_label(
        self, public_key: bytes, label: str | bytes, content: bytes, signature: bytes
    ) -> None:
        """``VerifyWithLabel``; raises :class:`SignatureVerificationError` naming the label."""
        sign_content = _two_opaques(_MLS_LABEL_PREFIX + _label(label), content)
        if not self._backend.ed25519_verify(public_key, sign_content, signature):
            raise SignatureVerificationError(
                f"signature with label {_label(label).decode(errors='replace')!r} does not verify"
            )

    # -- public-key encryption (§5.1.3) ---------------------------------------------------------

    def hpke_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh HPKE key pair ``(private_key, public_key)`` (``GenerateKeyPair``)."""
        return self.hpke.generate_key_pair()

    def derive_hpke_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """``DeriveKeyPair(ikm)`` of the suite's KEM."""
        return self.hpke.derive_key_pair(ikm)

    def encrypt_with_label(
        self, public_key: bytes, label: str | bytes, context: bytes, plaintext: bytes
    ) -> tuple[bytes, bytes]:
        """``EncryptWithLabel``: return ``(kem_output, ciphertext)``."""
        info = _two_opaques(_MLS_LABEL_PREFIX + _label(label), context)
        return self.hpke.seal_base(public_key, info, b"", plaintext)

    def decrypt_with_label(
        self,
        private_key: bytes,
        label: str | bytes,
        context: bytes,
        kem_output: bytes,
        ciphertext: bytes,
    ) -> bytes:
        """``DecryptWithLabel``; raises :class:`~veilpost.crypto.errors.HpkeError`."""
        info = _two_opaques(_MLS_LABEL_PREFIX + _label(label), context)
        try:
            return self.hpke.open_base(kem_output, private_key, info, b"", ciphertext)
        except HpkeError as exc:
            raise HpkeError(
                f"DecryptWithLabel {_label(label).decode(errors='replace')!r} failed: {exc}"
            ) from exc


def get_cipher_suite(suite_id: int, provider: CryptoProvider | None = None) -> CipherSuite:
    """Return suite ``suite_id`` on ``provider`` (default: automatic backend, OS randomness)."""
    return CipherSuite(suite_id, provider)
