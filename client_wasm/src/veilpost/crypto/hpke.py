"""Hybrid Public Key Encryption (RFC 9180), base mode, for the suites MLS uses here.

KEM: DHKEM(X25519, HKDF-SHA256) (``kem_id`` 0x0020, §4.1 and §7.1.3); KDF: HKDF-SHA256
(``kdf_id`` 0x0001); AEAD: AES-128-GCM (0x0001) or ChaCha20-Poly1305 (0x0003). Implemented:
``DeriveKeyPair``/``GenerateKeyPair``, ``Encap``/``Decap``, the key schedule (§5.1), the
encryption context with its sequence-numbered nonces (§5.2), the secret export interface
(§5.3), and the single-shot APIs ``SealBase``/``OpenBase`` and ``SendExport``/``ReceiveExport``
(§6). Randomness (the ephemeral key's ``ikm``) comes from the provider.
"""

from __future__ import annotations

import enum

from veilpost.crypto.backend import Aead
from veilpost.crypto.errors import AeadAuthenticationError, HpkeError, KeyAgreementError
from veilpost.crypto.provider import CryptoProvider

KEM_ID = 0x0020
KDF_ID = 0x0001
MODE_BASE = 0x00
N_SECRET = 32  # DHKEM(X25519) shared secret length
N_ENC = 32
N_PK = 32
N_SK = 32
N_H = 32  # HKDF-SHA256 output length

_VERSION = b"HPKE-v1"
_KEM_SUITE_ID = b"KEM" + KEM_ID.to_bytes(2, "big")


class Hpke:
    """HPKE with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and the given AEAD."""

    __slots__ = ("_backend", "_suite_id", "aead", "provider")

    def __init__(self, provider: CryptoProvider, aead: Aead) -> None:
        self.provider = provider
        self.aead = aead
        self._backend = provider.backend
        self._suite_id = b"HPKE" + b"".join(
            i.to_bytes(2, "big") for i in (KEM_ID, KDF_ID, aead.value)
        )

    # -- labelled KDF (§4) ---------------------------------------------------------------------

    def _labeled_extract(self, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return self._backend.hkdf_extract(salt, _VERSION + suite_id + label + ikm)

    def _labeled_expand(
        self, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int
    ) -> bytes:
        labeled_info = length.to_bytes(2, "big") + _VERSION + suite_id + label + info
        return self._backend.hkdf_expand(prk, labeled_info, length)

    # -- DHKEM(X25519, HKDF-SHA256) (§4.1, §7.1.3) ---------------------------------------------

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """``DeriveKeyPair(ikm)``: return ``(private_key, public_key)``."""
        dkp_prk = self._labeled_extract(_KEM_SUITE_ID, b"", b"dkp_prk", ikm)
        private_key = self._labeled_expand(_KEM_SUITE_ID, dkp_prk, b"sk", b"", N_SK)
        return private_key, self._backend.x25519_public_key(private_key)

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        """``GenerateKeyPair()``: a fresh key pair from the provider's randomness."""
        return self.derive_key_pair(self.provider.random_bytes(N_SK))

    def _extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        eae_prk = self._labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
        return self._labeled_expand(_KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, N_SECRET)

    def encap(self, public_key_r: bytes) -> tuple[bytes, bytes]:
        """``Encap(pkR)``: return ``(shared_secret, enc)``."""
        if len(public_key_r) != N_PK:
            raise HpkeError(
                f"HPKE recipient public key must be {N_PK} bytes, got {len(public_key_r)}"
            )
        private_key_e, enc = self.generate_key_pair()
        try:
            dh = self._backend.x25519(private_key_e, public_key_r)
        except KeyAgreementError as exc:
            raise HpkeError("HPKE Encap failed: recipient public key gives an all-zero DH") from exc
        return self._extract_and_expand(dh, enc + public_key_r), enc

    def decap(self, enc: bytes, private_key_r: bytes) -> bytes:
        """``Decap(enc, skR)``: return the shared secret."""
        if len(enc) != N_ENC:
            raise HpkeError(f"HPKE encapsulated key must be {N_ENC} bytes, got {len(enc)}")
        try:
            dh = self._backend.x25519(private_key_r, enc)
        except KeyAgreementError as exc:
            raise HpkeError("HPKE Decap failed: encapsulated key gives an all-zero DH") from exc
        public_key_r = self._backend.x25519_public_key(private_key_r)
        return self._extract_and_expand(dh, enc + public_key_r)

    # -- key schedule (§5.1) and single-shot APIs (§6) -----------------------------------------

    def key_schedule(self, shared_secret: bytes, info: bytes, role: Role) -> Context:
        """``KeySchedule`` in base mode: the ``role``'s context for a shared secret and ``info``."""
        sid = self._suite_id
        psk_id_hash = self._labeled_extract(sid, b"", b"psk_id_hash", b"")
        info_hash = self._labeled_extract(sid, b"", b"info_hash", info)
        context = bytes((MODE_BASE,)) + psk_id_hash + info_hash
        secret = self._labeled_extract(sid, shared_secret, b"secret", b"")
        return Context(
            self,
            role,
            key=self._labeled_expand(sid, secret, b"key", context, self.aead.key_size),
            base_nonce=self._labeled_expand(
                sid, secret, b"base_nonce", context, self.aead.nonce_size
            ),
            exporter_secret=self._labeled_expand(sid, secret, b"exp", context, N_H),
        )

    def setup_base_s(self, public_key_r: bytes, info: bytes) -> tuple[bytes, Context]:
        """``SetupBaseS(pkR, info)``: return ``(enc, sender_context)``."""
        shared_secret, enc = self.encap(public_key_r)
        return enc, self.key_schedule(shared_secret, info, Role.SENDER)

    def setup_base_r(self, enc: bytes, private_key_r: bytes, info: bytes) -> Context:
        """``SetupBaseR(enc, skR, info)``: return the receiver context."""
        return self.key_schedule(self.decap(enc, private_key_r), info, Role.RECEIVER)

    def seal_base(
        self, public_key_r: bytes, info: bytes, aad: bytes, plaintext: bytes
    ) -> tuple[bytes, bytes]:
        """``SealBase``: return ``(enc, ciphertext)``."""
        enc, context = self.setup_base_s(public_key_r, info)
        return enc, context.seal(aad, plaintext)

    def open_base(
        self, enc: bytes, private_key_r: bytes, info: bytes, aad: bytes, ciphertext: bytes
    ) -> bytes:
        """``OpenBase``: return the plaintext, or raise :class:`HpkeError`.

        A private key of the wrong length raises :class:`~veilpost.crypto.errors.InvalidKeyError`.
        """
        return self.setup_base_r(enc, private_key_r, info).open(aad, ciphertext)

    def send_export(
        self, public_key_r: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> tuple[bytes, bytes]:
        """``SendExportBase``: return ``(enc, exported_secret)``."""
        enc, context = self.setup_base_s(public_key_r, info)
        return enc, context.export(exporter_context, length)

    def receive_export(
        self, enc: bytes, private_key_r: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> bytes:
        """``ReceiveExportBase``: return the exported secret."""
        return self.setup_base_r(enc, private_key_r, info).export(exporter_context, length)


class Role(enum.Enum):
    """Which side of an HPKE exchange a :class:`Context` belongs to."""

    SENDER = "sender"
    RECEIVER = "receiver"


class Context:
    """An HPKE encryption context (§5.2): a key, a base nonce, a sequence number, and the
    exporter secret. A sender context can only seal and a receiver context only open: using
    the other side's operation would reuse the sender's nonces (§5.2 defines ``ContextS.Seal``
    and ``ContextR.Open`` only).
    """

    __slots__ = ("_hpke", "base_nonce", "exporter_secret", "key", "role", "sequence")

    def __init__(
        self, hpke: Hpke, role: Role, key: bytes, base_nonce: bytes, exporter_secret: bytes
    ) -> None:
        self._hpke = hpke
        self.role = role
        self.key = key
        self.base_nonce = base_nonce
        self.exporter_secret = exporter_secret
        self.sequence = 0

    def _next_nonce(self) -> bytes:
        size = len(self.base_nonce)
        if self.sequence >= (1 << (8 * size)) - 1:
            raise HpkeError("HPKE message limit reached: sequence number would overflow")
        nonce = int.from_bytes(self.base_nonce, "big") ^ self.sequence
        return nonce.to_bytes(size, "big")

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """``ContextS.Seal``: encrypt with the current nonce, then advance the sequence."""
        if self.role is not Role.SENDER:
            raise HpkeError("HPKE Seal on a receiver context (only the sender seals, §5.2)")
        hpke = self._hpke
        ciphertext = hpke._backend.aead_seal(
            hpke.aead, self.key, self._next_nonce(), aad, plaintext
        )
        self.sequence += 1
        return ciphertext

    def open(self, aad: bytes, ciphertext: bytes) -> bytes:
        """``ContextR.Open``: decrypt with the current nonce; advance only on success."""
        if self.role is not Role.RECEIVER:
            raise HpkeError("HPKE Open on a sender context (only the receiver opens, §5.2)")
        hpke = self._hpke
        try:
            plaintext = hpke._backend.aead_open(
                hpke.aead, self.key, self._next_nonce(), aad, ciphertext
            )
        except AeadAuthenticationError as exc:
            raise HpkeError(f"HPKE Open failed: {exc}") from exc
        self.sequence += 1
        return plaintext

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """``Context.Export`` (§5.3): a secret of ``length`` bytes bound to the context."""
        if not 0 <= length <= 255 * N_H:
            raise HpkeError(f"HPKE export length must be in 0..{255 * N_H}, got {length}")
        hpke = self._hpke
        return hpke._labeled_expand(
            hpke._suite_id, self.exporter_secret, b"sec", exporter_context, length
        )
