"""Per-installation token buckets, kept in the database so that every relay node shares them."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .errors import RateLimited
from .models import Installation, RateBucket


def spend_token(
    installation: Installation,
    action: str,
    *,
    rate: float,
    burst: int,
    now: datetime | None = None,
) -> None:
    """Take one token from the installation's ``action`` bucket, or raise ``RateLimited``.

    The bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second. Run it
    inside the transaction of the action it limits: the bucket's row lock serializes one
    installation's concurrent requests, and an action that fails is not charged.
    """
    now = now or timezone.now()
    with transaction.atomic():
        bucket, _ = RateBucket.objects.select_for_update().get_or_create(
            installation=installation,
            action=action,
            defaults={"tokens": float(burst), "updated_at": now},
        )
        elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
        tokens = min(float(burst), bucket.tokens + elapsed * rate)
        if tokens < 1.0:
            raise RateLimited(
                f"{action} rate limit: {rate:g} per second with bursts of {burst}",
                retry_after=(1.0 - tokens) / rate,
            )
        bucket.tokens = tokens - 1.0
        bucket.updated_at = now
        bucket.save(update_fields=["tokens", "updated_at"])
