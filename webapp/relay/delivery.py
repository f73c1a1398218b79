"""The delivery service: topics, publishing with sequence numbers, commit ordering, backlogs.

Sequence numbers: each topic's ``last_sequence`` is read and advanced under the topic's row
lock (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every transaction takes the write lock
when it begins, ``transaction_mode = IMMEDIATE``), in the same transaction that stores the
envelope. A publish that fails rolls the counter back with it, so sequences have no gap, and
two publishers never share one.

Publishing is idempotent by the client-chosen ``id`` (unique per topic): a retry with the same
payload returns the stored envelope and its sequence; the same id with another payload is an
``id_reused`` error.

Commit ordering: under the same lock, a commit for epoch ``e`` is refused (``epoch_conflict``)
when the group already has a commit for ``e`` or a later epoch. ``GroupEpochCommit``'s unique
(topic, epoch) constraint backs this in the database itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from veilpost.mls.framing import WireFormat

from .errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge
from .identifiers import TopicName, b64url_encode, parse_topic
from .mls_header import MessageHeader, read_header
from .models import Envelope, GroupEpochCommit, Installation, Membership, Topic, TopicKind
from .ratelimit import spend_token

MAX_SEQUENCE = 2**63 - 1
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
GROUP_WIRE_FORMATS = (WireFormat.MLS_PUBLIC_MESSAGE, WireFormat.MLS_PRIVATE_MESSAGE)


@dataclass(frozen=True)
class StoredEnvelope:
    """An envelope as delivered to subscribers."""

    topic: str
    sequence: int
    client_id: str
    wire_format: int
    epoch: int | None
    content_type: int | None
    payload: bytes
    created_at: datetime

    @property
    def size(self) -> int:
        return len(self.payload)


@dataclass(frozen=True)
class Published:
    envelope: StoredEnvelope
    topic_pk: int
    duplicate: bool  # a retry: the envelope was already stored under this id


@dataclass(frozen=True)
class TopicPosition:
    """Where a topic stands: its newest sequence and the oldest that retention kept."""

    name: str
    pk: int
    kind: str
    last_sequence: int
    pruned_through: int

    @property
    def first_sequence(self) -> int:
        """The oldest sequence still stored (``last_sequence + 1`` when none is)."""
        return self.pruned_through + 1


def _position(topic: Topic) -> TopicPosition:
    return TopicPosition(
        topic.name, topic.pk, topic.kind, topic.last_sequence, topic.pruned_through
    )


def _stored(topic_name: str, envelope: Envelope) -> StoredEnvelope:
    return StoredEnvelope(
        topic=topic_name,
        sequence=envelope.sequence,
        client_id=envelope.client_id,
        wire_format=envelope.wire_format,
        epoch=envelope.epoch,
        content_type=envelope.content_type,
        payload=bytes(envelope.payload),
        created_at=envelope.created_at,
    )


def check_cursor(cursor: int, what: str = "cursor") -> int:
    if not 0 <= cursor <= MAX_SEQUENCE:
        raise InvalidInput("invalid_cursor", f"{what} {cursor} is not in 0..{MAX_SEQUENCE}")
    return cursor


# --- Topics and access ----------------------------------------------------------------------


def _group_topic(name: TopicName, *, create: bool) -> Topic | None:
    topic = Topic.objects.filter(name=name.name).first()
    if topic is not None or not create:
        return topic
    try:
        with transaction.atomic():
            return Topic.objects.create(
                name=name.name, kind=TopicKind.GROUP, group_id=name.group_id
            )
    except IntegrityError:  # created meanwhile by another publisher or subscriber
        return Topic.objects.get(name=name.name)


def _welcome_topic(name: TopicName) -> Topic:
    topic = Topic.objects.select_related("owner").filter(name=name.name).first()
    if topic is None or topic.owner is None:
        raise NotFound("unknown_topic", f"no installation {name.installation_id}")
    if topic.owner.revoked:
        raise NotFound("unknown_topic", f"installation {name.installation_id} is revoked")
    return topic


def topic_for_reading(installation: Installation, name: str, *, create: bool) -> Topic:
    """The topic ``installation`` may subscribe to or read: any group topic (created when
    ``create``), and only its own welcome inbox."""
    parsed = parse_topic(name)
    if parsed.kind == TopicKind.WELCOME:
        if parsed.installation_id != installation.pk:
            raise Forbidden(
                "not_your_inbox", f"only installation {parsed.installation_id} may read {name}"
            )
        return _welcome_topic(parsed)
    topic = _group_topic(parsed, create=create)
    if topic is None:
        raise NotFound("unknown_topic", f"no topic {name}")
    return topic


def ensure_membership(installation: Installation, topic: Topic) -> Membership:
    membership, _ = Membership.objects.get_or_create(installation=installation, topic=topic)
    return membership


def member_topic(installation: Installation, name: str) -> tuple[Topic, Membership]:
    """The topic and the installation's membership in it, or ``not_a_member``."""
    topic = topic_for_reading(installation, name, create=False)
    membership = Membership.objects.filter(installation=installation, topic=topic).first()
    if membership is None:
        raise Forbidden("not_a_member", f"installation {installation.pk} is not a member of {name}")
    return topic, membership


# --- Publishing -----------------------------------------------------------------------------


def _check_envelope(name: TopicName, header: MessageHeader) -> None:
    """Refuse an envelope whose cleartext header does not fit the topic it is published on."""
    if name.kind == TopicKind.WELCOME:
        if header.wire_format != WireFormat.MLS_WELCOME:
            raise InvalidInput(
                "invalid_envelope",
                f"a welcome topic carries mls_welcome messages, not wire format"
                f" {header.wire_format.name.lower()}",
            )
        return
    if header.wire_format not in GROUP_WIRE_FORMATS:
        raise InvalidInput(
            "invalid_envelope",
            f"a group topic carries mls_public_message or mls_private_message, not"
            f" {header.wire_format.name.lower()}",
        )
    assert header.group_id is not None and name.group_id is not None
    if header.group_id != name.group_id:
        raise InvalidInput(
            "group_mismatch",
            f"the message is for group {b64url_encode(header.group_id)[:100]}, but the topic is"
            f" {name.name}",
        )


def _check_commit_slot(topic: Topic, epoch: int) -> None:
    latest = (
        GroupEpochCommit.objects.filter(topic=topic)
        .order_by("-epoch")
        .values_list("epoch", "sequence")
        .first()
    )
    if latest is None or epoch > latest[0]:
        return
    committed_epoch, sequence = latest
    if epoch == committed_epoch:
        message = (
            f"epoch {epoch} already has a commit (sequence {sequence}); the group is now at"
            f" epoch {committed_epoch + 1}: process that commit and retry on the new epoch"
        )
    else:
        message = (
            f"the commit for epoch {epoch} is stale: epoch {committed_epoch} already has a commit"
            f" (sequence {sequence}), so the group is at epoch {committed_epoch + 1}"
        )
    raise Conflict("epoch_conflict", message, epoch=epoch, current_epoch=committed_epoch + 1)


def publish(
    installation: Installation,
    topic_name: str,
    client_id: str,
    payload: bytes,
    *,
    join: bool = True,
) -> Published:
    """Store an envelope on a topic and give it the topic's next sequence number.

    Everything that can be checked without the database is checked first; nothing is stored
    unless every check passes. ``join`` adds a group topic to the publisher's conversations
    (a consumer that already did so passes ``False``).
    """
    if not CLIENT_ID.fullmatch(client_id):
        raise InvalidInput("invalid_id", f"id {client_id[:80]!r} is not 1 to 64 of A-Z a-z 0-9 _ -")
    limit = settings.VEILPOST_MAX_ENVELOPE_BYTES
    if len(payload) > limit:
        raise TooLarge(
            "envelope_too_large",
            f"the payload has {len(payload)} bytes; the limit is {limit}",
            limit=limit,
        )
    name = parse_topic(topic_name)
    header = read_header(payload)
    _check_envelope(name, header)

    with transaction.atomic():
        spend_token(
            installation,
            "publish",
            rate=settings.VEILPOST_PUBLISH_RATE,
            burst=settings.VEILPOST_PUBLISH_BURST,
        )
        if name.kind == TopicKind.WELCOME:
            topic_pk = _welcome_topic(name).pk
        else:
            group_topic = _group_topic(name, create=True)
            assert group_topic is not None
            topic_pk = group_topic.pk
        topic = Topic.objects.select_for_update().get(pk=topic_pk)

        existing = Envelope.objects.filter(topic=topic, client_id=client_id).first()
        if existing is not None:
            if bytes(existing.payload) != payload:
                raise Conflict(
                    "id_reused",
                    f"id {client_id!r} was used on {topic.name} for another payload"
                    f" (sequence {existing.sequence})",
                )
            return Published(_stored(topic.name, existing), topic.pk, duplicate=True)

        if header.is_commit:
            assert header.epoch is not None
            _check_commit_slot(topic, header.epoch)

        now = timezone.now()
        topic.last_sequence += 1
        topic.last_activity_at = now
        topic.save(update_fields=["last_sequence", "last_activity_at"])
        envelope = Envelope.objects.create(
            topic=topic,
            sequence=topic.last_sequence,
            client_id=client_id,
            wire_format=header.wire_format,
            epoch=header.epoch,
            content_type=header.content_type,
            payload=payload,
            size=len(payload),
            created_at=now,
        )
        if header.is_commit:
            assert header.epoch is not None
            GroupEpochCommit.objects.create(
                topic=topic, epoch=header.epoch, sequence=envelope.sequence, envelope=envelope
            )
        if join and topic.kind == TopicKind.GROUP:
            ensure_membership(installation, topic)
    return Published(_stored(topic.name, envelope), topic.pk, duplicate=False)


# --- Reading --------------------------------------------------------------------------------


def open_topics(installation: Installation, cursors: Mapping[str, int]) -> list[TopicPosition]:
    """Check a subscription request and join its topics, all or nothing.

    Each cursor is the last sequence the client has; it may not be beyond the topic's
    newest envelope (that would silently skip what comes next).
    """
    for name, cursor in cursors.items():
        parse_topic(name)
        check_cursor(cursor)
    positions = []
    with transaction.atomic():
        for name, cursor in cursors.items():
            topic = topic_for_reading(installation, name, create=True)
            if cursor > topic.last_sequence:
                raise InvalidInput(
                    "invalid_cursor",
                    f"cursor {cursor} on {name} is beyond its last sequence {topic.last_sequence}",
                    topic=name,
                )
            ensure_membership(installation, topic)
            positions.append(_position(topic))
    return positions


def envelopes_after(
    topic_name: str, topic_pk: int, after: int, *, limit: int, max_bytes: int
) -> tuple[list[StoredEnvelope], bool]:
    """Envelopes of a topic with sequence above ``after``, oldest first: at most ``limit``,
    and no more than ``max_bytes`` of payload (but always the first, however large).

    Also returns whether that is everything stored after ``after``.
    """
    envelopes: list[StoredEnvelope] = []
    total = 0
    rows = Envelope.objects.filter(topic_id=topic_pk, sequence__gt=after).order_by("sequence")
    for row in rows[: limit + 1]:
        total += row.size
        if len(envelopes) == limit or (envelopes and total > max_bytes):
            return envelopes, False
        envelopes.append(_stored(topic_name, row))
    return envelopes, True


def last_sequences(topic_pks: Iterable[int]) -> dict[int, int]:
    return dict(Topic.objects.filter(pk__in=list(topic_pks)).values_list("pk", "last_sequence"))


@dataclass(frozen=True)
class HistoryPage:
    position: TopicPosition
    envelopes: list[StoredEnvelope]
    has_more: bool


HISTORY_MAX_BYTES = 8 << 20


def history(installation: Installation, topic_name: str, after: int, limit: int) -> HistoryPage:
    """A page of a topic's envelopes after ``after``, for a member of the topic."""
    check_cursor(after, "after")
    topic, _ = member_topic(installation, topic_name)
    envelopes, complete = envelopes_after(
        topic.name, topic.pk, after, limit=limit, max_bytes=HISTORY_MAX_BYTES
    )
    return HistoryPage(_position(topic), envelopes, has_more=not complete)
