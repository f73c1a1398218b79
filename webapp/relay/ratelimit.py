"""Per-installation token buckets, kept in the database so that every relay node shares them.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second; an action
takes one token. :class:`Buckets` loads the buckets of many installations at once, under their
row locks, so that a batch of publishes costs one read and one write however many it holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .errors import RateLimited
from .models import Installation, RateBucket
from .sql import in_list, select_rows, update_rows


@dataclass
class _Bucket:
    pk: int
    tokens: float
    updated_at: datetime


class Buckets:
    """The ``action`` buckets of some installations, locked for the current transaction.

    Use it inside the transaction of the actions it limits: the row locks serialize concurrent
    requests of one installation (on every node), and when the transaction rolls back, nothing
    was charged. :meth:`take` changes only memory; :meth:`save` writes what was taken.
    """

    def __init__(
        self,
        installation_ids: Iterable[str],
        action: str,
        *,
        rate: float,
        burst: int,
        now: datetime | None = None,
    ) -> None:
        self.action = action
        self.rate = rate
        self.burst = burst
        self.now = now or timezone.now()
        wanted = set(installation_ids)
        self.buckets = self._lock(wanted)
        missing = wanted - self.buckets.keys()
        if missing:
            RateBucket.objects.bulk_create(
                [
                    RateBucket(
                        installation_id=pk, action=action, tokens=float(burst), updated_at=self.now
                    )
                    for pk in missing
                ],
                ignore_conflicts=True,  # created meanwhile by another node: locked below
            )
            self.buckets.update(self._lock(missing))
        self.changed: set[str] = set()

    def _lock(self, installation_ids: set[str]) -> dict[str, _Bucket]:
        rows = select_rows(
            RateBucket,
            ("id", "installation", "tokens", "updated_at"),
            [
                in_list(RateBucket, "installation", sorted(installation_ids)),
                in_list(RateBucket, "action", [self.action]),
            ],
            order_by="installation",  # one lock order on every node: no deadlock
            for_update=True,
        )
        return {installation: _Bucket(pk, tokens, at) for pk, installation, tokens, at in rows}

    def take(self, installation_id: str) -> None:
        """Take one token of ``installation_id``, or raise ``RateLimited`` (taking nothing)."""
        bucket = self.buckets[installation_id]
        elapsed = max(0.0, (self.now - bucket.updated_at).total_seconds())
        tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
        if tokens < 1.0:
            raise RateLimited(
                f"{self.action} rate limit: {self.rate:g} per second with bursts of {self.burst}",
                retry_after=(1.0 - tokens) / self.rate,
            )
        bucket.tokens = tokens - 1.0
        bucket.updated_at = self.now
        self.changed.add(installation_id)

    def save(self) -> None:
        if self.changed:
            update_rows(
                RateBucket,
                ("tokens", "updated_at"),
                [
                    (bucket.tokens, bucket.updated_at, bucket.pk)
                    for bucket in (self.buckets[pk] for pk in sorted(self.changed))
                ],
            )
            self.changed.clear()


def spend_token(
    installation: Installation,
    action: str,
    *,
    rate: float,
    burst: int,
    now: datetime | None = None,
) -> None:
    """Take one token from the installation's ``action`` bucket, or raise ``RateLimited``.

    Run it inside the transaction of the action it limits (see :class:`Buckets`).
    """
    with transaction.atomic():
        buckets = Buckets([installation.pk], action, rate=rate, burst=burst, now=now)
        buckets.take(installation.pk)
        buckets.save()
