"""``manage.py stats``: what the relay holds, as a table or as JSON (``--json``)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webapp.relay.retention import stats


class Command(BaseCommand):
    help = "Print counts of inboxes, installations, topics, envelopes, key packages and tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        counts = stats()
        if options["json"]:
            self.stdout.write(json.dumps(counts, sort_keys=True))
            return
        width = max(map(len, counts))
        for name, value in counts.items():
            self.stdout.write(f"{name:<{width}}  {value:>12,}")
