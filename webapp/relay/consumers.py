"""The WebSocket consumer at /ws/v1: frames in, service calls, frames out.

The logic lives in plain modules: authentication in ``auth``, publishing and backlogs in
``delivery``, and what this connection has delivered in ``streams`` (read its docstring for
why delivery has no gap and no duplicate). This class pumps frames and channel-layer events
through them, one at a time: every handler, and every timer below, runs under one lock, so a
connection's state changes in a single sequence.

Timers: an unauthenticated socket is closed when its challenge expires; after live traffic
settles, one query checks that no event was lost in the channel layer; a connection whose
window stays blocked (envelopes waiting, nothing acknowledged) is closed as a slow consumer;
channel-layer group memberships are renewed well within their expiry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from . import auth, delivery
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
from .identifiers import b64decode, b64encode, welcome_topic
from .models import Installation, TopicKind
from .streams import DeliveryWindow, Offer

logger = logging.getLogger(__name__)

# WebSocket close codes (4000-4999 are the application's; see docs/protocol.md).
CLOSE_BAD_HOST = 4400
CLOSE_AUTH_TIMEOUT = 4401
CLOSE_AUTH_FAILED = 4403
CLOSE_SLOW_CONSUMER = 4408

MAX_AUTH_ATTEMPTS = 5
CATCH_UP_PAGE = 200
SETTLE_SECONDS = 0.5  # after the last live event, check once that none was lost
GROUP_REFRESH_SECONDS = 3600.0  # well within the channel layer's group_expiry (a day)


def topic_group(topic_pk: int) -> str:
    """The channel-layer group of a topic's subscribers."""
    return f"topic.{topic_pk}"


def installation_group(installation_id: str) -> str:
    """The channel-layer group of an installation's connections (to close them on revoke)."""
    return f"installation.{installation_id}"


class RelayConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels is untyped
    """One client connection speaking the relay protocol (``docs/protocol.md``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = asyncio.Lock()
        self.installation: Installation | None = None
        self.audience = ""
        self.issued_nonces: set[bytes] = set()
        self.failed_auths = 0
        self.window = DeliveryWindow(
            settings.VEILPOST_SEND_WINDOW, settings.VEILPOST_SEND_WINDOW_BYTES
        )
        self.joined_topics: set[str] = set()  # group topics already in the conversations
        self.blocked_since: float | None = None
        self.settle_at: float | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
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

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch also runs close_old_connections in a thread for every message;
        # every database call here goes through database_sync_to_async, which already does.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        async with self.lock:
            await handler(message)

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
            await self.channel_layer.group_discard(topic_group(stream.topic_pk), self.channel_name)
        if self.installation is not None:
            await self.channel_layer.group_discard(
                installation_group(self.installation.pk), self.channel_name
            )

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
        challenge = await database_sync_to_async(auth.issue_challenge)(self.audience)
        self.issued_nonces.add(challenge.nonce)
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
            if nonce not in self.issued_nonces:
                raise AuthenticationFailed(
                    "unknown_challenge", "this connection was not sent that challenge"
                )
            installation = await database_sync_to_async(auth.authenticate)(
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
        self.issued_nonces.clear()
        self.tasks.pop("auth_deadline").cancel()
        await self.channel_layer.group_add(installation_group(installation.pk), self.channel_name)
        self.spawn("group_refresh", self.refresh_groups())
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
        async with self.lock:
            if self.installation is None:
                await self.send_error(
                    AuthenticationFailed(
                        "authentication_timeout", "the challenge expired before it was answered"
                    )
                )
                await self.close(code=CLOSE_AUTH_TIMEOUT, reason="authentication timeout")

    async def relay_revoked(self, event: dict[str, Any]) -> None:
        """Channel-layer event: this connection's installation was revoked."""
        await self.send_error(
            AuthenticationFailed("installation_revoked", "this installation was revoked")
        )
        await self.close(code=CLOSE_AUTH_FAILED, reason="installation revoked")

    # --- Publishing ---------------------------------------------------------------------------

    async def on_publish(self, frame: PublishFrame) -> None:
        assert self.installation is not None
        payload = b64decode(frame.payload, "payload")
        published = await database_sync_to_async(delivery.publish)(
            self.installation,
            frame.topic,
            frame.id,
            payload,
            join=frame.topic not in self.joined_topics,
        )
        if frame.topic.startswith("group:"):
            self.joined_topics.add(frame.topic)
        envelope = published.envelope
        # Also on a retry: if the first attempt's node died between storing and fanning out,
        # this repairs it (subscribers skip what they already have).
        await self.channel_layer.group_send(
            topic_group(published.topic_pk),
            {
                "type": "relay.envelope",
                "topic": envelope.topic,
                "sequence": envelope.sequence,
                "size": envelope.size,
                "frame": envelope_frame(envelope),
            },
        )
        await self.send(
            text_data=dumps(
                {
                    "type": "ack",
                    "topic": envelope.topic,
                    "id": envelope.client_id,
                    "sequence": envelope.sequence,
                    "duplicate": published.duplicate,
                    "ref": frame.ref,
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
        # Join the groups before reading any backlog: see webapp.relay.streams.
        for position in positions:
            await self.channel_layer.group_add(topic_group(position.pk), self.channel_name)
            self.window.open(position.name, position.pk, frame.topics[position.name])
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
        self.arm_settle()

    async def on_unsubscribe(self, frame: UnsubscribeFrame) -> None:
        closed = []
        for name in frame.topics:
            stream = self.window.close(name)
            if stream is not None:
                await self.channel_layer.group_discard(
                    topic_group(stream.topic_pk), self.channel_name
                )
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

    async def relay_envelope(self, event: dict[str, Any]) -> None:
        """Channel-layer event: an envelope was stored on a subscribed topic."""
        offer = self.window.offer(event["topic"], event["sequence"], event["size"])
        if offer is Offer.SEND:
            await self.send(text_data=event["frame"])
            self.window.record_sent(event["topic"], event["sequence"], event["size"])
        elif offer is Offer.CATCH_UP:
            await self.catch_up()
        self.arm_settle()

    def arm_settle(self) -> None:
        self.settle_at = asyncio.get_running_loop().time() + SETTLE_SECONDS
        if not self.running("settle"):
            self.spawn("settle", self.settle())

    async def catch_up(self) -> None:
        """Send what streams that are behind miss, from the database, as the window allows."""
        progress = True
        while progress and self.window.behind() and not self.window.full:
            progress = False
            for stream in self.window.behind():
                if self.window.full:
                    break
                envelopes, complete = await database_sync_to_async(delivery.envelopes_after)(
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
            async with self.lock:
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

    async def settle(self) -> None:
        """After live traffic stops, check once that no event was lost in the channel layer
        (a full channel drops events silently); deliver any that were."""
        loop = asyncio.get_running_loop()
        while self.settle_at is not None and loop.time() < self.settle_at:
            await asyncio.sleep(self.settle_at - loop.time())
        async with self.lock:
            self.settle_at = None
            streams = {s.topic_pk: s for s in self.window.streams.values()}
            if not streams:
                return
            last = await database_sync_to_async(delivery.last_sequences)(streams.keys())
            for pk, stream in streams.items():
                if last.get(pk, 0) > stream.sent:
                    stream.behind = True
            await self.catch_up()

    async def refresh_groups(self) -> None:
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            async with self.lock:
                for stream in self.window.streams.values():
                    await self.channel_layer.group_add(
                        topic_group(stream.topic_pk), self.channel_name
                    )
                if self.installation is not None:
                    await self.channel_layer.group_add(
                        installation_group(self.installation.pk), self.channel_name
                    )
