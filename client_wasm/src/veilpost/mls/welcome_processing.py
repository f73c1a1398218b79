"""Opening a Welcome (RFC 9420 §12.4.3.1): from a Welcome to the group's secrets and GroupInfo.

The structures live in :mod:`veilpost.mls.welcome`; this module holds the steps. A joiner:

1. finds the :class:`EncryptedGroupSecrets` addressed to one of its key packages (by
   ``KeyPackageRef``) and decrypts it with the key package's init private key::

       group_secrets = DecryptWithLabel(init_priv, "Welcome", encrypted_group_info,
                                        kem_output, ciphertext)

2. resolves the PSKs the GroupSecrets name into ``psk_secret`` (§8.4);
3. derives ``welcome_secret`` from ``joiner_secret`` and ``psk_secret``, and from it the key
   and nonce that decrypt ``encrypted_group_info`` into the :class:`GroupInfo`;
4. checks the GroupInfo's signature under the signer's key, which the caller looks up in the
   ratchet tree (from the ``ratchet_tree`` extension or out of band);
5. derives the epoch's secrets from ``joiner_secret``, ``psk_secret`` and the GroupContext, and
   checks the GroupInfo's ``confirmation_tag`` with the epoch's ``confirmation_key``; the
   interim transcript hash follows from it (§8.2).

:func:`open_welcome` runs all five and returns an :class:`OpenedWelcome`. What needs the tree or
the client's other groups stays with the caller: validating the tree against the GroupInfo, the
joiner's own leaf and path secrets, the uniqueness of the group id, and the ReInit and branch
checks against the old group. :func:`seal_welcome` is the committer's side (§12.4.3).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from veilpost.codec import encode
from veilpost.crypto import CipherSuite, CryptoError
from veilpost.mls._wire import decode_decrypted
from veilpost.mls.errors import ProtocolError, UsageError, ValidationError
from veilpost.mls.group_info import GroupInfo
from veilpost.mls.key_package import KeyPackage
from veilpost.mls.key_schedule import (
    EpochSecrets,
    derive_epoch_secret,
    derive_epoch_secrets,
    derive_welcome_secret,
    welcome_key_and_nonce,
)
from veilpost.mls.psk import PreSharedKeyID, PSKType, ResumptionPSKUsage, psk_secret
from veilpost.mls.transcript_hash import interim_transcript_hash
from veilpost.mls.update_path import HPKECiphertext
from veilpost.mls.welcome import EncryptedGroupSecrets, GroupSecrets, PathSecret, Welcome

__all__ = [
    "WELCOME_LABEL",
    "OpenedWelcome",
    "PskLookup",
    "SignerKeyLookup",
    "decrypt_group_info",
    "decrypt_group_secrets",
    "find_group_secrets",
    "open_welcome",
    "resolve_psks",
    "seal_welcome",
]

WELCOME_LABEL = "Welcome"
"""The ``EncryptWithLabel`` label of the group secrets."""

PskLookup = Callable[[PreSharedKeyID], bytes | None]
"""The value of a PSK (an external PSK by ``psk_id``; for a resumption PSK the
``resumption_psk`` of ``psk_group_id`` at ``psk_epoch``), ``None`` if the client lacks it."""

SignerKeyLookup = Callable[[GroupInfo], bytes | None]
"""The signature key of the leaf ``group_info.signer`` in the group's ratchet tree, ``None`` if
that leaf is blank or absent."""

_SINGLE_USE_RESUMPTIONS = (ResumptionPSKUsage.REINIT, ResumptionPSKUsage.BRANCH)


def _no_psks(psk_id: PreSharedKeyID) -> None:
    return None


@dataclass(frozen=True, eq=False)
class OpenedWelcome:
    """What a decrypted and verified Welcome gives the joiner.

    ``epoch_secrets`` are those of ``group_info.group_context``'s epoch; the
    ``interim_transcript_hash`` is computed from the GroupInfo's confirmed transcript hash and
    confirmation tag.
    """

    group_secrets: GroupSecrets = field(repr=False)
    group_info: GroupInfo
    psk_secret: bytes = field(repr=False)
    epoch_secrets: EpochSecrets
    interim_transcript_hash: bytes


def _check_cipher_suite(suite: CipherSuite, what: str, cipher_suite: int) -> None:
    if cipher_suite != suite.id:
        raise ValidationError(
            f"{what} uses cipher suite 0x{cipher_suite:04x}, but the joiner's key package"
            f" uses 0x{suite.id:04x}",
            check="welcome.cipher_suite",
            section="12.4.3.1",
        )


def find_group_secrets(
    suite: CipherSuite, welcome: Welcome, key_package: KeyPackage
) -> EncryptedGroupSecrets:
    """The entry of ``welcome.secrets`` addressed to ``key_package`` (by its KeyPackageRef)."""
    if key_package.cipher_suite != suite.id:
        raise UsageError(
            f"the key package uses cipher suite 0x{key_package.cipher_suite:04x}: open its"
            f" Welcome with that suite, not 0x{suite.id:04x}"
        )
    _check_cipher_suite(suite, "the Welcome", welcome.cipher_suite)
    ref = key_package.ref(suite)
    for entry in welcome.secrets:
        if hmac.compare_digest(entry.new_member, ref):
            return entry
    raise ValidationError(
        f"none of the Welcome's {len(welcome.secrets)} entries is for key package {ref.hex()}",
        check="welcome.no_matching_key_package",
        section="12.4.3.1",
    )


def decrypt_group_secrets(
    suite: CipherSuite,
    welcome: Welcome,
    entry: EncryptedGroupSecrets,
    init_private_key: bytes,
) -> GroupSecrets:
    """``DecryptWithLabel(init_priv, "Welcome", encrypted_group_info, …)`` into GroupSecrets."""
    ciphertext = entry.encrypted_group_secrets
    try:
        plaintext = suite.decrypt_with_label(
            init_private_key,
            WELCOME_LABEL,
            welcome.encrypted_group_info,
            ciphertext.kem_output,
            ciphertext.ciphertext,
        )
    except CryptoError as exc:
        raise ProtocolError(
            f"encrypted_group_secrets do not decrypt with the key package's init key: {exc}",
            check="welcome.group_secrets_decrypt",
            section="12.4.3.1",
        ) from exc
    return decode_decrypted(
        GroupSecrets,
        plaintext,
        "decrypted GroupSecrets are malformed",
        check="welcome.group_secrets",
        section="12.4.3.1",
    )


def resolve_psks(suite: CipherSuite, psks: Sequence[PreSharedKeyID], lookup: PskLookup) -> bytes:
    """``psk_secret`` of the PSKs a GroupSecrets names, each looked up with ``lookup`` (§8.4).

    Refuses a PSK the client lacks, a ``psk_nonce`` that is not ``KDF.Nh`` bytes, and more than
    one resumption PSK of usage ``reinit`` or ``branch`` (§12.4.3.1).
    """
    single_use = [
        p for p in psks if p.psktype is PSKType.RESUMPTION and p.usage in _SINGLE_USE_RESUMPTIONS
    ]
    if len(single_use) > 1:
        raise ValidationError(
            f"{len(single_use)} resumption PSKs of usage reinit or branch; at most one is allowed",
            check="welcome.psk_usage",
            section="12.4.3.1",
        )
    values: list[tuple[PreSharedKeyID, bytes]] = []
    for index, psk_id in enumerate(psks):
        if len(psk_id.psk_nonce) != suite.kdf_size:
            raise ValidationError(
                f"PSK {index}: psk_nonce of {len(psk_id.psk_nonce)} bytes, not KDF.Nh ="
                f" {suite.kdf_size}",
                check="welcome.psk_nonce",
                section="8.4",
            )
        value = lookup(psk_id)
        if value is None:
            raise ValidationError(
                f"PSK {index} ({_describe_psk(psk_id)}) is not available to this client",
                check="welcome.psk_missing",
                section="12.4.3.1",
            )
        values.append((psk_id, value))
    return psk_secret(suite, values)


def _describe_psk(psk_id: PreSharedKeyID) -> str:
    if psk_id.psktype is PSKType.EXTERNAL:
        return f"external PSK {psk_id.psk_id.hex()}"
    return (
        f"{psk_id.usage.name.lower()} resumption PSK of group {psk_id.psk_group_id.hex()}"
        f" epoch {psk_id.psk_epoch}"
    )


def decrypt_group_info(
    suite: CipherSuite, welcome: Welcome, joiner_secret: bytes, psk_secret: bytes | None
) -> GroupInfo:
    """Decrypt ``encrypted_group_info`` with the welcome key and nonce (§12.4.3.1)."""
    welcome_secret = derive_welcome_secret(suite, joiner_secret, psk_secret)
    key, nonce = welcome_key_and_nonce(suite, welcome_secret)
    try:
        plaintext = suite.aead_open(key, nonce, b"", welcome.encrypted_group_info)
    except CryptoError as exc:
        raise ProtocolError(
            f"encrypted_group_info does not decrypt with the welcome key: {exc}",
            check="welcome.group_info_decrypt",
            section="12.4.3.1",
        ) from exc
    return decode_decrypted(
        GroupInfo,
        plaintext,
        "decrypted GroupInfo is malformed",
        check="welcome.group_info",
        section="12.4.3.1",
    )


def open_welcome(
    suite: CipherSuite,
    welcome: Welcome,
    key_package: KeyPackage,
    init_private_key: bytes,
    *,
    signer_signature_key: SignerKeyLookup,
    psk_lookup: PskLookup = _no_psks,
) -> OpenedWelcome:
    """Decrypt ``welcome`` for ``key_package`` and check what can be checked without the tree.

    ``suite`` is the key package's cipher suite; ``init_private_key`` the private half of its
    ``init_key``. ``signer_signature_key`` returns the signature key of the GroupInfo's signer
    leaf, ``psk_lookup`` the value of each PSK (by default the client has none).

    Raises :class:`~veilpost.mls.errors.ProtocolError` with ``check`` one of
    ``welcome.cipher_suite``, ``welcome.no_matching_key_package``,
    ``welcome.group_secrets_decrypt``, ``welcome.group_secrets``, ``welcome.psk_*``,
    ``welcome.group_info_decrypt``, ``welcome.group_info``, ``group_info.signer``,
    ``group_info.signature``, ``group_info.confirmation_tag``, ``welcome.resumption_epoch``.
    """
    entry = find_group_secrets(suite, welcome, key_package)
    group_secrets = decrypt_group_secrets(suite, welcome, entry, init_private_key)
    secret = resolve_psks(suite, group_secrets.psks, psk_lookup)
    group_info = decrypt_group_info(suite, welcome, group_secrets.joiner_secret, secret)
    context = group_info.group_context
    _check_cipher_suite(suite, "the GroupInfo", context.cipher_suite)

    signer_key = signer_signature_key(group_info)
    if signer_key is None:
        raise ValidationError(
            f"GroupInfo signer leaf {group_info.signer} is blank or outside the tree",
            check="group_info.signer",
            section="12.4.3.1",
        )
    group_info.verify_signature(suite, signer_key)

    epoch_secret = derive_epoch_secret(suite, group_secrets.joiner_secret, context, secret)
    epoch_secrets = derive_epoch_secrets(suite, epoch_secret)
    expected_tag = epoch_secrets.confirmation_tag(context.confirmed_transcript_hash)
    if not hmac.compare_digest(expected_tag, group_info.confirmation_tag):
        raise ValidationError(
            f"GroupInfo confirmation_tag {group_info.confirmation_tag.hex()} is not the MAC of"
            " its confirmed transcript hash under the epoch's confirmation key",
            check="group_info.confirmation_tag",
            section="12.4.3.1",
        )
    if (
        any(
            p.psktype is PSKType.RESUMPTION and p.usage in _SINGLE_USE_RESUMPTIONS
            for p in group_secrets.psks
        )
        and context.epoch != 1
    ):
        raise ValidationError(
            f"a Welcome with a reinit or branch PSK must start the group at epoch 1, not"
            f" {context.epoch}",
            check="welcome.resumption_epoch",
            section="12.4.3.1",
        )
    return OpenedWelcome(
        group_secrets=group_secrets,
        group_info=group_info,
        psk_secret=secret,
        epoch_secrets=epoch_secrets,
        interim_transcript_hash=interim_transcript_hash(
            suite, context.confirmed_transcript_hash, group_info.confirmation_tag
        ),
    )


def seal_welcome(
    suite: CipherSuite,
    group_info: GroupInfo,
    joiner_secret: bytes,
    new_members: Sequence[tuple[KeyPackage, bytes | None]],
    *,
    psks: Sequence[tuple[PreSharedKeyID, bytes]] = (),
) -> Welcome:
    """The committer's side (§12.4.3): encrypt a signed ``group_info`` under the welcome key
    and the group secrets to each new member's init key.

    ``new_members`` pairs each new member's key package with the path secret of its lowest
    common ancestor with the committer (``None`` for a commit without a path); ``psks`` are the
    PSKs of the commit with their values, in the commit's order.
    """
    if not group_info.signature:
        raise UsageError("sign the GroupInfo before sealing it into a Welcome")
    welcome_secret = derive_welcome_secret(suite, joiner_secret, psk_secret(suite, psks))
    key, nonce = welcome_key_and_nonce(suite, welcome_secret)
    encrypted_group_info = suite.aead_seal(key, nonce, b"", encode(group_info))
    psk_ids = [psk_id for psk_id, _ in psks]
    secrets = []
    for key_package, path_secret in new_members:
        if key_package.cipher_suite != suite.id:
            raise UsageError(
                f"a new member's key package uses cipher suite 0x{key_package.cipher_suite:04x},"
                f" not the group's 0x{suite.id:04x}"
            )
        group_secrets = GroupSecrets(
            joiner_secret, None if path_secret is None else PathSecret(path_secret), psk_ids
        )
        kem_output, ciphertext = suite.encrypt_with_label(
            key_package.init_key, WELCOME_LABEL, encrypted_group_info, encode(group_secrets)
        )
        secrets.append(
            EncryptedGroupSecrets(key_package.ref(suite), HPKECiphertext(kem_output, ciphertext))
        )
    return Welcome(int(suite.id), secrets, encrypted_group_info)
