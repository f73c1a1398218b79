"""Blobs: large attachments, encrypted by the clients, stored and served by the relay.

A blob is named by the lowercase hex SHA-256 of its bytes, so uploading the same bytes again
stores nothing and returns the same id, and a downloader checks what it got against the id it
asked for. The relay never sees a key: a blob is ciphertext to it. Uploads are limited per
installation by a rate bucket and by a quota of stored bytes (the first uploader of a blob is
charged for it); ``manage.py prune`` deletes blobs older than the retention period.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum

from .errors import Conflict, InvalidInput, NotFound, TooLarge
from .models import Blob, Installation
from .ratelimit import spend_token

_BLOB_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoredBlob:
    id: str
    size: int
    created_at: datetime
    created: bool  # False: the relay already had these bytes, and stored nothing


def blob_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_blob_id(value: str) -> str:
    if not _BLOB_ID.fullmatch(value):
        raise InvalidInput(
            "invalid_blob_id",
            f"blob id {value[:80]!r} is not 64 lowercase hex digits (a SHA-256)",
        )
    return value


def check_blob_size(size: int) -> None:
    """Refuse an upload of ``size`` bytes before reading it when it cannot be stored."""
    limit = settings.VEILPOST_MAX_BLOB_BYTES
    if size > limit:
        raise TooLarge("too_large", f"a blob of {size} bytes exceeds {limit}", limit=limit)


def _stored(pk: str) -> StoredBlob | None:
    row = Blob.objects.filter(pk=pk).values_list("size", "created_at").first()
    return None if row is None else StoredBlob(pk, row[0], row[1], created=False)


def store_blob(installation: Installation, data: bytes) -> StoredBlob:
    """Store ``data`` uploaded by ``installation`` (unless the relay has these bytes already)."""
    if not data:
        raise InvalidInput("invalid_blob", "the blob is empty: send its bytes as the body")
    check_blob_size(len(data))
    spend_token(
        installation,
        "blob",
        rate=settings.VEILPOST_BLOB_RATE,
        burst=settings.VEILPOST_BLOB_BURST,
    )
    pk = blob_id(data)
    existing = _stored(pk)
    if existing is not None:
        return existing
    quota = settings.VEILPOST_BLOB_QUOTA_BYTES
    try:
        with transaction.atomic():
            # The installation's row lock serializes its uploads (on every node), so that
            # concurrent uploads cannot together pass the quota.
            list(Installation.objects.select_for_update().filter(pk=installation.pk).values("pk"))
            used = Blob.objects.filter(uploaded_by=installation).aggregate(total=Sum("size"))
            used_bytes = int(used["total"] or 0)
            if used_bytes + len(data) > quota:
                raise Conflict(
                    "quota_exceeded",
                    f"installation {installation.pk} stores {used_bytes} bytes of blobs; another"
                    f" {len(data)} would pass its quota of {quota}",
                    limit=quota,
                    used=used_bytes,
                )
            blob = Blob.objects.create(id=pk, data=data, size=len(data), uploaded_by=installation)
    except IntegrityError:  # another installation stored the same bytes meanwhile
        existing = _stored(pk)
        if existing is None:
            raise
        return existing
    return StoredBlob(blob.pk, blob.size, blob.created_at, created=True)


def get_blob(value: str) -> bytes:
    """The bytes of blob ``value``, or ``unknown_blob``."""
    pk = check_blob_id(value)
    data = Blob.objects.filter(pk=pk).values_list("data", flat=True).first()
    if data is None:
        raise NotFound("unknown_blob", f"no blob {pk} (never uploaded, or deleted by retention)")
    return bytes(data)
