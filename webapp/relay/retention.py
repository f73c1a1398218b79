"""Retention and the operator's chores: what ``manage.py prune`` deletes, what ``stats`` counts.

Envelopes are pruned per topic as a *prefix*: the newest envelope older than the cutoff and
every envelope before it go, so what remains of a topic is still gap-free, and the topic's
``pruned_through`` tells subscribers where its stored history now starts. Commit records
(``GroupEpochCommit``) stay, so a stale commit is still refused after its envelope is gone.
Blobs uploaded before the cutoff are deleted whole: nothing the relay can read refers to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone

from .models import (
    AddressBinding,
    AuthChallenge,
    AuthToken,
    Blob,
    Envelope,
    Inbox,
    Installation,
    KeyPackage,
    Membership,
    RateBucket,
    Topic,
)

# A bucket idle this long has refilled completely: deleting it changes nothing.
IDLE_BUCKET_AGE = timedelta(days=1)


@dataclass(frozen=True)
class PruneResult:
    envelopes: int
    topics: int
    challenges: int
    tokens: int
    key_packages: int
    rate_buckets: int
    blobs: int


def prune(retention: timedelta | None, now: datetime | None = None) -> PruneResult:
    """Delete envelopes and blobs older than ``retention`` (``None``: keep them), expired
    challenges and tokens, claimed key packages and idle rate buckets."""
    now = now or timezone.now()
    envelopes = topics = blobs = 0
    if retention is not None:
        cutoff = now - retention
        blobs = Blob.objects.filter(created_at__lt=cutoff).delete()[0]
        old = (
            Envelope.objects.filter(created_at__lt=cutoff)
            .values("topic_id")
            .annotate(through=Max("sequence"))
        )
        for row in old:
            with transaction.atomic():
                deleted, _ = Envelope.objects.filter(
                    topic_id=row["topic_id"], sequence__lte=row["through"]
                ).delete()
                Topic.objects.filter(pk=row["topic_id"], pruned_through__lt=row["through"]).update(
                    pruned_through=row["through"]
                )
            envelopes += deleted
            topics += 1
    return PruneResult(
        envelopes=envelopes,
        topics=topics,
        challenges=AuthChallenge.objects.filter(expires_at__lt=now).delete()[0],
        tokens=AuthToken.objects.filter(expires_at__lt=now).delete()[0],
        key_packages=KeyPackage.objects.filter(claimed_at__isnull=False).delete()[0],
        rate_buckets=RateBucket.objects.filter(updated_at__lt=now - IDLE_BUCKET_AGE).delete()[0],
        blobs=blobs,
    )


def stats(now: datetime | None = None) -> dict[str, int]:
    """Counts an operator watches: nothing in them identifies anyone."""
    now = now or timezone.now()
    envelope_totals = Envelope.objects.aggregate(count=Count("id"), size=Sum("size"))
    blob_totals = Blob.objects.aggregate(count=Count("id"), size=Sum("size"))
    topics = dict(
        Topic.objects.values_list("kind").annotate(n=Count("id")).values_list("kind", "n")
    )
    return {
        "inboxes": Inbox.objects.count(),
        "installations": Installation.objects.filter(revoked_at__isnull=True).count(),
        "installations_revoked": Installation.objects.filter(revoked_at__isnull=False).count(),
        "topics_group": topics.get("group", 0),
        "topics_welcome": topics.get("welcome", 0),
        "memberships": Membership.objects.count(),
        "envelopes": envelope_totals["count"] or 0,
        "envelope_bytes": envelope_totals["size"] or 0,
        "key_packages_unclaimed": KeyPackage.objects.filter(
            last_resort=False, claimed_at__isnull=True
        ).count(),
        "key_packages_last_resort": KeyPackage.objects.filter(last_resort=True).count(),
        "blobs": blob_totals["count"] or 0,
        "blob_bytes": blob_totals["size"] or 0,
        "address_bindings": AddressBinding.objects.count(),
        "tokens_active": AuthToken.objects.filter(expires_at__gte=now).count(),
        "challenges_pending": AuthChallenge.objects.filter(
            used_at__isnull=True, expires_at__gte=now
        ).count(),
    }
