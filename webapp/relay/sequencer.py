"""Group commit: the publishes of every connection of this node, stored in batches.

A connection checks a publish frame (``delivery.prepare_publish``) and hands it to the node's
:class:`Sequencer` with a callback. One task takes whatever has queued up, publishes it in one
transaction (``delivery.publish_batch``: same outcomes as one at a time, in queue order), fans
the new envelopes out (``webapp.relay.hub``), then calls each request's callback with its
outcome, in order. While a batch is in the database, the next one gathers, so the batch size
follows the load: one envelope when the relay is idle, hundreds under a flood, one commit each.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.db import DatabaseError

from . import delivery
from .delivery import Published, PublishRequest
from .errors import RelayError
from .frames import envelope_frame
from .hub import Hub, Live, get_hub

logger = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_BATCH_BYTES = 8 << 20

Outcome = Published | RelayError
Callback = Callable[[Outcome], Awaitable[None]]


class Sequencer:
    """The publish queue of one process (one event loop)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.queue: deque[tuple[PublishRequest, Callback]] = deque()
        self.wakeup = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None

    def submit(self, request: PublishRequest, done: Callback) -> None:
        """Queue a publish; ``done`` is awaited with its outcome once it is stored (or not)."""
        self.queue.append((request, done))
        self.wakeup.set()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._run())

    def _next_batch(self) -> list[tuple[PublishRequest, Callback]]:
        batch = [self.queue.popleft()]
        size = len(batch[0][0].payload)
        while self.queue and len(batch) < MAX_BATCH:
            size += len(self.queue[0][0].payload)
            if size > MAX_BATCH_BYTES:
                break
            batch.append(self.queue.popleft())
        return batch

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                batch = self._next_batch()
                try:
                    await self._publish(batch)
                except Exception:  # a bug: say so to the publishers, keep the queue going
                    logger.exception("publishing a batch of %d failed", len(batch))
                    for _, done in batch:
                        await _call(done, RelayError("internal_error", "publishing failed"))

    async def _publish(self, batch: list[tuple[PublishRequest, Callback]]) -> None:
        requests = [request for request, _ in batch]
        outcomes: list[Outcome]
        try:
            outcomes = await database_sync_to_async(delivery.publish_batch)(requests)
        except DatabaseError:
            logger.exception("database error while publishing")
            error = RelayError("unavailable", "the relay cannot reach its database; retry later")
            outcomes = [error] * len(batch)
        # Fan out first (subscribers see envelopes as soon as possible), then acknowledge.
        # A duplicate is fanned out again: if its first publish's node died between storing
        # and fanning out, this repairs it (nodes and connections skip what they have).
        by_topic: dict[int, tuple[str, list[Live]]] = {}
        for outcome in outcomes:
            if isinstance(outcome, Published):
                envelope = outcome.envelope
                _, lives = by_topic.setdefault(outcome.topic_pk, (envelope.topic, []))
                lives.append((envelope.sequence, envelope.size, envelope_frame(envelope)))
        for topic_pk, (name, lives) in by_topic.items():
            lives.sort()
            await self.hub.published(topic_pk, name, lives)
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            await _call(done, outcome)


async def _call(done: Callback, outcome: Outcome) -> None:
    try:
        await done(outcome)
    except Exception:  # one connection's failure (e.g. it closed) is not the queue's
        logger.debug("publish callback failed", exc_info=True)


def get_sequencer() -> Sequencer:
    """The sequencer of the running event loop's hub (``webapp.relay.hub.get_hub``)."""
    hub = get_hub()
    if hub.sequencer is None:
        hub.sequencer = Sequencer(hub)
    return hub.sequencer
