"""This node's fan-out: live envelopes from the sequencer and from other nodes, to the local
connections subscribed to their topics.

Theory of operation
-------------------
Connections do not join channel-layer groups for topics; the *node* does. Each process has one
:class:`Hub` with one channel of its own on the channel layer. When the first local connection
subscribes to a topic, the hub adds its channel to the topic's group (``topic.<pk>``); when the
last one leaves, it discards it. So a published envelope crosses the channel layer once per
node, not once per subscriber, and is fanned out in memory, in one loop, to the connections
(:meth:`Subscriber.take_live`), which apply their own no-gap-no-duplicate rule
(``webapp.relay.streams``).

Envelopes published on this node are fanned out here directly, in commit order, and sent to the
topic's group for the other nodes (an event names its origin, so a node skips its own).

Per topic, the hub keeps ``seen``, the highest sequence it has fanned out, and relies on
sequences being gap-free:

- ``sequence <= seen``: already fanned out (or older than the first subscription): dropped.
- ``sequence == seen + 1``: fanned out, then any held envelopes that now follow.
- further ahead: held. Envelopes from several nodes can arrive out of order; if the gap has
  not filled after ``HOLD_SECONDS``, the hub reads the missing envelopes from the database
  once, for all its connections, and fans them out in order.

A lost *last* event reveals no gap. So once traffic has been quiet for ``SETTLE_SECONDS``, the
hub compares, in one query, the topics that had traffic with the database, and fills what it
missed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from weakref import WeakKeyDictionary

from channels.layers import InMemoryChannelLayer, get_channel_layer

from . import delivery
from .db import reading
from .frames import envelope_frame

if TYPE_CHECKING:
    from .sequencer import Sequencer

logger = logging.getLogger(__name__)

HOLD_SECONDS = 0.05  # how long an envelope ahead of a gap waits for the gap to fill
SETTLE_SECONDS = 0.5  # after the last event, check once that none was lost
FILL_PAGE = 200
GROUP_REFRESH_SECONDS = 3600.0  # well within the channel layer's group_expiry (a day)

# One envelope as it travels: (sequence, size, frame). The frame is the JSON text sent to
# clients, serialized once for every subscriber.
Live = tuple[int, int, str]


NODES_GROUP = "relay.nodes"  # every node's channel: for events about installations


def topic_group(topic_pk: int) -> str:
    """The channel-layer group of the nodes with subscribers to a topic."""
    return f"topic.{topic_pk}"


class Subscriber(Protocol):
    """A local connection, as the hub sees it."""

    async def revoked(self) -> None:
        """The connection's installation was revoked: end the connection."""

    async def take_live(self, topic: str, envelopes: Sequence[Live]) -> None:
        """Deliver (or queue) live envelopes of ``topic``, oldest first. Must not wait for
        anything but the send itself (no database, no lock held by someone else)."""


@dataclass
class TopicState:
    name: str
    seen: int
    joined: asyncio.Future[None]  # the node's group_add for this topic
    subscribers: set[Subscriber] = field(default_factory=set)
    held: dict[int, Live] = field(default_factory=dict)
    filling: bool = False


class Hub:
    """The fan-out of one process (one event loop, one channel layer)."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        # Channels' in-memory layer lives in this process: there are no other nodes to tell.
        self.other_nodes = not isinstance(layer, InMemoryChannelLayer)
        self.node = uuid.uuid4().hex
        self.topics: dict[int, TopicState] = {}
        self.connections: dict[str, set[Subscriber]] = {}  # installation id -> connections
        self.channel: str | None = None
        self.channel_ready: asyncio.Future[str] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.active: set[int] = set()  # topics with traffic since the last settle check
        self.settle_at: float | None = None
        self.settling = False
        self.sequencer: Sequencer | None = None  # this node's publish queue (get_sequencer)

    # --- Connections and subscriptions ----------------------------------------------------

    async def connect(self, subscriber: Subscriber, installation_id: str) -> None:
        """An authenticated connection of ``installation_id``: told when it is revoked."""
        self.connections.setdefault(installation_id, set()).add(subscriber)
        await self.node_channel()

    def disconnect(self, subscriber: Subscriber, installation_id: str) -> None:
        subscribers = self.connections.get(installation_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self.connections[installation_id]

    async def subscribe(
        self, subscriber: Subscriber, topic_pk: int, name: str, last_sequence: int
    ) -> int:
        """Fan ``topic_pk`` out to ``subscriber`` from now on; return ``seen``: the subscriber
        gets every envelope after it from the hub, and must read what it lacks up to it.

        ``last_sequence`` is the topic's newest sequence as read before this call: where a new
        topic state starts. What was stored between that read and now reaches the hub with the
        next envelope (a gap) or, at the latest, with the settle check armed here. Returns once
        this node receives the topic's events from other nodes too."""
        state = self.topics.get(topic_pk)
        if state is None:
            joined = asyncio.get_running_loop().create_future()
            state = self.topics[topic_pk] = TopicState(name, last_sequence, joined)
            self.spawn(self._join(topic_pk, joined))
            self.active.add(topic_pk)
            self.arm_settle()
        state.subscribers.add(subscriber)
        seen = state.seen
        await asyncio.shield(state.joined)
        return seen

    async def _join(self, topic_pk: int, joined: asyncio.Future[None]) -> None:
        try:
            channel = await self.node_channel()
            await self.layer.group_add(topic_group(topic_pk), channel)
        except BaseException as error:
            if not joined.done():
                joined.set_exception(error)
                self.topics.pop(topic_pk, None)
            raise
        if not joined.done():
            joined.set_result(None)

    def unsubscribe(self, subscriber: Subscriber, topic_pk: int) -> None:
        state = self.topics.get(topic_pk)
        if state is None:
            return
        state.subscribers.discard(subscriber)
        if not state.subscribers:
            del self.topics[topic_pk]
            self.active.discard(topic_pk)
            if self.channel is not None:
                self.spawn(self.layer.group_discard(topic_group(topic_pk), self.channel))

    async def node_channel(self) -> str:
        """This node's channel on the layer (created, with its listener, on first use)."""
        if self.channel_ready is None:
            self.channel_ready = asyncio.get_running_loop().create_future()
            try:
                self.channel = await self.layer.new_channel(prefix="relay-node")
            except BaseException as error:
                self.channel_ready.set_exception(error)
                self.channel_ready = None
                raise
            await self.layer.group_add(NODES_GROUP, self.channel)
            self.channel_ready.set_result(self.channel)
            self.spawn(self._listen(self.channel))
            self.spawn(self._refresh_groups())
        return await asyncio.shield(self.channel_ready)

    # --- Incoming envelopes ---------------------------------------------------------------

    async def published(self, topic_pk: int, name: str, envelopes: Sequence[Live]) -> None:
        """Envelopes this node just stored on a topic, in sequence order: fan them out here,
        and to the other nodes with subscribers."""
        await self.accept(topic_pk, envelopes)
        if not self.other_nodes:
            return
        event = {
            "type": "relay.envelopes",
            "origin": self.node,
            "topic_pk": topic_pk,
            "topic": name,
            "envelopes": [list(e) for e in envelopes],
        }
        try:
            await self.layer.group_send(topic_group(topic_pk), event)
        except Exception:  # the other nodes notice the gap and read the database
            logger.exception("could not send envelopes of %s to the other nodes", name)

    async def _listen(self, channel: str) -> None:
        while True:
            event = await self.layer.receive(channel)
            kind = event.get("type")
            if kind == "relay.envelopes" and event.get("origin") != self.node:
                envelopes = [(int(s), int(n), str(f)) for s, n, f in event["envelopes"]]
                await self.accept(int(event["topic_pk"]), envelopes)
            elif kind == "relay.revoked":
                for subscriber in list(self.connections.get(str(event["installation"]), ())):
                    await subscriber.revoked()

    async def accept(self, topic_pk: int, envelopes: Iterable[Live]) -> None:
        """Fan out what follows ``seen`` in order; hold what is ahead of a gap."""
        state = self.topics.get(topic_pk)
        if state is None:
            return
        ready: list[Live] = []
        for live in envelopes:
            sequence = live[0]
            if sequence == state.seen + 1:
                ready.append(live)
                state.seen = sequence
                while state.held:
                    following = state.held.pop(state.seen + 1, None)
                    if following is None:
                        break
                    ready.append(following)
                    state.seen += 1
            elif sequence > state.seen:
                state.held[sequence] = live
        if state.held:
            state.held = {s: e for s, e in state.held.items() if s > state.seen}
        if state.held and not state.filling:
            state.filling = True
            self.spawn(self._fill_gap(topic_pk, state))
        self.active.add(topic_pk)
        self.arm_settle()
        if ready:
            for subscriber in list(state.subscribers):
                await subscriber.take_live(state.name, ready)

    async def _fill_gap(self, topic_pk: int, state: TopicState) -> None:
        try:
            await asyncio.sleep(HOLD_SECONDS)
            while state.held and self.topics.get(topic_pk) is state:
                await self._fill(topic_pk, state, through=min(state.held) - 1)
        finally:
            state.filling = False

    async def _fill(self, topic_pk: int, state: TopicState, through: int) -> None:
        """Read the envelopes after ``seen`` up to ``through`` from the database, fan out."""
        while state.seen < through and self.topics.get(topic_pk) is state:
            stored, _ = await reading(delivery.envelopes_after)(
                state.name, topic_pk, state.seen, limit=FILL_PAGE, max_bytes=8 << 20
            )
            if not stored:
                # Retention deleted them, or they are not committed yet: skip past the gap
                # (connections read the database themselves where they must).
                logger.warning("%s: envelopes %d..%d missing", state.name, state.seen, through)
                state.seen = through
                await self.accept(topic_pk, ())
                return
            await self.accept(topic_pk, [(e.sequence, e.size, envelope_frame(e)) for e in stored])

    # --- Settling -------------------------------------------------------------------------

    def arm_settle(self) -> None:
        self.settle_at = asyncio.get_running_loop().time() + SETTLE_SECONDS
        if not self.settling:
            self.settling = True
            self.spawn(self._settle())

    async def _settle(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.settle_at is not None and loop.time() < self.settle_at:
                await asyncio.sleep(self.settle_at - loop.time())
            self.settle_at = None
            active = {pk: self.topics[pk] for pk in self.active if pk in self.topics}
            self.active = set()
            if not active:
                return
            last = await reading(delivery.last_sequences)(active.keys())
            for pk, state in active.items():
                if last.get(pk, 0) > state.seen and self.topics.get(pk) is state:
                    await self._fill(pk, state, through=last[pk])
        finally:
            self.settling = False

    # --- Housekeeping ---------------------------------------------------------------------

    async def _refresh_groups(self) -> None:
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            if self.channel is not None:
                await self.layer.group_add(NODES_GROUP, self.channel)
                for pk in list(self.topics):
                    await self.layer.group_add(topic_group(pk), self.channel)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(self._logged(coroutine))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _logged(coroutine: Any) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("relay hub task failed")


_hubs: WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop and the current default channel layer."""
    loop = asyncio.get_running_loop()
    layer = get_channel_layer()
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not layer:
        hub = _hubs[loop] = Hub(layer)
    return hub
