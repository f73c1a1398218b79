"""The WebSocket consumer at /ws/v1: frames in, service calls, frames out.

The logic lives in plain modules: authentication in ``auth``, publishing and backlogs in
``delivery``, what this connection has delivered in ``streams`` (read its docstring for why
delivery has no gap and no duplicate). Publishes go to the node's ``sequencer`` (batched
commits) and live envelopes come from the node's ``hub`` (one channel-layer subscription per
node and topic, fanned out in memory). This class pumps frames through them: every handler and
every timer runs under one lock, so a connection's state changes in a single sequence. Live
envelopes that arrive while the lock is held wait in a bounded queue and are taken before the
lock is released.

Timers: an unauthenticated socket is closed when its challenge expires; a connection whose
window stays blocked (envelopes waiting, nothing acknowledged) is closed as a slow consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from . import auth, delivery
from .db import reading
from .delivery import Published
from .errors import AuthenticationFailed, InvalidInput, RelayError
from .frames import (
    PROTOCOL_VERSION,
    AuthFrame,
    ClientFrame,
    PingFrame,
    PublishFrame,
    ReceivedFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    dumps,
    envelope_frame,
    error_frame,
    parse_frame,
    ref_of,
)
from .hub import Live, get_hub
from .identifiers import b64decode, b64encode, welcome_topic
from .models import Installation, TopicKind
from .sequencer import Outcome, get_sequencer
from .streams import DeliveryWindow, Offer

logger = logging.getLogger(__name__)

# WebSocket close codes (4000-4999 are the application's; see docs/protocol.md).
CLOSE_BAD_HOST = 4400
CLOSE_AUTH_TIMEOUT = 4401
CLOSE_AUTH_FAILED = 4403
CLOSE_SLOW_CONSUMER = 4408

MAX_AUTH_ATTEMPTS = 5
CATCH_UP_PAGE = 200
MAX_PIPELINED_PUBLISHES = 64  # publishes of one connection in the sequencer at once


class RelayConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """One client connection speaking the relay protocol (``docs/protocol.md``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = asyncio.Lock()
        self.installation: Installation | None = None
        self.audience = ""
        self.challenges = auth.ChallengeBook()
        self.failed_auths = 0
        self.window = DeliveryWindow(
            settings.VEILPOST_SEND_WINDOW, settings.VEILPOST_SEND_WINDOW_BYTES
        )
        self.joined_topics: set[str] = set()  # group topics already in the conversations
        self.blocked_since: float | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.hub = get_hub()
        self.sequencer = get_sequencer()
        # Live envelopes that arrived while the lock was held: (topic, envelopes), at most
        # ``window.max_envelopes`` envelopes; topics whose envelopes overflowed it read the
        # database instead.
        self.pending: deque[tuple[str, Sequence[Live]]] = deque()
        self.pending_count = 0
        self.overflowed: set[str] = set()
        self.catch_up_wanted = False
        self.publishing = 0
        self.publish_room = asyncio.Event()
        self.handlers: dict[type[ClientFrame], Callable[[Any], Awaitable[None]]] = {
            AuthFrame: self.on_auth,
            PublishFrame: self.on_publish,
            SubscribeFrame: self.on_subscribe,
            UnsubscribeFrame: self.on_unsubscribe,
            ReceivedFrame: self.on_received,
            PingFrame: self.on_ping,
        }
        max_envelope = settings.VEILPOST_MAX_ENVELOPE_BYTES
        self.max_frame_chars = (max_envelope + 2) // 3 * 4 + 64 * 1024

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' loop without a channel of the connection's own: live envelopes and
        revocations come from the node's hub, so the connection reads only its socket (and
        saves Channels' two tasks per frame)."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch also runs close_old_connections in a thread for every message;
        # every database call here goes through database_sync_to_async, which already does.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        async with self.exclusive():
            await handler(message)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the connection's lock; take the live envelopes that queued meanwhile before
        letting go of it."""
        async with self.lock:
            try:
                yield
            finally:
                await self.take_pending()

    # --- Connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        headers = dict(self.scope.get("headers", []))
        host = headers.get(b"host", b"").decode("latin-1")
        try:
            self.audience = auth.audience_for_host(host)
        except InvalidInput:
            await self.close(code=CLOSE_BAD_HOST)  # before accept: the handshake is refused
            return
        await self.accept()
        await self.send_challenge()
        self.spawn("auth_deadline", self.close_if_unauthenticated())

    async def disconnect(self, code: int) -> None:
        for task in self.tasks.values():
            task.cancel()
        for stream in list(self.window.streams.values()):
            self.hub.unsubscribe(self, stream.topic_pk)
        if self.installation is not None:
            self.hub.disconnect(self, self.installation.pk)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error(InvalidInput("binary_frame", "frames are JSON text frames"))
            return
        if len(text_data) > self.max_frame_chars:
            await self.send_error(
                InvalidInput(
                    "frame_too_large",
                    f"the frame has {len(text_data)} characters; the limit is"
                    f" {self.max_frame_chars}",
                )
            )
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            await self.send_error(InvalidInput("invalid_json", "the frame is not valid JSON"))
            return
        ref = ref_of(content)
        try:
            frame = parse_frame(content)
            if self.installation is None and not isinstance(frame, AuthFrame):
                raise AuthenticationFailed(
                    "not_authenticated", "answer the challenge with an auth frame first"
                )
            await self.handlers[type(frame)](frame)
        except RelayError as error:
            await self.send_error(error, ref)
        except DatabaseError:
            logger.exception("database error on /ws/v1")
            await self.send_error(
                RelayError("unavailable", "the relay cannot reach its database; retry later"), ref
            )

    async def send_error(self, error: RelayError, ref: str | int | None = None) -> None:
        await self.send(text_data=error_frame(error, ref))

    def spawn(self, name: str, coroutine: Coroutine[Any, Any, None]) -> None:
        self.tasks[name] = asyncio.ensure_future(self._logged(name, coroutine))

    @staticmethod
    async def _logged(name: str, coroutine: Coroutine[Any, Any, None]) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("/ws/v1 timer %s failed", name)

    def running(self, name: str) -> bool:
        task = self.tasks.get(name)
        return task is not None and not task.done()

    # --- Authentication -----------------------------------------------------------------------

    async def send_challenge(self) -> None:
        challenge = self.challenges.issue(self.audience)
        await self.send(
            text_data=dumps(
                {
                    "type": "challenge",
                    "version": PROTOCOL_VERSION,
                    "nonce": b64encode(challenge.nonce),
                    "audience": challenge.audience,
                    "expires_at": challenge.expires_at.isoformat(),
                }
            )
        )

    async def on_auth(self, frame: AuthFrame) -> None:
        if self.installation is not None:
            raise InvalidInput("already_authenticated", "this connection is authenticated")
        nonce = b64decode(frame.nonce, "nonce")
        public_key = b64decode(frame.public_key, "public_key")
        signature = b64decode(frame.signature, "signature")
        try:
            self.challenges.consume(nonce)
            installation = await database_sync_to_async(auth.authenticate_key)(
                nonce, public_key, signature, self.audience
            )
        except RelayError as error:
            self.failed_auths += 1
            await self.send_error(error, frame.ref)
            if self.failed_auths >= MAX_AUTH_ATTEMPTS:
                await self.close(code=CLOSE_AUTH_FAILED, reason="too many failed authentications")
            else:
                await self.send_challenge()
            return
        self.installation = installation
        self.challenges.clear()
        self.tasks.pop("auth_deadline").cancel()
        await self.hub.connect(self, installation.pk)
        await self.send(
            text_data=dumps(
                {
                    "type": "authenticated",
                    "installation_id": installation.pk,
                    "inbox_id": installation.inbox_id,
                    "welcome_topic": welcome_topic(installation.pk),
                    "limits": {
                        "max_envelope_bytes": settings.VEILPOST_MAX_ENVELOPE_BYTES,
                        "send_window": self.window.max_envelopes,
                        "send_window_bytes": self.window.max_bytes,
                        "max_subscriptions": settings.VEILPOST_MAX_SUBSCRIPTIONS,
                    },
                    "ref": frame.ref,
                }
            )
        )

    async def close_if_unauthenticated(self) -> None:
        await asyncio.sleep(settings.VEILPOST_CHALLENGE_SECONDS)
        async with self.exclusive():
            if self.installation is None:
                await self.send_error(
                    AuthenticationFailed(
                        "authentication_timeout", "the challenge expired before it was answered"
                    )
                )
                await self.close(code=CLOSE_AUTH_TIMEOUT, reason="authentication timeout")

    async def revoked(self) -> None:
        """From the hub: this connection's installation was revoked."""
        async with self.exclusive():
            await self.send_error(
                AuthenticationFailed("installation_revoked", "this installation was revoked")
            )
            await self.close(code=CLOSE_AUTH_FAILED, reason="installation revoked")

    # --- Publishing ---------------------------------------------------------------------------

    async def on_publish(self, frame: PublishFrame) -> None:
        assert self.installation is not None
        payload = b64decode(frame.payload, "payload")
        request = delivery.prepare_publish(
            self.installation,
            frame.topic,
            frame.id,
            payload,
            join=frame.topic not in self.joined_topics,
        )
        # Pipelined: the sequencer stores it with others and calls back; the next frame need
        # not wait. A connection with too many in the sequencer stops reading until one lands.
        while self.publishing >= MAX_PIPELINED_PUBLISHES:
            self.publish_room.clear()
            await self.publish_room.wait()
        self.publishing += 1

        async def done(outcome: Outcome) -> None:
            self.publishing -= 1
            self.publish_room.set()
            if isinstance(outcome, RelayError):
                await self.send_error(outcome, frame.ref)
                return
            await self.acknowledge_publish(outcome, frame.ref)

        self.sequencer.submit(request, done)

    async def acknowledge_publish(self, published: Published, ref: str | int | None) -> None:
        envelope = published.envelope
        if envelope.topic.startswith("group:"):
            self.joined_topics.add(envelope.topic)
        await self.send(
            text_data=dumps(
                {
                    "type": "ack",
                    "topic": envelope.topic,
                    "id": envelope.client_id,
                    "sequence": envelope.sequence,
                    "duplicate": published.duplicate,
                    "ref": ref,
                }
            )
        )

    # --- Subscriptions and delivery -----------------------------------------------------------

    async def on_subscribe(self, frame: SubscribeFrame) -> None:
        assert self.installation is not None
        total = len(self.window.streams.keys() | frame.topics.keys())
        limit = settings.VEILPOST_MAX_SUBSCRIPTIONS
        if total > limit:
            raise InvalidInput(
                "too_many_subscriptions",
                f"this would make {total} subscriptions; the limit per connection is {limit}",
            )
        positions = await database_sync_to_async(delivery.open_topics)(
            self.installation, frame.topics
        )
        # Join the hub before reading any backlog: see webapp.relay.streams. A cursor the hub
        # has already fanned out to needs no backlog read: the rest comes from the hub (1,000
        # subscribers joining a topic read the database zero times, not 1,000).
        for position in positions:
            cursor = frame.topics[position.name]
            stream = self.window.open(position.name, position.pk, cursor)
            seen = await self.hub.subscribe(
                self, position.pk, position.name, position.last_sequence
            )
            stream.behind = cursor < seen
            if position.kind == TopicKind.GROUP:
                self.joined_topics.add(position.name)
        await self.send(
            text_data=dumps(
                {
                    "type": "subscribed",
                    "topics": {
                        p.name: {
                            "cursor": frame.topics[p.name],
                            "last_sequence": p.last_sequence,
                            "first_sequence": p.first_sequence,
                        }
                        for p in positions
                    },
                    "ref": frame.ref,
                }
            )
        )
        await self.catch_up()

    async def on_unsubscribe(self, frame: UnsubscribeFrame) -> None:
        closed = []
        for name in frame.topics:
            stream = self.window.close(name)
            if stream is not None:
                self.hub.unsubscribe(self, stream.topic_pk)
                closed.append(name)
        await self.send(
            text_data=dumps({"type": "unsubscribed", "topics": closed, "ref": frame.ref})
        )

    async def on_received(self, frame: ReceivedFrame) -> None:
        before = self.window.in_flight
        for name, sequence in frame.topics.items():
            self.window.acknowledge(name, sequence)
        if self.window.in_flight < before:
            self.blocked_since = None  # progress: the slow-consumer clock starts again
        await self.catch_up()

    async def on_ping(self, frame: PingFrame) -> None:
        await self.send(text_data=dumps({"type": "pong", "ref": frame.ref}))

    async def take_live(self, topic: str, envelopes: Sequence[Live]) -> None:
        """From the hub: live envelopes of a subscribed topic (``webapp.relay.hub``)."""
        if self.lock.locked():
            if topic in self.overflowed:
                return
            if self.pending_count + len(envelopes) > self.window.max_envelopes:
                self.overflowed.add(topic)  # read from the database once the lock is free
                return
            self.pending.append((topic, envelopes))
            self.pending_count += len(envelopes)
            return
        # What exclusive() does, spelled out: this runs once per subscriber per fan-out.
        await self.lock.acquire()  # free: returns at once
        try:
            await self.deliver_live(topic, envelopes)
            await self.take_pending()
        finally:
            self.lock.release()

    async def take_pending(self) -> None:
        """Take what queued while the lock was held (called holding it)."""
        while self.pending:
            topic, envelopes = self.pending.popleft()
            self.pending_count -= len(envelopes)
            await self.deliver_live(topic, envelopes)
        if self.overflowed:
            for name in self.overflowed:
                stream = self.window.streams.get(name)
                if stream is not None:
                    stream.behind = True
            self.overflowed.clear()
            self.spawn_catch_up()

    async def deliver_live(self, topic: str, envelopes: Sequence[Live]) -> None:
        """Send live envelopes the window allows; mark the stream behind on a gap or a full
        window (a task then reads the database: the hub must not wait for that)."""
        for sequence, size, frame in envelopes:
            offer = self.window.offer(topic, sequence, size)
            if offer is Offer.SEND:
                self.window.record_sent(topic, sequence, size)
                await self.base_send({"type": "websocket.send", "text": frame})
            elif offer is Offer.CATCH_UP:
                self.spawn_catch_up()
                return

    def spawn_catch_up(self) -> None:
        self.catch_up_wanted = True
        if not self.running("catch_up"):
            self.spawn("catch_up", self.locked_catch_up())

    async def locked_catch_up(self) -> None:
        while self.catch_up_wanted:  # set again if asked while this task was catching up
            self.catch_up_wanted = False
            async with self.exclusive():
                await self.catch_up()

    async def catch_up(self) -> None:
        """Send what streams that are behind miss, from the database, as the window allows."""
        progress = True
        while progress and self.window.behind() and not self.window.full:
            progress = False
            for stream in self.window.behind():
                if self.window.full:
                    break
                envelopes, complete = await reading(delivery.envelopes_after)(
                    stream.name,
                    stream.topic_pk,
                    stream.sent,
                    limit=min(self.window.room, CATCH_UP_PAGE),
                    max_bytes=max(1, self.window.max_bytes - self.window.in_flight_bytes),
                )
                for envelope in envelopes:
                    if not self.window.has_room(envelope.size):
                        complete = False
                        break
                    await self.send(text_data=envelope_frame(envelope))
                    self.window.record_sent(stream.name, envelope.sequence, envelope.size)
                    progress = True
                else:
                    if complete:
                        stream.behind = False
        self.watch_window()

    def watch_window(self) -> None:
        """Start the slow-consumer clock when envelopes wait for room in the window."""
        if not self.window.behind():
            self.blocked_since = None
            return
        if self.blocked_since is None:
            self.blocked_since = asyncio.get_running_loop().time()
        if not self.running("slow_consumer"):
            self.spawn("slow_consumer", self.close_if_slow())

    async def close_if_slow(self) -> None:
        timeout = settings.VEILPOST_SLOW_CONSUMER_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            since = self.blocked_since
            if since is None:
                return
            await asyncio.sleep(max(0.0, since + timeout - loop.time()))
            async with self.exclusive():
                if self.blocked_since is not None and loop.time() - self.blocked_since >= timeout:
                    waiting = self.window.in_flight
                    await self.send_error(
                        RelayError(
                            "slow_consumer",
                            f"{waiting} envelopes went unacknowledged for {timeout:g} s while"
                            " more were waiting; reconnect and resume from your cursors",
                        )
                    )
                    await self.close(code=CLOSE_SLOW_CONSUMER, reason="slow consumer")
                    return
