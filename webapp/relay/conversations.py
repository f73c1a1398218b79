"""An installation's conversations: the topics it is a member of, with unread counts.

Sequences are gap-free, so the unread count of a topic is exact arithmetic: its last sequence
minus the member's read cursor (minus what retention deleted). The relay does not know who sent
an envelope, so a client moves its read cursor past its own messages itself.

Pages are ordered by last activity, newest first, and continue from an opaque cursor: the
(last activity, topic) of the page's last row, signed with the relay's secret key so that a
client cannot forge one (and every node of a relay, sharing the key, accepts it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core import signing
from django.db import transaction
from django.db.models import Q

from .delivery import check_cursor, ensure_membership, member_topic, topic_for_reading
from .errors import InvalidInput
from .models import Installation, Membership, TopicKind

CURSOR_SALT = "veilpost.conversations"
MAX_PAGE = 100


@dataclass(frozen=True)
class Conversation:
    topic: str
    kind: str
    created_at: datetime
    last_sequence: int
    last_activity_at: datetime
    read_cursor: int
    first_sequence: int

    @property
    def unread(self) -> int:
        return max(0, self.last_sequence - max(self.read_cursor, self.first_sequence - 1))


def _conversation(membership: Membership) -> Conversation:
    topic = membership.topic
    return Conversation(
        topic=topic.name,
        kind=topic.kind,
        created_at=topic.created_at,
        last_sequence=topic.last_sequence,
        last_activity_at=topic.last_activity_at,
        read_cursor=membership.read_cursor,
        first_sequence=topic.pruned_through + 1,
    )


def _decode_page_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        value = signing.loads(cursor, salt=CURSOR_SALT)
        return datetime.fromisoformat(value["a"]), int(value["t"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise InvalidInput(
            "invalid_cursor", "the page cursor is not one this relay issued"
        ) from None


def list_conversations(
    installation: Installation, cursor: str | None = None, limit: int = 50
) -> tuple[list[Conversation], str | None]:
    """A page of the installation's conversations and the cursor of the next page (or None)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput("invalid_limit", f"limit {limit} is not in 1..{MAX_PAGE}")
    memberships = Membership.objects.filter(installation=installation).select_related("topic")
    if cursor:
        activity, topic_pk = _decode_page_cursor(cursor)
        memberships = memberships.filter(
            Q(topic__last_activity_at__lt=activity)
            | Q(topic__last_activity_at=activity, topic__pk__lt=topic_pk)
        )
    rows = list(memberships.order_by("-topic__last_activity_at", "-topic__pk")[: limit + 1])
    page = [_conversation(m) for m in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1].topic
        next_cursor = signing.dumps(
            {"a": last.last_activity_at.isoformat(), "t": last.pk}, salt=CURSOR_SALT
        )
    return page, next_cursor


def join_conversation(installation: Installation, topic_name: str) -> Conversation:
    """Add a group topic (created if new) to the installation's conversations."""
    with transaction.atomic():
        topic = topic_for_reading(installation, topic_name, create=True)
        membership = ensure_membership(installation, topic)
    return _conversation(membership)


def leave_conversation(installation: Installation, topic_name: str) -> None:
    """Drop a group topic from the conversations (a welcome inbox cannot be left)."""
    topic, membership = member_topic(installation, topic_name)
    if topic.kind == TopicKind.WELCOME:
        raise InvalidInput("cannot_leave_welcome", "an installation's welcome inbox cannot be left")
    membership.delete()


def set_read_cursor(installation: Installation, topic_name: str, sequence: int) -> Conversation:
    """Move the read cursor forward to ``sequence`` (a lower value leaves it where it is)."""
    check_cursor(sequence, "read cursor")
    with transaction.atomic():
        topic, membership = member_topic(installation, topic_name)
        if sequence > topic.last_sequence:
            raise InvalidInput(
                "invalid_cursor",
                f"read cursor {sequence} is beyond {topic_name}'s last sequence"
                f" {topic.last_sequence}",
            )
        Membership.objects.filter(pk=membership.pk, read_cursor__lt=sequence).update(
            read_cursor=sequence
        )
        membership.refresh_from_db()
        membership.topic = topic
    return _conversation(membership)
