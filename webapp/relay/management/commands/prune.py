"""``manage.py prune``: apply the retention period and delete expired credentials.

Run it periodically (cron, a systemd timer); it is safe to run on any node, at any time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.relay.retention import prune


class Command(BaseCommand):
    help = (
        "Delete envelopes and blobs older than the retention period (VEILPOST_RETENTION_DAYS,"
        " 0 keeps them), expired challenges and tokens, claimed key packages and idle rate"
        " buckets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retention-days",
            type=float,
            default=None,
            help="override VEILPOST_RETENTION_DAYS for this run (0 keeps every envelope and blob)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["retention_days"]
        if days is None:
            days = settings.VEILPOST_RETENTION_DAYS
        if days < 0:
            raise CommandError(f"--retention-days must be 0 or more, not {days:g}")
        result = prune(timedelta(days=days) if days else None)
        if days:
            envelopes = f"envelopes older than {days:g} days: {result.envelopes} deleted"
            envelopes += f" from {result.topics} topics"
            blobs = f"blobs older than {days:g} days: {result.blobs} deleted"
        else:
            envelopes = "envelopes: all kept (no retention period)"
            blobs = "blobs: all kept (no retention period)"
        self.stdout.write(
            f"{envelopes}\n"
            f"{blobs}\n"
            f"expired challenges: {result.challenges}\n"
            f"expired tokens: {result.tokens}\n"
            f"claimed key packages: {result.key_packages}\n"
            f"idle rate buckets: {result.rate_buckets}"
        )
