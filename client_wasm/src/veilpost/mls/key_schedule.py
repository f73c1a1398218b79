"""The key schedule (RFC 9420 §8): how each epoch's secrets follow from the last.

::

    init_secret[n-1]                        (previous epoch, or from an external init §8.3)
          │ salt
          ▼
      Extract ◄──────────── commit_secret   (from the UpdatePath, else all zero)
          │
          ▼
      ExpandWithLabel(·, "joiner", GroupContext[n], Nh)
          │
          ▼
    joiner_secret ─────────────────────────► GroupSecrets of the Welcome (§12.4.3)
          │ salt
          ▼
      Extract ◄──────────── psk_secret      (§8.4; all zero without PSKs)
          │
          ├──► DeriveSecret(·, "welcome") ─► welcome_secret ─► welcome key and nonce
          ▼
      ExpandWithLabel(·, "epoch", GroupContext[n], Nh)
          │
          ▼
    epoch_secret ──► DeriveSecret(·, label) for each epoch secret:
          │              "sender data"     sender_data_secret    (§6.3.2)
          │              "encryption"      encryption_secret     (root of the secret tree, §9)
          │              "exporter"        exporter_secret       (MLS-Exporter, §8.5)
          │              "external"        external_secret       (external init key pair, §8.3)
          │              "confirm"         confirmation_key      (confirmation_tag, §6.1)
          │              "membership"      membership_key        (membership_tag, §6.2)
          │              "resumption"      resumption_psk        (§8.6)
          │              "authentication"  epoch_authenticator   (§8.7)
          ▼
      DeriveSecret(·, "init")
          │
          ▼
    init_secret[n]                          (input to the next epoch)

``Extract`` is ``KDF.Extract(salt, ikm)`` with the salt coming from above; ``Nh`` is
``KDF.Nh``; ``GroupContext[n]`` is the serialized GroupContext of the new epoch (§8.1).

Members processing a Commit run the whole chain: :func:`next_epoch_secrets`, or step by step
:func:`derive_joiner_secret`, :func:`derive_epoch_secret` and :func:`derive_epoch_secrets`. A
new member starts from the ``joiner_secret`` of its Welcome. The creator of a group starts
epoch 0 from a random ``epoch_secret`` (§11). The committer also needs ``joiner_secret`` and
``welcome_secret`` for its Welcome; nobody else keeps them.

Secrets are ``bytes``. :class:`EpochSecrets` keeps its secrets out of ``repr()``; the RFC's
deletion schedule (§9.2) asks callers to drop the intermediate values (``commit_secret``,
``joiner_secret``, ``epoch_secret``, the previous ``init_secret``) as soon as they are used.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace

from veilpost.codec import encode
from veilpost.crypto import CipherSuite, CryptoError
from veilpost.mls.errors import ProtocolError, UsageError, ValidationError
from veilpost.mls.group_context import GroupContext

__all__ = [
    "EXTERNAL_INIT_EXPORTER_LABEL",
    "EpochSecrets",
    "confirmation_tag",
    "derive_epoch_secret",
    "derive_epoch_secrets",
    "derive_joiner_secret",
    "derive_welcome_secret",
    "external_init_secret",
    "membership_tag",
    "mls_exporter",
    "new_external_init",
    "next_epoch_secrets",
    "welcome_key_and_nonce",
    "zero_secret",
]

EXTERNAL_INIT_EXPORTER_LABEL = b"MLS 1.0 external init secret"
"""The HPKE exporter context of an external init (§8.3)."""


def zero_secret(suite: CipherSuite) -> bytes:
    """The all-zero string of ``KDF.Nh`` bytes: the ``0`` of the RFC's diagrams."""
    return bytes(suite.kdf_size)


def _context_bytes(group_context: GroupContext | bytes) -> bytes:
    return group_context if isinstance(group_context, bytes) else encode(group_context)


def derive_joiner_secret(
    suite: CipherSuite,
    init_secret: bytes,
    commit_secret: bytes,
    group_context: GroupContext | bytes,
) -> bytes:
    """``joiner_secret`` of the new epoch from the previous ``init_secret``, the Commit's
    ``commit_secret`` and the new epoch's GroupContext (§8)."""
    extracted = suite.kdf_extract(init_secret, commit_secret)
    return suite.expand_with_label(
        extracted, "joiner", _context_bytes(group_context), suite.kdf_size
    )


def _member_secret(suite: CipherSuite, joiner_secret: bytes, psk_secret: bytes | None) -> bytes:
    # The RFC leaves this value unnamed: the point where the PSKs join the schedule.
    return suite.kdf_extract(
        joiner_secret, zero_secret(suite) if psk_secret is None else psk_secret
    )


def derive_welcome_secret(
    suite: CipherSuite, joiner_secret: bytes, psk_secret: bytes | None = None
) -> bytes:
    """``welcome_secret`` = ``DeriveSecret(Extract(joiner_secret, psk_secret), "welcome")``.

    ``psk_secret`` of ``None`` stands for the all-zero secret (no PSKs, §8.4).
    """
    return suite.derive_secret(_member_secret(suite, joiner_secret, psk_secret), "welcome")


def welcome_key_and_nonce(suite: CipherSuite, welcome_secret: bytes) -> tuple[bytes, bytes]:
    """The AEAD key and nonce that protect a Welcome's GroupInfo (§12.4.3.1)."""
    key = suite.expand_with_label(welcome_secret, "key", b"", suite.aead_key_size)
    nonce = suite.expand_with_label(welcome_secret, "nonce", b"", suite.aead_nonce_size)
    return key, nonce


def derive_epoch_secret(
    suite: CipherSuite,
    joiner_secret: bytes,
    group_context: GroupContext | bytes,
    psk_secret: bytes | None = None,
) -> bytes:
    """``epoch_secret`` from ``joiner_secret``, the PSKs and the new GroupContext (§8)."""
    member_secret = _member_secret(suite, joiner_secret, psk_secret)
    return suite.expand_with_label(
        member_secret, "epoch", _context_bytes(group_context), suite.kdf_size
    )


def mls_exporter(
    suite: CipherSuite, exporter_secret: bytes, label: str | bytes, context: bytes, length: int
) -> bytes:
    """``MLS-Exporter(Label, Context, Length)`` (§8.5): a secret for use outside MLS.

    ``label`` should name the purpose (the RFC's IANA registry, §17.8); ``length`` is at most
    ``255 * KDF.Nh`` bytes.
    """
    limit = 255 * suite.kdf_size
    if not 0 <= length <= limit:
        raise UsageError(f"MLS-Exporter length must be in 0..{limit}, got {length}")
    secret = suite.derive_secret(exporter_secret, label)
    return suite.expand_with_label(secret, "exported", suite.hash(context), length)


def confirmation_tag(
    suite: CipherSuite, confirmation_key: bytes, confirmed_transcript_hash: bytes
) -> bytes:
    """``confirmation_tag = MAC(confirmation_key, confirmed_transcript_hash)`` (§6.1)."""
    return suite.mac(confirmation_key, confirmed_transcript_hash)


def membership_tag(
    suite: CipherSuite, membership_key: bytes, authenticated_content_tbm: bytes
) -> bytes:
    """``membership_tag = MAC(membership_key, AuthenticatedContentTBM)`` (§6.2), the TBM given
    encoded."""
    return suite.mac(membership_key, authenticated_content_tbm)


def new_external_init(suite: CipherSuite, external_pub: bytes) -> tuple[bytes, bytes]:
    """The joiner's side of an external init (§8.3): ``(kem_output, init_secret)``.

    ``kem_output`` goes in the ExternalInit proposal; ``init_secret`` replaces the previous
    epoch's in :func:`derive_joiner_secret`.
    """
    return suite.hpke.send_export(external_pub, b"", EXTERNAL_INIT_EXPORTER_LABEL, suite.kdf_size)


def external_init_secret(suite: CipherSuite, external_priv: bytes, kem_output: bytes) -> bytes:
    """The members' side of an external init (§8.3): ``init_secret`` from an ExternalInit's
    ``kem_output`` and the epoch's external private key."""
    try:
        return suite.hpke.receive_export(
            kem_output, external_priv, b"", EXTERNAL_INIT_EXPORTER_LABEL, suite.kdf_size
        )
    except CryptoError as exc:
        raise ProtocolError(
            f"ExternalInit kem_output ({len(kem_output)} bytes) does not decapsulate: {exc}",
            check="external_init.kem_output",
            section="8.3",
        ) from exc


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class EpochSecrets:
    """The secrets derived from one epoch's ``epoch_secret`` (§8, table "Epoch-Derived
    Secrets"), and ``init_secret`` for the next epoch.

    Built by :func:`derive_epoch_secrets`. Immutable; ``repr()`` shows no secret.
    """

    suite: CipherSuite
    sender_data_secret: bytes
    encryption_secret: bytes
    exporter_secret: bytes
    external_secret: bytes
    confirmation_key: bytes
    membership_key: bytes
    resumption_psk: bytes
    epoch_authenticator: bytes
    init_secret: bytes
    """``init_secret[n]``: the input of the next epoch's key schedule."""

    def __repr__(self) -> str:
        return f"EpochSecrets(suite=0x{self.suite.id:04x}, secrets hidden)"

    def without_encryption_secret(self) -> EpochSecrets:
        """These secrets with ``encryption_secret`` emptied: §9.2 deletes it once the secret
        tree is built from it."""
        return replace(self, encryption_secret=b"")

    def export(self, label: str | bytes, context: bytes, length: int) -> bytes:
        """``MLS-Exporter(label, context, length)`` of this epoch (§8.5)."""
        return mls_exporter(self.suite, self.exporter_secret, label, context, length)

    def external_key_pair(self) -> tuple[bytes, bytes]:
        """``(external_priv, external_pub) = KEM.DeriveKeyPair(external_secret)`` (§8)."""
        return self.suite.derive_hpke_key_pair(self.external_secret)

    @property
    def external_pub(self) -> bytes:
        """The public key of the group's external init key pair, as published in GroupInfo."""
        return self.external_key_pair()[1]

    def confirmation_tag(self, confirmed_transcript_hash: bytes) -> bytes:
        """This epoch's ``confirmation_tag`` over ``confirmed_transcript_hash`` (§6.1)."""
        return confirmation_tag(self.suite, self.confirmation_key, confirmed_transcript_hash)

    def verify_confirmation_tag(self, confirmed_transcript_hash: bytes, tag: bytes) -> None:
        """Raise :class:`ValidationError` (``"confirmation_tag"``) unless ``tag`` is this epoch's
        confirmation tag over ``confirmed_transcript_hash`` (§6.1, §12.4.2, §12.4.3.1)."""
        expected = self.confirmation_tag(confirmed_transcript_hash)
        if not hmac.compare_digest(expected, tag):
            raise ValidationError(
                f"confirmation_tag {tag.hex()} does not match the epoch's confirmation key"
                " and confirmed transcript hash",
                check="confirmation_tag",
                section="6.1",
            )

    def membership_tag(self, authenticated_content_tbm: bytes) -> bytes:
        """This epoch's ``membership_tag`` over an encoded AuthenticatedContentTBM (§6.2)."""
        return membership_tag(self.suite, self.membership_key, authenticated_content_tbm)

    def verify_membership_tag(self, authenticated_content_tbm: bytes, tag: bytes) -> None:
        """Raise :class:`ValidationError` (``"public_message.membership_tag"``) unless ``tag``
        is this epoch's membership tag over ``authenticated_content_tbm`` (§6.2)."""
        expected = self.membership_tag(authenticated_content_tbm)
        if not hmac.compare_digest(expected, tag):
            raise ValidationError(
                f"membership_tag {tag.hex()} does not match the epoch's membership key",
                check="public_message.membership_tag",
                section="6.2",
            )


def derive_epoch_secrets(suite: CipherSuite, epoch_secret: bytes) -> EpochSecrets:
    """Every secret of the epoch whose ``epoch_secret`` is given, and the next ``init_secret``."""

    def derive(label: str) -> bytes:
        return suite.derive_secret(epoch_secret, label)

    return EpochSecrets(
        suite=suite,
        sender_data_secret=derive("sender data"),
        encryption_secret=derive("encryption"),
        exporter_secret=derive("exporter"),
        external_secret=derive("external"),
        confirmation_key=derive("confirm"),
        membership_key=derive("membership"),
        resumption_psk=derive("resumption"),
        epoch_authenticator=derive("authentication"),
        init_secret=derive("init"),
    )


def next_epoch_secrets(
    suite: CipherSuite,
    *,
    init_secret: bytes,
    commit_secret: bytes,
    group_context: GroupContext | bytes,
    psk_secret: bytes | None = None,
) -> EpochSecrets:
    """The whole chain for a member moving to the epoch of ``group_context`` (§8).

    ``init_secret`` is the previous epoch's; ``psk_secret`` of ``None`` means no PSKs.
    """
    context = _context_bytes(group_context)
    joiner_secret = derive_joiner_secret(suite, init_secret, commit_secret, context)
    epoch_secret = derive_epoch_secret(suite, joiner_secret, context, psk_secret)
    return derive_epoch_secrets(suite, epoch_secret)
