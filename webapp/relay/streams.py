"""What one connection has delivered, per topic, and what it may deliver next. No I/O.

Theory of operation
-------------------
The database is the truth; live events from the channel layer are a fast path. Each
subscribed topic is a :class:`Stream` that remembers ``sent``, the highest sequence delivered
to the client (at first, the client's cursor). Sequences are gap-free, so for every envelope
the relay hears of, one comparison decides:

- ``sequence <= sent``: the client has it (a replay of the backlog, a retried publish): skip.
- ``sequence == sent + 1`` and the window has room: send it now.
- anything else (a gap: the channel layer dropped an event; or the window is full; or the
  stream is already behind): mark the stream *behind*. The consumer then reads the database
  after ``sent`` (:func:`webapp.relay.delivery.envelopes_after`) until it has caught up.

A subscription starts behind: the consumer joins its node's fan-out (``webapp.relay.hub``)
*first*, then reads the backlog. An envelope stored before the read is in the backlog; one
stored after it arrives as a live event (queued for the connection meanwhile) and is sent or
skipped by the rule above. So there is never a gap nor a duplicate, however publishing races
the subscription. (When the hub has fanned out nothing past the cursor, there is no backlog
to read: the stream starts caught up, and the hub brings everything after its ``seen``.)

Flow control: the client acknowledges what it has processed (``received`` frames). At most
``max_envelopes`` envelopes and ``max_bytes`` payload bytes may be delivered and not yet
acknowledged; beyond that, streams fall behind instead of queueing in memory, and the consumer
disconnects a client that leaves its window full for too long.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class Offer(enum.Enum):
    SEND = "send"
    SKIP = "skip"
    CATCH_UP = "catch_up"


@dataclass
class Stream:
    name: str
    topic_pk: int
    sent: int
    behind: bool = True
    # (sequence, size) of envelopes delivered and not yet acknowledged, oldest first.
    unacknowledged: deque[tuple[int, int]] = field(default_factory=deque)


class DeliveryWindow:
    """The streams of one connection and its flow-control window."""

    def __init__(self, max_envelopes: int, max_bytes: int) -> None:
        self.max_envelopes = max_envelopes
        self.max_bytes = max_bytes
        self.streams: dict[str, Stream] = {}
        self.in_flight = 0
        self.in_flight_bytes = 0

    # Subscriptions

    def open(self, name: str, topic_pk: int, cursor: int) -> Stream:
        """Start (or restart, from a new cursor) delivering a topic after ``cursor``."""
        self.close(name)
        stream = Stream(name, topic_pk, sent=cursor)
        self.streams[name] = stream
        return stream

    def close(self, name: str) -> Stream | None:
        stream = self.streams.pop(name, None)
        if stream is not None:
            self._forget(stream, len(stream.unacknowledged))
        return stream

    # Delivery

    def has_room(self, size: int) -> bool:
        """Whether an envelope of ``size`` bytes may be sent now. With nothing in flight, any
        envelope may (one larger than the byte window must still get through)."""
        if self.in_flight == 0:
            return True
        return self.in_flight < self.max_envelopes and self.in_flight_bytes + size <= self.max_bytes

    @property
    def full(self) -> bool:
        return self.in_flight >= self.max_envelopes or self.in_flight_bytes >= self.max_bytes

    @property
    def room(self) -> int:
        """How many more envelopes the window allows (ignoring their sizes)."""
        return max(0, self.max_envelopes - self.in_flight)

    def offer(self, name: str, sequence: int, size: int) -> Offer:
        """Decide what to do with a live envelope (see the module docstring)."""
        stream = self.streams.get(name)
        if stream is None or sequence <= stream.sent:
            return Offer.SKIP
        if stream.behind or sequence != stream.sent + 1 or not self.has_room(size):
            stream.behind = True
            return Offer.CATCH_UP
        return Offer.SEND

    def record_sent(self, name: str, sequence: int, size: int) -> None:
        """Count an envelope as delivered. Sequences only grow; they skip only where retention
        deleted envelopes (the client learns that from ``first_sequence``)."""
        stream = self.streams[name]
        if sequence <= stream.sent:
            raise ValueError(f"{name}: sending sequence {sequence} after {stream.sent}")
        stream.sent = sequence
        stream.unacknowledged.append((sequence, size))
        self.in_flight += 1
        self.in_flight_bytes += size

    def behind(self) -> list[Stream]:
        return [stream for stream in self.streams.values() if stream.behind]

    # Acknowledgements

    def acknowledge(self, name: str, sequence: int) -> None:
        """The client has processed everything up to ``sequence`` on ``name``. Unknown topics
        and stale or early acknowledgements are harmless (they may cross an unsubscribe)."""
        stream = self.streams.get(name)
        if stream is None:
            return
        done = 0
        for acked_sequence, _ in stream.unacknowledged:
            if acked_sequence > sequence:
                break
            done += 1
        self._forget(stream, done)

    def _forget(self, stream: Stream, count: int) -> None:
        for _ in range(count):
            _, size = stream.unacknowledged.popleft()
            self.in_flight -= 1
            self.in_flight_bytes -= size
