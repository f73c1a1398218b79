"""The directory: inboxes and their installations, identity records and key packages.

The relay stores what clients publish here and checks only what it can without trusting
anyone: that an identity record is signed by an installation of its inbox, and that a key
package is an MLS key package whose leaf signature key is the uploading installation's key.
Clients verify the records and key packages themselves (``DESIGN.md``, "Identity").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from veilpost.crypto import get_backend

from .auth import create_installation
from .errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge
from .identifiers import (
    check_installation_id,
    check_public_key,
    identity_record_message,
    installation_id,
)
from .mls_header import read_key_package
from .models import AuthToken, IdentityRecord, Inbox, Installation, KeyPackage
from .ratelimit import spend_token

MAX_IDENTITY_RECORD_BYTES = 64 * 1024
MAX_KEY_PACKAGE_BYTES = 64 * 1024
MAX_KEY_PACKAGE_BATCH = 100
# Unclaimed regular key packages an installation may keep at the relay.
MAX_KEY_PACKAGES_PER_INSTALLATION = 500
MAX_RECORD_VERSION = 2**63 - 1


# --- Installations --------------------------------------------------------------------------


def get_installation(installation_id_: str) -> Installation:
    check_installation_id(installation_id_)
    installation = Installation.objects.filter(pk=installation_id_).first()
    if installation is None:
        raise NotFound("unknown_installation", f"no installation {installation_id_}")
    return installation


def get_inbox(inbox_id: str) -> Inbox:
    check_installation_id(inbox_id)  # an inbox id is its first installation's id
    inbox = Inbox.objects.filter(pk=inbox_id).first()
    if inbox is None:
        raise NotFound("unknown_inbox", f"no inbox {inbox_id}")
    return inbox


def inbox_installations(inbox: Inbox) -> list[Installation]:
    return list(inbox.installations.order_by("created_at", "id"))


def admit_installation(admitter: Installation, public_key: bytes) -> Installation:
    """Add a new installation (a new device) to ``admitter``'s inbox.

    The new installation can then authenticate with its key; until admitted, that key would
    start an inbox of its own.
    """
    check_public_key(public_key)
    try:
        with transaction.atomic():
            return create_installation(public_key, admitter.inbox, admitted_by=admitter)
    except IntegrityError:
        raise Conflict(
            "installation_exists",
            f"installation {installation_id(public_key)} is already registered",
        ) from None


def revoke_installation(actor: Installation, installation_id_: str) -> Installation:
    """Revoke an installation of the actor's own inbox (the actor itself included): it can no
    longer authenticate, its tokens and key packages are deleted."""
    target = get_installation(installation_id_)
    if target.inbox_id != actor.inbox_id:
        raise Forbidden("not_your_inbox", f"installation {target.pk} belongs to another inbox")
    with transaction.atomic():
        if target.revoked_at is None:
            target.revoked_at = timezone.now()
            target.save(update_fields=["revoked_at"])
        AuthToken.objects.filter(installation=target).delete()
        KeyPackage.objects.filter(installation=target).delete()
    return target


# --- Identity records -----------------------------------------------------------------------


def publish_identity_record(
    installation: Installation, inbox_id: str, version: int, record: bytes, signature: bytes
) -> IdentityRecord:
    """Store version ``version`` of the inbox's identity record, signed by ``installation``.

    Versions only grow: a version at or below the latest is a ``version_conflict``.
    """
    inbox = get_inbox(inbox_id)
    if installation.inbox_id != inbox.pk:
        raise Forbidden(
            "not_your_inbox", f"installation {installation.pk} is not in inbox {inbox_id}"
        )
    if not 1 <= version <= MAX_RECORD_VERSION:
        raise InvalidInput(
            "invalid_version", f"version {version} is not in 1..{MAX_RECORD_VERSION}"
        )
    if not record:
        raise InvalidInput("invalid_record", "the identity record is empty")
    if len(record) > MAX_IDENTITY_RECORD_BYTES:
        raise TooLarge(
            "record_too_large",
            f"identity record of {len(record)} bytes exceeds {MAX_IDENTITY_RECORD_BYTES}",
        )
    message = identity_record_message(inbox.pk, version, record)
    if not get_backend().ed25519_verify(bytes(installation.public_key), message, signature):
        raise InvalidInput(
            "bad_signature",
            f"the record signature does not verify under installation {installation.pk}'s key",
        )
    try:
        with transaction.atomic():
            latest = latest_identity_record(inbox, lock=True)
            if latest is not None and version <= latest.version:
                raise Conflict(
                    "version_conflict",
                    f"version {version} is not above the latest version {latest.version}",
                    latest_version=latest.version,
                )
            return IdentityRecord.objects.create(
                inbox=inbox,
                version=version,
                record=record,
                signature=signature,
                signed_by=installation,
            )
    except IntegrityError:  # a concurrent upload took the version
        raise Conflict("version_conflict", f"version {version} was just taken") from None


def latest_identity_record(inbox: Inbox, *, lock: bool = False) -> IdentityRecord | None:
    records = IdentityRecord.objects.filter(inbox=inbox)
    if lock:
        records = records.select_for_update()
    return records.select_related("signed_by").order_by("-version").first()


def get_identity_record(inbox_id: str, version: int | None = None) -> IdentityRecord:
    inbox = get_inbox(inbox_id)
    if version is None:
        record = latest_identity_record(inbox)
    else:
        record = (
            IdentityRecord.objects.select_related("signed_by")
            .filter(inbox=inbox, version=version)
            .first()
        )
    if record is None:
        wanted = "an identity record" if version is None else f"identity record version {version}"
        raise NotFound("unknown_identity_record", f"inbox {inbox_id} has no {wanted}")
    return record


# --- Key packages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPackageCount:
    remaining: int  # unclaimed regular key packages
    last_resort: bool  # whether a last-resort key package is stored


@dataclass(frozen=True)
class ClaimedKeyPackage:
    installation_id: str
    key_package: bytes | None  # None: the installation has none left, not even a last resort
    last_resort: bool


def count_key_packages(installation: Installation) -> KeyPackageCount:
    packages = KeyPackage.objects.filter(installation=installation)
    return KeyPackageCount(
        remaining=packages.filter(last_resort=False, claimed_at__isnull=True).count(),
        last_resort=packages.filter(last_resort=True).exists(),
    )


def upload_key_packages(
    installation: Installation, batch: Sequence[tuple[bytes, bool]]
) -> KeyPackageCount:
    """Store a batch of ``(key package, last_resort)``, all or nothing.

    At most one may be last-resort; it replaces the installation's previous last-resort one.
    """
    if not 1 <= len(batch) <= MAX_KEY_PACKAGE_BATCH:
        raise InvalidInput(
            "invalid_batch",
            f"a batch holds 1 to {MAX_KEY_PACKAGE_BATCH} key packages, not {len(batch)}",
        )
    if sum(last_resort for _, last_resort in batch) > 1:
        raise InvalidInput("invalid_batch", "a batch holds at most one last-resort key package")
    public_key = bytes(installation.public_key)
    for index, (key_package, _) in enumerate(batch):
        if len(key_package) > MAX_KEY_PACKAGE_BYTES:
            raise TooLarge(
                "key_package_too_large",
                f"key package {index} has {len(key_package)} bytes; the limit is"
                f" {MAX_KEY_PACKAGE_BYTES}",
                index=index,
            )
        leaf_key = read_key_package(key_package).leaf_node.signature_key
        if leaf_key != public_key:
            raise InvalidInput(
                "key_package_not_yours",
                f"key package {index} has leaf signature key {leaf_key.hex()[:64]}, not this"
                f" installation's key {public_key.hex()}",
                index=index,
            )
    regular = [kp for kp, last_resort in batch if not last_resort]
    with transaction.atomic():
        stored = KeyPackage.objects.filter(
            installation=installation, last_resort=False, claimed_at__isnull=True
        ).count()
        if stored + len(regular) > MAX_KEY_PACKAGES_PER_INSTALLATION:
            raise Conflict(
                "too_many_key_packages",
                f"{stored} unclaimed key packages are stored and {len(regular)} more would pass"
                f" the limit of {MAX_KEY_PACKAGES_PER_INSTALLATION}",
            )
        if len(regular) < len(batch):
            KeyPackage.objects.filter(installation=installation, last_resort=True).delete()
        KeyPackage.objects.bulk_create(
            KeyPackage(installation=installation, key_package=kp, last_resort=last_resort)
            for kp, last_resort in batch
        )
    return count_key_packages(installation)


def _claim_one(target: Installation) -> ClaimedKeyPackage:
    """Consume the oldest unclaimed regular key package of ``target``, else its last resort.

    The conditional UPDATE makes the claim atomic: of concurrent claimers of one package
    exactly one updates the row, and the others move on to the next package.
    """
    now = timezone.now()
    while True:
        candidate = (
            KeyPackage.objects.filter(
                installation=target, last_resort=False, claimed_at__isnull=True
            )
            .order_by("id")
            .values_list("id", flat=True)
            .first()
        )
        if candidate is None:
            break
        if KeyPackage.objects.filter(pk=candidate, claimed_at__isnull=True).update(claimed_at=now):
            payload = KeyPackage.objects.values_list("key_package", flat=True).get(pk=candidate)
            return ClaimedKeyPackage(target.pk, bytes(payload), last_resort=False)
    last_resort = (
        KeyPackage.objects.filter(installation=target, last_resort=True)
        .order_by("-id")
        .values_list("key_package", flat=True)
        .first()
    )
    if last_resort is None:
        return ClaimedKeyPackage(target.pk, None, last_resort=False)
    return ClaimedKeyPackage(target.pk, bytes(last_resort), last_resort=True)


def claim_key_packages(claimer: Installation, inbox_id: str) -> list[ClaimedKeyPackage]:
    """One key package for each active installation of the inbox (the claimer excluded)."""
    inbox = get_inbox(inbox_id)
    with transaction.atomic():
        spend_token(
            claimer,
            "claim",
            rate=settings.VEILPOST_CLAIM_RATE,
            burst=settings.VEILPOST_CLAIM_BURST,
        )
    targets = inbox.installations.filter(revoked_at__isnull=True).exclude(pk=claimer.pk)
    claimed = []
    for target in targets.order_by("created_at", "id"):
        with transaction.atomic():
            claimed.append(_claim_one(target))
    return claimed
