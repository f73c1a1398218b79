"""The delivery service: topics, publishing with sequence numbers, commit ordering, backlogs.

Sequence numbers: each topic's ``last_sequence`` is read and advanced under the topic's row
lock (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every transaction takes the write lock
when it begins, ``transaction_mode = IMMEDIATE``), in the same transaction that stores the
envelope. A publish that fails rolls the counter back with it, so sequences have no gap, and
two publishers never share one.

Publishing is idempotent by the client-chosen ``id`` (unique per topic): a retry with the same
payload returns the stored envelope and its sequence; the same id with another payload is an
``id_reused`` error.

Batches: :func:`publish_batch` publishes many envelopes in one transaction (the relay's
sequencer, ``webapp.relay.sequencer``, gathers them from every connection of a node), with
the same outcome for each as one-at-a-time publishing in the same order; :func:`publish` is a
batch of one.

Commit ordering: under the same lock, a commit for epoch ``e`` is refused (``epoch_conflict``)
when the group already has a commit for ``e`` or a later epoch. ``GroupEpochCommit``'s unique
(topic, epoch) constraint backs this in the database itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from veilpost.mls.framing import WireFormat

from .errors import Conflict, Forbidden, InvalidInput, NotFound, RelayError, TooLarge
from .identifiers import TopicName, b64url_encode, parse_topic
from .mls_header import MessageHeader, read_header
from .models import Envelope, GroupEpochCommit, Installation, Membership, Topic, TopicKind
from .ratelimit import Buckets
from .sql import in_list, insert_rows, select_rows, update_rows

logger = logging.getLogger(__name__)

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


def _check_commit_slot(latest: tuple[int, int] | None, epoch: int) -> None:
    """Refuse a commit for ``epoch`` when the newest commit (``latest``: epoch, sequence) is
    for that epoch or a later one."""
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


@dataclass(frozen=True)
class PublishRequest:
    """A publish that passed every check that needs no database (:func:`prepare_publish`)."""

    installation: Installation
    topic: TopicName
    client_id: str
    payload: bytes
    header: MessageHeader
    join: bool  # add a group topic to the publisher's conversations


def prepare_publish(
    installation: Installation,
    topic_name: str,
    client_id: str,
    payload: bytes,
    *,
    join: bool = True,
) -> PublishRequest:
    """Check what can be checked without the database: the id, the size, the topic name and
    the envelope's cleartext MLS header against the topic. Raises the first failure."""
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
    return PublishRequest(installation, name, client_id, payload, header, join)


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
    (a consumer that already did so passes ``False``). Raises the check that failed.
    """
    request = prepare_publish(installation, topic_name, client_id, payload, join=join)
    (outcome,) = publish_batch([request])
    if isinstance(outcome, RelayError):
        raise outcome
    return outcome


def publish_batch(requests: Sequence[PublishRequest]) -> list[Published | RelayError]:
    """Publish many envelopes in one transaction (a group commit): the outcome of each, in
    order, as if they had been published one after another in that order.

    A request that fails a check gets its error and changes nothing; the others go ahead. If
    the database refuses the batch as a whole (a race no check foresaw), each request is
    retried in a transaction of its own, so one cannot make the others fail.
    """
    try:
        with transaction.atomic():
            return _publish_in_transaction(requests)
    except DatabaseError:
        if len(requests) == 1:
            raise
    outcomes: list[Published | RelayError] = []
    for request in requests:
        try:
            with transaction.atomic():
                outcomes.extend(_publish_in_transaction([request]))
        except DatabaseError:
            logger.exception("publish to %s failed", request.topic.name)
            outcomes.append(RelayError("unavailable", "the relay could not store this envelope"))
    return outcomes


@dataclass
class _LockedTopic:
    pk: int
    name: str
    kind: str
    last_sequence: int


def _lock_topics(names: Iterable[str]) -> dict[str, _LockedTopic]:
    rows = select_rows(
        Topic,
        ("id", "name", "kind", "last_sequence"),
        [in_list(Topic, "name", sorted(names))],
        order_by="id",  # one lock order on every node: no deadlock
        for_update=True,
    )
    return {name: _LockedTopic(pk, name, kind, last) for pk, name, kind, last in rows}


def _resolve_topics(requests: Sequence[PublishRequest]) -> dict[str, _LockedTopic | RelayError]:
    """The topic of each request's name, locked (in primary-key order), or why it has none."""
    resolved: dict[str, _LockedTopic | RelayError] = {}
    for name in {r.topic.name for r in requests if r.topic.kind == TopicKind.WELCOME}:
        try:
            _welcome_topic(parse_topic(name))
        except RelayError as error:
            resolved[name] = error
    names = {r.topic.name for r in requests} - resolved.keys()
    if not names:
        return resolved
    locked = _lock_topics(names)
    missing = names - locked.keys()  # group topics nobody used yet (a welcome topic exists)
    if missing:
        for name in missing:
            _group_topic(parse_topic(name), create=True)
        locked.update(_lock_topics(missing))
    resolved.update(locked)
    return resolved


def _latest_commits(topic_pks: Iterable[int]) -> dict[int, tuple[int, int]]:
    """(epoch, sequence) of the newest commit of each topic that has one."""
    latest = {}
    for topic_pk in topic_pks:
        row = (
            GroupEpochCommit.objects.filter(topic_id=topic_pk)
            .order_by("-epoch")
            .values_list("epoch", "sequence")
            .first()
        )
        if row is not None:
            latest[topic_pk] = row
    return latest


ENVELOPE_COLUMNS = (
    "topic",
    "sequence",
    "client_id",
    "wire_format",
    "epoch",
    "content_type",
    "payload",
    "size",
    "created_at",
)
# A StoredEnvelope's fields after its topic, as columns (its size is its payload's length).
STORED_COLUMNS = tuple(column for column in ENVELOPE_COLUMNS if column != "size")


def _publish_in_transaction(requests: Sequence[PublishRequest]) -> list[Published | RelayError]:
    now = timezone.now()
    topics = _resolve_topics(requests)
    usable = {t.pk: t for t in topics.values() if isinstance(t, _LockedTopic)}
    stored = _stored_with_ids(usable, {r.client_id for r in requests})
    committed = _latest_commits(
        {
            topic.pk
            for r in requests
            if r.header.is_commit and isinstance(topic := topics[r.topic.name], _LockedTopic)
        }
    )
    buckets = Buckets(
        {r.installation.pk for r in requests},
        "publish",
        rate=settings.VEILPOST_PUBLISH_RATE,
        burst=settings.VEILPOST_PUBLISH_BURST,
        now=now,
    )
    outcomes: list[Published | RelayError] = []
    rows: list[tuple[object, ...]] = []
    commits: dict[tuple[int, int], int] = {}  # (topic pk, sequence) -> epoch
    changed: dict[int, _LockedTopic] = {}
    joins: set[tuple[str, int]] = set()
    for request in requests:
        topic = topics[request.topic.name]
        if isinstance(topic, RelayError):
            outcomes.append(topic)
            continue
        existing = stored.get((topic.pk, request.client_id))
        if existing is not None:
            if existing.payload != request.payload:
                outcomes.append(
                    Conflict(
                        "id_reused",
                        f"id {request.client_id!r} was used on {topic.name} for another payload"
                        f" (sequence {existing.sequence})",
                    )
                )
            else:
                outcomes.append(Published(existing, topic.pk, duplicate=True))
            continue
        header = request.header
        try:
            if header.is_commit:
                assert header.epoch is not None
                _check_commit_slot(committed.get(topic.pk), header.epoch)
            buckets.take(request.installation.pk)
        except RelayError as error:
            outcomes.append(error)
            continue
        topic.last_sequence += 1
        changed[topic.pk] = topic
        envelope = StoredEnvelope(
            topic.name,
            topic.last_sequence,
            request.client_id,
            header.wire_format,
            header.epoch,
            header.content_type,
            request.payload,
            now,
        )
        rows.append(
            (
                topic.pk,
                envelope.sequence,
                envelope.client_id,
                envelope.wire_format,
                envelope.epoch,
                envelope.content_type,
                envelope.payload,
                envelope.size,
                now,
            )
        )
        stored[(topic.pk, request.client_id)] = envelope
        if header.is_commit:
            assert header.epoch is not None
            committed[topic.pk] = (header.epoch, envelope.sequence)
            commits[(topic.pk, envelope.sequence)] = header.epoch
        if request.join and topic.kind == TopicKind.GROUP:
            joins.add((request.installation.pk, topic.pk))
        outcomes.append(Published(envelope, topic.pk, duplicate=False))

    if rows:
        insert_rows(Envelope, ENVELOPE_COLUMNS, rows)
        update_rows(
            Topic,
            ("last_sequence", "last_activity_at"),
            [(t.last_sequence, now, t.pk) for t in changed.values()],
        )
    if commits:
        _record_commits(commits, now)
    buckets.save()
    if joins:
        Membership.objects.bulk_create(
            [Membership(installation_id=i, topic_id=t) for i, t in sorted(joins)],
            ignore_conflicts=True,
        )
    return outcomes


def _stored_with_ids(
    topics: Mapping[int, _LockedTopic], client_ids: Iterable[str]
) -> dict[tuple[int, str], StoredEnvelope]:
    """The envelopes already stored on these topics under these client ids (retries)."""
    if not topics:
        return {}
    rows = select_rows(
        Envelope,
        STORED_COLUMNS,
        [in_list(Envelope, "topic", sorted(topics)), in_list(Envelope, "client_id", client_ids)],
    )
    stored = {}
    for topic_pk, *fields in rows:
        envelope = StoredEnvelope(topics[topic_pk].name, *fields)
        stored[(topic_pk, envelope.client_id)] = envelope
    return stored


def _record_commits(commits: Mapping[tuple[int, int], int], now: datetime) -> None:
    """Fill the commit slots of the commits just stored: (topic pk, sequence) -> epoch."""
    query = Q()
    for topic_pk, sequence in commits:
        query |= Q(topic_id=topic_pk, sequence=sequence)
    GroupEpochCommit.objects.bulk_create(
        [
            GroupEpochCommit(
                topic_id=topic_pk,
                epoch=commits[(topic_pk, sequence)],
                sequence=sequence,
                envelope_id=pk,
                created_at=now,
            )
            for pk, topic_pk, sequence in Envelope.objects.filter(query).values_list(
                "pk", "topic_id", "sequence"
            )
        ]
    )


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
